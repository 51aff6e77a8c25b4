"""Storage of nflow: the Go runtime's tables on SQLite or PostgreSQL.

Open a :class:`Store` on a SQLAlchemy async URL (``sqlite+aiosqlite:///app.sqlite`` or
``postgresql+asyncpg://user@host:5432/db``); it creates missing tables and reads databases
made by the original nFlow designer and runtime as they are.
"""

from __future__ import annotations

from ._records import (
    AppRecord,
    ImportSummary,
    ModuleRecord,
    SecretRecord,
    TemplateRecord,
    TokenRecord,
    TrackerRow,
    UserRecord,
)
from ._store import Store
from ._support import BIND_PREFIX, normalise_url, translate_placeholders

__all__ = [
    "BIND_PREFIX",
    "AppRecord",
    "ImportSummary",
    "ModuleRecord",
    "SecretRecord",
    "Store",
    "TemplateRecord",
    "TokenRecord",
    "TrackerRow",
    "UserRecord",
    "normalise_url",
    "translate_placeholders",
]
