"""The queue's statements on a run's path, on PostgreSQL, straight through asyncpg.

Each is one statement in autocommit (a checkpoint's update and its log row in one ``WITH``),
so a checkpoint is one round trip. Through SQLAlchemy's asyncpg adapter the same checkpoint
as a two-statement transaction cost 1.17 ms of client CPU; this way 0.07 ms (measured here,
single client, see bench/README.md). The other statements of the queue, and every statement
on SQLite, stay in ``_queue`` on SQLAlchemy.
"""

from __future__ import annotations

__all__ = ["PgPath"]

from typing import Any

_CLAIM = """
UPDATE nflow_durable_runs SET status = 'running', owner = $1, run_at = $2,
  attempts = attempts + 1, node_attempts = node_attempts + 1, wait_signal = NULL,
  updated_at = $3
WHERE id IN (
  SELECT id FROM nflow_durable_runs WHERE status = 'queued' AND run_at <= $3
  ORDER BY run_at LIMIT $4 FOR UPDATE SKIP LOCKED)
RETURNING id, app, version, kind, parent_id, request, vars, sessions, next_node, payload,
  writer, steps, attempts, node_attempts
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


class PgPath:
    """A small asyncpg pool of its own, for claims and checkpoints."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._size = size
        self._pool: Any = None

    async def open(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=1,
            max_size=self._size,
            timeout=10.0,
            # A checkpoint must outlive nflow's death, not PostgreSQL's: no wait for the WAL
            # flush (accepting a run, elsewhere, does wait).
            server_settings={"synchronous_commit": "off"},
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def claim(self, owner: str, limit: int, until: int, now: int) -> list[Any]:
        async with self._pool.acquire() as conn:
            return list(await conn.fetch(_CLAIM, owner, until, now, limit))

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
        async with self._pool.acquire() as conn:
            if response is None:
                status = await conn.execute(
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
                status = await conn.execute(
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
        return bool(status == "INSERT 0 1")
