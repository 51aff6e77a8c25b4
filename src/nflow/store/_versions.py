"""App versions in the database: the table, and the statements :class:`Store` runs on it.

A version row is written once and never changed: its id is the hash of its content, so
saving the same content again is a no-op (``INSERT ... ON CONFLICT DO NOTHING``, which both
SQLite and PostgreSQL run atomically, so several workers saving one version at once agree).
"""

from __future__ import annotations

__all__ = [
    "insert_version",
    "metadata",
    "select_version",
    "select_versions",
    "versions",
]

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from nflow.appversion import version_content
from nflow.errors import StoreError

from ._records import VersionRecord
from ._support import upsert

metadata = MetaData()

versions = Table(
    "nflow_versions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("app", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("source", String(16), nullable=False),
    Column("message", Text),
    # {"playbook", "modules", "templates", "queries"} as canonical JSON (sorted keys).
    Column("content", Text, nullable=False),
    Column("size", Integer, nullable=False),
    Index("ix_nflow_versions_app", "app", "created_at"),
)

# One row per app with a release: ``weights`` is {version id: weight} as JSON, ``head`` the
# version the app's own source (its nflow row or file) had when the release was made: once the
# source moves on (a designer save, a changed file), that new version takes all traffic again.
releases = Table(
    "nflow_releases",
    metadata,
    Column("app", Text, primary_key=True),
    Column("weights", Text, nullable=False),
    Column("head", String(64)),
    Column("seq", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Every change of a release, for `nflow versions`, the audit trail and `nflow rollback`.
release_events = Table(
    "nflow_release_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("app", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("weights", Text, nullable=False),
    Column("previous", Text),
    Column("head", String(64)),
    Column("detail", Text),
    Column("undone", Boolean, nullable=False),
    Index("ix_nflow_release_events_app", "app", "id"),
    sqlite_autoincrement=True,
)

# Requests and failures per version and time bucket, added to by every worker.
version_counts = Table(
    "nflow_version_counts",
    metadata,
    Column("app", Text, primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("bucket", BigInteger, primary_key=True, autoincrement=False),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
)

_COLUMNS = (
    versions.c.id,
    versions.c.app,
    versions.c.created_at,
    versions.c.source,
    versions.c.message,
    versions.c.content,
)
_HEX = re.compile(r"[0-9a-f]{4,64}")
_SHOWN = 5  # candidates named when a prefix is ambiguous


def _aware(value: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _record(row: Sequence[Any]) -> VersionRecord:
    content = orjson.loads(row[5])
    return VersionRecord(
        id=row[0],
        app=row[1],
        created_at=_aware(row[2]),
        source=row[3],
        message=row[4],
        playbook=content.get("playbook") or {},
        modules=content.get("modules") or {},
        templates=content.get("templates") or {},
        queries=content.get("queries") or {},
    )


async def insert_version(conn: AsyncConnection, rec: VersionRecord) -> bool:
    vid, content = version_content(rec.playbook, rec.modules, rec.templates, rec.queries)
    if vid != rec.id:
        raise StoreError(
            f"version {rec.id[:12]} of app {rec.app!r}: its content hashes to {vid[:12]}; "
            "a version id is the hash of its content"
        )
    values = {
        "id": rec.id,
        "app": rec.app,
        "created_at": _aware(rec.created_at),
        "source": rec.source,
        "message": rec.message,
        "content": content.decode(),
        "size": len(content),
    }
    statement = upsert(conn, versions).values(values).on_conflict_do_nothing()
    result = await conn.execute(statement)
    return bool(result.rowcount)


def _prefix(id_or_prefix: str) -> str:
    prefix = id_or_prefix.strip().lower()
    if not _HEX.fullmatch(prefix):
        raise StoreError(
            f"version {id_or_prefix!r}: expected a version id or its first 4 or more "
            "hexadecimal characters"
        )
    return prefix


async def select_version(
    conn: AsyncConnection, id_or_prefix: str, app: str | None
) -> VersionRecord | None:
    prefix = _prefix(id_or_prefix)
    query = select(*_COLUMNS)
    if len(prefix) == 64:
        query = query.where(versions.c.id == prefix)
    else:
        # Hex digits only (checked above): nothing in the pattern is a LIKE wildcard.
        query = query.where(versions.c.id.like(prefix + "%"))
    if app is not None:
        query = query.where(versions.c.app == app)
    rows = (await conn.execute(query.order_by(versions.c.id).limit(_SHOWN + 1))).all()
    if not rows:
        return None
    if len(rows) > 1:
        names = ", ".join(
            f"{r[0][:12]} ({r[1]}, {_aware(r[2]):%Y-%m-%d %H:%M})" for r in rows[:_SHOWN]
        )
        more = " and more" if len(rows) > _SHOWN else ""
        raise StoreError(
            f"version {id_or_prefix!r} is ambiguous: it could be {names}{more}; "
            "give more characters"
        )
    return _record(rows[0])


async def select_versions(conn: AsyncConnection, app: str) -> list[VersionRecord]:
    query = (
        select(*_COLUMNS)
        .where(versions.c.app == app)
        .order_by(versions.c.created_at.desc(), versions.c.id)
    )
    return [_record(r) for r in (await conn.execute(query)).all()]
