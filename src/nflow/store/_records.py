"""Plain immutable rows handed out by :class:`~nflow.store.Store`, so callers never hold a
SQLAlchemy row (which would tie them to a connection and to column order)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "AppRecord",
    "ImportSummary",
    "ModuleRecord",
    "SecretRecord",
    "TemplateRecord",
    "TokenRecord",
    "TrackerRow",
    "UserRecord",
    "VersionRecord",
]


@dataclass(frozen=True, slots=True)
class AppRecord:
    """A row of table ``nflow``: one designer app. ``default_js`` is never ``None``."""

    name: str
    json: str
    default_js: str
    tag: str | None


@dataclass(frozen=True, slots=True)
class ModuleRecord:
    """A row of table ``modules``: ``mod`` is the manifest as JSON text, ``form`` the panel HTML."""

    name: str
    form: str
    mod: str
    code: str | None


@dataclass(frozen=True, slots=True)
class TemplateRecord:
    name: str
    content: str


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A row of ``users``; ``password`` is the hex SHA-512/256 digest."""

    id: int
    username: str
    password: str
    rol: str
    active: bool


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A row of ``api_tokens``, with ``name``/``header``/``token_type`` already unpadded."""

    id: int
    name: str
    token: str
    start: datetime | None
    expired: int | None
    active: bool
    header: str
    token_type: str


@dataclass(frozen=True, slots=True)
class TrackerRow:
    """One executed node, in the column order of the Go runtime's ``QueryInsertLog``."""

    log_id: str
    box_id: str
    box_name: str
    box_type: str
    url: str
    username: str
    connection_next: str
    duration: str
    order_box: int
    payload: str
    ip: str
    real_ip: str
    user_agent: str
    query_param: str
    hostname: str
    host: str


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """How many rows one :meth:`~nflow.store.Store.import_file` call wrote, per kind."""

    apps: int = 0
    modules: int = 0
    templates: int = 0
    queries: int = 0


@dataclass(frozen=True, slots=True)
class SecretRecord:
    """A row of ``nflow_secrets``: ``value`` is the sealed ``enc:v1:`` text, never plaintext."""

    name: str
    value: str
    key_id: str
    updated: datetime | None


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """A row of ``nflow_versions``: one app version, its content and where it came from.

    ``id`` is the SHA-256 of the canonical content (see ``nflow.appversion``); ``playbook`` is
    the app document, and the dicts hold only the modules, templates and queries it uses.
    """

    id: str
    app: str
    created_at: datetime
    source: str
    message: str | None
    playbook: dict[str, Any]
    modules: dict[str, str] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)
