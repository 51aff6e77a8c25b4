"""The :class:`Store`: every database access of nflow, on SQLite or PostgreSQL.

All statements are SQLAlchemy Core constructs on the tables of ``_tables`` except
:meth:`Store.run_sql`, which runs the stored named queries (the ``queries`` table).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    bindparam,
    delete,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy import delete as sa_delete
from sqlalchemy import update as sa_update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool, StaticPool
from sqlalchemy.sql.elements import BindParameter

from nflow.errors import AppNotFound, StoreError

from ._heads import current_revisions, head_revision
from ._records import (
    AppRecord,
    ImportSummary,
    ModuleRecord,
    ReleaseEvent,
    ReleaseRecord,
    SecretRecord,
    TemplateRecord,
    TokenRecord,
    TrackerRow,
    UserRecord,
    VersionRecord,
)
from ._releases import (
    add_counts,
    delete_counts_before,
    delete_old_versions,
    select_counts,
    select_events,
    select_release,
    select_releases,
    undo_release,
    write_release,
)
from ._support import (
    BIND_PREFIX,
    Document,
    app_file_name,
    export_app,
    export_meta,
    export_modules,
    export_queries,
    export_templates,
    meta_file_name,
    normalise_url,
    read_document,
    translate_placeholders,
)
from ._tables import (
    CHAR_LIMITS,
    api_tokens,
    modules,
    nflow,
    nflow_secrets,
    queries,
    revision,
    session_revocations,
    template,
    tracker,
    users,
)
from ._versions import insert_version, select_version, select_versions

__all__ = ["Store"]

# PostgreSQL's type OID of char(n); run_sql strips the padding of such result columns.
_BPCHAR_OID = 1042
# asyncpg waits 60 s by default, far too long for a server that should fail fast at boot.
_PG_CONNECT_TIMEOUT = 10.0

# Execution option marking a transaction that will write; on SQLite it starts with
# BEGIN IMMEDIATE so concurrent writers queue on the busy timeout instead of failing when a
# read lock cannot be upgraded.
_WRITE = "nflow_write"

_TRACKER_FIELDS = tuple(f.name for f in fields(TrackerRow))

_NAME: BindParameter[Any] = bindparam("b_name")

_GET_APP = (
    select(nflow.c.json, nflow.c.default_js, nflow.c.tag)
    .where(nflow.c.name == _NAME)
    .order_by(nflow.c.id)
    .limit(1)
)
_GET_MODULE = (
    select(modules.c.form, modules.c.mod, modules.c.code)
    .where(modules.c.name == _NAME)
    .order_by(modules.c.id)
    .limit(1)
)
_GET_TEMPLATE = (
    select(template.c.content).where(template.c.name == _NAME).order_by(template.c.id).limit(1)
)
_GET_USER = (
    select(users.c.id, users.c.username, users.c.password, users.c.rol, users.c.active)
    .where(users.c.username == _NAME)
    .order_by(users.c.id)
    .limit(1)
)
_LIST_TOKENS = select(
    api_tokens.c.id,
    api_tokens.c.name,
    api_tokens.c.token,
    api_tokens.c.start,
    api_tokens.c.expired,
    api_tokens.c.active,
    api_tokens.c.header,
    api_tokens.c.token_type,
).order_by(api_tokens.c.id)
_GET_TOKENS = _LIST_TOKENS.where(api_tokens.c.name == _NAME)
_INSERT_TRACKER = insert(tracker)
_COUNT_TRACKER = select(func.count()).select_from(tracker)


def _token_records(rows: Sequence[Any]) -> list[TokenRecord]:
    return [
        TokenRecord(
            id=int(r[0]),
            name=r[1] or "",
            token=r[2] or "",
            start=r[3],
            expired=None if r[4] is None else int(r[4]),
            active=bool(r[5]),
            header=r[6] or "",
            token_type=r[7] or "",
        )
        for r in rows
    ]


def _table_marker(table: Any, column: Any) -> list[Any]:
    return [
        select(func.count()).select_from(table).scalar_subquery(),
        select(func.max(table.c.id)).scalar_subquery(),
        select(func.sum(func.length(column))).scalar_subquery(),
    ]


_CATALOG_MARKER = select(
    select(func.max(revision.c.revision)).scalar_subquery(),
    *_table_marker(nflow, nflow.c.json),
    *_table_marker(modules, modules.c.code),
    *_table_marker(template, template.c.content),
    *_table_marker(queries, queries.c.query),
)


def _reason(exc: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's SQL dump and documentation link."""
    inner: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        inner = exc.orig
        # The asyncpg adapter wraps the asyncpg exception, whose text is the useful one.
        if inner.__cause__ is not None:
            inner = inner.__cause__
    message = str(inner).strip()
    return message or type(inner).__name__


