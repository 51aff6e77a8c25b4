"""Apps over HTTP: list them, read one (with the load-time fixes the designer's leftovers
need), save one under an ``ETag``/``If-Match`` check, and run the analyzer on a document.

An app's version (its ``ETag``) is the id of its content in the versions table: the document
and the modules, templates and queries it uses. A save stores the document in the app's row
and as a new version, then reloads this worker's catalog, so the next request here runs it;
the other workers pick it up at their next reload poll.
"""

from __future__ import annotations

__all__ = [
    "AppDocument",
    "AppSaved",
    "AppSummary",
    "CheckRequest",
    "Findings",
    "app_check",
    "app_get",
    "app_list",
    "app_put",
    "load_fixes",
]

import asyncio
import copy
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from nflow._http import Response
from nflow.errors import PlaybookError, Problem
from nflow.playbook import Playbook, parse_playbook

from ._core import ApiCall, ApiError, ok

if TYPE_CHECKING:
    from nflow.catalog import Catalog


class StarterInfo(msgspec.Struct):
    """A route of the app: its starter node, tab, method and URL pattern."""

    node: str
    tab: str
    method: str
    url: str


class AppSummary(msgspec.Struct):
    name: str
    version: str
    tabs: list[str]
    starters: list[StarterInfo]
    source: str  # "store" (editable) or "file"


class AppDocument(msgspec.Struct):
    """The app's Drawflow document after the load-time fixes, each listed in ``fixes``."""

    name: str
    version: str
    source: str
    document: dict[str, Any]
    fixes: list[str]


class AppSaved(msgspec.Struct):
    name: str
    version: str


class SaveRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The whole Drawflow document to store (``{"drawflow": {tab: {"data": {...}}}}``)."""

    document: dict[str, Any]


class CheckRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A document to analyze; without it, the stored one."""

    document: dict[str, Any] | None = None


class Finding(msgspec.Struct):
    """One problem: ``line`` counts from 1 inside the node's code (``rule`` names the field
    or check that found it; ``column`` is null when unknown)."""

    node: str | None
    tab: str | None
    line: int | None
    column: int | None
    severity: str
    message: str
    rule: str


class Findings(msgspec.Struct):
    findings: list[Finding]


@dataclass(frozen=True, slots=True)
class _Current:
    name: str
    document: dict[str, Any]
    version: str
    source: str  # "store" or "file"
    default_js: str = ""
    tag: str | None = None
    playbook: Playbook | None = None
    text: str = ""  # the stored row's json, exactly


