"""Database access for scripts: ``db_query(name, params[, database])`` and ``db_exec(...)``.

The Go runtime advertised a ``db`` plugin that never existed. Here scripts name a
query, never send SQL: the statements are the operator's, from the ``queries`` table for the
nflow database and from ``[databases.<name>.queries]`` for the others, with
``$1…$n`` placeholders bound to the script's values on both engines.

Every call is capped:

* rows: more than ``max_rows`` rows is an error (not a silent truncation, which would make a
  report look complete when it is not);
* time: ``timeout_seconds`` per statement, never past the run's own deadline. PostgreSQL
  cancels the statement itself (``statement_timeout``); SQLite is interrupted at the deadline;
* writes: ``read_only`` databases (the default, the nflow database included) run in read-only
  sessions (``default_transaction_read_only`` / ``PRAGMA query_only``), and ``db_exec`` on
  them is refused before anything is sent.

The nflow database's own statements (``QueryGetUser``, ``QueryUpdateApp``…) are not offered:
they read password hashes and rewrite apps. Pools are opened lazily per worker I/O loop and
closed by :func:`close_databases`.
"""

from __future__ import annotations

__all__ = ["NFLOW_DATABASE", "RESERVED_QUERIES", "close_databases", "db"]

import asyncio
import base64
import datetime
import decimal
import math
import sqlite3
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, event, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import TextClause

from nflow._io import IoLoop
from nflow.config import ExtraDatabaseConfig
from nflow.errors import StoreError
from nflow.jsapi._context import HostError, RunContext
from nflow.jsapi._host import HostTable
from nflow.store import BIND_PREFIX, normalise_url, translate_placeholders

NFLOW_DATABASE = "nflow"

#: The runtime's and the designer's statements in the queries table.
RESERVED_QUERIES = frozenset(
    {
        "QueryCountModulesByName",
        "QueryDeleteModule",
        "QueryDeleteTemplate",
        "QueryGetApp",
        "QueryGetModuleByName",
        "QueryGetModules",
        "QueryGetTemplate",
        "QueryGetTemplateCount",
        "QueryGetTemplates",
        "QueryGetToken",
        "QueryGetUser",
        "QueryInsertLog",
        "QueryInsertModule",
        "QueryInsertTemplate",
        "QueryUpdateApp",
        "QueryUpdateCodeModuleByName",
        "QueryUpdateFormModuleByName",
        "QueryUpdateModModuleByName",
        "QueryUpdateTemplate",
    }
)

_CONNECT_TIMEOUT = 10.0
_MAX_SAFE_INT = 2**53
# asyncpg's exception for a statement cancelled by statement_timeout (SQLSTATE 57014).
_CANCELLED_SQLSTATE = "57014"

db = HostTable()


@dataclass(frozen=True, slots=True)
class _Target:
    name: str
    url: str
    max_rows: int
    timeout: float
    read_only: bool
    queries: Mapping[str, str]
    where: str  # the config key that lists the queries, for messages


class _TooManyRows(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Engines, one set per worker I/O loop


_EngineKey = tuple[str, bool, int]
_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_EngineKey, AsyncEngine]] = (
    weakref.WeakKeyDictionary()
)


