"""Host calls a script awaits: several waiting at once, all on the step's own thread.

``http_get_async(url)`` (and every ``<name>_async`` twin of a host function that waits on
the I/O loop) starts the same host function as the synchronous form, through the same entry
(counted, intercepted, recorded), in a greenlet of its own. The function runs until it
waits in :meth:`~nflow._io.IoLoop.call`; there the greenlet hands the I/O loop's future over
(:data:`~nflow._io.IO_WAIT`) and the script gets a Promise at once. Once the step's promise
jobs are drained, the VM asks :meth:`AwaitedCalls.next_batch` for the calls that returned
(waiting for the first one when none has), resumes their greenlets, and settles their
promises in the order they returned.

Why greenlets rather than a thread pool: the host functions, the run's context and its
recorder keep running on one thread, as they do for synchronous calls; only the I/O waits
overlap (on the I/O loop, which was already doing it). A greenlet costs microseconds where a
thread hop and a lock per recorded call would cost more, and an unfinished call can be
cancelled on the I/O loop when the step times out.

Replays see the same order: the batch of calls each wait returned is itself recorded, as a
host call named :data:`SETTLED_CALL`, and a replay hands the promises their results in the
recorded batches.
"""

from __future__ import annotations

__all__ = ["SETTLED_CALL", "AwaitedCalls", "in_flight_error"]

import concurrent.futures
import contextvars
import functools
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nflow._io import IO_WAIT
from nflow.jsapi._context import HostError
from nflow.jsapi._host import HostCaller, RunKilled
from nflow.sandbox import JsTimeout

if TYPE_CHECKING:
    import greenlet

# The host call that records which awaited calls each wait returned (its result: their ids).
SETTLED_CALL = "nflow.settled"
# How often a wait looks at the run's kill flag.
_KILL_POLL_SECONDS = 0.25


def in_flight_error(limit: int) -> HostError:
    return HostError(
        f"more than {limit} host calls in flight at once (limits.max_concurrent_host_calls): "
        "await some before starting more"
    )


class _Call:
    __slots__ = ("done", "failure", "future", "glet", "id", "message", "ok", "until", "value")

    def __init__(self, call_id: int) -> None:
        self.id = call_id
        self.glet: greenlet.greenlet | None = None
        # The I/O it waits on now, and until when (call()'s own timeout).
        self.future: concurrent.futures.Future[Any] | None = None
        self.until = float("inf")
        self.done = False
        self.ok = False
        self.value: object = None
        self.message = ""  # a HostError's, for the script
        self.failure: BaseException | None = None  # anything else ends the step