def _new_id(key: Sequence[Any] | None) -> int:
    if not key or key[0] is None:
        raise StoreError("the database did not report the id of the new row")
    return int(key[0])


def _looks_read_only(sql: str) -> bool:
    head = sql.lstrip(" \t\r\n(").split(None, 1)
    return bool(head) and head[0].upper() in ("SELECT", "VALUES", "EXPLAIN", "PRAGMA")


def _sqlite_transactions(engine: AsyncEngine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, start transactions (SQLAlchemy's own recipe).

    In its default mode sqlite3 begins a transaction only before INSERT/UPDATE/DELETE, so
    an upsert's read and the schema DDL ran outside any transaction (one fsync per CREATE).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Store:
    """Async access to an nFlow database (the Go runtime's tables).

    Tables without a unique index on ``name`` (all of them, upstream) may hold duplicates;
    reads return the oldest row of a name, writes update every row of that name.
    """

    def __init__(
        self, url: str, *, pool_size: int = 5, echo: bool = False, migrate: bool = True
    ) -> None:
        self._url = normalise_url(url)
        self._migrate = migrate
        self._dialect = "sqlite" if self._url.get_backend_name() == "sqlite" else "postgresql"
        self._pool_size = pool_size
        self._echo = echo
        self._engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        if self._dialect == "sqlite":
            database = self._url.database or ""
            self._memory = database in ("", ":memory:")
            self._where = (
                "in-memory sqlite database" if self._memory else f"sqlite database {database}"
            )
        else:
            self._memory = False
            host = self._url.host or "localhost"
            self._where = f"postgresql at {host}:{self._url.port or 5432}"

    @property
    def url(self) -> str:
        """The database URL with any password masked, fit for logs."""
        return self._url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._dialect

    # --- lifecycle ---------------------------------------------------------------------------

    def _create_engine(self) -> AsyncEngine:
        kwargs: dict[str, Any] = {"echo": self._echo}
        if self._memory:
            # Every new connection would see its own empty in-memory database.
            kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_size"] = self._pool_size
        if self._dialect == "postgresql":
            kwargs["pool_pre_ping"] = True
            kwargs["connect_args"] = {"timeout": _PG_CONNECT_TIMEOUT}
        engine = create_async_engine(self._url, **kwargs)
        if self._dialect == "sqlite":
            _sqlite_transactions(engine)
        return engine

    async def open(self) -> None:
        """Connect and upgrade the schema to the newest revision (unless ``migrate=False``).

        Calling it on an open store does nothing.
        """
        if self._engine is not None:
            return
        if self._dialect == "sqlite" and not self._memory and "uri" not in self._url.query:
            directory = Path(self._url.database or "").resolve().parent
            if not directory.is_dir():
                raise StoreError(f"cannot open {self._where}: directory {directory} does not exist")
        engine = self._create_engine()
        try:
            if self._migrate:
                await self._prepare(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        self._writer = engine.execution_options(**{_WRITE: True})

    async def _prepare(self, engine: AsyncEngine) -> None:
        verb = "open" if self._dialect == "sqlite" else "connect to"
        try:
            conn = await engine.connect()
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot {verb} {self._where}: {_reason(exc)}") from exc
        try:
            # A plain read first: at the newest revision (every start but the first) there is
            # nothing to run, and Alembic is not imported.
            try:
                async with conn.begin():
                    current = await conn.run_sync(current_revisions)
            except (SQLAlchemyError, OSError) as exc:
                raise StoreError(f"cannot {verb} {self._where}: {_reason(exc)}") from exc
            if current == [head_revision()]:
                return
            from ._migrate import upgrade_schema

            await conn.execution_options(**{_WRITE: True})
            # Several server processes may open a fresh database at once; the loser of a
            # CREATE TABLE race finds the table on its next look.
            for attempt in range(3):
                try:
                    async with conn.begin():
                        await conn.run_sync(upgrade_schema)
                    return
                except SQLAlchemyError as exc:
                    if attempt == 2:
                        raise StoreError(
                            f"cannot upgrade the nFlow tables in {self._where}: {_reason(exc)}"
                        ) from exc
                    await asyncio.sleep(0.05 * (attempt + 1))
        finally:
            await conn.close()

    async def close(self) -> None:
        """Close every pooled connection. The store can be opened again afterwards."""
        engine, self._engine, self._writer = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def _tx(self, operation: str, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed on success, with driver errors turned into StoreError."""
        engine = self._writer if write else self._engine
        if engine is None:
            raise StoreError(f"{operation}: the store is not open; call open() first")
        try:
            async with engine.begin() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"{operation} failed on {self._where}: {_reason(exc)}") from exc

    async def _lock(self, conn: AsyncConnection, table: Table) -> None:
        # Upserts are UPDATE-then-INSERT because the original tables have no unique index;
        # without this lock two concurrent writers on PostgreSQL could both insert.
        # (On SQLite, write transactions already start with BEGIN IMMEDIATE.)
        if self._dialect == "postgresql":
            await conn.execute(text(f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE"))

    def transaction(
        self, operation: str, *, write: bool = False
    ) -> AbstractAsyncContextManager[AsyncConnection]:
        """One transaction on the store's pool, for the packages that keep their own tables in
        this database (execution history). ``operation`` names it in error messages; driver
        errors become :class:`StoreError`."""
        return self._tx(operation, write=write)

    async def schema_status(self) -> tuple[str | None, str]:
        """``(the database's schema revision or None, the newest this nflow knows)``."""
        from ._migrate import schema_revision

        async with self._tx("schema_status") as conn:
            current = await conn.run_sync(schema_revision)
        return current, head_revision()

    async def upgrade_schema(self) -> tuple[str | None, str]:
        """Upgrade to the newest revision now: ``(revision before, revision after)``."""
        from ._migrate import upgrade_schema

        async with self._tx("upgrade_schema", write=True) as conn:
            return await conn.run_sync(upgrade_schema)

    async def ping(self) -> None:
        async with self._tx("ping") as conn:
            await conn.execute(text("SELECT 1"))

    async def pool_stats(self) -> dict[str, int]:
        """Connection counts for the metrics endpoint; empty when the pool cannot tell."""
        engine = self._engine
        if engine is None:
            return {"open": 0, "in_use": 0, "idle": 0}
        pool = engine.pool
        if not isinstance(pool, QueuePool):
            return {}
        in_use = pool.checkedout()
        idle = pool.checkedin()
        return {"open": in_use + idle, "in_use": in_use, "idle": idle, "size": pool.size()}

    # --- apps --------------------------------------------------------------------------------

    async def get_app(self, name: str) -> AppRecord | None:
        async with self._tx("get_app") as conn:
            row = (await conn.execute(_GET_APP, {"b_name": name})).first()
        if row is None:
            return None
        return AppRecord(name=name, json=row[0], default_js=row[1] or "", tag=row[2])

    async def put_app(
        self, name: str, json_text: str, *, default_js: str = "", tag: str | None = None
    ) -> None:
        """Replace the app's ``json``, ``default_js`` and ``tag``, or add the app."""
        async with self._tx("put_app", write=True) as conn:
            await self._lock(conn, nflow)
            values = {"json": json_text, "default_js": default_js, "tag": tag}
            await self._upsert(conn, nflow, "name", name, values)
            await self._bump(conn)

    async def replace_app(
        self, name: str, json_text: str, *, expected: str, default_js: str, tag: str | None
    ) -> bool:
        """Replace the app's row only while its ``json`` is still ``expected``: two editors
        saving from the same version cannot both win. False when it changed or is gone."""
        async with self._tx("replace_app", write=True) as conn:
            await self._lock(conn, nflow)
            row = (await conn.execute(_GET_APP, {"b_name": name})).first()
            if row is None or row[0] != expected:
                return False
            values = {"json": json_text, "default_js": default_js, "tag": tag}
            await conn.execute(sa_update(nflow).where(nflow.c.name == name).values(**values))
            await self._bump(conn)
            return True

    async def list_apps(self) -> list[str]:
        async with self._tx("list_apps") as conn:
            result = await conn.execute(select(nflow.c.name).distinct())
            return sorted(str(r[0]) for r in result)

    async def delete_app(self, name: str) -> bool:
        async with self._tx("delete_app", write=True) as conn:
            result = await conn.execute(delete(nflow).where(nflow.c.name == name))
            await self._bump(conn)
            return result.rowcount > 0

    # --- app versions ------------------------------------------------------------------------

    async def put_version(self, rec: VersionRecord) -> bool:
        """Save an app version; True if it was new. Saving the same content again is a no-op
        (the id is the content's hash), also when several processes save it at once."""
        async with self._tx("put_version", write=True) as conn:
            return await insert_version(conn, rec)

    async def get_version(self, id_or_prefix: str, app: str | None = None) -> VersionRecord | None:
        """The version whose id is or starts with ``id_or_prefix`` (4+ hex characters, like
        git), of ``app`` when given; None when there is none, StoreError naming the
        candidates when several match."""
        async with self._tx("get_version") as conn:
            return await select_version(conn, id_or_prefix, app)

    async def list_versions(self, app: str) -> list[VersionRecord]:
        """Every stored version of ``app``, newest first."""
        async with self._tx("list_versions") as conn:
            return await select_versions(conn, app)

    async def prune_versions(self, app: str, keep: int, protected: Sequence[str] = ()) -> int:
        """Keep the newest ``keep`` versions of ``app`` and those with weight in its release
        (and ``protected``); the number of versions deleted."""
        async with self._tx("prune_versions", write=True) as conn:
            return await delete_old_versions(conn, app, keep, protected)

    # --- releases ----------------------------------------------------------------------------

    async def get_release(self, app: str) -> ReleaseRecord | None:
        async with self._tx("get_release") as conn:
            return await select_release(conn, app)

    async def list_releases(self) -> list[ReleaseRecord]:
        """Every app's release: what serving workers poll."""
        async with self._tx("list_releases") as conn:
            return await select_releases(conn)

    async def set_release(
        self,
        app: str,
        weights: dict[str, int],
        *,
        head: str | None,
        kind: str = "release",
        detail: dict[str, Any] | None = None,
        expect_seq: int | None = None,
    ) -> ReleaseRecord | None:
        """Serve ``app`` with these version weights, recorded as a release event of ``kind``.
        With ``expect_seq``, only if the release is still at that sequence number (else
        None)."""
        async with self._tx("set_release", write=True) as conn:
            return await write_release(
                conn, app, weights, head=head, kind=kind, detail=detail, expect_seq=expect_seq
            )

    async def rollback_release(self, app: str, *, head: str | None) -> ReleaseRecord:
        """Restore the release before the last change of ``app`` (see ``undo_release``)."""
        async with self._tx("rollback_release", write=True) as conn:
            return await undo_release(conn, app, head)

    async def release_events(self, app: str, limit: int = 20) -> list[ReleaseEvent]:
        """The newest release changes of ``app``, newest first."""
        async with self._tx("release_events") as conn:
            return await select_events(conn, app, limit)

    async def add_version_counts(self, rows: Sequence[tuple[str, str, int, int, int]]) -> None:
        """Add ``(app, version, bucket, requests, errors)`` rows to the shared counts."""
        async with self._tx("add_version_counts", write=True) as conn:
            await add_counts(conn, rows)

    async def version_counts(self, app: str, since_bucket: int) -> dict[str, tuple[int, int]]:
        async with self._tx("version_counts") as conn:
            return await select_counts(conn, app, since_bucket)

    async def prune_version_counts(self, before_bucket: int) -> None:
        async with self._tx("prune_version_counts", write=True) as conn:
            await delete_counts_before(conn, before_bucket)

    @staticmethod
    async def _upsert(
        conn: AsyncConnection, table: Table, key: str, value: str, values: dict[str, Any]
    ) -> None:
        result = await conn.execute(sa_update(table).where(table.c[key] == value).values(**values))
        if result.rowcount == 0:
            await conn.execute(insert(table).values({key: value, **values}))

    async def _bump(self, conn: AsyncConnection) -> None:
        """Count one more write to apps, modules, templates or queries (see catalog_marker)."""
        await self._lock(conn, revision)
        bumped = await conn.execute(
            sa_update(revision).where(revision.c.id == 1).values(revision=revision.c.revision + 1)
        )
        if bumped.rowcount == 0:
            await conn.execute(insert(revision).values(id=1, revision=1))

    async def catalog_marker(self) -> str:
        """A short text that changes whenever apps, modules, templates or queries change.

        nflow's own writes bump ``nflow_revision``; row counts, highest ids and text lengths
        catch most writes made by other programs (the Go designer) too. One cheap query, so
        every worker can poll it each second.
        """
        async with self._tx("catalog_marker") as conn:
            row = (await conn.execute(_CATALOG_MARKER)).one()
        return ":".join("" if v is None else str(v) for v in row)

    # --- modules, templates, queries ---------------------------------------------------------

    async def list_modules(self) -> list[ModuleRecord]:
        """Every module, by name; of duplicate names only the oldest row."""
        stmt = select(modules.c.name, modules.c.form, modules.c.mod, modules.c.code)
        async with self._tx("list_modules") as conn:
            result = await conn.execute(stmt.order_by(modules.c.id))
            found: dict[str, ModuleRecord] = {}
            for name, form, mod, code in result:
                if name is not None and name not in found:
                    found[name] = ModuleRecord(name, form or "", mod or "", code)
        return [found[k] for k in sorted(found)]

    async def get_module(self, name: str) -> ModuleRecord | None:
        async with self._tx("get_module") as conn:
            row = (await conn.execute(_GET_MODULE, {"b_name": name})).first()
        if row is None:
            return None
        return ModuleRecord(name=name, form=row[0] or "", mod=row[1] or "", code=row[2])

    async def put_module(self, module: ModuleRecord) -> None:
        async with self._tx("put_module", write=True) as conn:
            await self._lock(conn, modules)
            await self._put_module(conn, module)
            await self._bump(conn)

    async def _put_module(self, conn: AsyncConnection, module: ModuleRecord) -> None:
        values = {"form": module.form, "mod": module.mod, "code": module.code}
        await self._upsert(conn, modules, "name", module.name, values)

    async def list_templates(self) -> list[TemplateRecord]:
        """Every template, by name; of duplicate names only the oldest row."""
        stmt = select(template.c.name, template.c.content).order_by(template.c.id)
        async with self._tx("list_templates") as conn:
            found: dict[str, TemplateRecord] = {}
            for name, content in await conn.execute(stmt):
                if name is not None and name not in found:
                    found[name] = TemplateRecord(name, content or "")
        return [found[k] for k in sorted(found)]

    async def get_template(self, name: str) -> TemplateRecord | None:
        async with self._tx("get_template") as conn:
            row = (await conn.execute(_GET_TEMPLATE, {"b_name": name})).first()
        return None if row is None else TemplateRecord(name=name, content=row[0] or "")

    async def put_template(self, name: str, content: str) -> None:
        async with self._tx("put_template", write=True) as conn:
            await self._lock(conn, template)
            await self._upsert(conn, template, "name", name, {"content": content})
            await self._bump(conn)

    async def list_queries(self) -> dict[str, str]:
        """Name → SQL. Of duplicate names the newest row wins, as in the Go runtime's
        UpdateQueries, which copied the rows into a map in table order."""
        stmt = select(queries.c.name, queries.c.query).order_by(queries.c.id)
        async with self._tx("list_queries") as conn:
            found = {
                str(name): query or ""
                for name, query in await conn.execute(stmt)
                if name is not None
            }
        return {k: found[k] for k in sorted(found)}

    async def put_query(self, name: str, sql: str) -> None:
        async with self._tx("put_query", write=True) as conn:
            await self._lock(conn, queries)
            await self._upsert(conn, queries, "name", name, {"query": sql})
            await self._bump(conn)

    async def run_sql(
        self, sql: str, params: Sequence[object] = (), *, max_rows: int = 1000
    ) -> list[dict[str, object]]:
        """Run a stored named query (``$1…$n`` placeholders) with bound values.

        Rows past ``max_rows`` are not returned. A statement without a result set (INSERT,
        UPDATE…) is committed and returns ``[]``. On PostgreSQL, ``char(n)`` result values
        come back without their blank padding, as everywhere else in the store.
        """
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        translated, used = translate_placeholders(
            sql, nested_comments=self._dialect == "postgresql"
        )
        given = len(params)
        if used and max(used) > given:
            raise StoreError(f"the query uses ${max(used)} but {given} parameter(s) were given")
        unused = set(range(1, given + 1)) - used
        if unused:
            raise StoreError(
                f"{given} parameter(s) were given but the query never uses ${min(unused)}"
            )
        clause = text(translated).bindparams(
            *(bindparam(f"{BIND_PREFIX}{i}", params[i - 1]) for i in sorted(used))
        )
        snippet = " ".join(sql.split())
        snippet = snippet if len(snippet) <= 80 else snippet[:77] + "..."
        async with self._tx(f"run_sql [{snippet}]", write=not _looks_read_only(sql)) as conn:
            result = await conn.execute(clause)
            if not result.returns_rows:
                return []
            keys = list(result.keys())
            padded: set[int] = set()
            description = result.cursor.description if result.cursor is not None else None
            if self._dialect == "postgresql" and description:
                padded = {i for i, d in enumerate(description) if d[1] == _BPCHAR_OID}
            rows = result.fetchmany(max_rows)
            result.close()
        out: list[dict[str, object]] = []
        for row in rows:
            values = list(row)
            for i in padded:
                if isinstance(values[i], str):
                    values[i] = values[i].rstrip(" ")
            out.append(dict(zip(keys, values, strict=True)))
        return out

    # --- users and tokens --------------------------------------------------------------------

    async def get_user(self, username: str) -> UserRecord | None:
        async with self._tx("get_user") as conn:
            row = (await conn.execute(_GET_USER, {"b_name": username})).first()
        if row is None:
            return None
        return UserRecord(
            id=int(row[0]),
            username=row[1],
            password=row[2] or "",
            rol=row[3] or "",
            active=bool(row[4]),  # NULL (allowed by init.sql) must not grant access
        )

    async def put_user(
        self, username: str, password_hash: str, *, rol: str = "ROL_USER", active: bool = True
    ) -> int:
        """Replace the user's password, role and flag, or add the user; returns its id."""
        values = {"password": password_hash, "rol": rol, "active": active}
        async with self._tx("put_user", write=True) as conn:
            await self._lock(conn, users)
            stmt = select(users.c.id).where(users.c.username == username).order_by(users.c.id)
            found = (await conn.execute(stmt.limit(1))).first()
            if found is not None:
                await conn.execute(
                    sa_update(users).where(users.c.username == username).values(**values)
                )
                return int(found[0])
            result = await conn.execute(insert(users).values(username=username, **values))
            return _new_id(result.inserted_primary_key)

    async def delete_user(self, username: str) -> bool:
        async with self._tx("delete_user", write=True) as conn:
            result = await conn.execute(delete(users).where(users.c.username == username))
            return result.rowcount > 0

    async def get_tokens(self, name: str) -> list[TokenRecord]:
        async with self._tx("get_tokens") as conn:
            rows = (await conn.execute(_GET_TOKENS, {"b_name": name})).all()
        return _token_records(rows)

    async def list_tokens(self) -> list[TokenRecord]:
        """Every API token, by id (``token`` holds the stored hash, never the secret)."""
        async with self._tx("list_tokens") as conn:
            rows = (await conn.execute(_LIST_TOKENS)).all()
        return _token_records(rows)

    async def add_token(
        self,
        name: str,
        token: str,
        *,
        header: str = "Authorization",
        token_type: str = "Bearer",
        expired: int | None = None,
        active: bool = True,
    ) -> int:
        stmt = insert(api_tokens).values(
            name=name,
            token=token,
            header=header,
            token_type=token_type,
            expired=expired,
            active=active,
        )
        async with self._tx("add_token", write=True) as conn:
            result = await conn.execute(stmt)
            return _new_id(result.inserted_primary_key)

    async def set_token_active(self, token_id: int, active: bool) -> None:
        stmt = sa_update(api_tokens).where(api_tokens.c.id == token_id).values(active=active)
        async with self._tx("set_token_active", write=True) as conn:
            result = await conn.execute(stmt)
            if result.rowcount == 0:
                raise StoreError(f"set_token_active: there is no api token with id {token_id}")

    # --- session revocations ---------------------------------------------------------------

    async def revoke_session(self, sid: str, *, expires: int) -> None:
        """Remember that session ``sid`` ended (until ``expires``, unix seconds)."""
        now = int(time.time())
        async with self._tx("revoke_session", write=True) as conn:
            await conn.execute(
                sa_delete(session_revocations).where(session_revocations.c.expires < now)
            )
            await conn.execute(
                sa_delete(session_revocations).where(session_revocations.c.sid == sid)
            )
            await conn.execute(insert(session_revocations).values(sid=sid, expires=expires))

    async def is_session_revoked(self, sid: str) -> bool:
        stmt = select(session_revocations.c.sid).where(session_revocations.c.sid == sid)
        async with self._tx("is_session_revoked") as conn:
            return (await conn.execute(stmt)).first() is not None

    # --- configuration secrets (values arrive and leave sealed; see nflow.security) ---------

    async def put_secret(self, name: str, value: str, *, key_id: str) -> None:
        """Add or replace secret ``name``; ``value`` must already be sealed."""
        values = {"value": value, "key_id": key_id, "updated": func.current_timestamp()}
        async with self._tx("put_secret", write=True) as conn:
            await self._lock(conn, nflow_secrets)
            await self._upsert(conn, nflow_secrets, "name", name, values)

    async def get_secrets(self, names: Sequence[str] | None = None) -> list[SecretRecord]:
        """The named secrets (all when ``names`` is None), by name."""
        stmt = select(
            nflow_secrets.c.name,
            nflow_secrets.c.value,
            nflow_secrets.c.key_id,
            nflow_secrets.c.updated,
        )
        if names is not None:
            stmt = stmt.where(nflow_secrets.c.name.in_(list(names)))
        async with self._tx("get_secrets") as conn:
            rows = (await conn.execute(stmt.order_by(nflow_secrets.c.name))).all()
        return [SecretRecord(str(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows]

    async def replace_secret(self, name: str, old: str, new: str, *, key_id: str) -> bool:
        """Swap the sealed value only if it is still ``old`` (key rotation beside writers)."""
        stmt = (
            sa_update(nflow_secrets)
            .where(nflow_secrets.c.name == name, nflow_secrets.c.value == old)
            .values(value=new, key_id=key_id, updated=func.current_timestamp())
        )
        async with self._tx("replace_secret", write=True) as conn:
            return (await conn.execute(stmt)).rowcount > 0

    async def delete_secret(self, name: str) -> bool:
        async with self._tx("delete_secret", write=True) as conn:
            result = await conn.execute(delete(nflow_secrets).where(nflow_secrets.c.name == name))
            return result.rowcount > 0

    # --- tracker -----------------------------------------------------------------------------

    async def insert_tracker(self, rows: Sequence[TrackerRow]) -> None:
        """Insert a batch in one transaction; char(n) values are cut to their column width."""
        if not rows:
            return
        batch = []
        for row in rows:
            values = {name: getattr(row, name) for name in _TRACKER_FIELDS}
            for column, limit in CHAR_LIMITS.items():
                value = values[column]
                if isinstance(value, str) and len(value) > limit:
                    values[column] = value[:limit]
            batch.append(values)
        async with self._tx("insert_tracker", write=True) as conn:
            await conn.execute(_INSERT_TRACKER, batch)

    async def count_tracker(self) -> int:
        async with self._tx("count_tracker") as conn:
            return int((await conn.execute(_COUNT_TRACKER)).scalar_one())

    # --- import / export ---------------------------------------------------------------------

    async def import_file(
        self, path: str | os.PathLike[str], *, app_name: str = "app"
    ) -> ImportSummary:
        """Load one file: an app document, or a modules/templates/queries/row-meta file.

        An app document replaces only the ``json`` of the app ``app_name``: its
        ``default_js`` and ``tag`` are kept (they come from the row-meta file, which may have
        been imported first). Everything in one file is written in one transaction.
        """
        file = Path(path)
        doc = await asyncio.to_thread(read_document, file)
        (summary,) = await self.import_documents([(doc, app_name)], operation=f"import {file.name}")
        return summary

    async def import_documents(
        self, documents: Sequence[tuple[Document, str]], *, operation: str = "import"
    ) -> list[ImportSummary]:
        """Write read import files (see :func:`read_document`), each with its app name, in
        one transaction: all of them, or none when one fails. App documents are written
        first, then row-meta files (which update an app's other columns), then the rest."""
        order = sorted(
            range(len(documents)),
            key=lambda i: (documents[i][0].app_json is None, documents[i][0].meta is None),
        )
        summaries: dict[int, ImportSummary] = {}
        async with self._tx(operation, write=True) as conn:
            for i in order:
                doc, app_name = documents[i]
                summaries[i] = await self._write_document(conn, doc, app_name)
            await self._bump(conn)
        return [summaries[i] for i in range(len(documents))]

    async def _write_document(
        self, conn: AsyncConnection, doc: Document, app_name: str
    ) -> ImportSummary:
        apps = 0
        if doc.app_json is not None:
            await self._lock(conn, nflow)
            await self._upsert(conn, nflow, "name", app_name, {"json": doc.app_json})
            apps = 1
        if doc.meta is not None:
            values: dict[str, Any] = {}
            if doc.meta.default_js is not None:
                values["default_js"] = doc.meta.default_js
            if doc.meta.has_tag:
                values["tag"] = doc.meta.tag
            result = await conn.execute(
                sa_update(nflow).where(nflow.c.name == doc.meta.name).values(**values)
            )
            apps = 1 if result.rowcount > 0 else 0
        if doc.modules:
            await self._lock(conn, modules)
            for module in doc.modules:
                await self._put_module(conn, module)
        if doc.templates:
            await self._lock(conn, template)
            for tpl in doc.templates:
                await self._upsert(conn, template, "name", tpl.name, {"content": tpl.content})
        if doc.queries:
            await self._lock(conn, queries)
            for name, query in doc.queries:
                await self._upsert(conn, queries, "name", name, {"query": query})
        return ImportSummary(
            apps=apps,
            modules=len(doc.modules),
            templates=len(doc.templates),
            queries=len(doc.queries),
        )

    async def export_all(
        self, directory: str | os.PathLike[str], *, app_name: str | None = None
    ) -> list[Path]:
        """Write every app (or only ``app_name``) plus modules, templates and queries.

        Files: ``app_<name>.json`` (the document) and ``nflow_row_<name>.json`` (its name,
        ``default_js`` and ``tag``) per app, with the name percent-encoded, then
        ``modules.json``, ``templates.json`` and ``queries.json``. The paths come back in an
        order in which :meth:`import_file` can load them (an app before its row meta); the
        app file must be imported with ``app_name`` set to the app's name.
        """
        names = [app_name] if app_name is not None else await self.list_apps()
        apps: list[AppRecord] = []
        for name in names:
            record = await self.get_app(name)
            if record is None:
                raise AppNotFound(f"export: there is no app named {name!r}")
            apps.append(record)
        module_rows = await self.list_modules()
        template_rows = await self.list_templates()
        query_rows = await self.list_queries()

        files: list[tuple[str, str]] = []
        for app in apps:
            files.append((app_file_name(app.name), export_app(app.json)))
        for app in apps:
            files.append((meta_file_name(app.name), export_meta(app.name, app.default_js, app.tag)))
        files.append(("modules.json", export_modules(module_rows)))
        files.append(("templates.json", export_templates(template_rows)))
        files.append(("queries.json", export_queries(query_rows)))

        target = Path(directory)

        def write() -> list[Path]:
            target.mkdir(parents=True, exist_ok=True)
            written = []
            for file_name, content in files:
                path = target / file_name
                path.write_text(content, encoding="utf-8")
                written.append(path)
            return written

        try:
            return await asyncio.to_thread(write)
        except OSError as exc:
            raise StoreError(f"cannot export to {target}: {exc.strerror or exc}") from exc