def _create_engine(url: str, read_only: bool, timeout_ms: int) -> AsyncEngine:
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed, pool_size=4, max_overflow=4)
        if read_only:

            @event.listens_for(engine.sync_engine, "connect")
            def _query_only(dbapi_connection: Any, record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA query_only = ON")
                cursor.close()

        return engine
    settings = {"statement_timeout": str(timeout_ms)}
    if read_only:
        settings["default_transaction_read_only"] = "on"
    return create_async_engine(
        parsed,
        pool_size=4,
        max_overflow=4,
        pool_pre_ping=True,
        connect_args={"timeout": _CONNECT_TIMEOUT, "server_settings": settings},
    )


def _engine(target: _Target) -> AsyncEngine:
    """The running loop's engine for ``target`` (call on the I/O loop)."""
    loop = asyncio.get_running_loop()
    pools = _engines.setdefault(loop, {})
    key = (target.url, target.read_only, _ms(target.timeout))
    engine = pools.get(key)
    if engine is None:
        engine = pools[key] = _create_engine(target.url, target.read_only, _ms(target.timeout))
    return engine


async def _dispose_on_loop() -> None:
    pools = _engines.pop(asyncio.get_running_loop(), {})
    for engine in pools.values():
        await engine.dispose()


async def close_databases(io: IoLoop) -> None:
    """Close the worker's pools (call before closing ``io``, from another event loop)."""
    await io.run(_dispose_on_loop())


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


# --------------------------------------------------------------------------------------------
# Arguments


def _target(ctx: RunContext, fn: str, database: object) -> _Target:
    if database is None or database == "":
        name = NFLOW_DATABASE
    elif isinstance(database, str):
        name = database
    else:
        raise HostError(f"{fn}: the database name must be a string")
    services = ctx.services
    config = services.config
    entry = config.databases.get(name)
    if name == NFLOW_DATABASE:
        entry = entry or ExtraDatabaseConfig()
        return _Target(
            name=name,
            url=services.database_url,
            max_rows=entry.max_rows,
            timeout=entry.timeout_seconds,
            read_only=entry.read_only,
            # The run's own version: a reload during the run does not change its queries.
            queries=ctx.queries,
            where="the queries table",
        )
    if entry is None:
        known = ", ".join(sorted({NFLOW_DATABASE, *config.databases})) or NFLOW_DATABASE
        raise HostError(f"{fn}: unknown database {name!r} (configured: {known})")
    return _Target(
        name=name,
        url=entry.sqlalchemy_url,
        max_rows=entry.max_rows,
        timeout=entry.timeout_seconds,
        read_only=entry.read_only,
        queries=entry.queries,
        where=f"databases.{name}.queries",
    )


def _sql(fn: str, target: _Target, query: object) -> str:
    if not isinstance(query, str) or not query:
        raise HostError(f"{fn}: the first argument must be the name of a query (a string)")
    if target.name == NFLOW_DATABASE and query in RESERVED_QUERIES:
        raise HostError(
            f"{fn}: {query} is one of nflow's own queries (users, tokens, apps, modules) "
            "and is not available to scripts"
        )
    sql = target.queries.get(query)
    if not sql:
        raise HostError(f"{fn}: no query named {query!r} in {target.where}")
    return sql


def _param(fn: str, index: int, value: object) -> object:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HostError(f"{fn}: parameter ${index} is not a finite number")
        # JS has one number type: 5 arrives as 5.0 from some paths, and an integer column
        # on PostgreSQL refuses a float.
        return int(value) if value.is_integer() and abs(value) < _MAX_SAFE_INT else value
    kind = "an array" if isinstance(value, list) else "an object"
    raise HostError(
        f"{fn}: parameter ${index} is {kind}; parameters must be strings, numbers, booleans or null"
    )


def _params(fn: str, params: object) -> list[object]:
    if params is None:
        return []
    if not isinstance(params, list):
        raise HostError(f'{fn}: the parameters must be an array, e.g. [5, "UY"]')
    return [_param(fn, i, v) for i, v in enumerate(params, start=1)]


def _clause(fn: str, label: str, sql: str, params: Sequence[object], postgres: bool) -> TextClause:
    try:
        translated, used = translate_placeholders(sql, nested_comments=postgres)
    except StoreError as exc:
        raise HostError(f"{label}: {exc}") from None
    given = len(params)
    needed = max(used) if used else 0
    if needed != given or used != set(range(1, needed + 1)):
        expected = needed if used == set(range(1, needed + 1)) else f"$1…${needed}"
        raise HostError(f"{label}: the query takes {expected} parameter(s), {given} given")
    return text(translated).bindparams(
        *(bindparam(f"{BIND_PREFIX}{i}", params[i - 1]) for i in sorted(used))
    )


# --------------------------------------------------------------------------------------------
# Values for JS


def _plain(value: object) -> object:
    """A database value as JSON-safe data: what JS can hold without losing information."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= _MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value() and abs(value) <= _MAX_SAFE_INT:
            return int(value)
        number = float(value)
        return number if decimal.Decimal(repr(number)) == value.normalize() else str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


# --------------------------------------------------------------------------------------------
# Running


def _fetch(conn: Connection, clause: TextClause, max_rows: int) -> list[dict[str, object]]:
    result = conn.execution_options(stream_results=True).execute(clause)
    if not result.returns_rows:
        return []
    keys = [str(k) for k in result.keys()]  # noqa: SIM118 - a Result, not a dict
    rows = result.fetchmany(max_rows + 1)
    result.close()
    if len(rows) > max_rows:
        raise _TooManyRows
    return [dict(zip(keys, (_plain(v) for v in row), strict=True)) for row in rows]


def _affect(conn: Connection, clause: TextClause) -> int:
    result = conn.execute(clause)
    count = result.rowcount
    if result.returns_rows:
        result.close()
    return max(count, 0)


async def _run(target: _Target, clause: TextClause, timeout: float, rows: bool) -> Any:
    engine = _engine(target)
    loop = asyncio.get_running_loop()
    async with engine.begin() as conn:
        timer: asyncio.TimerHandle | None = None
        if engine.dialect.name == "sqlite":
            raw = await conn.get_raw_connection()
            native = getattr(raw.driver_connection, "_conn", None)
            if isinstance(native, sqlite3.Connection):
                # interrupt() is thread-safe and stops the statement running in aiosqlite's
                # thread; a statement already finished makes it a no-op.
                timer = loop.call_later(timeout, native.interrupt)
        elif _ms(timeout) < _ms(target.timeout):  # the run ends before the configured limit
            await conn.execute(text(f"SET LOCAL statement_timeout = {_ms(timeout)}"))
        try:
            if rows:
                return await conn.run_sync(_fetch, clause, target.max_rows)
            return await conn.run_sync(_affect, clause)
        finally:
            if timer is not None:
                timer.cancel()


def _cancelled(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "sqlstate", None) == _CANCELLED_SQLSTATE:
            return True
        if isinstance(seen, sqlite3.OperationalError) and "interrupted" in str(seen):
            return True
        if isinstance(seen, DBAPIError) and seen.orig is not None and seen.orig is not seen:
            seen = seen.orig
            continue
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    inner: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        inner = exc.orig
        if inner.__cause__ is not None:  # the asyncpg adapter wraps asyncpg's exception
            inner = inner.__cause__
    return str(inner).strip() or type(inner).__name__


def _call(
    ctx: RunContext, fn: str, query: object, params: object, database: object, rows: bool
) -> Any:
    target = _target(ctx, fn, database)
    sql = _sql(fn, target, query)
    label = f"{fn} {query} on database {target.name}"
    if not rows and target.read_only:
        raise HostError(
            f"{label}: the database is read-only (set databases.{target.name}.read_only = "
            "false to allow db_exec)"
        )
    values = _params(label, params)
    postgres = normalise_url(target.url).get_backend_name() != "sqlite"
    clause = _clause(fn, label, sql, values, postgres)
    remaining = ctx.remaining()
    if remaining <= 0.05:
        raise HostError(f"{label}: no time left in this run")
    timeout = min(target.timeout, remaining)
    limit = (
        f"databases.{target.name}.timeout_seconds"
        if timeout >= target.timeout
        else "the time left in this run"
    )
    try:
        # The statement is cancelled at ``timeout``; the margin covers pool and round trips.
        return ctx.services.io.call(_run(target, clause, timeout, rows), timeout=timeout + 2.0)
    except _TooManyRows:
        raise HostError(
            f"{label}: more than {target.max_rows} rows (databases.{target.name}.max_rows); "
            "narrow the query or raise the limit"
        ) from None
    except TimeoutError:
        raise HostError(f"{label}: cancelled after {timeout:.3g} s ({limit})") from None
    except (SQLAlchemyError, OSError, sqlite3.Error) as exc:
        if _cancelled(exc):
            raise HostError(f"{label}: cancelled after {timeout:.3g} s ({limit})") from None
        raise HostError(f"{label}: {_reason(exc)}") from None
    except Exception as exc:
        # asyncpg errors raised outside SQLAlchemy's wrapping (a cursor fetch, a connect).
        if type(exc).__module__.startswith("asyncpg"):
            if _cancelled(exc):
                raise HostError(f"{label}: cancelled after {timeout:.3g} s ({limit})") from None
            raise HostError(f"{label}: {_reason(exc)}") from None
        raise


@db.function("db_query")
def db_query(ctx: RunContext, query: object, params: object = None, database: object = None) -> Any:
    """Rows of a named query as an array of ``{column: value}`` objects."""
    return _call(ctx, "db_query", query, params, database, rows=True)


@db.function("db_exec")
def db_exec(ctx: RunContext, query: object, params: object = None, database: object = None) -> Any:
    """Run a named INSERT/UPDATE/DELETE: ``{rows_affected: n}``."""
    count = _call(ctx, "db_exec", query, params, database, rows=False)
    return {"rows_affected": count}


# Every db function waits in IoLoop.call: scripts may also await several at once.
db.allow_await(*db.names())