class AwaitedCalls:
    """The awaited host calls of the step running now on one VM (one thread)."""

    def __init__(self, entries: Mapping[str, Callable[..., object]], caller: HostCaller) -> None:
        self._entries = entries
        self._caller = caller
        self._calls: dict[int, _Call] = {}
        self._seq = 0

    @property
    def pending(self) -> bool:
        return bool(self._calls)

    def start(self, name: str, args: list[Any]) -> int:
        """Start host function ``name``; its id, for the JS promise that waits on it."""
        ctx = self._caller.ctx
        if ctx is None:
            raise HostError("no run is active")
        entry = self._entries.get(name)
        if entry is None:
            raise HostError(f"{name} cannot be awaited")
        limit = ctx.limits.max_concurrent_host_calls
        if len(self._calls) >= limit:
            raise in_flight_error(limit)
        if not self._calls:
            self._seq = 0  # ids count from 1 in each step, as its replay does
        self._seq += 1
        call = _Call(self._seq)
        import greenlet  # loaded by the first awaited call, not by every worker

        glet = greenlet.greenlet(functools.partial(self._body, call, entry, tuple(args)))
        # Its own copy of the step's context (log fields, tracing), where IO_WAIT is set.
        glet.gr_context = contextvars.copy_context()
        call.glet = glet
        self._calls[call.id] = call
        glet.switch()
        if call.done and call.failure is not None:
            # A kill, a limit, a replay that diverged: raised where the synchronous call
            # would have raised it.
            del self._calls[call.id]
            raise call.failure
        return call.id

    def _body(self, call: _Call, entry: Callable[..., object], args: tuple[Any, ...]) -> None:
        IO_WAIT.set(functools.partial(self._wait, call))
        try:
            call.value = entry(*args)
            call.ok = True
        except HostError as exc:
            call.message = str(exc)
            self._caller.host_error = None  # delivered with the rejection, not through ERR()
        except BaseException as exc:  # a kill, a bug, a cancellation: the step's problem
            call.failure = exc
        call.done = True
        call.future = None

    def _wait(
        self, call: _Call, future: concurrent.futures.Future[Any], timeout: float | None
    ) -> Any:
        # Runs in the call's greenlet: park it until next_batch resumes it with the outcome.
        call.future = future
        call.until = float("inf") if timeout is None else time.monotonic() + timeout
        glet = call.glet
        assert glet is not None and glet.parent is not None
        return glet.parent.switch()

    def next_batch(self, deadline: float) -> list[list[object]]:
        """``[id, ok, result or message]`` of calls that returned, waiting for one if none
        has; raises JsTimeout at ``deadline`` (the step's), RunKilled if the run is killed."""
        ctx = self._caller.ctx
        live = functools.partial(self._returned, deadline)
        interceptor = ctx.host_interceptor if ctx is not None else None
        ids = interceptor.around(SETTLED_CALL, (), live) if interceptor is not None else live()
        chosen = [
            i
            for i in (ids if isinstance(ids, list) else [])
            if isinstance(i, int) and i in self._calls and self._calls[i].done
        ]
        if not chosen:  # a replay whose record does not fit: keep going in start order
            chosen = [c.id for c in self._calls.values() if c.done] or self._returned(deadline)
        batch: list[list[object]] = []
        for call_id in chosen:
            call = self._calls.pop(call_id)
            if call.failure is not None:
                self.cancel()
                raise call.failure
            batch.append([call.id, call.ok, call.value if call.ok else call.message])
        return batch

    def _returned(self, deadline: float) -> list[int]:
        """Wait until at least one call has returned; their ids, in start order."""
        while True:
            done = [c.id for c in self._calls.values() if c.done]
            if done:
                return done
            now = time.monotonic()
            if now >= deadline:
                self.cancel()
                raise JsTimeout("script exceeded its time limit while awaiting host calls")
            waiting = {c.future: c for c in self._calls.values() if c.future is not None}
            until = min([deadline, now + _KILL_POLL_SECONDS, *(c.until for c in waiting.values())])
            finished, _ = concurrent.futures.wait(
                waiting,
                timeout=max(0.0, until - now),
                return_when=concurrent.futures.FIRST_COMPLETED,
            )
            ctx = self._caller.ctx
            process = ctx.process if ctx is not None else None
            if process is not None and process.killed:
                self.cancel()
                raise RunKilled(ctx.wid if ctx is not None else "")
            now = time.monotonic()
            for future, call in waiting.items():
                if future in finished:
                    self._resume(call, future)
                elif call.until <= now:
                    future.cancel()
                    self._throw(call, TimeoutError("I/O call timed out"))

    def _resume(self, call: _Call, future: concurrent.futures.Future[Any]) -> None:
        call.future = None
        glet = call.glet
        assert glet is not None
        try:
            value = future.result()
        except BaseException as exc:
            glet.throw(exc)
        else:
            glet.switch(value)

    @staticmethod
    def _throw(call: _Call, exc: BaseException) -> None:
        call.future = None
        if call.glet is not None:
            call.glet.throw(exc)

    def cancel(self) -> None:
        """Stop every unfinished call (the step ends without them): their I/O is cancelled
        on the loop and their greenlets unwound here, on their own thread."""
        calls, self._calls = list(self._calls.values()), {}
        for call in calls:
            if call.future is not None:
                call.future.cancel()
            glet = call.glet
            if glet is not None and not glet.dead:
                glet.throw()  # GreenletExit
            call.glet = None
