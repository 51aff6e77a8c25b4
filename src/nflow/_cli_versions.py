"""The ``nflow versions``, ``diff``, ``release`` and ``rollback`` commands, and the version
side of ``nflow import`` (release, or ``--stage``) and ``nflow export --version``.

Version ids may be abbreviated to 4 or more hex characters, like git's. Heavy imports happen
inside the commands, so building the parser stays cheap.
"""

from __future__ import annotations

__all__ = [
    "add_version_commands",
    "export_version",
    "release_imported",
    "stage_import",
]

import argparse
import asyncio
import difflib
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nflow.store import Document, ReleaseRecord, Store, VersionRecord


def _print(text: str = "") -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _with_store(args: argparse.Namespace, work: Callable[[Store, Any], Awaitable[Any]]) -> Any:
    from nflow.config import find_config
    from nflow.store import Store

    config, _ = find_config(args.config)
    store = Store(config.database_url)

    async def run() -> Any:
        await store.open()
        try:
            return await work(store, config)
        finally:
            await store.close()

    return asyncio.run(run())


async def _stored(store: Store) -> tuple[dict[str, str | None], dict[str, str], dict[str, str]]:
    from nflow.releasing import stored_sources

    return await stored_sources(store)


async def head_version(store: Store, app: str) -> str | None:
    from nflow.releasing import head_version as head

    return await head(store, app)


async def _version(store: Store, app: str, ref: str) -> VersionRecord:
    from nflow.errors import NflowError

    found = await store.get_version(ref, app)
    if found is None:
        raise NflowError(f"app {app!r} has no version {ref!r} (see `nflow versions {app}`)")
    return found


def _serving(release: ReleaseRecord | None, head: str | None) -> dict[str, int]:
    from nflow.releasing import serving

    return serving(release, head)


def _percent(weights: Mapping[str, int]) -> dict[str, float]:
    from nflow.releasing import percent

    return percent(weights)


def _short(version: str) -> str:
    return version[:12]


def _shares(weights: Mapping[str, int]) -> str:
    return ", ".join(f"{_short(v)} {p:g}%" for v, p in _percent(weights).items()) or "nothing"


# nflow versions ------------------------------------------------------------------------------
def _event_text(event: Any) -> str:
    when = f"{event.at:%Y-%m-%d %H:%M:%S}"
    if event.kind == "auto_rollback" and event.detail:
        d = event.detail
        return (
            f"{when}  auto rollback of {_short(str(d.get('version', '')))}: "
            f"{d.get('errors')} of {d.get('requests')} requests failed "
            f"({100 * float(d.get('error_rate', 0)):.0f}% > "
            f"{100 * float(d.get('canary_max_error_rate', 0)):.0f}%) in "
            f"{float(d.get('window_seconds', 0)):g}s"
        )
    undone = "  (rolled back)" if event.undone else ""
    return f"{when}  {event.kind}: {_shares(event.weights)}{undone}"


def cmd_versions(args: argparse.Namespace) -> int:
    async def work(store: Store, config: Any) -> Any:
        head = await head_version(store, args.app)
        return (
            head,
            await store.list_versions(args.app),
            await store.get_release(args.app),
            await store.release_events(args.app, 20),
        )

    head, versions, release, events = _with_store(args, work)
    if not versions:
        _err(f"nflow: app {args.app!r} has no stored versions")
        return 1
    now = _percent(_serving(release, head))
    if args.json:
        import orjson

        data = {
            "app": args.app,
            "head": head,
            "release": (
                {"seq": release.seq, "weights": release.weights, "head": release.head}
                if release is not None
                else None
            ),
            "versions": [
                {
                    "id": v.id,
                    "created_at": v.created_at.isoformat(),
                    "source": v.source,
                    "message": v.message,
                    "weight": now.get(v.id, 0.0),
                }
                for v in versions
            ],
            "events": [
                {
                    "id": e.id,
                    "at": e.at.isoformat(),
                    "kind": e.kind,
                    "weights": e.weights,
                    "previous": e.previous,
                    "detail": e.detail,
                    "undone": e.undone,
                }
                for e in events
            ],
        }
        _print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return 0
    _print(f"{'ID':<12}  {'CREATED (UTC)':<19}  {'SOURCE':<8}  {'WEIGHT':>6}  MESSAGE")
    for v in versions:
        weight = f"{now[v.id]:g}%" if v.id in now else "-"
        mark = "*" if v.id == head else " "
        _print(
            f"{_short(v.id)}{mark} {v.created_at:%Y-%m-%d %H:%M:%S}  {v.source:<8}  "
            f"{weight:>6}  {v.message or ''}".rstrip()
        )
    _print("(* the version of the app's own source: its nflow row or file)")
    if events:
        _print("release history (newest first):")
        for event in events:
            _print("  " + _event_text(event))
    return 0


