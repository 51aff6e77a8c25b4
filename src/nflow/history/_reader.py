"""Reading the execution history back: lists, whole runs, one step with its diff; pruning."""

from __future__ import annotations

__all__ = ["HistoryError", "HistoryReader", "prune"]

import re
import time
from typing import Any

from sqlalchemy import delete, func, select

from nflow.errors import NflowError
from nflow.security import KeyRing
from nflow.store import Store

from ._codec import Codec, changes
from ._json import Stats
from ._records import RunRecord, RunSummary, StepView
from ._stats import StepSample, profile
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
        version: str | None = None,
    ) -> list[RunSummary]:
        """The newest runs first, filtered by app, status, journey, start time and app
        version (an id or a prefix of it)."""
        if limit < 1:
            raise HistoryError(f"limit must be at least 1, got {limit}")
        if version is not None and not re.fullmatch(r"[0-9a-f]{4,64}", version):
            raise HistoryError(f"version must be 4 to 64 hex characters, got {version!r}")
        query = select(*_SUMMARY).order_by(runs.c.started_at.desc(), runs.c.id).limit(limit)
        if app is not None:
            query = query.where(runs.c.app == app)
        if status is not None:
            query = query.where(runs.c.status == status)
        if journey is not None:
            query = query.where(runs.c.journey == journey)
        if since is not None:
            query = query.where(runs.c.started_at >= round(since * 1_000_000))
        if version is not None:
            query = query.where(runs.c.version.startswith(version))
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

    async def resolve_version(self, app: str, version: str) -> str | None:
        """The full version digest of ``app`` given it or a unique prefix; ``None`` when no
        recorded run of the app has it."""
        pattern = version.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = (
            select(runs.c.version)
            .where(runs.c.app == app, runs.c.version.like(pattern, escape="\\"))
            .distinct()
            .limit(2)
        )
        async with self.store.transaction("find version") as conn:
            found = [str(r[0]) for r in (await conn.execute(query)).all()]
        if version in found:
            return version
        if len(found) > 1:
            raise HistoryError(
                f"version prefix {version!r} matches several versions of app {app!r}; give more"
            )
        return found[0] if found else None

    async def samples(
        self,
        app: str,
        *,
        since: float | None = None,
        versions: tuple[str, ...] = (),
        max_runs: int = 10_000,
    ) -> list[StepSample]:
        """Every step of the newest ``max_runs`` runs of ``app`` (started at or after
        ``since``, of one of ``versions`` when given), for :func:`profile`."""
        if max_runs < 1:
            raise HistoryError(f"max_runs must be at least 1, got {max_runs}")
        chosen = select(runs.c.id).where(runs.c.app == app)
        if since is not None:
            chosen = chosen.where(runs.c.started_at >= round(since * 1_000_000))
        if versions:
            chosen = chosen.where(runs.c.version.in_(versions))
        chosen = chosen.order_by(runs.c.started_at.desc()).limit(max_runs)
        query = (
            select(
                steps.c.run_id,
                runs.c.version,
                steps.c.node_id,
                steps.c.node_type,
                steps.c.node_name,
                steps.c.duration_ms,
                steps.c.error.is_not(None).label("failed"),
                steps.c.host_calls,
            )
            .join(runs, runs.c.id == steps.c.run_id)
            .where(steps.c.run_id.in_(chosen.scalar_subquery()))
            .order_by(runs.c.started_at, steps.c.run_id, steps.c.idx)
        )
        async with self.store.transaction("profile runs") as conn:
            rows = (await conn.execute(query)).all()
        out: list[StepSample] = []
        for run_id, version, node, kind, name, duration, failed, calls in rows:
            host = 0.0
            if calls is not None:
                opened = self.codec.open_value(calls, "nflow_run_steps", "host_calls", run_id)
                if isinstance(opened, list):  # not "[encrypted: …]": no key, no host time
                    host = sum(
                        float(c.get("duration_ms") or 0.0) for c in opened if isinstance(c, dict)
                    )
            out.append(
                StepSample(
                    run_id=run_id,
                    version=version,
                    node=node,
                    type=kind,
                    name=name,
                    duration_ms=float(duration),
                    failed=bool(failed),
                    host_ms=host,
                )
            )
        return out

    async def stats(
        self,
        app: str,
        *,
        since: float | None = None,
        compare: tuple[str, str] | None = None,
        max_runs: int = 10_000,
    ) -> Stats:
        """Per-node statistics of ``app``'s newest ``max_runs`` runs since ``since``; with
        ``compare``, two versions (digests or unique prefixes) side by side."""
        versions: tuple[str, ...] = ()
        if compare is not None:
            found = []
            for given in compare:
                full = await self.resolve_version(app, given)
                if full is None:
                    raise HistoryError(f"no recorded run of app {app!r} has version {given!r}")
                found.append(full)
            compare = (found[0], found[1])
            versions = compare
        samples = await self.samples(app, since=since, versions=versions, max_runs=max_runs)
        return profile(samples, app=app, since=since, compare=compare)


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
