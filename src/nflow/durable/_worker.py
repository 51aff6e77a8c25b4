"""The durable worker of one process: claims due runs, executes them, renews their leases.

It lives on nflow's I/O loop. Claimed runs execute in a thread pool of
``durable.concurrency`` threads (each keeps a warm JS runtime), so a run holds a thread only
while it runs: a parked run holds none. Leases are renewed every third of
``durable.lease_seconds``; a run whose lease this process lost (cancelled, or taken over
after a stall) is killed here at its next host call or node.
"""

from __future__ import annotations

__all__ = ["DurableWorker", "RunHost"]

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from nflow._ids import new_wid
from nflow._io import IoLoop
from nflow.config import DurableConfig
from nflow.errors import ExecutionError, StoreError
from nflow.jsapi import Sessions

from ._codec import decode_request, response_json
from ._execution import DurableExecution
from ._queue import Claimed, Queue, now_us

if TYPE_CHECKING:
    from nflow.catalog import Catalog
    from nflow.engine import Engine
    from nflow.playbook import Node, Playbook

log = logging.getLogger("nflow.durable")

# Retries wait at most this long, however many there were.
_MAX_BACKOFF_MS = 300_000
_PRUNE_EVERY = 300.0


class RunHost(Protocol):
    """What executing a run needs of the runtime: its engine, config and app versions."""

    @property
    def engine(self) -> Engine: ...

    def durable_config(self) -> DurableConfig: ...

    def durable_playbook(self, app: str, version: str) -> tuple[Playbook, Catalog | None] | None:
        """The app at ``version`` (or, if no longer loaded, the version served now)."""
        ...


