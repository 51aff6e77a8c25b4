"""Durable runs: async starts, checkpoints after every node, retries, durable waits.

A durable run is accepted into a queue table in nflow's database (``accept``) and executed by
the durable worker of whichever process claims it. After each node its state is committed
before the next node starts, so when an instance dies another one resumes the run from its
last checkpoint once the lease lapses; a failed node is retried with backoff; a long
``sleep`` or ``wait_for_signal`` parks the run without holding a thread. The same code runs
on PostgreSQL (a cluster) and SQLite (one instance).
"""

from __future__ import annotations

__all__ = [
    "ENDED",
    "STATUSES",
    "DurableRuns",
    "NewRun",
    "Queue",
    "RunHost",
    "RunView",
    "encode_request",
    "encode_sessions",
    "wants_async",
]

import asyncio

from nflow._http import Request
from nflow._io import IoLoop
from nflow.config import DurableConfig
from nflow.security import KeyRing
from nflow.store import Store, normalise_url

from ._codec import encode_request, encode_sessions
from ._pg import PgPath
from ._queue import ENDED, STATUSES, NewRun, Queue, RunView
from ._worker import DurableWorker, RunHost


def wants_async(request: Request) -> bool:
    """Whether the client asked for ``Prefer: respond-async`` (RFC 7240)."""
    for value in request.headers.get("Prefer", ()):
        for part in value.split(","):
            if part.split(";", 1)[0].strip().lower() == "respond-async":
                return True
    return False


class DurableRuns:
    """One process's durable runs: the queue, and the worker executing from it.

    ``open`` and ``close`` run on nflow's I/O loop (``io.run``/``io.call``); ``accept`` may
    be awaited from any loop through ``io.run``.
    """

    def __init__(
        self,
        *,
        url: str,
        io: IoLoop,
        host: RunHost,
        config: DurableConfig,
        keyring: KeyRing | None = None,
    ) -> None:
        # A pool of its own: checkpoints never wait behind the apps' queries, nor they behind
        # checkpoints.
        # Every statement here is on the run's path: no ping round trip per transaction (a
        # dropped connection fails one statement, and leases cover that), and commits that
        # need not wait for the WAL flush: a checkpoint must outlive nflow's death, not
        # PostgreSQL's (accepting a run asks for the flush again).
        self.store = Store(
            url,
            pool_size=config.concurrency + 2,
            migrate=False,
            pre_ping=False,
            pg_settings={"synchronous_commit": "off"},
        )
        fast = None
        if self.store.dialect == "postgresql":
            libpq = normalise_url(url).set(drivername="postgresql")
            dsn = libpq.render_as_string(hide_password=False)
            fast = PgPath(dsn, config.concurrency + 2)
        self.queue = Queue(self.store, fast=fast, keyring=keyring)
        self.worker = DurableWorker(queue=self.queue, io=io, host=host, config=config)
        self._pending: list[tuple[NewRun, asyncio.Future[None]]] = []
        self._flushing = False

    async def open(self, *, worker: bool = True) -> None:
        """Connect; with ``worker``, start executing runs from the queue."""
        await self.store.open()
        if self.queue.fast is not None:
            await self.queue.fast.open()
        if worker:
            self.worker.start()

    async def close_store(self) -> None:
        """After ``close``: the connections."""
        if self.queue.fast is not None:
            await self.queue.fast.close()
        await self.store.close()

    async def accept(self, run: NewRun) -> None:
        """Commit ``run`` to the queue (then it is never lost) and wake this worker.

        Runs accepted while a commit is under way go together in the next one: one disk
        flush for many concurrent accepts, and none waits longer than two commits."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((run, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await future

    async def _flush(self) -> None:
        # On the I/O loop, like the worker: the runs this worker has room for are committed
        # already leased to it and start at once, without a claim statement; the rest wait
        # in the queue for any instance's worker.
        worker = self.worker
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                reserved = worker.reserve(len(batch))
                try:
                    taken = await self.queue.enqueue(
                        [run for run, _ in batch],
                        owner=worker.owner,
                        take=reserved,
                        lease_seconds=worker.lease_seconds,
                    )
                except Exception as exc:
                    worker.adopt(reserved, [])
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    worker.adopt(reserved, taken)
                    if len(taken) < len(batch):
                        worker.wake()
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._flushing = False

    def close(self, timeout: float) -> None:
        """Blocking; not on the I/O loop. See DurableWorker.stop."""
        self.worker.stop(timeout)
