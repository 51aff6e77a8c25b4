"""Change notices between the instances sharing a PostgreSQL database (LISTEN/NOTIFY).

Each write of apps, modules, templates or queries, of a release or of a configuration secret
sends ``NOTIFY nflow_changes`` with what changed (:data:`APPS`, :data:`RELEASES`,
:data:`CONFIG`) inside its own transaction, so the notice leaves only when the change is
committed and visible. Every serving worker listens on a connection of its own and looks for
the change at once instead of at its next poll. SQLite has no notices: one instance's
workers poll (``[server] reload_interval_seconds``), which stays the fallback everywhere (a
notice is lost while a listener reconnects, and other programs writing the tables send none).
"""

from __future__ import annotations

__all__ = ["APPS", "CHANNEL", "CONFIG", "KINDS", "RELEASES", "Subscription", "send_notice"]

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

CHANNEL = "nflow_changes"
APPLICATION_NAME = "nflow change listener"
APPS = "apps"  # apps, modules, templates, queries
RELEASES = "releases"
CONFIG = "config"  # configuration secrets, or an operator's `nflow cluster reload`
KINDS = (APPS, RELEASES, CONFIG)

_NOTIFY = text("SELECT pg_notify(:channel, :kind)")


async def send_notice(conn: AsyncConnection, kind: str) -> None:
    """Queue a notice of ``kind`` in ``conn``'s transaction (PostgreSQL; nothing on SQLite)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(_NOTIFY, {"channel": CHANNEL, "kind": kind})


class Subscription:
    """A connection listening for change notices; :attr:`lost` is set when it breaks."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.lost = asyncio.Event()

    @classmethod
    async def open(
        cls, connect: dict[str, Any], on_change: Callable[[str], None], *, timeout: float
    ) -> Subscription:
        """Connect with asyncpg's ``connect`` keywords and start listening."""
        import asyncpg  # type: ignore[import-untyped]

        # Named, so that operators tell the listeners apart in pg_stat_activity.
        settings = {"application_name": APPLICATION_NAME}
        connection = await asyncpg.connect(**connect, timeout=timeout, server_settings=settings)
        subscription = cls(connection)

        def notice(conn: Any, pid: int, channel: str, payload: str) -> None:
            on_change(payload)

        try:
            await connection.add_listener(CHANNEL, notice)
        except BaseException:
            await connection.close()
            raise
        connection.add_termination_listener(lambda conn: subscription.lost.set())
        return subscription

    async def alive(self) -> bool:
        """True while the server answers on this connection (a network cut is not noticed
        by the connection itself until it next sends something)."""
        if self.lost.is_set() or self._connection.is_closed():
            self.lost.set()
            return False
        try:
            await self._connection.execute("SELECT 1", timeout=5)
        except Exception:
            self.lost.set()
            return False
        return True

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._connection.close(timeout=5)
        self.lost.set()