def load_fixes(document: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``document`` with what the original designer left fixed: ``class`` or
    ``name`` null made ``""``, a missing ``Home`` tab added, connections to nodes absent
    from their tab dropped. The fixes made, as sentences. ``data`` and each node's ``html``
    are never touched."""
    doc = copy.deepcopy(document)
    fixes: list[str] = []
    drawflow = doc.get("drawflow")
    if not isinstance(drawflow, dict):
        return doc, fixes
    if "Home" not in drawflow:
        drawflow["Home"] = {"data": {}}
        fixes.append("added the empty tab Home, which the canvas needs")
    for tab, tab_doc in drawflow.items():
        nodes = tab_doc.get("data") if isinstance(tab_doc, dict) else None
        if not isinstance(nodes, dict):
            continue
        for node_id, node in nodes.items():
            if not isinstance(node, dict):
                continue
            for key in ("class", "name"):
                if key in node and node[key] is None:
                    node[key] = ""
                    fixes.append(f'node {node_id} (tab {tab!r}): {key} null made ""')
            for side in ("outputs", "inputs"):
                ports = node.get(side)
                if not isinstance(ports, dict):
                    continue
                for port, spec in ports.items():
                    conns = spec.get("connections") if isinstance(spec, dict) else None
                    if not isinstance(conns, list):
                        continue
                    kept = [c for c in conns if isinstance(c, dict) and str(c.get("node")) in nodes]
                    for gone in conns:
                        if gone not in kept:
                            target = gone.get("node") if isinstance(gone, dict) else gone
                            fixes.append(
                                f"node {node_id} (tab {tab!r}): dropped the connection of "
                                f"{port} to node {target}, which is not in the tab"
                            )
                    if len(kept) != len(conns):
                        spec["connections"] = kept
    return doc, fixes


def _version_of(call: ApiCall, playbook: Playbook) -> str:
    from nflow.catalog import version_record

    catalog = call.runtime.catalog
    return version_record(
        playbook, catalog.modules, catalog.templates, catalog.queries, source="designer"
    ).id


async def _current(call: ApiCall, name: str) -> _Current:
    runtime = call.runtime
    row = await runtime.store_call(runtime.store.get_app(name))
    if row is not None:
        try:
            document = orjson.loads(row.json)
        except orjson.JSONDecodeError as exc:
            raise ApiError(409, f"app {name!r}: its stored document is not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise ApiError(409, f"app {name!r}: its stored document is not a JSON object")
        try:
            playbook: Playbook | None = parse_playbook(document, name=name)
        except PlaybookError:
            playbook = None
        version = (
            _version_of(call, playbook)
            if playbook is not None
            else hashlib.sha256(row.json.encode()).hexdigest()
        )
        return _Current(
            name, document, version, "store", row.default_js, row.tag, playbook, row.json
        )
    for found in _file_playbooks(runtime.catalog):
        if found.name == name:
            return _Current(name, dict(found.document), found.version, "file", playbook=found)
    raise ApiError(404, f"no app {name!r}")


def _file_playbooks(catalog: Catalog) -> list[Playbook]:
    """The served apps that are not stored: ``--app`` files, and the bundled example a
    server with no app serves (read-only here, like a file)."""
    found = [s.playbook for s in catalog.files if s.playbook is not None]
    known = {s.name for s in catalog.stored} | {p.name for p in found}
    return found + [p for p in catalog.playbooks if p.name not in known]


def _summary(playbook: Playbook, source: str) -> AppSummary:
    return AppSummary(
        name=playbook.name,
        version=playbook.version,
        tabs=list(playbook.tabs),
        starters=[
            StarterInfo(s.node.id, s.node.tab, s.method, s.pattern) for s in playbook.starters
        ],
        source=source,
    )


async def app_list(call: ApiCall) -> Response:
    catalog = call.runtime.catalog
    apps = [
        _summary(s.playbook, "store")
        if s.playbook is not None
        # A stored app that cannot be served is listed too, so that it can be mended.
        else AppSummary(s.name, s.digest, [], [], "store")
        for s in catalog.stored
    ] + [_summary(p, "file") for p in _file_playbooks(catalog)]
    seen: set[str] = set()
    unique = []
    for app in apps:  # a stored app shadows a file of the same name
        if app.name not in seen:
            seen.add(app.name)
            unique.append(app)
    return ok(sorted(unique, key=lambda a: a.name))


def _etag(version: str) -> str:
    return f'"{version}"'


async def app_get(call: ApiCall) -> Response:
    current = await _current(call, call.params["name"])
    document, fixes = load_fixes(current.document)
    response = ok(AppDocument(current.name, current.version, current.source, document, fixes))
    response.headers.append(("etag", _etag(current.version)))
    return response


def _if_match(call: ApiCall) -> str:
    given = call.request.header("if-match").strip()
    if not given:
        raise ApiError(
            428,
            'a save needs If-Match: "<version>" (the ETag of the GET it edits), so that '
            "nobody's changes are overwritten unseen",
        )
    return given.removeprefix("W/").strip('"')


def _conflict(name: str, expected: str, current: str) -> ApiError:
    return ApiError(
        409,
        f"app {name!r} changed since version {expected[:12]}: it is at {current[:12]} now; "
        "reload it and apply your changes again",
        {"etag": _etag(current)},
        extra={"current": current},
    )


def _invalid(name: str, problems: list[Problem], what: str) -> ApiError:
    shown = "; ".join(str(p) for p in problems[:10])
    more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
    return ApiError(400, f"app {name!r}: {what}: {shown}{more}")


async def app_put(call: ApiCall) -> Response:
    from nflow.catalog import version_record

    runtime = call.runtime
    name = call.params["name"]
    expected = _if_match(call)
    try:
        body = msgspec.json.decode(call.request.body or b"null", type=SaveRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(400, f'request body: expected {{"document": {{...}}}} ({exc})') from None
    current = await _current(call, name)
    if current.source == "file":
        raise ApiError(
            409,
            f"app {name!r} is served from a file: edit the file (the server reloads it), "
            "or import it into the database to edit it here",
        )
    if expected not in ("*", current.version):
        raise _conflict(name, expected, current.version)
    document = body.document
    try:
        playbook = parse_playbook(document, name=name, source=f"app {name!r}")
    except PlaybookError as exc:
        raise _invalid(name, exc.problems, "not a usable document") from None
    known = {str(p) for p in (current.playbook.errors if current.playbook else [])}
    new_errors = [p for p in playbook.errors if str(p) not in known]
    if new_errors:
        raise _invalid(name, new_errors, "not saved, the document has errors")
    catalog = runtime.catalog
    record = version_record(
        playbook, catalog.modules, catalog.templates, catalog.queries, source="designer"
    )
    store = runtime.store
    text = orjson.dumps(document).decode()
    replaced = await runtime.store_call(
        store.replace_app(
            name, text, expected=current.text, default_js=current.default_js, tag=current.tag
        )
    )
    if not replaced:  # another save won the race since we read the app
        now = await _current(call, name)
        raise _conflict(name, expected, now.version)
    await runtime.store_call(store.put_version(record))
    # A save goes live for every client, as an import does, and says so in the release
    # history: a rollback after a later release then comes back to the saved version.
    await runtime.store_call(
        store.set_release(name, {record.id: 100}, head=record.id, detail={"save": True})
    )
    # This worker serves the new version from the next request on.
    await runtime.reload()
    await asyncio.to_thread(runtime.refresh_releases)
    response = ok(AppSaved(name, record.id))
    response.headers.append(("etag", _etag(record.id)))
    return response


def _findings(problems: list[Problem]) -> Findings:
    return Findings(
        [
            Finding(
                node=p.node or None,
                tab=p.tab or None,
                line=p.line,
                column=None,
                severity=p.severity,
                message=p.message,
                rule=p.field or "document",
            )
            for p in problems
        ]
    )


async def app_check(call: ApiCall) -> Response:
    from nflow.applimits import app_limit_problems
    from nflow.check import check_playbook

    name = call.params["name"]
    try:
        body = msgspec.json.decode(call.request.body or b"{}", type=CheckRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(
            400, f'request body: expected {{"document": {{...}}}} or {{}} ({exc})'
        ) from None
    document = body.document
    if document is None:
        document = (await _current(call, name)).document
    try:
        playbook = parse_playbook(document, name=name)
    except PlaybookError as exc:
        return ok(_findings(exc.problems))
    runtime = call.runtime

    def analyze() -> list[Problem]:
        problems = check_playbook(
            playbook, modules=runtime.catalog.modules, security=runtime.config.security
        )
        return problems + app_limit_problems(playbook, runtime.config)

    return ok(_findings(await asyncio.to_thread(analyze)))
