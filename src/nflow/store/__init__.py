"""Storage of nflow: the Go runtime's tables on SQLite or PostgreSQL.

Open a :class:`Store` on a SQLAlchemy async URL (``sqlite+aiosqlite:///app.sqlite`` or
``postgresql+asyncpg://user@host:5432/db``); it upgrades the schema with the Alembic revisions
shipped in ``nflow.store.migrations`` and reads databases made by the original nFlow designer
and runtime as they are (they are adopted at the first revision).
"""

from __future__ import annotations

from ._changes import APPS as CHANGED_APPS
from ._changes import CONFIG as CHANGED_CONFIG
from ._changes import KINDS as CHANGE_KINDS
from ._changes import RELEASES as CHANGED_RELEASES
from ._changes import Subscription
from ._heads import BASELINE, head_revision
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
from ._store import Store
from ._support import (
    BIND_PREFIX,
    Document,
    exported_meta_file,
    normalise_url,
    read_document,
    translate_placeholders,
)

__all__ = [
    "BASELINE",
    "BIND_PREFIX",
    "CHANGED_APPS",
    "CHANGED_CONFIG",
    "CHANGED_RELEASES",
    "CHANGE_KINDS",
    "AppRecord",
    "Document",
    "ImportSummary",
    "ModuleRecord",
    "ReleaseEvent",
    "ReleaseRecord",
    "SecretRecord",
    "Store",
    "Subscription",
    "TemplateRecord",
    "TokenRecord",
    "TrackerRow",
    "UserRecord",
    "VersionRecord",
    "exported_meta_file",
    "head_revision",
    "normalise_url",
    "read_document",
    "translate_placeholders",
]
