"""Which schema revision is the newest, and is a database at it, without importing Alembic.

Every server process opens the store, and nearly always the database is already at the
newest revision (the first process to start upgraded it). Alembic, Mako and Alembic's DDL
modules cost each process about 11 MB, so the newest revision is read from the revision files
themselves and the database's from its ``alembic_version`` table; :mod:`nflow.store._migrate`
(and Alembic with it) is imported only when there is something to upgrade.
"""

from __future__ import annotations

__all__ = ["BASELINE", "current_revisions", "head_revision"]

import re
from functools import cache
from pathlib import Path

from sqlalchemy import Connection, inspect, text

from nflow.errors import StoreError

BASELINE = "0001"

_VERSIONS = Path(__file__).with_name("migrations") / "versions"
_REVISION = re.compile(r"^revision\s*(?::\s*str\s*)?=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]+)?=\s*(None|['\"]([^'\"]+)['\"])\s*$", re.MULTILINE)


@cache
def head_revision() -> str:
    """The newest revision this nflow knows."""
    head = _scanned_head()
    if head is not None:
        return head
    # Revision files this simple reading does not follow (a merge revision, a tuple of down
    # revisions): Alembic decides.
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(_VERSIONS.parent))
    alembic_head = ScriptDirectory.from_config(config).get_current_head()
    if alembic_head is None:  # pragma: no cover - the package ships its revisions
        raise StoreError(f"no schema revisions found in {_VERSIONS}")
    return alembic_head


def _scanned_head() -> str | None:
    """The one revision no other revision names as its parent, or None when unsure."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in _VERSIONS.glob("*.py"):
        if path.name.startswith("_"):
            continue
        source = path.read_text(encoding="utf-8")
        revision = _REVISION.search(source)
        down = _DOWN.search(source)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        if down.group(2) is not None:
            parents.add(down.group(2))
    heads = revisions - parents
    if len(heads) != 1 or not parents <= revisions:
        return None
    return heads.pop()


def current_revisions(conn: Connection) -> list[str] | None:
    """The revisions stamped in the database, or None when it was never migrated."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return [str(row[0]) for row in conn.execute(text("SELECT version_num FROM alembic_version"))]
