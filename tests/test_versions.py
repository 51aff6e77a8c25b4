"""App versions as content: ids are content hashes, saved by the runtime off the request path,
found by a git-like prefix, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness import Harness, app_doc, js, starter
from nflow import Request
from nflow.appversion import used_sources, version_content
from nflow.catalog import version_record
from nflow.engine import Execution
from nflow.errors import StoreError
from nflow.playbook import parse_playbook
from nflow.store import ModuleRecord, Store, VersionRecord

Run = Callable[..., Any]


def hello(word: str, *, script: str | None = None) -> dict[str, Any]:
    code = None if script else f"function main(){{ c.JSON(200, {{w: '{word}'}}) }}"
    return app_doc(s=starter("s", "/hello", "a", method="GET"), a=js("a", code, script=script))


def record(app: str, doc: dict[str, Any], *, when: datetime | None = None, **kw: Any) -> Any:
    vid, _ = version_content(doc, kw.get("modules", {}), {}, {})
    return VersionRecord(
        id=vid,
        app=app,
        created_at=when or datetime.now(UTC),
        source="cli",
        message="first",
        playbook=doc,
        modules=kw.get("modules", {}),
    )


def hot_serve(h: Harness, doc: dict[str, Any], name: str) -> None:
    """Change the app file and reload as a serving worker does (from the previous catalog)."""
    from nflow.catalog import build_catalog

    path = h.tmp_path / f"{name}.json"
    path.write_bytes(orjson.dumps(doc))
    h.runtime.app_files = [path]
    runtime = h.runtime
    runtime.install(build_catalog(runtime.catalog_sources(), runtime.catalog).catalog)


def test_version_id_is_the_hash_of_canonical_content() -> None:
    doc = hello("a")
    vid, content = version_content(doc, {"m": "x"}, {}, {})
    assert vid == __import__("hashlib").sha256(content).hexdigest()
    # Key order does not matter: the content is canonical.
    reordered = json.loads(json.dumps(doc, sort_keys=True))
    assert version_content(reordered, {"m": "x"}, {}, {})[0] == vid
    assert version_content(doc, {"m": "y"}, {}, {})[0] != vid
    assert orjson.loads(content) == {
        "playbook": doc,
        "modules": {"m": "x"},
        "templates": {},
        "queries": {},
    }


def test_only_the_sources_an_app_uses_are_part_of_its_version() -> None:
    doc = app_doc(
        s=starter("s", "/x", "a", method="GET"),
        a=js("a", script="greet", output_1="b"),
        b=js("b", "function main(){ c.HTML(200, template(get_template('page'), {})) }"),
    )
    playbook = parse_playbook(doc, name="x")
    modules = {"greet": "function main(){ query('by_id', 1) }", "other": "x"}
    templates = {"page": "<p>", "unused": "-"}
    queries = {"by_id": "select 1", "nope": "select 2"}
    assert used_sources(playbook, modules, templates, queries) == (
        {"greet": modules["greet"]},
        {"page": "<p>"},
        {"by_id": "select 1"},
    )
    one = version_record(playbook, modules, templates, queries, source="file")
    # Changing a module, template or query the app does not use keeps its version.
    two = version_record(
        playbook, {**modules, "other": "y"}, {**templates, "unused": "+"}, queries, source="file"
    )
    assert one.id == two.id
    three = version_record(
        playbook, {**modules, "greet": "changed"}, templates, queries, source="x"
    )
    assert three.id != one.id


def test_put_get_list_versions(store: Store, run: Run) -> None:
    first = record("shop", hello("a"), when=datetime.now(UTC) - timedelta(minutes=1))
    second = record("shop", hello("b"), modules={"m": "code"})
    assert run(store.put_version(first)) is True
    assert run(store.put_version(first)) is False  # the same content is the same version
    assert run(store.put_version(second)) is True
    listed = run(store.list_versions("shop"))
    assert [v.id for v in listed] == [second.id, first.id]  # newest first
    got = run(store.get_version(second.id[:7]))
    assert got == second
    assert got.created_at.tzinfo is not None
    assert run(store.get_version(first.id, "shop")) == first
    assert run(store.get_version(first.id, "other")) is None
    assert run(store.get_version("ffff" if not first.id.startswith("ffff") else "0000")) in (
        None,
        first,
        second,
    )
    with pytest.raises(StoreError, match="4 or more hexadecimal"):
        run(store.get_version("abc"))
    with pytest.raises(StoreError, match="hashes to"):
        run(store.put_version(dataclasses.replace(first, id="0" * 64)))


def test_an_ambiguous_prefix_names_the_candidates(store: Store, run: Run) -> None:
    saved: dict[str, VersionRecord] = {}
    n = 0
    # Find two versions whose ids share their first 4 characters (a few hundred tries).
    while True:
        rec = record("amb", hello(str(n)))
        n += 1
        clash = saved.get(rec.id[:4])
        if clash is not None:
            break
        saved[rec.id[:4]] = rec
    run(store.put_version(clash))
    run(store.put_version(rec))
    with pytest.raises(StoreError) as caught:
        run(store.get_version(rec.id[:4]))
    message = str(caught.value)
    assert "ambiguous" in message and rec.id[:12] in message and clash.id[:12] in message
    assert run(store.get_version(rec.id[:12])) == rec


def test_runtime_versions_each_app_and_saves_new_versions(db_url: str, tmp_path: Path) -> None:
    h = Harness(db_url, tmp_path, apps=[hello("one")])
    try:
        (playbook,) = h.runtime.catalog.playbooks
        assert len(playbook.version) == 64
        saved = h.store("list_versions", "app0")
        assert [(v.id, v.source) for v in saved] == [(playbook.version, "file")]
        # A run knows its version.
        execution = h.runtime.handle_sync(Request.from_url("GET", "/hello"))
        assert isinstance(execution, Execution)
        # A hot-reloaded change is a new version; going back to the old content is the old one.
        hot_serve(h, hello("two"), "app0")
        (changed,) = h.runtime.catalog.playbooks
        assert changed.version != playbook.version
        hot_serve(h, hello("one"), "app0")
        (back,) = h.runtime.catalog.playbooks
        assert back.version == playbook.version
        versions = h.store("list_versions", "app0")
        assert {v.id: v.source for v in versions} == {
            playbook.version: "file",
            changed.version: "reload",
        }
    finally:
        h.close()


def test_a_module_change_is_a_new_version_of_the_apps_that_use_it(
    db_url: str, tmp_path: Path
) -> None:
    h = Harness(db_url, tmp_path)
    try:
        h.store(
            "put_module", ModuleRecord(name="greet", form="", mod="{}", code="function main(){}")
        )
        h.store("put_template", "t", "x")
        h.store("put_app", "greeter", json.dumps(hello("", script="greet")))
        h.run(h.runtime.reload())
        (first,) = h.runtime.catalog.playbooks
        h.store(
            "put_module", ModuleRecord(name="greet", form="", mod="{}", code="function main(){1}")
        )
        h.run(h.runtime.reload())
        (second,) = h.runtime.catalog.playbooks
        assert second.version != first.version
        stored = h.store("get_version", second.version[:8], "greeter")
        assert stored.source == "designer"
        assert stored.modules == {"greet": "function main(){1}"}
        assert stored.templates == {}
        assert parse_playbook(stored.playbook, name="greeter").digest == second.digest
    finally:
        h.close()
