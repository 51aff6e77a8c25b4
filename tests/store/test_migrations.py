"""Schema migrations: fresh databases, databases made before migrations, and the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, MetaData, insert, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from nflow.errors import StoreError
from nflow.store import BASELINE, Store, head_revision
from nflow.store._tables import metadata, nflow, nflow_secrets, users

Run = Callable[..., Any]


def _schema(conn: Connection, names: list[str]) -> dict[str, Any]:
    """What the database says about each table: columns, primary key, indexes."""
    inspector = inspect(conn)
    out: dict[str, Any] = {}
    for name in sorted(names):
        columns = [
            (
                c["name"],
                str(c["type"]).upper(),
                c["nullable"],
                str(c.get("default")).replace("::text", "").replace("::character", ""),
            )
            for c in inspector.get_columns(name)
        ]
        indexes = sorted(
            (i["name"] or "", tuple(str(c) for c in i["column_names"]), bool(i["unique"]))
            for i in inspector.get_indexes(name)
        )
        out[name] = (columns, inspector.get_pk_constraint(name)["constrained_columns"], indexes)
    return out


async def _inspect(url: str, names: list[str]) -> tuple[dict[str, Any], list[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            schema = await conn.run_sync(_schema, names)
            tables = await conn.run_sync(lambda c: sorted(inspect(c).get_table_names()))
            return schema, tables
    finally:
        await engine.dispose()


async def _create_all(url: str, meta: MetaData) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
    finally:
        await engine.dispose()


async def _drop_all(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
            else:
                for name in await conn.run_sync(lambda c: inspect(c).get_table_names()):
                    await conn.execute(text(f'DROP TABLE "{name}"'))
    finally:
        await engine.dispose()


def test_fresh_database_reaches_head_with_the_tables_create_all_made(db_url: str, run: Run) -> None:
    names = sorted(metadata.tables)
    run(_create_all(db_url, metadata))
    expected, _ = run(_inspect(db_url, names))
    run(_drop_all(db_url))

    store = Store(db_url)
    run(store.open())
    try:
        assert run(store.schema_status()) == (head_revision(), head_revision())
    finally:
        run(store.close())
    migrated, tables = run(_inspect(db_url, names))
    # Revision 1 is exactly the tables nflow created before it had migrations.
    assert migrated == expected
    assert "alembic_version" in tables


def test_database_from_before_migrations_is_stamped_and_keeps_its_rows(
    db_url: str, run: Run
) -> None:
    run(_create_all(db_url, metadata))

    async def fill() -> None:
        engine = create_async_engine(db_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(nflow).values(name="shop", json="{}", default_js="x"))
                await conn.execute(
                    insert(users).values(username="ana", password="h", rol="ROL_ADMIN")
                )
                await conn.execute(
                    insert(nflow_secrets).values(name="k", value="enc:v1:x", key_id="k1")
                )
        finally:
            await engine.dispose()

    run(fill())
    store = Store(db_url, migrate=False)
    run(store.open())
    try:
        assert run(store.schema_status()) == (None, head_revision())
        before, after = run(store.upgrade_schema())
        assert (before, after) == (None, head_revision())
        assert run(store.schema_status())[0] == head_revision()
        app = run(store.get_app("shop"))
        assert app is not None and app.default_js == "x"
        user = run(store.get_user("ana"))
        assert user is not None and user.rol == "ROL_ADMIN" and user.active
        secrets = run(store.get_secrets())
        assert [(s.name, s.key_id) for s in secrets] == [("k", "k1")]
        # A second upgrade has nothing to do.
        assert run(store.upgrade_schema()) == (head_revision(), head_revision())
    finally:
        run(store.close())


def test_go_runtime_database_is_completed_then_versioned(db_url: str, run: Run) -> None:
    """A Go database has some of the tables, and ``nflow`` without nflow's later column."""

    async def go_database() -> None:
        engine = create_async_engine(db_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "CREATE TABLE nflow (id integer PRIMARY KEY, name text NOT NULL, json text NOT NULL)"
                    )
                )
                await conn.execute(
                    text("INSERT INTO nflow (id, name, json) VALUES (1, 'old', '{}')")
                )
        finally:
            await engine.dispose()

    run(go_database())
    store = Store(db_url)
    run(store.open())
    try:
        assert run(store.schema_status())[0] == head_revision()
        app = run(store.get_app("old"))
        assert app is not None and app.default_js == ""
        assert "old" in run(store.list_apps())
    finally:
        run(store.close())
    _, tables = run(_inspect(db_url, []))
    assert set(metadata.tables) <= set(tables)


def test_foreign_table_of_the_same_name_is_refused(db_url: str, run: Run) -> None:
    async def foreign() -> None:
        engine = create_async_engine(db_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE users (id integer PRIMARY KEY, email text)"))
        finally:
            await engine.dispose()

    run(foreign())
    store = Store(db_url)
    with pytest.raises(StoreError, match="table users has no column username"):
        run(store.open())


def test_database_from_a_newer_nflow_is_refused(db_url: str, run: Run) -> None:
    store = Store(db_url)
    run(store.open())
    run(store.close())

    async def bump() -> None:
        engine = create_async_engine(db_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        finally:
            await engine.dispose()

    run(bump())
    with pytest.raises(StoreError, match=r"revision '9999'.*newer nflow"):
        run(Store(db_url).open())


def test_concurrent_opens_of_a_fresh_database_all_succeed(db_url: str, run: Run) -> None:
    async def open_many() -> list[str | None]:
        stores = [Store(db_url) for _ in range(4)]
        await asyncio.gather(*(s.open() for s in stores))
        try:
            return [(await s.schema_status())[0] for s in stores]
        finally:
            for s in stores:
                await s.close()

    assert run(open_many()) == [head_revision()] * 4

    async def versions() -> list[str]:
        engine = create_async_engine(db_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
                return [r[0] for r in rows]
        finally:
            await engine.dispose()

    assert run(versions()) == [head_revision()]


def test_baseline_is_the_first_revision() -> None:
    from nflow.store._migrate import _script

    base = _script().get_base()
    assert base == BASELINE


def test_db_commands_upgrade_an_old_database(
    tmp_path: Any, run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    from nflow.cli import main

    path = tmp_path / "old.db"
    run(_create_all(f"sqlite+aiosqlite:///{path}", metadata))
    config = tmp_path / "config.toml"
    config.write_text(f'[database_nflow]\ndsn = "{path}"\n')

    assert main(["db", "current", "--config", str(config)]) == 3
    assert "none (behind" in capsys.readouterr().out
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert f"upgraded from none to {head_revision()}" in capsys.readouterr().out
    assert main(["db", "current", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == f"{head_revision()} (up to date)"


def test_history_revision_matches_the_declared_history_tables(db_url: str, run: Run) -> None:
    from nflow.history._tables import metadata as history

    names = sorted(history.tables)
    run(_create_all(db_url, history))
    expected, _ = run(_inspect(db_url, names))
    run(_drop_all(db_url))
    store = Store(db_url)
    run(store.open())
    run(store.close())
    migrated, _ = run(_inspect(db_url, names))
    assert migrated == expected


def test_versions_revision_matches_the_declared_versions_tables(db_url: str, run: Run) -> None:
    from nflow.store._versions import metadata as versions

    names = sorted(versions.tables)
    run(_create_all(db_url, versions))
    expected, _ = run(_inspect(db_url, names))
    run(_drop_all(db_url))
    store = Store(db_url)
    run(store.open())
    run(store.close())
    migrated, _ = run(_inspect(db_url, names))
    assert migrated == expected
