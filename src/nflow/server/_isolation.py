"""Routes that hit a time or memory limit run in a child process for a while.

A JS evaluation holds the GIL until it ends, so an endless loop or a memory bomb on a worker's
event loop stalls every other request of that worker until its limit stops it (and a memory
bomb also pays for tearing down and rebuilding its runtime). After a route hits such a limit,
its next requests are handed to one child process of the worker (``limits.isolate_seconds``):
the child has a runtime of its own, built from the same spec as the worker, gets the CPU only
when the workers leave it idle (``SCHED_IDLE``; nice 10 where that is unavailable), and the
worker's event loop only waits for the answer, serving other requests meanwhile.

The child starts on first use and stops after ``IDLE_SECONDS`` without work. A child that
dies (the watchdog ends a script stuck in native code) is replaced on the next request.
Only ``nflow serve`` workers isolate: the child is built from the serve spec.
"""

from __future__ import annotations

__all__ = ["CHILD_ENV", "GRACE_SECONDS", "Isolator"]

import asyncio
import contextlib
import logging
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import TYPE_CHECKING, Any

from nflow._http import Request, Response
from nflow.quarantine import Quarantine

if TYPE_CHECKING:
    from nflow.runtime import Runtime

log = logging.getLogger("nflow.isolation")

CHILD_ENV = "NFLOW_ISOLATION_CHILD"
IDLE_SECONDS = 5.0
# Past the run's own limits (and the child's start-up), the worker gives up on the child and
# replaces it.
GRACE_SECONDS = 5.0
# Requests of isolated routes waiting for the child, per worker; more answer 503 at once, so
# a client cannot pile up work (and request bodies) behind a child that is busy or starved.
MAX_WAITING = 32
# A child that used less CPU than this share of the time it was waited for was starved (kept),
# not stuck (replaced).
STARVED_SHARE = 0.5
CHILD_NICENESS = 10

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# status, body, headers, app, route, wid, and the limit the run hit ("" for none)
_ResponseTuple = tuple[int, bytes, list[tuple[str, str]], str, str, str, str]


