"""Every statement of the durable queue, on SQLite or PostgreSQL, through the store's pool.

The queue is one table with leases. A worker claims due rows (``run_at <= now``: queued runs,
waits that are due, and running runs whose lease lapsed because their instance died) with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so instances never claim the same row; on SQLite the
write transaction (``BEGIN IMMEDIATE``) serialises claims. Each claim bumps ``attempts``,
which fences every later write of that execution: a worker whose lease was taken over, or
whose run was cancelled, finds its checkpoint refused and stops.
"""

from __future__ import annotations

__all__ = [
    "ENDED",
    "STATUSES",
    "Claimed",
    "NewRun",
    "Queue",
    "RunView",
    "WaitOutcome",
    "now_us",
]

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from nflow.security import KeyRing, field_aad, is_encrypted
from nflow.store import Store

from ._pg import PgPath
from ._tables import runs, signals, steps, waits

STATUSES = ("queued", "running", "waiting", "completed", "failed", "cancelled")
ENDED = frozenset({"completed", "failed", "cancelled"})


def now_us() -> int:
    return int(time.time() * 1_000_000)


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run accepted into the queue: what it runs and from where."""

    id: str
    app: str
    version: str
    kind: str  # "request" (an async start) or "fork" (a gorutine branch)
    request: str  # JSON, see _codec
    vars: str
    sessions: str
    next_node: str
    payload: str = "{}"
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A run this worker now holds the lease of, with its last checkpoint."""

    id: str
    app: str
    version: str
    kind: str
    parent_id: str | None
    request: str
    vars: str
    sessions: str
    next_node: str
    payload: str
    writer: str | None
    steps: int
    attempts: int
    node_attempts: int
    previous_owner: str | None  # set when the lease of a dead owner was taken over


@dataclass(frozen=True, slots=True)
class RunView:
    """What ``GET /_nflow/api/runs/{id}`` shows of a durable run."""

    id: str
    app: str
    kind: str
    parent_id: str | None
    status: str
    attempts: int
    steps: int
    next_node: str
    waiting_for: str | None
    response: dict[str, Any] | None
    error: str | None
    error_node: str | None
    created_at: int
    updated_at: int
    ended_at: int | None


@dataclass(frozen=True, slots=True)
class WaitOutcome:
    """A durable wait: over (with the signal's body, or None on a timeout), or parked."""

    parked: bool
    value: Any = None
    timed_out: bool = False


def _claimed(r: Mapping[str, Any], previous_owner: str | None) -> Claimed:
    return Claimed(
        id=r["id"],
        app=r["app"],
        version=r["version"],
        kind=r["kind"],
        parent_id=r["parent_id"],
        request=r["request"],
        vars=r["vars"],
        sessions=r["sessions"],
        next_node=r["next_node"],
        payload=r["payload"],
        writer=r["writer"],
        steps=r["steps"],
        attempts=r["attempts"],
        node_attempts=r["node_attempts"],
        previous_owner=previous_owner,
    )


_CLAIM_COLUMNS = (
    runs.c.id,
    runs.c.app,
    runs.c.version,
    runs.c.kind,
    runs.c.parent_id,
    runs.c.request,
    runs.c.vars,
    runs.c.sessions,
    runs.c.next_node,
    runs.c.payload,
    runs.c.writer,
    runs.c.steps,
    runs.c.attempts,
    runs.c.node_attempts,
)


