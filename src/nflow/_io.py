"""A private event loop on its own thread for host I/O (database, later HTTP and mail).

Script steps call host functions synchronously, as goja did. Those functions must wait for
async I/O without owning an event loop: they submit coroutines here and block on the result.
Because this loop is not the server's, a step that runs on the server loop can still wait on
it without deadlocking; the server awaits the same loop through :meth:`IoLoop.run`.
"""

from __future__ import annotations

__all__ = ["IO_WAIT", "IoLoop", "IoWait"]

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

# Waits for a submitted call's future (with call()'s timeout) instead of blocking the thread.
IoWait = Callable[[concurrent.futures.Future[Any], float | None], Any]
# Set only inside a host call that a script awaits (in that call's own greenlet context): the
# call hands its future to whoever runs it, so several calls of one step wait at once on one
# thread (see nflow.jsapi._async).
IO_WAIT: ContextVar[IoWait | None] = ContextVar("nflow_io_wait", default=None)


class IoLoop:
    def __init__(self, *, name: str = "nflow-io") -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call(self, coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run ``coro`` on the I/O loop and block this thread until it finishes.

        Raises TimeoutError after ``timeout`` seconds (the call is then cancelled). Inside an
        awaited host call, the waiting is handed to :data:`IO_WAIT` with the same contract.
        """
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("IoLoop.call from the I/O thread itself would deadlock")
        future = self.submit(coro)
        wait = IO_WAIT.get()
        if wait is not None:
            return wait(future, timeout)  # type: ignore[no-any-return]
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("I/O call timed out") from None

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the I/O loop from another running loop."""
        return await asyncio.wrap_future(self.submit(coro))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()
