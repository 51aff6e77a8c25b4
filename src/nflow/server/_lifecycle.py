"""A worker process's part in the process model: graceful stop, rebalancing, no orphans.

**SIGTERM** (from the master, at shutdown): granian's own stop closes idle keep-alive
connections at once, and a request a client has just sent on one is lost with it (the client
sees the connection close with no answer). So the worker first *drains*: every response gets
``Connection: close``, which tells each busy client to stop using its connection after the
answer, until no request has arrived for a quarter of a second (at most
:data:`DRAIN_MAX_SECONDS`). Only then does it start granian's stop (by raising SIGINT, which
granian handles the same way), which answers the requests still running and closes the rest.
A client that sends nothing during the drain and then sends at the very moment its idle
connection is closed can still lose that request: granian (hyper) closes idle connections
without reading them, and nothing on this side can change that.

**SIGUSR1** (from the master, after a sibling was replaced): for :data:`REBALANCE_SECONDS`
every response gets ``Connection: close``; clients reconnect and the kernel spreads the new
connections over every worker, the replacement included. A new worker sends SIGUSR1 to the
master once it serves.

**The master vanishing** (``kill -9``): a thread notices the parent change within
:data:`ORPHAN_POLL_SECONDS`, stops the worker the graceful way and ends the process at most
:data:`ORPHAN_EXIT_SECONDS` later, so no unsupervised worker keeps the port.
"""

from __future__ import annotations

__all__ = [
    "DRAIN_MAX_SECONDS",
    "ORPHAN_EXIT_SECONDS",
    "ORPHAN_POLL_SECONDS",
    "REBALANCE_SECONDS",
    "WorkerLifecycle",
]

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from typing import Protocol

from nflow.logs import access_log

log = logging.getLogger("nflow.server")

DRAIN_QUIET_SECONDS = 0.25
DRAIN_MAX_SECONDS = 2.0
REBALANCE_SECONDS = 1.0
ORPHAN_POLL_SECONDS = 0.2
ORPHAN_EXIT_SECONDS = 1.2
READY_DELAY_SECONDS = 0.2


class Closable(Protocol):
    """The app's side: a flag read on every response, and a count of requests."""

    close_connections: bool
    served: int


class WorkerLifecycle:
    def __init__(self, app: Closable, *, shutdown_timeout: float, master: int) -> None:
        self._app = app
        # The master's pid as the master wrote it, not getppid() now: a worker still
        # building its runtime when the master was killed has been re-parented already.
        self._master = master
        self._drain_max = min(DRAIN_MAX_SECONDS, shutdown_timeout / 2)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.draining = False
        # Set when the master vanished: this worker's stop is not the server's clean stop.
        self.orphaned = False
        self._stop = threading.Event()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take over SIGTERM and SIGUSR1 on the worker's loop (after granian set its own)."""
        self._loop = loop
        loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)
        loop.add_signal_handler(signal.SIGUSR1, self._on_sibling_replaced)
        threading.Thread(target=self._watch_master, name="nflow-orphan", daemon=True).start()
        # Tell the master this worker serves: run once the loop runs, i.e. after granian
        # started listening.
        loop.call_later(READY_DELAY_SECONDS, self._notify_master)

    def close(self) -> None:
        self._stop.set()

    # SIGTERM: drain, then granian's stop -----------------------------------------------------
    def _on_sigterm(self) -> None:
        if self.draining:
            return
        self.draining = True
        self._app.close_connections = True
        assert self._loop is not None
        started = self._loop.time()
        log.info("stopping: answering with Connection: close before closing connections")
        self._loop.call_later(DRAIN_QUIET_SECONDS, self._drained, started, self._app.served)

    def _drained(self, started: float, seen: int) -> None:
        assert self._loop is not None
        served = self._app.served
        if served != seen and self._loop.time() - started < self._drain_max:
            self._loop.call_later(DRAIN_QUIET_SECONDS, self._drained, started, served)
            return
        # granian's handler for SIGINT is its graceful stop; SIGTERM is ours now.
        os.kill(os.getpid(), signal.SIGINT)

    # SIGUSR1: a sibling was replaced -----------------------------------------------------------
    def _on_sibling_replaced(self) -> None:
        if self.draining:
            return
        self._app.close_connections = True
        log.info(
            "a sibling worker was replaced: closing keep-alive connections for %gs so that "
            "clients spread over all workers",
            REBALANCE_SECONDS,
        )
        assert self._loop is not None
        self._loop.call_later(REBALANCE_SECONDS, self._rebalanced)

    def _rebalanced(self) -> None:
        if not self.draining:
            self._app.close_connections = False

    def _notify_master(self) -> None:
        if os.getppid() == self._master:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._master, signal.SIGUSR1)

    # The master vanishing ----------------------------------------------------------------------
    def _watch_master(self) -> None:
        while not self._stop.wait(ORPHAN_POLL_SECONDS):
            if os.getppid() != self._master:
                break
        else:
            return
        self.orphaned = True
        log.error("the master process (pid %d) is gone; this worker stops", self._master)
        os.kill(os.getpid(), signal.SIGINT)  # granian's graceful stop, no drain
        # Requests still running get this long; a process that ends sooner takes this
        # daemon thread with it.
        time.sleep(ORPHAN_EXIT_SECONDS)
        access_log().flush()
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)
