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

from nflow._http import Request
from nflow._io import IoLoop
from nflow.config import DurableConfig
from nflow.store import Store

from ._codec import encode_request, encode_sessions
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

    def __init__(self, *, url: str, io: IoLoop, host: RunHost, config: DurableConfig) -> None:
        # A pool of its own: checkpoints never wait behind the apps' queries, nor they behind
        # checkpoints.
        self.store = Store(url, pool_size=config.concurrency + 2, migrate=False)
        self.queue = Queue(self.store)
        self.worker = DurableWorker(queue=self.queue, io=io, host=host, config=config)

    async def open(self) -> None:
        await self.store.open()
        self.worker.start()

    async def accept(self, run: NewRun) -> None:
        """Commit ``run`` to the queue (then it is never lost) and wake this worker."""
        await self.queue.enqueue(run)
        self.worker.wake()

    def close(self, timeout: float) -> None:
        """Blocking; not on the I/O loop. See DurableWorker.stop."""
        self.worker.stop(timeout)