class Isolator:
    """One child process per worker for the requests of isolated routes."""

    def __init__(self, *, seconds: float) -> None:
        self.seconds = seconds
        self._until: dict[tuple[str, str], float] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._busy = 0
        self._last_used = 0.0
        self._idle_check: asyncio.TimerHandle | None = None

    def isolated(self, key: tuple[str, str]) -> bool:
        if not self._until:  # the common case: one falsy check per request
            return False
        until = self._until.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        self._until.pop(key, None)
        return False

    def isolate(self, key: tuple[str, str]) -> None:
        """Send ``key``'s next requests to the child for ``seconds``."""
        if len(self._until) > 10_000:  # routes come from loaded apps; stay bounded anyway
            self._until.clear()
        self._until[key] = time.monotonic() + self.seconds

    async def run(self, request: Request, *, digest: str, timeout: float) -> Response:
        """The child's answer to ``request``; its ``limit`` names the limit the run hit.

        ``timeout`` is the route's own request time limit; the worker waits that long plus
        :data:`GRACE_SECONDS`. A child that used its CPU for that long without answering is
        stuck: it is replaced, and the request gets 500 with ``limit`` ``"time"``.
        A child that got too little CPU (the workers kept every CPU busy) is only starved: it
        is kept, warm, and the request gets 503 with ``Retry-After``.
        """
        if self._busy >= MAX_WAITING:
            return _busy(
                f"{self._busy} requests of isolated routes are waiting for this worker's "
                "child process; try again later"
            )
        wait = timeout + GRACE_SECONDS
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=_LowPriorityContext(), initializer=_child_start
            )
        pool = self._pool
        fields = _request_fields(request)
        self._busy += 1
        try:
            # Submitting starts the child if it is not running yet, so its PID is known now.
            future = loop.run_in_executor(pool, _child_handle, fields, digest)
            pid = next(iter(getattr(pool, "_processes", None) or ()), None)
            cpu_before = _cpu_seconds(pid)
            result: _ResponseTuple = await asyncio.wait_for(future, wait)
        except BrokenProcessPool:
            self._drop(pool)
            return _failure(
                "the isolated run of this route ended its process "
                "(a script stuck past its limits is stopped by the watchdog)"
            )
        except TimeoutError:
            cpu_after = _cpu_seconds(pid)
            starved = (
                cpu_before is not None
                and cpu_after is not None
                and cpu_after - cpu_before < STARVED_SHARE * wait
            )
            if starved:
                return _busy(
                    f"the isolated run of this route got no CPU for {wait:g}s: isolated "
                    "routes run only on CPU the workers leave idle"
                )
            self._drop(pool, kill=True)
            stuck = _failure(f"the isolated run of this route took longer than {wait:g}s")
            stuck.limit = "time"
            return stuck
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this request itself was cancelled
            # The child was replaced (another request found it stuck) while this one waited.
            return _busy("the isolated child process was replaced; try again")
        finally:
            self._busy -= 1
            self._last_used = time.monotonic()
            if self._idle_check is None:
                self._idle_check = loop.call_later(IDLE_SECONDS, self._stop_if_idle)
        status, body, headers, app, route, wid, limit = result
        response = Response(status, body, headers)
        response.app, response.route, response.wid, response.limit = app, route, wid, limit
        return response

    def _stop_if_idle(self) -> None:
        self._idle_check = None
        if self._pool is None:
            return
        idle = time.monotonic() - self._last_used
        if self._busy == 0 and idle >= IDLE_SECONDS:
            self._drop(self._pool)
            return
        self._idle_check = asyncio.get_running_loop().call_later(
            max(0.1, IDLE_SECONDS - idle), self._stop_if_idle
        )

    def _drop(self, pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
        if pool is self._pool:
            self._pool = None
        if kill:
            # A child stuck in native code never takes the next work item: end it by its PID.
            for process in list(getattr(pool, "_processes", {}).values()):
                with contextlib.suppress(OSError, AttributeError):
                    os.kill(process.pid, signal.SIGKILL)
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._idle_check is not None:
            self._idle_check.cancel()
            self._idle_check = None
        if self._pool is not None:
            self._drop(self._pool)


def _request_fields(request: Request) -> dict[str, Any]:
    return {
        "method": request.method,
        "path": request.path,
        "query_string": request.query_string,
        "headers": list(request.header_items),
        "body": request.body,
        "client": request.client,
        "scheme": request.scheme,
        "host": request.host,
    }


def _cpu_seconds(pid: int | None) -> float | None:
    """CPU time ``pid`` has used (Linux /proc), or None where unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def _busy(message: str) -> Response:
    response = _failure(message, status=503)
    response.headers.append(("retry-after", "1"))
    return response


def _failure(message: str, *, status: int = 500) -> Response:
    from nflow.golang.json import dumps as go_json

    return Response(
        status,
        go_json({"code": status, "message": message}),
        [("content-type", "application/json")],
    )


class _LowPriorityProcess(SpawnProcess):
    """A spawned child whose CPU priority its parent lowers as soon as the child exists.

    The child's start-up (a fresh interpreter importing nflow, about a CPU-second) is its
    costliest part and runs before any code of ours does in it, so the parent sets the
    priority rather than the child.
    """

    def start(self) -> None:
        super().start()
        if self.pid is not None:
            lower_priority(self.pid)


class _LowPriorityContext(SpawnContext):
    Process = _LowPriorityProcess


def lower_priority(pid: int) -> None:
    """Give ``pid`` the CPU only when nothing else wants it.

    Suspect routes must not slow the good requests down, only themselves. ``SCHED_IDLE``
    (Linux) does that: the process runs only on a CPU that would otherwise be idle. With a
    plain ``nice 10`` two children still took a fifth of a busy 2-CPU machine. Elsewhere,
    or when the policy is refused, nice 10 is the fallback.
    """
    idle = getattr(os, "SCHED_IDLE", None)
    if idle is not None:
        try:
            os.sched_setscheduler(pid, idle, os.sched_param(0))
            return
        except OSError:
            pass
    with contextlib.suppress(OSError):
        os.setpriority(
            os.PRIO_PROCESS, pid, max(CHILD_NICENESS, os.getpriority(os.PRIO_PROCESS, pid))
        )


def priority_of(pid: int) -> str:
    """How ``pid`` is scheduled, for logs: ``idle (SCHED_IDLE)`` or ``nice N``."""
    idle = getattr(os, "SCHED_IDLE", None)
    with contextlib.suppress(OSError, AttributeError):
        if idle is not None and os.sched_getscheduler(pid) == idle:
            return "idle (SCHED_IDLE)"
    return f"nice {os.getpriority(os.PRIO_PROCESS, pid)}"


# --- the child ----------------------------------------------------------------------------
_child: tuple[asyncio.AbstractEventLoop, Runtime] | None = None


def _child_start() -> None:
    started = time.monotonic()
    os.environ[CHILD_ENV] = "1"
    # What the imports so far ran at: the parent has lowered it (see _LowPriorityProcess);
    # lowering again is a no-op then, and covers a parent that could not.
    priority = priority_of(0)
    lower_priority(0)
    from nflow.server._worker import worker_runtime

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    runtime = worker_runtime()
    # The worker executes durable runs; a child that may be killed at any time does not.
    runtime.durable_worker = False
    # The worker counts this child's limit hits (each answer says which limit it hit): a
    # count of the child's own would start again with every new child.
    runtime.quarantine = Quarantine(hits=0, seconds=runtime.quarantine.seconds)
    loop.run_until_complete(runtime.open())
    global _child
    _child = (loop, runtime)
    log.info(
        "isolation child %d of worker %d ready (runtime opened in %.2fs), CPU priority %s "
        "from its start",
        os.getpid(),
        os.getppid(),
        time.monotonic() - started,
        priority,
    )


def _child_handle(fields: dict[str, Any], digest: str) -> _ResponseTuple:
    assert _child is not None
    loop, runtime = _child
    if digest not in runtime.digests():
        # The worker serves a newer version of the app than this child loaded.
        loop.run_until_complete(runtime.reload())
    method = fields.pop("method")
    path = fields.pop("path")
    response = loop.run_until_complete(runtime.handle(Request(method, path, **fields)))
    return (
        response.status,
        response.body,
        list(response.headers),
        response.app,
        response.route,
        response.wid,
        response.limit,
    )
