"""Database fixtures shared by the whole suite.

``db_url`` runs a test once on SQLite and once on PostgreSQL, each time on an empty database.
PostgreSQL is required: when it cannot be reached the ``postgres`` cases fail (never skip),
so a broken environment cannot pass for a green run. Point ``NFLOW_TEST_PG`` at another
server (a libpq URL of a role allowed to CREATE DATABASE) to use it instead.

Tests are plain functions: the async API runs through the ``run`` fixture, one event loop per
test, because a connection pool belongs to the loop it was opened on.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import make_url

from nflow.store import Store

PG_ENV = "NFLOW_TEST_PG"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"

T = TypeVar("T")


class Run(Protocol):
    """Runs a coroutine to completion on the test's event loop."""

    def __call__(self, coro: Coroutine[Any, Any, T], /) -> T: ...


def _libpq_url(url: str) -> str:
    # asyncpg takes libpq URLs; accept the SQLAlchemy spelling in the variable too.
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(_libpq_url(url), timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


class PgDatabase:
    """The session's PostgreSQL database, and what the previous test left in it."""

    def __init__(self, url: str) -> None:
        self.url = url
        # True when schema public holds only tables a Store created (after a test that used
        # the ``store`` fixture). Their rows can then be deleted instead of re-creating them:
        # the DDL is most of the cost of a PostgreSQL test.
        self.store_tables = False

    async def reset(self, *, keep_store_tables: bool) -> None:
        conn = await asyncpg.connect(_libpq_url(self.url), timeout=10)
        try:
            if keep_store_tables and self.store_tables:
                names = [
                    r[0]
                    for r in await conn.fetch(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    )
                ]
                for name in names:
                    # The schema revision describes the tables, which stay: keep its row.
                    if name != "alembic_version":
                        await conn.execute(f'DELETE FROM "{name}"')
                # Ids start again at 1, as in freshly created tables.
                await conn.execute(
                    "SELECT setval(pg_get_serial_sequence(quote_ident(c.table_name), 'id'), 1, false)"
                    " FROM information_schema.columns c"
                    " WHERE c.table_schema = 'public' AND c.column_name = 'id'"
                    " AND c.table_name = ANY($1::text[])",
                    names,
                )
            else:
                await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        finally:
            await conn.close()
        self.store_tables = keep_store_tables


@pytest.fixture(scope="session")
def pg_database() -> Iterator[PgDatabase]:
    """A PostgreSQL database created for this test session and dropped after it."""
    admin = os.environ.get(PG_ENV, PG_DEFAULT)
    name = f"nflow_test_{os.getpid()}_{secrets.token_hex(4)}"
    problem = ""
    try:
        asyncio.run(
            _admin(
                admin,
                f'CREATE DATABASE "{name}"',
                # Durability is worthless for a throw-away database; commits get cheaper.
                f'ALTER DATABASE "{name}" SET synchronous_commit = off',
            )
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem:  # failed outside the except block, so the report is not a chained traceback
        shown = make_url(admin).render_as_string(hide_password=True)
        pytest.fail(
            f"PostgreSQL is needed for the postgres cases and is not usable at {shown} "
            f"({problem}). Start it (pg_ctlcluster ... main start) or set {PG_ENV} to a "
            "libpq URL of a role that may CREATE DATABASE.",
            pytrace=False,
        )
    url = make_url(admin).set(drivername="postgresql+asyncpg", database=name)
    yield PgDatabase(url.render_as_string(hide_password=False))
    asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLAlchemy async URL of an empty database, on each backend in turn.

    Empty means no tables at all, except for tests that use ``store``: those may get the
    tables a previous ``store`` test created, emptied of rows (which is what ``Store.open``
    would have created anyway). A test that changes the schema itself should not use
    ``store``.
    """
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'nflow.sqlite'}"
    database: PgDatabase = request.getfixturevalue("pg_database")
    asyncio.run(database.reset(keep_store_tables="store" in request.fixturenames))
    return database.url


@pytest.fixture
def run() -> Iterator[Run]:
    """Runs coroutines on one event loop that lives as long as the test."""
    with asyncio.Runner() as runner:
        yield runner.run


@pytest.fixture
def store(db_url: str, run: Run) -> Iterator[Store]:
    """An open :class:`Store` on ``db_url``, closed after the test."""
    opened = Store(db_url)
    run(opened.open())
    yield opened
    run(opened.close())


# Redis ------------------------------------------------------------------------------------
REDIS_ENV = "NFLOW_TEST_REDIS"


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test run uses; every key under it is deleted afterwards."""
    import redis

    host, _, port = os.environ.get(REDIS_ENV, "127.0.0.1:6379").partition(":")
    client = redis.Redis(host=host, port=int(port or 6379))
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is needed for the redis cases and is not reachable at {host}:{port} ({exc}); "
            f"start it (redis-server --daemonize yes ...) or set {REDIS_ENV}",
            pytrace=False,
        )
    prefix = f"nflow_test_{os.getpid()}_{secrets.token_hex(4)}:"
    yield prefix
    for key in client.scan_iter(match=prefix + "*", count=500):
        client.delete(key)
    client.close()


@pytest.fixture(params=["cookie", "redis"])
def session_toml(request: pytest.FixtureRequest) -> str:
    """The [session] (and [redis]) config of each session backend in turn."""
    if request.param == "cookie":
        return '[session]\nbackend = "cookie"\nsecret = "' + "k" * 40 + '"\n'
    prefix = request.getfixturevalue("redis_prefix") + secrets.token_hex(4) + ":"
    host = os.environ.get(REDIS_ENV, "127.0.0.1:6379")
    return f'[session]\nbackend = "redis"\n[redis]\nhost = "{host}"\nprefix = "{prefix}"\n'
