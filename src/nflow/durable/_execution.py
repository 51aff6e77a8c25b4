"""One execution of a durable run: its checkpoints, its waits and its idempotency keys.

The engine calls :meth:`DurableExecution.node_done` after each node; the run's payload,
sessions, the node to run next and what the run has written so far are committed there,
fenced by the execution's attempt number, before the next node starts. Host functions reach
the rest through ``RunContext.durable``.
"""

from __future__ import annotations

__all__ = ["DurableExecution"]

import copy
from typing import Any

import orjson

from nflow._io import IoLoop
from nflow.errors import ExecutionError, ProcessKilled
from nflow.jsapi import HostError, RunContext, RunKilled, RunParked
from nflow.playbook import Node

from ._codec import decode_writer, encode_sessions, encode_writer, response_json
from ._queue import Claimed, Queue

# Longest wait for one statement of the queue from a run's thread.
_CALL_TIMEOUT = 60.0


class DurableExecution:
    """The engine's Checkpointer and the scripts' DurableContext for one claimed run."""

    def __init__(
        self,
        *,
        queue: Queue,
        io: IoLoop,
        claim: Claimed,
        owner: str,
        lease_seconds: float,
        park_sleep_ms: int,
        max_wait_ms: int,
    ) -> None:
        self._queue = queue
        self._io = io
        self._claim = claim
        self._owner = owner
        self._lease = lease_seconds
        self._park_sleep_ms = park_sleep_ms
        self._max_wait_ms = max_wait_ms
        self._seq = claim.steps  # checkpoints committed
        self._effects = 0  # keys handed out in the node running now
        self.node_attempt = claim.node_attempts
        self.node = claim.next_node
        self.completed = False
        self.parked = False
        self.lost = False
        self._wid = claim.id

    # DurableContext ------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self._claim.id

    @property
    def attempt(self) -> int:
        return self.node_attempt

    @property
    def park_sleep_ms(self) -> int:
        return self._park_sleep_ms

    def step_key(self) -> str:
        return f"{self._claim.id}:{self._seq + 1}"

    def _next_key(self) -> str:
        self._effects += 1
        return f"{self._seq + 1}:{self._effects}"

    def effect_key(self) -> str:
        return f"{self._claim.id}:{self._next_key()}"

    def sleep(self, ms: int) -> None:
        self._check_wait("sleep", ms)
        outcome = self._io.call(
            self._queue.sleep(self.run_id, self._owner, self._claim.attempts, self._next_key(), ms),
            timeout=_CALL_TIMEOUT,
        )
        if outcome is None:
            self.lost = True
            raise RunKilled(self._wid)
        if outcome.parked:
            self.parked = True
            raise RunParked(self._wid, f"sleep({ms}) at node {self.node}")

    def wait_for_signal(self, name: str, timeout_ms: int) -> tuple[bool, Any]:
        self._check_wait("wait_for_signal", timeout_ms)
        outcome = self._io.call(
            self._queue.wait_signal(
                self.run_id, self._owner, self._claim.attempts, self._next_key(), name, timeout_ms
            ),
            timeout=_CALL_TIMEOUT,
        )
        if outcome is None:
            self.lost = True
            raise RunKilled(self._wid)
        if outcome.parked:
            self.parked = True
            raise RunParked(self._wid, f"waiting for signal {name!r} at node {self.node}")
        return (not outcome.timed_out, outcome.value)

    def _check_wait(self, fn: str, ms: int) -> None:
        if ms > self._max_wait_ms:
            raise HostError(
                f"{fn}: {ms} ms is longer than durable.max_wait_seconds "
                f"({self._max_wait_ms // 1000} s)"
            )

    # Checkpointer --------------------------------------------------------------------------
    def begin(self, ctx: RunContext) -> None:
        self._wid = ctx.wid
        ctx.durable = self
        claim = self._claim
        if claim.steps:
            # Resumed: the sessions and response as they were at the last checkpoint (the
            # engine re-read the request's form fields, which the run may have changed since).
            saved = orjson.loads(claim.sessions)
            ctx.sessions.values.update(copy.deepcopy(saved))
            decode_writer(claim.writer, ctx.writer)

    def node_done(
        self, ctx: RunContext, node: Node, next_out: str, payload: dict[str, Any]
    ) -> None:
        stop = payload.get("break") is True or payload.get("break") == "true"
        next_id = "" if stop or not next_out else node.outputs.get(next_out) or ""
        seq = self._seq + 1
        final = not next_id
        try:
            committed = self._checkpoint(ctx, node, next_id, seq, payload, final)
        except Exception as exc:
            # The database is unreachable: this execution stops here, and the run resumes
            # from its last checkpoint once its lease lapses.
            self.lost = True
            raise ExecutionError(
                f"durable run {self.run_id}: checkpoint after node {node.id} failed ({exc})",
                node=node.id,
            ) from None
        if not committed:
            self.lost = True
            raise ProcessKilled(
                f"durable run {self.run_id} stopped after node {node.id}: it was cancelled, "
                "or another instance took it over",
                node=node.id,
            )
        self._seq = seq
        self._effects = 0
        self.node_attempt = 1
        self.node = next_id
        self.completed = final

    def _checkpoint(
        self,
        ctx: RunContext,
        node: Node,
        next_id: str,
        seq: int,
        payload: dict[str, Any],
        final: bool,
    ) -> bool:
        committed: bool = self._io.call(
            self._queue.checkpoint(
                run_id=self.run_id,
                owner=self._owner,
                attempt=self._claim.attempts,
                seq=seq,
                node=node.id,
                next_node=next_id,
                payload=orjson.dumps(payload, default=str).decode(),
                sessions=encode_sessions(ctx.sessions),
                writer=None if final else encode_writer(ctx.writer),
                lease_seconds=self._lease,
                response=response_json(ctx.writer.finish()) if final else None,
            ),
            timeout=_CALL_TIMEOUT,
        )
        return committed
