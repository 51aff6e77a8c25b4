"""Reading the execution history back: lists, whole runs, one step with its diff; pruning."""

from __future__ import annotations

__all__ = ["HistoryError", "HistoryReader", "prune"]

import time
from typing import Any

from sqlalchemy import delete, func, select

from nflow.errors import NflowError
from nflow.security import KeyRing
from nflow.store import Store

from ._codec import Codec, changes
from ._records import RunRecord, RunSummary, StepView
from ._tables import runs, steps

_SUMMARY = (
    runs.c.id,
    runs.c.app,
    runs.c.version,
    runs.c.status,
    runs.c.started_at,
    runs.c.duration_ms,
    runs.c.step_count,
    runs.c.method,
    runs.c.path,
    runs.c.response_status,
    runs.c.journey,
    runs.c.parent_id,
    runs.c.limit_hit,
    runs.c.error,
    runs.c.key_id,
)
_MIN_PREFIX = 6


class HistoryError(NflowError):
    """A run id that matches several runs, or a bad argument to a history query."""


class HistoryReader:
    """Queries over the history tables of an open :class:`Store`. ``keyring`` opens values
    sealed at rest; without it they read as ``"[encrypted: key '…' needed]"``."""

    def __init__(self, store: Store, *, keyring: KeyRing | None = None) -> None:
        self.store = store
        self.codec = Codec(keyring=keyring)

    async def list_runs(
        self,
        *,
        app: str | None = None,
        status: str | None = None,
        journey: str | None = None,
        since: float | None = None,
        limit: int = 50,
    ) -> list[RunSummary]:
        """The newest runs first, filtered by app, status, journey and start time."""
        if limit < 1:
            raise HistoryError(f"limit must be at least 1, got {limit}")
        query = select(*_SUMMARY).order_by(runs.c.started_at.desc(), runs.c.id).limit(limit)
        if app is not None:
            query = query.where(runs.c.app == app)
        if status is not None:
            query = query.where(runs.c.status == status)
        if journey is not None:
            query = query.where(runs.c.journey == journey)
        if since is not None:
            query = query.where(runs.c.started_at >= round(since * 1_000_000))
        async with self.store.transaction("list runs") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [self._summary(row) for row in rows]

    def _summary(self, row: Any) -> RunSummary:
        return RunSummary(
            id=row["id"],
            app=row["app"],
            version=row["version"],
            status=row["status"],
            started_at=row["started_at"] / 1_000_000,
            duration_ms=row["duration_ms"],
            steps=row["step_count"],
            method=row["method"],
            path=row["path"],
            response_status=row["response_status"],
            journey=row["journey"],
            parent_id=row["parent_id"],
            limit_hit=row["limit_hit"],
            error=self.codec.open_value(row["error"], "nflow_runs", "error", row["id"]),
        )

    async def resolve(self, run_id: str) -> str | None:
        """The full id of a run given its id or a unique prefix (at least 6 characters)."""
        async with self.store.transaction("find run") as conn:
            found = (await conn.execute(select(runs.c.id).where(runs.c.id == run_id))).first()
            if found is not None:
                return str(found[0])
            if len(run_id) < _MIN_PREFIX:
                return None
            pattern = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = (
                await conn.execute(
                    select(runs.c.id).where(runs.c.id.like(pattern, escape="\\")).limit(2)
                )
            ).all()
        if len(rows) > 1:
            raise HistoryError(f"run id prefix {run_id!r} matches several runs; give more of it")
        return str(rows[0][0]) if rows else None

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run with every step, payloads rebuilt; ``None`` when there is no such run."""
        full = await self.resolve(run_id)
        if full is None:
            return None
        async with self.store.transaction("read run") as conn:
            row = (await conn.execute(select(runs).where(runs.c.id == full))).mappings().first()
            if row is None:
                return None
            query = select(steps).where(steps.c.run_id == full).order_by(steps.c.idx)
            step_rows = [dict(r) for r in (await conn.execute(query)).mappings()]
        rebuilt = tuple(self.codec.steps_from_rows(full, step_rows))
        return self.codec.run_from_row(dict(row), rebuilt)

    async def get_step(self, run_id: str, index: int) -> StepView | None:
        """Step ``index`` of a run with its payloads rebuilt and the diff between them."""
        full = await self.resolve(run_id)
        if full is None:
            return None
        snapshot = (
            select(func.max(steps.c.idx))
            .where(steps.c.run_id == full, steps.c.before_full.is_(True), steps.c.idx <= index)
            .scalar_subquery()
        )
        query = (
            select(steps)
            .where(steps.c.run_id == full, steps.c.idx >= snapshot, steps.c.idx <= index)
            .order_by(steps.c.idx)
        )
        async with self.store.transaction("read step") as conn:
            rows = [dict(r) for r in (await conn.execute(query)).mappings()]
        if not rows or rows[-1]["idx"] != index:
            return None
        step = self.codec.steps_from_rows(full, rows)[-1]
        return StepView(
            run_id=full, step=step, diff=changes(step.payload_before, step.payload_after)
        )


async def prune(
    store: Store, *, retention_days: float, max_runs: int, now: float | None = None
) -> int:
    """Delete runs started more than ``retention_days`` ago and all but the newest
    ``max_runs`` (0: no count limit), with their steps. Returns how many runs went."""
    cutoff = round(((now if now is not None else time.time()) - retention_days * 86400) * 1e6)
    removed = 0
    async with store.transaction("prune execution history", write=True) as conn:
        if max_runs > 0:
            # The start time of the newest run beyond the limit; ties go too.
            edge = (
                await conn.execute(
                    select(runs.c.started_at)
                    .order_by(runs.c.started_at.desc())
                    .offset(max_runs)
                    .limit(1)
                )
            ).scalar()
            if edge is not None:
                cutoff = max(cutoff, int(edge) + 1)
        old = select(runs.c.id).where(runs.c.started_at < cutoff).scalar_subquery()
        await conn.execute(delete(steps).where(steps.c.run_id.in_(old)))
        result = await conn.execute(delete(runs).where(runs.c.started_at < cutoff))
        removed = result.rowcount or 0
    return removed