class Queue:
    """The durable queue on ``store`` (opened by the caller, on the I/O loop)."""

    def __init__(
        self, store: Store, *, fast: PgPath | None = None, keyring: KeyRing | None = None
    ) -> None:
        """``fast``: claims and checkpoints through asyncpg (PostgreSQL only). ``keyring``:
        with ``[security] encrypt_sensitive_data``, what a run carries (request, sessions,
        payload, response so far, signal bodies) is sealed at rest, bound to its column."""
        self.store = store
        self.postgres = store.dialect == "postgresql"
        self.fast = fast
        self.keyring = keyring

    def _seal(self, column: str, value: str | None) -> str | None:
        if value is None or self.keyring is None:
            return value
        return str(self.keyring.encrypt(value, aad=field_aad("nflow_durable_runs", column)))

    def _open(self, column: str, value: str | None) -> str | None:
        if value is None or self.keyring is None or not is_encrypted(value):
            return value
        return str(self.keyring.decrypt(value, aad=field_aad("nflow_durable_runs", column)))

    def _sealed(self, column: str, value: str) -> str:
        return self._seal(column, value) or ""

    def _opened(self, column: str, value: str) -> str:
        return self._open(column, value) or ""

    def _claimed(self, r: Mapping[str, Any], previous_owner: str | None) -> Claimed:
        claim = _claimed(r, previous_owner)
        if self.keyring is None:
            return claim
        return dataclasses.replace(
            claim,
            request=self._opened("request", claim.request),
            sessions=self._opened("sessions", claim.sessions),
            payload=self._opened("payload", claim.payload),
            writer=self._open("writer", claim.writer),
        )

    def _tx(self, operation: str) -> Any:
        return self.store.transaction(f"durable runs: {operation}", write=True)

    def _fenced(self, run_id: str, owner: str, attempt: int) -> Any:
        return and_(
            runs.c.id == run_id,
            runs.c.owner == owner,
            runs.c.attempts == attempt,
            runs.c.status == "running",
        )

    # accepting ---------------------------------------------------------------------------
    async def enqueue(
        self,
        batch: Sequence[NewRun],
        *,
        owner: str | None = None,
        take: int = 0,
        lease_seconds: float = 0.0,
    ) -> list[Claimed]:
        """Commit ``batch`` to the queue in one transaction, flushed to disk before it
        returns: an accepted run survives PostgreSQL's crash too.

        The first ``take`` runs are committed already leased to ``owner`` (its worker has
        that many free slots), as a claim would leave them: no claim statement for them,
        and another instance takes them over like any run once the lease lapses. Returns
        those, for the caller to execute."""
        now = now_us()
        until = now + int(lease_seconds * 1_000_000)
        take = min(take, len(batch)) if owner is not None else 0
        taken = [
            Claimed(
                id=run.id,
                app=run.app,
                version=run.version,
                kind=run.kind,
                parent_id=run.parent_id,
                request=run.request,
                vars=run.vars,
                sessions=run.sessions,
                next_node=run.next_node,
                payload=run.payload,
                writer=None,
                steps=0,
                attempts=1,
                node_attempts=1,
                previous_owner=None,
            )
            for run in batch[:take]
        ]
        fast = self.fast
        if fast is not None:
            queued = len(batch) - take
            await fast.enqueue(
                [
                    [run.id for run in batch],
                    [run.app for run in batch],
                    [run.version for run in batch],
                    [run.kind for run in batch],
                    [run.parent_id for run in batch],
                    [self._sealed("request", run.request) for run in batch],
                    [run.vars for run in batch],
                    [self._sealed("sessions", run.sessions) for run in batch],
                    [run.next_node for run in batch],
                    [self._sealed("payload", run.payload) for run in batch],
                    ["running"] * take + ["queued"] * queued,
                    [owner] * take + [None] * queued,
                    [1] * take + [0] * queued,
                    [until] * take + [now] * queued,
                ],
                now,
            )
            return taken
        async with self._tx("accept runs") as conn:
            if self.postgres:
                await conn.execute(text("SET LOCAL synchronous_commit = on"))
            await conn.execute(
                insert(runs),
                [
                    {
                        "id": run.id,
                        "app": run.app,
                        "version": run.version,
                        "kind": run.kind,
                        "parent_id": run.parent_id,
                        "status": "running" if i < take else "queued",
                        "owner": owner if i < take else None,
                        "request": self._sealed("request", run.request),
                        "vars": run.vars,
                        "sessions": self._sealed("sessions", run.sessions),
                        "next_node": run.next_node,
                        "payload": self._sealed("payload", run.payload),
                        "steps": 0,
                        "attempts": 1 if i < take else 0,
                        "node_attempts": 1 if i < take else 0,
                        "run_at": until if i < take else now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i, run in enumerate(batch)
                ],
            )
        return taken

    # claiming and leases -----------------------------------------------------------------
    async def claim(
        self, owner: str, limit: int, lease_seconds: float, *, sweep: bool
    ) -> list[Claimed]:
        """Up to ``limit`` due runs, now leased to ``owner``, oldest first. With ``sweep``,
        first the runs of dead instances (their leases lapsed; they hold partial work) and
        the waits that are due, then the queue."""
        now = now_us()
        until = now + int(lease_seconds * 1_000_000)
        statuses = ("running", "waiting", "queued") if sweep else ("queued",)
        fast = self.fast
        if fast is not None:
            rows = await fast.claim(owner, limit, until, now, statuses)
            # The previous owner is set only on runs whose lease lapsed (parking, failing
            # and cancelling clear it).
            return [self._claimed(r, r["previous_owner"]) for r in rows]
        values = {
            "status": "running",
            "owner": owner,
            "run_at": until,
            "attempts": runs.c.attempts + 1,
            "node_attempts": runs.c.node_attempts + 1,
            "wait_signal": None,
            "updated_at": now,
        }
        claimed: list[Claimed] = []
        async with self._tx("claim runs") as conn:
            for status in statuses:
                room = limit - len(claimed)
                if room <= 0:
                    break
                due = (
                    select(runs.c.id, runs.c.owner)
                    .where(runs.c.status == status, runs.c.run_at <= now)
                    .order_by(runs.c.run_at)
                    .limit(room)
                )
                if self.postgres:
                    due = due.with_for_update(skip_locked=True)
                previous: dict[str, str] = {}
                if status == "running":
                    # Whose lease lapsed is worth a log line: read it before it is replaced.
                    found = (await conn.execute(due)).all()
                    if not found:
                        continue
                    previous = {row.id: row.owner for row in found}
                    where = runs.c.id.in_(list(previous))
                else:
                    where = runs.c.id.in_(due.with_only_columns(runs.c.id))
                rows = (
                    await conn.execute(
                        update(runs).where(where).values(**values).returning(*_CLAIM_COLUMNS)
                    )
                ).all()
                claimed.extend(self._claimed(r._mapping, previous.get(r.id)) for r in rows)
        return claimed

    async def heartbeat(
        self, owner: str, held: Sequence[tuple[str, int]], lease_seconds: float
    ) -> set[str]:
        """Renew the leases of ``held`` (run id, attempt); the ids still held."""
        if not held:
            return set()
        until = now_us() + int(lease_seconds * 1_000_000)
        kept: set[str] = set()
        async with self._tx("renew leases") as conn:
            result = await conn.execute(
                update(runs)
                .where(
                    runs.c.owner == owner,
                    runs.c.status == "running",
                    runs.c.id.in_([run_id for run_id, _ in held]),
                )
                .values(run_at=until)
                .returning(runs.c.id, runs.c.attempts)
            )
            attempts = dict(held)
            for row in result:
                if attempts.get(row.id) == row.attempts:
                    kept.add(row.id)
        return kept

    async def taken_away(self, owner: str, held: Sequence[tuple[str, int]]) -> list[str]:
        """Of ``held`` (run id, attempt), the runs cancelled or now leased by another
        execution; not those that simply ended or parked meanwhile."""
        if not held:
            return []
        attempts = dict(held)
        async with self.store.transaction("durable runs: leases") as conn:
            rows = (
                await conn.execute(
                    select(runs.c.id, runs.c.status, runs.c.owner, runs.c.attempts).where(
                        runs.c.id.in_(list(attempts))
                    )
                )
            ).all()
        return [
            row.id
            for row in rows
            if row.status == "cancelled"
            or (
                row.status == "running"
                and (row.owner != owner or row.attempts != attempts.get(row.id))
            )
        ]

    # progress ----------------------------------------------------------------------------
    async def checkpoint(
        self,
        *,
        run_id: str,
        owner: str,
        attempt: int,
        seq: int,
        node: str,
        next_node: str,
        payload: str,
        sessions: str,
        writer: str | None,
        lease_seconds: float,
        response: str | None = None,
    ) -> bool:
        """Commit node ``seq`` as done (and the run as completed when ``response`` is given);
        False when this execution no longer holds the run."""
        now = now_us()
        payload = self._sealed("payload", payload)
        sessions = self._sealed("sessions", sessions)
        writer = self._seal("writer", writer)
        response = self._seal("response", response)
        fast = self.fast
        if fast is not None:
            return await fast.checkpoint(
                run_id=run_id,
                owner=owner,
                attempt=attempt,
                seq=seq,
                node=node,
                next_node=next_node,
                now=now,
                payload=payload,
                sessions=sessions,
                writer=writer,
                run_at=now + int(lease_seconds * 1_000_000),
                response=response,
            )
        values: dict[str, Any] = {
            "next_node": next_node,
            "payload": payload,
            "sessions": sessions,
            "writer": writer,
            "steps": seq,
            "node_attempts": 1,
            "updated_at": now,
            "error": None,
            "error_node": None,
        }
        if response is not None:
            values.update(
                status="completed", response=response, run_at=None, owner=None, ended_at=now
            )
        else:
            values["run_at"] = now + int(lease_seconds * 1_000_000)
        async with self._tx("checkpoint") as conn:
            result = await conn.execute(
                update(runs).where(self._fenced(run_id, owner, attempt)).values(**values)
            )
            if result.rowcount != 1:
                return False
            await conn.execute(
                insert(steps).values(
                    run_id=run_id,
                    seq=seq,
                    node=node,
                    next_node=next_node,
                    attempt=attempt,
                    owner=owner,
                    at=now,
                )
            )
        return True

    async def complete(self, run_id: str, owner: str, attempt: int, response: str) -> bool:
        """The run ended without a node to checkpoint last (an auth trigger stopped it)."""
        now = now_us()
        response = self._sealed("response", response)
        async with self._tx("complete") as conn:
            result = await conn.execute(
                update(runs)
                .where(self._fenced(run_id, owner, attempt))
                .values(
                    status="completed",
                    response=response,
                    run_at=None,
                    owner=None,
                    ended_at=now,
                    updated_at=now,
                )
            )
        return bool(result.rowcount == 1)

    async def fail(
        self,
        run_id: str,
        owner: str,
        attempt: int,
        *,
        error: str,
        node: str,
        retry_in_ms: int | None,
        given_back: bool = False,
    ) -> bool:
        """A node failed: queue the run again after ``retry_in_ms``, or mark it failed.
        ``given_back``: it did not fail, this instance is stopping; the attempt is not
        counted."""
        now = now_us()
        values: dict[str, Any] = {
            "error": error,
            "error_node": node,
            "owner": None,
            "updated_at": now,
        }
        if retry_in_ms is None:
            values.update(status="failed", run_at=None, ended_at=now)
        else:
            values.update(status="queued", run_at=now + retry_in_ms * 1000)
            if given_back:
                values["node_attempts"] = runs.c.node_attempts - 1
        async with self._tx("record a failure") as conn:
            result = await conn.execute(
                update(runs).where(self._fenced(run_id, owner, attempt)).values(**values)
            )
        return bool(result.rowcount == 1)

    # durable waits -----------------------------------------------------------------------
    async def _lock_run(self, conn: AsyncConnection, run_id: str) -> Any:
        query = select(runs.c.status, runs.c.wait_signal).where(runs.c.id == run_id)
        if self.postgres:
            query = query.with_for_update()
        return (await conn.execute(query)).first()

    async def _park(
        self,
        conn: AsyncConnection,
        run_id: str,
        owner: str,
        attempt: int,
        until: int,
        signal: str | None,
    ) -> bool:
        # The wake-up claim counts an attempt again; parking gives this one back, so waits
        # never use up a node's retries.
        result = await conn.execute(
            update(runs)
            .where(self._fenced(run_id, owner, attempt))
            .values(
                status="waiting",
                run_at=until,
                owner=None,
                wait_signal=signal,
                node_attempts=runs.c.node_attempts - 1,
                updated_at=now_us(),
            )
        )
        return bool(result.rowcount == 1)

    async def sleep(
        self, run_id: str, owner: str, attempt: int, key: str, ms: int
    ) -> WaitOutcome | None:
        """Sleep ``key`` of the run: over, or the run parked until it is (None: lost)."""
        now = now_us()
        async with self._tx("durable sleep") as conn:
            found = (
                await conn.execute(
                    select(waits.c.until).where(waits.c.run_id == run_id, waits.c.key == key)
                )
            ).first()
            if found is None:
                until = now + ms * 1000
                await conn.execute(
                    insert(waits).values(run_id=run_id, key=key, kind="sleep", until=until)
                )
            else:
                until = int(found.until)
            if until <= now:
                return WaitOutcome(parked=False)
            if not await self._park(conn, run_id, owner, attempt, until, None):
                return None
        return WaitOutcome(parked=True)

    async def wait_signal(
        self, run_id: str, owner: str, attempt: int, key: str, name: str, timeout_ms: int
    ) -> WaitOutcome | None:
        """Wait ``key`` for signal ``name``: its body, a timeout, or the run parked."""
        now = now_us()
        async with self._tx("wait for a signal") as conn:
            await self._lock_run(conn, run_id)  # against a signal arriving meanwhile
            found = (
                await conn.execute(
                    select(waits.c.until, waits.c.outcome).where(
                        waits.c.run_id == run_id, waits.c.key == key
                    )
                )
            ).first()
            if found is not None and found.outcome is not None:
                outcome = orjson.loads(self._opened("signal", found.outcome))
                return WaitOutcome(
                    parked=False, value=outcome.get("body"), timed_out=outcome.get("timeout", False)
                )
            if found is None:
                until = now + timeout_ms * 1000
                await conn.execute(
                    insert(waits).values(
                        run_id=run_id, key=key, kind="signal", name=name, until=until
                    )
                )
            else:
                until = int(found.until)
            oldest = (
                await conn.execute(
                    select(signals.c.id, signals.c.body)
                    .where(
                        signals.c.run_id == run_id,
                        signals.c.name == name,
                        signals.c.taken_by.is_(None),
                    )
                    .order_by(signals.c.id)
                    .limit(1)
                )
            ).first()
            if oldest is not None or until <= now:
                body = (
                    orjson.loads(self._opened("signal", oldest.body))
                    if oldest is not None
                    else None
                )
                record = {"body": body} if oldest is not None else {"body": None, "timeout": True}
                if oldest is not None:
                    await conn.execute(
                        update(signals).where(signals.c.id == oldest.id).values(taken_by=key)
                    )
                await conn.execute(
                    update(waits)
                    .where(waits.c.run_id == run_id, waits.c.key == key)
                    .values(outcome=self._sealed("signal", orjson.dumps(record).decode()))
                )
                return WaitOutcome(parked=False, value=body, timed_out=oldest is None)
            if not await self._park(conn, run_id, owner, attempt, until, name):
                return None
        return WaitOutcome(parked=True)

    async def signal(self, run_id: str, name: str, body: str) -> str | None:
        """Deliver signal ``name``; the run's status (None: no such run). A run waiting for
        it is queued at once; a signal sent before the wait is kept for it."""
        now = now_us()
        async with self._tx("deliver a signal") as conn:
            found = await self._lock_run(conn, run_id)
            if found is None:
                return None
            if found.status in ENDED:
                return str(found.status)
            await conn.execute(
                insert(signals).values(
                    run_id=run_id, name=name, body=self._sealed("signal", body), at=now
                )
            )
            if found.status == "waiting" and found.wait_signal == name:
                await conn.execute(
                    update(runs)
                    .where(runs.c.id == run_id, runs.c.status == "waiting")
                    .values(status="queued", run_at=now, updated_at=now)
                )
                return "queued"
            return str(found.status)

    # management --------------------------------------------------------------------------
    async def get(self, run_id: str) -> RunView | None:
        async with self.store.transaction("durable runs: read") as conn:
            row = (await conn.execute(select(runs).where(runs.c.id == run_id))).first()
        if row is None:
            return None
        return RunView(
            id=row.id,
            app=row.app,
            kind=row.kind,
            parent_id=row.parent_id,
            status=row.status,
            attempts=row.attempts,
            steps=row.steps,
            next_node=row.next_node,
            waiting_for=row.wait_signal,
            response=orjson.loads(self._opened("response", row.response)) if row.response else None,
            error=row.error,
            error_node=row.error_node,
            created_at=row.created_at,
            updated_at=row.updated_at,
            ended_at=row.ended_at,
        )

    async def cancel(self, run_id: str) -> tuple[str, bool] | None:
        """Cancel a run that has not ended: its status after, and whether this call
        cancelled it (None: no such run)."""
        now = now_us()
        async with self._tx("cancel a run") as conn:
            found = await self._lock_run(conn, run_id)
            if found is None:
                return None
            if found.status in ENDED:
                return str(found.status), False
            await conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status="cancelled",
                    run_at=None,
                    owner=None,
                    ended_at=now,
                    updated_at=now,
                    error="cancelled",
                )
            )
        return "cancelled", True

    async def retry(self, run_id: str) -> str | None:
        """Queue a failed run again from its last checkpoint, with its node's attempts
        counted afresh; its status after (None: no such run)."""
        now = now_us()
        async with self._tx("retry a run") as conn:
            found = await self._lock_run(conn, run_id)
            if found is None:
                return None
            if found.status != "failed":
                return str(found.status)
            await conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(status="queued", run_at=now, node_attempts=0, ended_at=None, updated_at=now)
            )
        return "queued"

    async def prune(self, older_than_us: int) -> int:
        """Delete runs that ended before ``older_than_us`` with their steps, waits, signals."""
        async with self._tx("prune ended runs") as conn:
            old = select(runs.c.id).where(runs.c.ended_at < older_than_us)
            for table in (steps, waits, signals):
                await conn.execute(delete(table).where(table.c.run_id.in_(old)))
            result = await conn.execute(delete(runs).where(runs.c.ended_at < older_than_us))
        return int(result.rowcount or 0)

    async def counts(self) -> dict[str, int]:
        """Runs by status (for tests, the bench and the CLI)."""
        async with self.store.transaction("durable runs: count") as conn:
            rows = (
                await conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status))
            ).all()
        return {str(status): int(n) for status, n in rows}
