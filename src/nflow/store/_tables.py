"""The nFlow tables, declared so that databases made by the Go runtime still open.

Table and column names are fixed by the original ``app.sqlite`` / ``init.sql``; the types are
chosen to render as the original types on both SQLite and PostgreSQL. A few column types are
wrapped in decorators because the original databases hold values the plain SQLAlchemy types
would misread (see each class).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CHAR,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine, UserDefinedType

__all__ = [
    "CHAR_LIMITS",
    "api_tokens",
    "metadata",
    "modules",
    "nflow",
    "nflow_secrets",
    "queries",
    "revision",
    "session_revocations",
    "template",
    "tracker",
    "users",
]


class _SQLiteRaw(UserDefinedType[Any]):
    """A column type with a fixed DDL name and no value conversion at all.

    Used on SQLite where SQLAlchemy's own converters would reject or silently misread what the
    Go runtime stored (``blob`` booleans, Go-formatted timestamps).
    """

    cache_ok = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def get_col_spec(self, **kw: Any) -> str:
        return self.spec


class LenientText(TypeDecorator[str]):
    """TEXT that also accepts the bytes SQLite returns for a ``blob``-declared column.

    The original ``nflow.json`` column is declared ``blob`` in app.sqlite; the designer writes
    TEXT into it, but a row written through a byte-oriented client comes back as ``bytes``.
    """

    impl = Text
    cache_ok = True

    def process_result_value(self, value: Any | None, dialect: Dialect) -> str | None:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).decode("utf-8", errors="replace")
        return value


class LenientBool(TypeDecorator[bool]):
    """BOOLEAN that reads whatever the original SQLite ``active blob DEFAULT true`` holds.

    SQLAlchemy's SQLite boolean reads any non-zero value as true, so a stored ``'false'`` text
    would enable a disabled user or token; this type parses the value instead.
    """

    impl = Boolean
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteRaw("BOOLEAN"))
        return dialect.type_descriptor(Boolean(create_constraint=False))

    def process_bind_param(self, value: bool | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return 1 if value else 0
        return bool(value)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> bool | None:
        return to_bool(value)


def to_bool(value: Any) -> bool | None:
    """Interpret a stored boolean the way a person reading the row would."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.strip().lower() in {"1", "t", "true", "y", "yes", "on"}
    return bool(value)


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_timestamp(value: Any) -> datetime | None:
    """Parse a timestamp written by SQLite ``CURRENT_TIMESTAMP``, SQLAlchemy or Go.

    Go's sqlite driver writes ``2006-01-02 15:04:05.999999999-07:00`` (nanoseconds, offset),
    which ``datetime.fromisoformat`` cannot read until the fraction is cut to microseconds.
    An unreadable value becomes ``None``: the runtime ignores ``start`` anyway.
    """
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    cleaned = _FRACTION.sub(r"\1", value.strip().replace("Z", "+00:00"))
    # Go's time.String() appends " +0000 UTC"-style zone names after the offset.
    cleaned = re.sub(r"\s+[A-Z]{2,5}$", "", cleaned)
    cleaned = re.sub(r"\s+([+-]\d{2}):?(\d{2})$", r"\1:\2", cleaned)
    try:
        return datetime.fromisoformat(cleaned)
    except ValueError:
        return None


class LenientTimestamp(TypeDecorator[datetime]):
    """TIMESTAMP that tolerates the several text formats found in SQLite databases."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteRaw("TIMESTAMP"))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name == "sqlite":
            return value.isoformat(sep=" ")
        return value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        return parse_timestamp(value)


class PaddedChar(TypeDecorator[str]):
    """``char(n)``, read back without the blanks PostgreSQL pads it with.

    The Go runtime compared the padded ``header``/``token_type`` values verbatim, so
    ``validate_token`` could never match on PostgreSQL.
    """

    impl = CHAR
    cache_ok = True

    def process_result_value(self, value: Any | None, dialect: Dialect) -> str | None:
        if isinstance(value, str):
            return value.rstrip(" ")
        return value


metadata = MetaData()

nflow = Table(
    "nflow",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("json", LenientText, nullable=False),
    # NULL here made the Go runtime's QueryGetApp scan fail with a 500.
    Column("default_js", Text, server_default=text("''"), default=""),
    Column("tag", String(200)),
)

modules = Table(
    "modules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("form", Text, nullable=False),
    Column("mod", Text, nullable=False),
    Column("code", Text),
)

template = Table(
    "template",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("content", Text, nullable=False),
)

queries = Table(
    "queries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("query", Text, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(200), nullable=False),
    Column("password", String(200), nullable=False),
    Column("rol", String(200), nullable=False, server_default=text("'ROL_USER'")),
    Column("active", LenientBool, nullable=False, server_default=true()),
    sqlite_autoincrement=True,
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", PaddedChar(200), nullable=False, server_default=text("''")),
    Column("token", Text, nullable=False),
    Column("start", LenientTimestamp, server_default=text("CURRENT_TIMESTAMP")),
    Column("expired", Integer),
    Column("active", LenientBool, nullable=False, server_default=true()),
    Column("header", PaddedChar(150), nullable=False, server_default=text("'Authorization'")),
    Column("token_type", PaddedChar(150), nullable=False, server_default=text("'Bearer'")),
)

# The widths of the tracker's char(n) columns; longer values are cut before inserting, since on
# PostgreSQL a single over-long user agent would otherwise fail the whole batch.
CHAR_LIMITS: dict[str, int] = {
    "ip": 128,
    "real_ip": 128,
    "user_agent": 800,
    "hostname": 500,
    "host": 500,
}

tracker = Table(
    "tracker",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("log_id", Text),
    Column("box_id", Text),
    Column("box_name", Text),
    Column("box_type", Text),
    Column("url", Text),
    Column("username", Text),
    Column("connection_next", Text),
    Column("duration", Text),
    Column("created", LenientTimestamp, server_default=text("CURRENT_TIMESTAMP")),
    Column("order_box", Integer),
    Column("payload", Text),
    Column("ip", PaddedChar(CHAR_LIMITS["ip"])),
    Column("real_ip", PaddedChar(CHAR_LIMITS["real_ip"])),
    Column("user_agent", PaddedChar(CHAR_LIMITS["user_agent"])),
    Column("query_param", Text),
    Column("hostname", PaddedChar(CHAR_LIMITS["hostname"])),
    Column("host", PaddedChar(CHAR_LIMITS["host"])),
    sqlite_autoincrement=True,
)


# nflow's own: ids of sessions ended by logout. A signed cookie stays valid until it expires,
# so without this list a cookie copied before logout would log the user back in.
session_revocations = Table(
    "nflow_session_revocations",
    metadata,
    Column("sid", String(64), primary_key=True),
    Column("expires", Integer, nullable=False),
)


# nflow's own: one row counting writes to apps, modules, templates and queries, so running
# servers notice `nflow import` with one cheap query (hot reload). A separate table keeps the
# Go runtime's tables exactly as they were.
revision = Table(
    "nflow_revision",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", Integer, nullable=False),
)


# nflow's own: configuration secrets ("secret:NAME" in config.toml), always sealed with the
# KeyRing (AES-256-GCM); ``key_id`` says which key, so rotation finds the stale rows cheaply.
nflow_secrets = Table(
    "nflow_secrets",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("updated", LenientTimestamp, server_default=text("CURRENT_TIMESTAMP")),
)
