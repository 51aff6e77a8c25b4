"""An app's versions and releases over HTTP: the list, what changed between two versions,
the release (which versions serve what share of new clients) and its rollback.

The same operations as ``nflow versions|diff|release|rollback`` (see ``nflow.releasing``);
a change is applied by this worker at once and by the others at their next poll.
"""

from __future__ import annotations

__all__ = [
    "Change",
    "Diff",
    "ReleaseChange",
    "ReleaseState",
    "VersionInfo",
    "app_diff",
    "app_release",
    "app_release_get",
    "app_rollback",
    "app_versions",
    "version_changes",
]

import asyncio
from typing import Any

import msgspec

from nflow._http import Response
from nflow.errors import NflowError
from nflow.releasing import document_nodes as _nodes
from nflow.releasing import node_data as _data
from nflow.releasing import node_links as _links
from nflow.releasing import percent as _percent
from nflow.store import ReleaseRecord, Store, VersionRecord

from ._core import ApiCall, ApiError, ok


class VersionInfo(msgspec.Struct):
    """A stored version; ``current`` for the version of the app's own source now."""

    version: str
    created_at: str
    source: str
    note: str | None
    current: bool


class Change(msgspec.Struct):
    """One difference: ``what`` is ``node added``, ``node removed``, ``data.<field>``,
    ``tab``, ``connection added``, ``connection removed``, or ``module``/``template``/
    ``query`` with its name in ``node`` left null."""

    node: str | None
    tab: str | None
    what: str
    before: Any
    after: Any


class Diff(msgspec.Struct):
    changes: list[Change]


class ReleaseEventInfo(msgspec.Struct):
    id: int
    at: str
    kind: str
    weights: dict[str, int]
    previous: dict[str, int] | None
    detail: dict[str, Any] | None
    undone: bool


class ReleaseState(msgspec.Struct):
    """``weights``: the percentage of new clients each version serves now; ``head``: the
    version of the app's own source; ``events``: the newest release changes first."""

    weights: dict[str, float]
    head: str | None
    events: list[ReleaseEventInfo]


