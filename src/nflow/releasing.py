"""Changing what an app serves, for ``nflow release|rollback|versions`` and the management
API alike: the version of the app's own source (its head), the weights served now, and the
weights after releasing one version at a share of the traffic.
"""

from __future__ import annotations

__all__ = [
    "SOURCE_KINDS",
    "document_nodes",
    "head_version",
    "node_data",
    "node_links",
    "percent",
    "release",
    "serving",
    "split",
    "stored_sources",
]

from collections.abc import Mapping
from typing import Any

from nflow.catalog import version_record
from nflow.errors import NflowError, PlaybookError
from nflow.playbook import load_playbook
from nflow.store import ReleaseRecord, Store

# Versions the servers loaded from an app's own source (not staged imports): for an app that
# has no nflow row, the newest of them is its source's version.
SOURCE_KINDS = ("file", "reload", "designer", "example")


async def stored_sources(
    store: Store,
) -> tuple[dict[str, str | None], dict[str, str], dict[str, str]]:
    """The stored modules (name → code), templates and queries."""
    modules = {m.name: m.code for m in await store.list_modules()}
    templates = {t.name: t.content for t in await store.list_templates()}
    return modules, templates, dict(await store.list_queries())


async def head_version(store: Store, app: str) -> str | None:
    """The version of the app's own source now: its ``nflow`` row with the stored modules,
    templates and queries (saved as a designer version if new), else the newest version a
    server loaded from a file."""
    row = await store.get_app(app)
    if row is not None:
        try:
            playbook = load_playbook(row.json, name=app)
        except PlaybookError:
            return None
        record = version_record(playbook, *await stored_sources(store), source="designer")
        await store.put_version(record)
        return record.id
    for version in await store.list_versions(app):
        if version.source in SOURCE_KINDS:
            return version.id
    return None


def serving(release: ReleaseRecord | None, head: str | None) -> dict[str, int]:
    """The weights an app serves with: its release's, or its head version alone."""
    if release is None:
        return {head: 100} if head else {}
    if head is None:
        return {v: w for v, w in release.weights.items() if w > 0}
    return release.serving(head)


def split(current: Mapping[str, int], version: str, weight: int) -> dict[str, int]:
    """``version`` at ``weight`` percent, the others scaled to share the rest as before."""
    others = {v: w for v, w in current.items() if v != version and w > 0}
    rest = 100 - weight
    total = sum(others.values())
    weights = {version: weight}
    if rest <= 0 or not total:
        return weights
    # Largest remainders, so the shares add up to exactly 100.
    exact = {v: rest * w / total for v, w in others.items()}
    floors = {v: int(x) for v, x in exact.items()}
    left = rest - sum(floors.values())
    for v in sorted(exact, key=lambda v: exact[v] - floors[v], reverse=True)[:left]:
        floors[v] += 1
    weights.update({v: w for v, w in floors.items() if w > 0})
    return weights


async def release(
    store: Store, app: str, version_ref: str, weight: int, *, message: str | None = None
) -> ReleaseRecord:
    """Serve version ``version_ref`` (an id or a 4+ character prefix) of ``app`` to
    ``weight`` percent of new clients; the versions served now share the rest."""
    if not 0 < weight <= 100:
        raise NflowError(f"weight {weight}: expected a percentage from 1 to 100")
    version = await store.get_version(version_ref, app)
    if version is None:
        raise NflowError(f"app {app!r} has no version {version_ref!r} (see `nflow versions {app}`)")
    head = await head_version(store, app)
    weights = split(serving(await store.get_release(app), head), version.id, weight)
    if sum(weights.values()) < 100:
        raise NflowError(
            f"nothing else serves app {app!r} to take the other {100 - weight}%: "
            "release a version at 100% first"
        )
    detail = {"message": message} if message else None
    released = await store.set_release(app, weights, head=head, detail=detail)
    assert released is not None  # None only when an expected sequence number is given
    return released


# What `nflow diff` and the API's diff both read of a stored document ---------------------------
def document_nodes(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every node of a Drawflow document by id, each with the ``tab`` it is on."""
    out: dict[str, dict[str, Any]] = {}
    drawflow = doc.get("drawflow")
    if not isinstance(drawflow, dict):
        return out
    for tab, tab_doc in drawflow.items():
        data = tab_doc.get("data") if isinstance(tab_doc, dict) else None
        if isinstance(data, dict):
            for node_id, node in data.items():
                if isinstance(node, dict):
                    out[str(node_id)] = {"tab": tab, **node}
    return out


def node_data(node: Mapping[str, Any]) -> dict[str, Any]:
    data = node.get("data")
    return data if isinstance(data, dict) else {}


def node_links(nodes: Mapping[str, Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """The connections of ``nodes`` as (node, output, target node)."""
    links: set[tuple[str, str, str]] = set()
    for node_id, node in nodes.items():
        outputs = node.get("outputs")
        if not isinstance(outputs, dict):
            continue
        for output, spec in outputs.items():
            conns = spec.get("connections") if isinstance(spec, dict) else None
            for conn in conns or []:
                if isinstance(conn, dict) and "node" in conn:
                    links.add((node_id, str(output), str(conn["node"])))
    return links


def percent(weights: Mapping[str, int]) -> dict[str, float]:
    """Release weights as percentages of their sum (one decimal), zero weights left out."""
    total = sum(w for w in weights.values() if w > 0)
    return {v: round(100.0 * w / total, 1) for v, w in weights.items() if total and w > 0}