# nflow diff ----------------------------------------------------------------------------------
def _nodes(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    from nflow.releasing import document_nodes

    return document_nodes(doc)


def _links(nodes: Mapping[str, Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    from nflow.releasing import node_links

    return node_links(nodes)


def _data(node: Mapping[str, Any]) -> dict[str, Any]:
    from nflow.releasing import node_data

    return node_data(node)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _label(node: Mapping[str, Any]) -> str:
    data = _data(node)
    kind = data.get("type") or node.get("name") or "?"
    name = data.get("name_box") or ""
    return f"{kind} {name!r}" if name else str(kind)


def _changed_fields(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    fields = []
    da, db = _data(a), _data(b)
    for key in sorted(set(da) | set(db)):
        if da.get(key) != db.get(key):
            fields.append(f"data.{key}")
    if a.get("tab") != b.get("tab"):
        fields.append("tab")
    return fields


def _unified(title: str, before: str, after: str, a: str, b: str) -> list[str]:
    lines = list(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{a}/{title}",
            tofile=f"{b}/{title}",
        )
    )
    return [line if line.endswith("\n") else line + "\n" for line in lines]


def diff_versions(old: VersionRecord, new: VersionRecord) -> str:
    """Node-level differences (nodes and connections added, removed, changed) and a unified
    diff of every changed script, module, template and query."""
    a, b = _short(old.id), _short(new.id)
    out = [f"--- version {a} ({old.created_at:%Y-%m-%d %H:%M:%S}, {old.source})\n"]
    out.append(f"+++ version {b} ({new.created_at:%Y-%m-%d %H:%M:%S}, {new.source})\n")
    na, nb = _nodes(old.playbook), _nodes(new.playbook)
    for node_id in sorted(set(nb) - set(na)):
        out.append(f"node added: {node_id} ({_label(nb[node_id])})\n")
    for node_id in sorted(set(na) - set(nb)):
        out.append(f"node removed: {node_id} ({_label(na[node_id])})\n")
    changed = []
    for node_id in sorted(set(na) & set(nb)):
        fields = _changed_fields(na[node_id], nb[node_id])
        if fields:
            changed.append(node_id)
            out.append(f"node changed: {node_id} ({_label(nb[node_id])}): {', '.join(fields)}\n")
    la, lb = _links(na), _links(nb)
    for src, output, dst in sorted(lb - la):
        out.append(f"connection added: {src}.{output} -> {dst}\n")
    for src, output, dst in sorted(la - lb):
        out.append(f"connection removed: {src}.{output} -> {dst}\n")
    scripts: list[str] = []
    for node_id in changed:
        ca, cb = _text(_data(na[node_id]).get("code")), _text(_data(nb[node_id]).get("code"))
        if ca != cb:
            scripts += _unified(f"node {node_id} code", ca, cb, a, b)
    for kind, before, after in (
        ("module", old.modules, new.modules),
        ("template", old.templates, new.templates),
        ("query", old.queries, new.queries),
    ):
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                state = (
                    "added" if name not in before else "removed" if name not in after else "changed"
                )
                out.append(f"{kind} {state}: {name}\n")
                scripts += _unified(
                    f"{kind} {name}", before.get(name, ""), after.get(name, ""), a, b
                )
    if len(out) == 2:
        out.append("no differences\n")
    return "".join(out + scripts)


def cmd_diff(args: argparse.Namespace) -> int:
    async def work(store: Store, config: Any) -> Any:
        return await _version(store, args.app, args.v1), await _version(store, args.app, args.v2)

    old, new = _with_store(args, work)
    sys.stdout.write(diff_versions(old, new))
    sys.stdout.flush()
    return 0


# nflow release / rollback -------------------------------------------------------------------
def _split(current: Mapping[str, int], version: str, weight: int) -> dict[str, int]:
    from nflow.releasing import split

    return split(current, version, weight)


def cmd_release(args: argparse.Namespace) -> int:
    from nflow.releasing import release

    async def work(store: Store, config: Any) -> Any:
        return await release(store, args.app, args.version, args.weight, message=args.message)

    released = _with_store(args, work)
    _print(f"app {args.app!r} now serves: {_shares(released.weights)}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    async def work(store: Store, config: Any) -> Any:
        head = await head_version(store, args.app)
        if args.to:
            version = await _version(store, args.app, args.to)
            return await store.set_release(
                args.app, {version.id: 100}, head=head, kind="rollback", detail={"to": version.id}
            )
        return await store.rollback_release(args.app, head=head)

    release = _with_store(args, work)
    _print(f"app {args.app!r} now serves: {_shares(release.weights)}")
    return 0


# nflow import (release or --stage) and export --version --------------------------------------
async def release_imported(
    store: Store, named: Sequence[tuple[Document, str]], *, message: str | None, keep: int
) -> list[str]:
    """After a plain import: each imported app's new version takes all its traffic."""
    from nflow.catalog import version_record
    from nflow.playbook import load_playbook

    lines = []
    sources = await _stored(store)
    for doc, name in named:
        if doc.app_json is None:
            continue
        playbook = load_playbook(doc.app_json, name=name)
        record = version_record(playbook, *sources, source="import", message=message)
        await store.put_version(record)
        await store.set_release(name, {record.id: 100}, head=record.id, detail={"import": True})
        await store.prune_versions(name, keep, [record.id])
        lines.append(f"app {name!r}: version {_short(record.id)} serves all its traffic")
    return lines


async def stage_import(
    store: Store, named: Sequence[tuple[Document, str]], *, message: str | None, keep: int
) -> list[str]:
    """``nflow import --stage``: store each app's version (with the modules, templates and
    queries of the files over the stored ones) and change nothing that is served."""
    from nflow.catalog import version_record
    from nflow.errors import NflowError
    from nflow.playbook import load_playbook

    modules, templates, queries = await _stored(store)
    for doc, _ in named:
        modules.update((m.name, m.code) for m in doc.modules)
        templates.update((t.name, t.content) for t in doc.templates)
        queries.update(doc.queries)
    lines = []
    for doc, name in named:
        if doc.app_json is None:
            continue
        playbook = load_playbook(doc.app_json, name=name)
        record = version_record(
            playbook, modules, templates, queries, source="import", message=message
        )
        new = await store.put_version(record)
        await store.prune_versions(name, keep, [record.id])
        lines.append(
            f"app {name!r}: version {_short(record.id)} "
            f"{'staged' if new else 'already stored'}, not serving "
            f"(`nflow release {name} {_short(record.id)} --weight 10` starts a canary)"
        )
    if not lines:
        raise NflowError("--stage stages app documents: none was given")
    return lines


def export_version(args: argparse.Namespace) -> int:
    """``nflow export DIR --version V [--name APP]``: that version's app document and the
    modules, templates and queries it uses, in the files ``nflow import`` reads."""
    from nflow.store import ModuleRecord, TemplateRecord
    from nflow.store._support import (
        app_file_name,
        export_app,
        export_meta,
        export_modules,
        export_queries,
        export_templates,
        meta_file_name,
    )

    async def work(store: Store, config: Any) -> Any:
        from nflow.errors import NflowError

        found = await store.get_version(args.version, args.name)
        if found is None:
            where = f" of app {args.name!r}" if args.name else ""
            raise NflowError(f"no version {args.version!r}{where} (see `nflow versions APP`)")
        row = await store.get_app(found.app)
        stored = {m.name: m for m in await store.list_modules()}
        return found, row, stored

    version, row, stored = _with_store(args, work)
    import orjson

    modules = [
        ModuleRecord(
            name=name,
            form=stored[name].form if name in stored else "",
            mod=stored[name].mod if name in stored else "{}",
            code=code,
        )
        for name, code in sorted(version.modules.items())
    ]
    files = [
        (app_file_name(version.app), export_app(orjson.dumps(version.playbook).decode())),
        (
            meta_file_name(version.app),
            export_meta(
                version.app, row.default_js if row else "", row.tag if row is not None else None
            ),
        ),
        ("modules.json", export_modules(modules)),
        (
            "templates.json",
            export_templates([TemplateRecord(k, v) for k, v in sorted(version.templates.items())]),
        ),
        ("queries.json", export_queries(dict(sorted(version.queries.items())))),
    ]
    target = Path(args.directory)
    target.mkdir(parents=True, exist_ok=True)
    for file_name, content in files:
        path = target / file_name
        path.write_text(content, encoding="utf-8")
        _print(str(path))
    return 0


def add_version_commands(sub: Any) -> None:
    """Register ``nflow versions``, ``diff``, ``release`` and ``rollback``."""
    p = sub.add_parser("versions", help="an app's stored versions, its release and its history")
    p.add_argument("app")
    p.add_argument("--json", action="store_true", help="a JSON object")
    p.add_argument("--config")
    p.set_defaults(func=cmd_versions)

    p = sub.add_parser("diff", help="what changed between two versions of an app")
    p.add_argument("app")
    p.add_argument("v1", help="version id (4+ characters)")
    p.add_argument("v2", help="version id (4+ characters)")
    p.add_argument("--config")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("release", help="serve a version of an app to a share of new clients")
    p.add_argument("app")
    p.add_argument("version", help="version id (4+ characters)")
    p.add_argument(
        "--weight",
        type=int,
        default=100,
        help="percentage of new clients (default 100); the other versions share the rest",
    )
    p.add_argument("-m", "--message", help="recorded with the release")
    p.add_argument("--config")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("rollback", help="restore an app's previous release at once")
    p.add_argument("app")
    p.add_argument("--to", metavar="VERSION", help="serve this version alone instead")
    p.add_argument("--config")
    p.set_defaults(func=cmd_rollback)