class ReleaseChange(msgspec.Struct, forbid_unknown_fields=True):
    """Versions (ids or 4+ character prefixes) and their percentages, adding up to 100."""

    weights: dict[str, int]
    note: str | None = None


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Empty: restore the release before the last change; ``to``: serve that version alone."""

    to: str | None = None


def version_changes(old: VersionRecord, new: VersionRecord) -> list[Change]:
    """What changed from ``old`` to ``new``, node by node, then the sources it uses."""
    na, nb = _nodes(old.playbook), _nodes(new.playbook)
    out: list[Change] = []
    for node_id in sorted(set(nb) - set(na)):
        out.append(Change(node_id, nb[node_id]["tab"], "node added", None, _data(nb[node_id])))
    for node_id in sorted(set(na) - set(nb)):
        out.append(Change(node_id, na[node_id]["tab"], "node removed", _data(na[node_id]), None))
    for node_id in sorted(set(na) & set(nb)):
        a, b = na[node_id], nb[node_id]
        da, db = _data(a), _data(b)
        for key in sorted(set(da) | set(db)):
            if da.get(key) != db.get(key):
                out.append(Change(node_id, b["tab"], f"data.{key}", da.get(key), db.get(key)))
        if a["tab"] != b["tab"]:
            out.append(Change(node_id, b["tab"], "tab", a["tab"], b["tab"]))
    la, lb = _links(na), _links(nb)
    for src, output, dst in sorted(lb - la):
        tab = nb[src]["tab"]
        out.append(Change(src, tab, "connection added", None, {"output": output, "node": dst}))
    for src, output, dst in sorted(la - lb):
        tab = na[src]["tab"]
        out.append(Change(src, tab, "connection removed", {"output": output, "node": dst}, None))
    for kind, before, after in (
        ("module", old.modules, new.modules),
        ("template", old.templates, new.templates),
        ("query", old.queries, new.queries),
    ):
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                out.append(Change(None, None, f"{kind} {name}", before.get(name), after.get(name)))
    return out


async def _work(call: ApiCall, work: Any) -> Any:
    try:
        return await call.runtime.store_call(work(call.runtime.store))
    except NflowError as exc:
        raise ApiError(400, str(exc)) from None


async def _version(store: Store, app: str, ref: str) -> VersionRecord:
    found = await store.get_version(ref, app)
    if found is None:
        raise NflowError(f"app {app!r} has no version {ref!r}")
    return found


async def app_versions(call: ApiCall) -> Response:
    from nflow.releasing import head_version

    app = call.params["name"]

    async def work(store: Store) -> tuple[str | None, list[VersionRecord]]:
        return await head_version(store, app), await store.list_versions(app)

    head, versions = await _work(call, work)
    if not versions:
        raise ApiError(404, f"app {app!r} has no stored versions")
    return ok(
        [
            VersionInfo(v.id, v.created_at.isoformat(), v.source, v.message, v.id == head)
            for v in versions
        ]
    )


async def app_diff(call: ApiCall) -> Response:
    app = call.params["name"]
    refs = (call.query("from"), call.query("to"))
    if not refs[0] or not refs[1]:
        raise ApiError(400, "query parameters from and to: both required (version ids)")

    async def work(store: Store) -> tuple[VersionRecord, VersionRecord]:
        return await _version(store, app, str(refs[0])), await _version(store, app, str(refs[1]))

    old, new = await _work(call, work)
    return ok(Diff(version_changes(old, new)))


async def _state(call: ApiCall, app: str) -> ReleaseState:
    from nflow.releasing import head_version, serving

    async def work(store: Store) -> Any:
        head = await head_version(store, app)
        return head, await store.get_release(app), await store.release_events(app, 20)

    head, release, events = await _work(call, work)
    return ReleaseState(
        weights=_percent(serving(release, head)),
        head=head,
        events=[
            ReleaseEventInfo(
                e.id, e.at.isoformat(), e.kind, e.weights, e.previous, e.detail, e.undone
            )
            for e in events
        ],
    )


async def app_release_get(call: ApiCall) -> Response:
    return ok(await _state(call, call.params["name"]))


def _decode(call: ApiCall, shape: type[Any]) -> Any:
    try:
        return msgspec.json.decode(call.request.body or b"{}", type=shape)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(400, f"request body: {exc}") from None


async def _applied(call: ApiCall, app: str) -> Response:
    await asyncio.to_thread(call.runtime.refresh_releases)
    return ok(await _state(call, app))


async def app_release(call: ApiCall) -> Response:
    from nflow.releasing import head_version

    app = call.params["name"]
    change: ReleaseChange = _decode(call, ReleaseChange)
    if not change.weights:
        raise ApiError(400, "weights: give at least one version and its percentage")
    for ref, weight in change.weights.items():
        if not 0 <= weight <= 100:
            raise ApiError(400, f"weights.{ref}: expected a percentage from 0 to 100, got {weight}")
    if sum(change.weights.values()) != 100:
        raise ApiError(
            400, f"weights: the percentages must add up to 100, not {sum(change.weights.values())}"
        )

    async def work(store: Store) -> ReleaseRecord | None:
        weights = {}
        for ref, weight in change.weights.items():
            weights[(await _version(store, app, ref)).id] = weight
        head = await head_version(store, app)
        detail = {"message": change.note} if change.note else None
        return await store.set_release(app, weights, head=head, detail=detail)

    await _work(call, work)
    return await _applied(call, app)


async def app_rollback(call: ApiCall) -> Response:
    from nflow.releasing import head_version

    app = call.params["name"]
    request: RollbackRequest = _decode(call, RollbackRequest)

    async def work(store: Store) -> ReleaseRecord | None:
        head = await head_version(store, app)
        if request.to:
            version = await _version(store, app, request.to)
            return await store.set_release(
                app, {version.id: 100}, head=head, kind="rollback", detail={"to": version.id}
            )
        return await store.rollback_release(app, head=head)

    await _work(call, work)
    return await _applied(call, app)