def owner_id() -> str:
    """This process's name in leases: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{new_wid()[:8]}"


def execution_wid(claim: Claimed) -> str:
    """The wid of one execution: the run id, then ``<id>.<n>`` for the n-th."""
    return claim.id if claim.attempts <= 1 else f"{claim.id}.{claim.attempts}"


class DurableWorker:
    def __init__(self, *, queue: Queue, io: IoLoop, host: RunHost, config: DurableConfig) -> None:
        self.queue = queue
        self.io = io
        self.host = host
        self.owner = owner_id()
        self._concurrency = config.concurrency
        self._lease = config.lease_seconds
        self._poll = config.poll_interval_ms / 1000.0
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="nflow-durable")
        self._active: dict[str, Claimed] = {}
        # Slots promised to runs being accepted here (see ``reserve``).
        self._reserved = 0
        # Whether the queue may hold due runs: set by an accept that left runs queued and
        # by a claim that filled every free slot; a claim that found fewer clears it. A run
        # ending here claims again only then: otherwise every finished run would cost a
        # claim statement that finds nothing. Runs queued elsewhere wait at most a poll.
        self._more = True
        self._wake: asyncio.Event | None = None
        self._task: Any = None
        self._stopping = False
        self.executed = 0

    @property
    def lease_seconds(self) -> float:
        return self._lease

    # life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = self.io.submit(self._main())

    def wake(self) -> None:
        """Look for work now (a run was queued here)."""
        self.io.loop.call_soon_threadsafe(self._poke)

    def _poke(self) -> None:
        self._more = True
        if self._wake is not None:
            self._wake.set()

    def reserve(self, wanted: int) -> int:
        """On the I/O loop: up to ``wanted`` free slots, held for runs this process accepts
        (committed already leased to it); hand them over with ``adopt``."""
        if self._task is None or self._stopping:
            return 0
        free = self._concurrency - len(self._active) - self._reserved
        taken = max(0, min(wanted, free))
        self._reserved += taken
        return taken

    def adopt(self, reserved: int, claims: list[Claimed]) -> None:
        """On the I/O loop: execute ``claims`` (leased to this process on accepting them) in
        the ``reserved`` slots."""
        self._reserved -= reserved
        if self._stopping:
            # Too late to start: queued again at once, like the runs a shutdown interrupts.
            for claim in claims:
                self.io.loop.create_task(self._give_back(claim))
            return
        loop = asyncio.get_running_loop()
        for claim in claims:
            self._start(loop, claim)

    async def _give_back(self, claim: Claimed) -> None:
        try:
            await self.queue.fail(
                claim.id,
                self.owner,
                claim.attempts,
                error="interrupted by a shutdown before it started",
                node=claim.next_node,
                retry_in_ms=0,
                given_back=True,
            )
        except Exception:
            # Its lease lapses, and another instance (or the next start) takes it over.
            log.exception("durable run %s: not given back at shutdown", claim.id)

    def stop(self, timeout: float) -> None:
        """Stop claiming; runs still executing after ``timeout`` are killed and queued
        again at once, from their last checkpoint, for another instance (or the next start)."""
        self._stopping = True
        if self._task is None:  # never started
            self._pool.shutdown(wait=False)
            return
        self.wake()
        if self._task is not None:
            try:
                self._task.result(timeout=5.0)
            except Exception:
                log.exception("durable worker did not stop cleanly")
        deadline = time.monotonic() + timeout
        while self._active and time.monotonic() < deadline:
            time.sleep(0.05)
        processes = self.host.engine.services.processes
        for claim in list(self._active.values()):
            processes.kill(execution_wid(claim))
        self._pool.shutdown(wait=True)

    # the loop ------------------------------------------------------------------------------
    async def _main(self) -> None:
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        next_beat = 0.0
        next_prune = time.monotonic() + 5.0
        next_sweep = 0.0
        while not self._stopping:
            claimed: list[Claimed] = []
            free = self._concurrency - len(self._active) - self._reserved
            try:
                # Lapsed leases and due waits are looked for once per poll interval; the
                # queue itself also when a slot is free and it may hold runs.
                sweep = free > 0 and time.monotonic() >= next_sweep
                if sweep or (free > 0 and self._more):
                    if sweep:
                        next_sweep = time.monotonic() + self._poll
                    claimed = await self.queue.claim(self.owner, free, self._lease, sweep=sweep)
                    self._more = len(claimed) == free
                    for claim in claimed:
                        self._start(loop, claim)
                now = time.monotonic()
                if self._active and now >= next_beat:
                    next_beat = now + self._lease / 3
                    await self._heartbeat()
                if now >= next_prune:
                    next_prune = now + _PRUNE_EVERY
                    await self._prune()
            except StoreError as exc:
                log.warning("durable worker: %s; trying again in 1 s", exc)
                await asyncio.sleep(1.0)
                continue
            except Exception:
                # asyncpg's own errors, or a bug: the loop must outlive them, or this
                # process would stop taking work while still serving.
                log.exception("durable worker: unexpected error; trying again in 1 s")
                await asyncio.sleep(1.0)
                continue
            if claimed and len(claimed) == free:
                await asyncio.sleep(0)  # a full batch: more may be due
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)

    def _start(self, loop: asyncio.AbstractEventLoop, claim: Claimed) -> None:
        self._active[claim.id] = claim
        if claim.previous_owner:
            log.warning(
                "durable run %s taken over from %s (its lease lapsed): resuming at node %s "
                "after %d checkpointed nodes",
                claim.id,
                claim.previous_owner,
                claim.next_node or "-",
                claim.steps,
                extra={"wid": claim.id, "app": claim.app},
            )
        future = loop.run_in_executor(
            self._pool, contextvars.copy_context().run, self._execute, claim
        )
        future.add_done_callback(functools.partial(self._finished, claim.id))

    def _finished(self, run_id: str, future: asyncio.Future[None]) -> None:
        self._active.pop(run_id, None)
        self.executed += 1
        if not future.cancelled() and future.exception() is not None:
            log.error(
                "durable run %s: execution crashed",
                run_id,
                exc_info=future.exception(),
                extra={"wid": run_id},
            )
        if self._wake is not None:
            self._wake.set()

    async def _heartbeat(self) -> None:
        held = [(c.id, c.attempts) for c in self._active.values()]
        kept = await self.queue.heartbeat(self.owner, held, self._lease)
        missing = [(run_id, attempt) for run_id, attempt in held if run_id not in kept]
        if not missing:
            return
        # Most of these just ended (or parked) while the renewal was under way.
        processes = self.host.engine.services.processes
        for run_id in await self.queue.taken_away(self.owner, missing):
            claim = self._active.get(run_id)
            if claim is not None:
                log.warning(
                    "durable run %s: cancelled or taken over; stopping it here",
                    run_id,
                    extra={"wid": run_id},
                )
                processes.kill(execution_wid(claim))

    async def _prune(self) -> None:
        keep_days = self.host.durable_config().keep_days
        removed = await self.queue.prune(now_us() - int(keep_days * 86400 * 1_000_000))
        if removed:
            log.info("durable runs: %d ended runs older than %g days deleted", removed, keep_days)

    # one execution (in a pool thread) ------------------------------------------------------
    def _execute(self, claim: Claimed) -> None:
        config = self.host.durable_config()
        found = self.host.durable_playbook(claim.app, claim.version)
        if found is None:
            self._failed(
                claim,
                config,
                None,
                ExecutionError(f"app {claim.app!r} is not served by this instance"),
                claim.node_attempts,
            )
            return
        playbook, catalog = found
        max_attempts, _ = _policy(config, playbook.name, playbook.nodes.get(claim.next_node))
        if claim.node_attempts > max_attempts:
            # Only instance deaths get here: a failure is judged when it happens.
            self._failed(
                claim,
                config,
                playbook,
                ExecutionError(
                    f"node {claim.next_node} did not finish in {max_attempts} attempts: the "
                    "instance running it stopped each time",
                    node=claim.next_node,
                ),
                claim.node_attempts,
            )
            return
        request, endpoint, auth = decode_request(claim.request)
        saved = orjson.loads(claim.sessions)
        sessions = Sessions({str(k): dict(v) for k, v in saved.items()})
        execution = DurableExecution(
            queue=self.queue,
            io=self.io,
            claim=claim,
            owner=self.owner,
            lease_seconds=self._lease,
            park_sleep_ms=config.park_sleep_ms,
            max_wait_ms=int(config.max_wait_seconds * 1000),
        )
        fresh = claim.steps == 0
        result = self.host.engine.run(
            playbook=playbook,
            start=claim.next_node,
            request=request,
            endpoint=endpoint,
            vars=orjson.loads(claim.vars),
            sessions=sessions,
            resume=not fresh,
            auth=auth and fresh and claim.kind == "request",
            wid=execution_wid(claim),
            payload=orjson.loads(claim.payload) or None,
            isolated=claim.kind == "fork",
            catalog=catalog,
            parent_run=claim.parent_id,
            checkpoint=execution,
        )
        if execution.completed or execution.parked or execution.lost:
            return
        error = result.error
        if error is None:
            self._call(self.queue.complete(claim.id, self.owner, claim.attempts, _ok(result)))
            return
        if self._stopping:
            # Killed by this instance's shutdown: queued again at once, not counted.
            self._call(
                self.queue.fail(
                    claim.id,
                    self.owner,
                    claim.attempts,
                    error=f"interrupted by a shutdown at node {error.node}",
                    node=error.node,
                    retry_in_ms=0,
                    given_back=True,
                )
            )
            return
        self._failed(claim, config, playbook, error, execution.node_attempt)

    def _failed(
        self,
        claim: Claimed,
        config: DurableConfig,
        playbook: Playbook | None,
        error: ExecutionError,
        node_attempt: int,
    ) -> None:
        node = playbook.nodes.get(error.node) if playbook is not None and error.node else None
        max_attempts, backoff_ms = _policy(config, claim.app, node)
        retry: int | None = None
        if node_attempt < max_attempts:
            retry = min(_MAX_BACKOFF_MS, backoff_ms * 2 ** max(0, node_attempt - 1))
        self._call(
            self.queue.fail(
                claim.id,
                self.owner,
                claim.attempts,
                error=error.message,
                node=error.node,
                retry_in_ms=retry,
            )
        )
        log.warning(
            "durable run %s failed at node %s (attempt %d of %d): %s; %s",
            claim.id,
            error.node or "-",
            node_attempt,
            max_attempts,
            error.message,
            f"retrying in {retry} ms" if retry is not None else "no attempts left: failed",
            extra={"wid": claim.id, "app": claim.app, "node": error.node},
        )

    def _call(self, coro: Any) -> Any:
        return self.io.call(coro, timeout=60.0)


def _ok(result: Any) -> str:
    return response_json(result.response)


def _policy(config: DurableConfig, app: str, node: Node | None) -> tuple[int, int]:
    """Attempts and first backoff for ``node``: its data, else the app's, else the server's."""
    attempts, backoff = config.max_attempts, config.retry_backoff_ms
    own = config.apps.get(app)
    if own is not None:
        attempts = own.max_attempts if own.max_attempts is not None else attempts
        backoff = own.retry_backoff_ms if own.retry_backoff_ms is not None else backoff
    if node is not None:
        attempts = _int(node, "max_attempts", attempts, low=1)
        backoff = _int(node, "retry_backoff_ms", backoff, low=0)
    return attempts, backoff


def _int(node: Node, name: str, default: int, *, low: int) -> int:
    value = node.data.get(name)
    if value is None or value == "":
        return default
    try:
        if isinstance(value, bool | float):
            raise ValueError(value)
        number = int(str(value))
    except ValueError:
        # nflow check reports it as an error; a run in flight goes on with the default.
        log.warning(
            "node %s: %s must be a whole number, got %r; using %d",
            node.id,
            name,
            value,
            default,
        )
        return default
    return max(low, number)
