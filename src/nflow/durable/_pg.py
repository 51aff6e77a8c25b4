"""The queue's statements on a run's path, on PostgreSQL, straight through asyncpg.

Each is one statement in autocommit (a checkpoint's update and its log row in one ``WITH``,
a batch of accepted runs one ``INSERT ... SELECT FROM unnest``), so each is one round trip.
Through SQLAlchemy's asyncpg adapter the same checkpoint as a two-statement transaction cost
1.17 ms of client CPU; this way 0.07 ms (measured here, single client, see bench/README.md).
The other statements of the queue, and every statement on SQLite, stay in ``_queue`` on
SQLAlchemy.
"""

from __future__ import annotations

__all__ = ["PgPath"]

import contextlib
from collections.abc import AsyncIterator
from typing import Any

# Due runs of one status: queued ones, waits that are due, or running ones whose lease lapsed
# (their previous owner is worth a log line: read before it is replaced).
_CLAIM = """
WITH due AS (
  SELECT id, owner FROM nflow_durable_runs WHERE status = $5 AND run_at <= $3
  ORDER BY run_at LIMIT $4 FOR UPDATE SKIP LOCKED)
UPDATE nflow_durable_runs AS r SET status = 'running', owner = $1, run_at = $2,
  attempts = r.attempts + 1, node_attempts = r.node_attempts + 1, wait_signal = NULL,
  updated_at = $3
FROM due WHERE r.id = due.id
RETURNING r.id, r.app, r.version, r.kind, r.parent_id, r.request, r.vars, r.sessions,
  r.next_node, r.payload, r.writer, r.steps, r.attempts, r.node_attempts,
  due.owner AS previous_owner
"""

_ENQUEUE = """
INSERT INTO nflow_durable_runs (id, app, version, kind, parent_id, request, vars, sessions,
  next_node, payload, status, owner, attempts, node_attempts, run_at, steps, created_at,
  updated_at)
SELECT id, app, version, kind, parent_id, request, vars, sessions, next_node, payload, status,
  owner, attempts, attempts, run_at, 0, $15, $15
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
  $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int[],
  $14::bigint[])
  AS t(id, app, version, kind, parent_id, request, vars, sessions, next_node, payload, status,
  owner, attempts, run_at)
"""

_FENCE = "WHERE id = $1 AND owner = $2 AND attempts = $3 AND status = 'running'"
_LOG = (
    "INSERT INTO nflow_durable_steps (run_id, seq, node, next_node, attempt, owner, at) "
    "SELECT id, $4, $5, $6, $3, $2, $7 FROM done"
)

_CHECKPOINT = f"""
WITH done AS (
  UPDATE nflow_durable_runs SET next_node = $6, payload = $8, sessions = $9, writer = $10,
    steps = $4, node_attempts = 1, updated_at = $7, error = NULL, error_node = NULL,
    run_at = $11
  {_FENCE} RETURNING id)
{_LOG}
"""

_COMPLETE = f"""
WITH done AS (
  UPDATE nflow_durable_runs SET next_node = $6, payload = $8, sessions = $9, writer = NULL,
    steps = $4, node_attempts = 1, updated_at = $7, error = NULL, error_node = NULL,
    status = 'completed', response = $10, run_at = NULL, owner = NULL, ended_at = $7
  {_FENCE} RETURNING id)
{_LOG}
"""


async def _keep(conn: Any) -> None:
    """What a connection needs back in the pool: nothing. asyncpg's default reset is one
    more round trip per statement here (advisory locks, cursors, LISTEN, settings), and
    these statements leave none of those; an open transaction is still rolled back before
    this is called."""


class PgPath:
    """A small asyncpg pool of its own, for claims and checkpoints, and a connection or two
    for accepting runs (whose commits wait for the WAL flush)."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._size = size
        self._pool: Any = None
        self._accepting: Any = None
        # Connections back from a statement, reused without the pool's acquire and release
        # (a tenth of a checkpoint's client CPU): every user is on the one I/O loop.
        self._idle: list[Any] = []

    async def open(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=self._size,
            timeout=10.0,
            reset=_keep,
            # A checkpoint must outlive nflow's death, not PostgreSQL's: no wait for the WAL
            # flush (accepting a run, elsewhere, does wait).
            server_settings={"synchronous_commit": "off"},
        )
        # An accepted run must survive PostgreSQL's crash too: these commits are flushed.
        # Accepts arriving together share one commit, so one connection is mostly enough.
        self._accepting = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=2,
            timeout=10.0,
            reset=_keep,
            server_settings={"synchronous_commit": "on"},
        )

    async def _conn(self) -> Any:
        idle = self._idle
        return idle.pop() if idle else await self._pool.acquire()

    def _done(self, conn: Any) -> None:
        self._idle.append(conn)

    @contextlib.asynccontextmanager
    async def _borrowed(self) -> AsyncIterator[Any]:
        """An idle connection (else one from the pool), kept idle after a statement that
        worked; after one that failed, the pool judges it (a broken connection is closed
        there) and resets it."""
        conn = await self._conn()
        try:
            yield conn
        except BaseException:
            await self._pool.release(conn)
            raise
        self._done(conn)

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        async with self._borrowed() as conn:
            return list(await conn.fetch(query, *args))

    async def _execute(self, query: str, *args: Any) -> str:
        async with self._borrowed() as conn:
            return str(await conn.execute(query, *args))

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._pool.release(conn)
        for pool in (self._pool, self._accepting):
            if pool is not None:
                await pool.close()
        self._pool = self._accepting = None

    async def enqueue(self, columns: list[list[Any]], now: int) -> None:
        """Insert runs given column by column, in the order of ``_ENQUEUE``'s unnest."""
        async with self._accepting.acquire() as conn:
            await conn.execute(_ENQUEUE, *columns, now)

    async def claim(
        self, owner: str, limit: int, until: int, now: int, statuses: tuple[str, ...]
    ) -> list[Any]:
        """Up to ``limit`` due runs, of each status in turn, leased to ``owner``."""
        found: list[Any] = []
        for status in statuses:
            room = limit - len(found)
            if room <= 0:
                break
            found.extend(await self._fetch(_CLAIM, owner, until, now, room, status))
        return found

    async def checkpoint(
        self,
        *,
        run_id: str,
        owner: str,
        attempt: int,
        seq: int,
        node: str,
        next_node: str,
        now: int,
        payload: str,
        sessions: str,
        writer: str | None,
        run_at: int,
        response: str | None,
    ) -> bool:
        if response is None:
            status = await self._execute(
                _CHECKPOINT,
                run_id,
                owner,
                attempt,
                seq,
                node,
                next_node,
                now,
                payload,
                sessions,
                writer,
                run_at,
            )
        else:
            status = await self._execute(
                _COMPLETE,
                run_id,
                owner,
                attempt,
                seq,
                node,
                next_node,
                now,
                payload,
                sessions,
                response,
            )
        return status == "INSERT 0 1"
