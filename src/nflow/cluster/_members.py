"""Who is in the cluster: instances write heartbeats, readers judge them by their age.

Every worker of an instance writes the instance's row (the same row, so the instance stays
live while any of its workers does). An instance whose newest heartbeat is older than
``[cluster] dead_after_seconds`` is dead: killed, frozen or cut off from the database. One
that stopped cleanly says so (``stopped_at``). Rows of dead and stopped instances are kept
``forget_after_seconds`` for ``nflow cluster status``, then deleted by the live instances.
Ages are read on the reader's clock against the writers' clocks: instances must keep their
clocks in step (NTP), as they do for session and token expiry.
"""

from __future__ import annotations

__all__ = [
    "Instance",
    "Me",
    "forget_instances",
    "list_instances",
    "mark_stopped",
    "write_heartbeat",
]

import time
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, insert, or_, select, update

from nflow.cluster._tables import instances
from nflow.store import Store

Status = Literal["live", "dead", "stopped"]


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Me:
    """What an instance says about itself in its row."""

    id: str
    host: str
    pid: int
    address: str
    version: str
    workers: int
    started_at: int  # microseconds since the epoch


@dataclass(frozen=True, slots=True)
class Instance:
    """One row of the cluster table, with its status as of when it was read."""

    id: str
    host: str
    pid: int
    address: str
    version: str
    workers: int
    started_at: int
    heartbeat_at: int
    stopped_at: int | None
    status: Status
    seconds_since_heartbeat: float

    def summary(self) -> dict[str, Any]:
        """What anyone may see (``/health/ready``): no host, address or pid."""
        return {
            "id": self.id,
            "status": self.status,
            "version": self.version,
            "workers": self.workers,
            "started_at": self.started_at / 1e6,
            "seconds_since_heartbeat": round(self.seconds_since_heartbeat, 3),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "host": self.host,
            "pid": self.pid,
            "address": self.address,
            "version": self.version,
            "workers": self.workers,
            "started_at": self.started_at / 1e6,
            "heartbeat_at": self.heartbeat_at / 1e6,
            "stopped_at": None if self.stopped_at is None else self.stopped_at / 1e6,
            "seconds_since_heartbeat": round(self.seconds_since_heartbeat, 3),
        }


async def write_heartbeat(store: Store, me: Me) -> None:
    """Say that ``me`` is alive now (the row is created on the first call)."""
    now = _now_us()
    async with store.transaction("cluster heartbeat", write=True) as conn:
        result = await conn.execute(
            update(instances).where(instances.c.id == me.id).values(heartbeat_at=now)
        )
        if result.rowcount == 0:
            await conn.execute(
                insert(instances).values(
                    id=me.id,
                    host=me.host,
                    pid=me.pid,
                    address=me.address,
                    version=me.version,
                    workers=me.workers,
                    started_at=me.started_at,
                    heartbeat_at=now,
                )
            )


async def mark_stopped(store: Store, instance_id: str) -> None:
    """Record a clean stop: the instance is listed as stopped, not dead."""
    async with store.transaction("cluster stop", write=True) as conn:
        await conn.execute(
            update(instances).where(instances.c.id == instance_id).values(stopped_at=_now_us())
        )


async def list_instances(
    store: Store, *, dead_after: float, live_only: bool = False
) -> list[Instance]:
    """Every instance in the table (only the live ones with ``live_only``), newest first."""
    now = _now_us()
    stmt = select(instances).order_by(instances.c.started_at.desc(), instances.c.id)
    if live_only:
        stmt = stmt.where(
            instances.c.stopped_at.is_(None),
            instances.c.heartbeat_at > now - int(dead_after * 1e6),
        )
    async with store.transaction("cluster instances") as conn:
        rows = (await conn.execute(stmt)).all()
    found = []
    for row in rows:
        age = max(0.0, (now - row.heartbeat_at) / 1e6)
        status: Status = (
            "stopped" if row.stopped_at is not None else "dead" if age > dead_after else "live"
        )
        found.append(
            Instance(
                id=row.id,
                host=row.host,
                pid=row.pid,
                address=row.address,
                version=row.version,
                workers=row.workers,
                started_at=row.started_at,
                heartbeat_at=row.heartbeat_at,
                stopped_at=row.stopped_at,
                status=status,
                seconds_since_heartbeat=age,
            )
        )
    return found


async def forget_instances(store: Store, *, forget_after: float) -> int:
    """Delete the rows of instances silent (or stopped) for ``forget_after`` seconds."""
    cutoff = _now_us() - int(forget_after * 1e6)
    async with store.transaction("cluster forget", write=True) as conn:
        result = await conn.execute(
            delete(instances).where(
                or_(instances.c.heartbeat_at < cutoff, instances.c.stopped_at < cutoff)
            )
        )
    return int(result.rowcount)
