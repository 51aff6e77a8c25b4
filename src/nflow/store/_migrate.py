"""Schema migrations of the nflow database, with Alembic, run when a store opens.

The revisions live in ``nflow/store/migrations/versions`` and ship with the package; Alembic is
driven programmatically on the store's own connection, inside one transaction, so no
``alembic.ini`` is read. Three kinds of database are met:

* empty: every revision runs from the first;
* made before migrations (by nflow's ``create_all`` or by the Go runtime), recognised by its
  tables without an ``alembic_version`` table: it is completed to the first revision's tables
  (missing tables, missing nullable columns), stamped at that revision, then upgraded;
* already versioned: the revisions after its own run.

Concurrent openers are serialised by the transaction itself on SQLite (``BEGIN IMMEDIATE``) and
by a transaction-scoped advisory lock on PostgreSQL.
"""

from __future__ import annotations

__all__ = ["BASELINE", "alembic_head", "head_revision", "schema_revision", "upgrade_schema"]

import logging
from functools import cache
from pathlib import Path
from types import ModuleType

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, MetaData, inspect, text
from sqlalchemy.schema import CreateColumn

from nflow.errors import StoreError

from ._heads import BASELINE, head_revision

log = logging.getLogger("nflow.store")

_MIGRATIONS = Path(__file__).with_name("migrations")
# Any fixed number: it only has to be the same in every nflow process.
_PG_LOCK_KEY = 0x6E666C6F77


def _config() -> Config:
    # A fresh one per use: its attributes carry the connection of one upgrade.
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


@cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def alembic_head() -> str:
    """The newest revision as Alembic reads it (:func:`head_revision` reads it without Alembic)."""
    head = _script().get_current_head()
    if head is None:  # pragma: no cover - the package ships its revisions
        raise StoreError(f"no schema revisions found in {_MIGRATIONS}")
    return head


def schema_revision(conn: Connection) -> str | None:
    """The database's revision, or ``None`` when it has never been migrated."""
    return MigrationContext.configure(conn).get_current_revision()


def _baseline_metadata() -> MetaData:
    revision = _script().get_revision(BASELINE)
    module: ModuleType | None = getattr(revision, "module", None)
    if revision is None or module is None:  # pragma: no cover
        raise StoreError(f"schema revision {BASELINE} is missing from {_MIGRATIONS}")
    metadata: MetaData = module.baseline()
    return metadata


def complete_tables(conn: Connection, metadata: MetaData) -> None:
    """Create what is missing of ``metadata``: whole tables, and nullable or defaulted columns.

    Existing tables are never altered otherwise, so a database shared with the Go designer
    keeps working for both. A missing required column means this is not an nFlow database.
    """
    inspector = inspect(conn)
    existing = set(inspector.get_table_names())
    missing = [t for t in metadata.sorted_tables if t.name not in existing]
    if missing:
        metadata.create_all(conn, tables=missing, checkfirst=False)
    present = [t for t in metadata.sorted_tables if t.name in existing]
    if not present:
        return
    found = inspector.get_multi_columns(filter_names=[t.name for t in present])
    for table in present:
        have = {str(c["name"]).lower() for c in found.get((None, table.name), [])}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable and column.server_default is None:
                raise StoreError(
                    f"table {table.name} has no column {column.name}; "
                    "the database holds a table of that name that is not nFlow's"
                )
            spec = CreateColumn(column).compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {spec}"))


def upgrade_schema(conn: Connection, target: str = "head") -> tuple[str | None, str]:
    """Bring the database to ``target`` in the caller's transaction: ``(before, after)``.

    A database from before migrations is adopted at :data:`BASELINE` first (see the module
    doc). A revision this nflow does not know (the database was upgraded by a newer release)
    is an error rather than a guess.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    before = schema_revision(conn)
    script = _script()
    if before is not None:
        try:
            script.get_revision(before)
        except CommandError:
            raise StoreError(
                f"the database is at schema revision {before!r}, which this nflow does not "
                f"know (its newest is {head_revision()!r}); it was upgraded by a newer nflow"
            ) from None
    target_revision = head_revision() if target == "head" else target
    if before == target_revision:
        return before, target_revision
    config = _config()
    config.attributes["connection"] = conn
    if before is None:
        metadata = _baseline_metadata()
        tables = set(inspect(conn).get_table_names())
        if tables & set(metadata.tables):
            complete_tables(conn, metadata)
            command.stamp(config, BASELINE)
    command.upgrade(config, target)
    log.info("database schema upgraded from revision %s to %s", before or "(none)", target_revision)
    return before, target_revision
