"""A private event loop on its own thread for host I/O (database, later HTTP and mail).

Script steps call host functions synchronously, as goja did. Those functions must wait for
async I/O without owning an event loop: they submit coroutines here and block on the result.
Because this loop is not the server's, a step that runs on the server loop can still wait on
it without deadlocking; the server awaits the same loop through :meth:`IoLoop.run`.
"""

from __future__ import annotations

__all__ = ["IoLoop"]

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


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
        """Run ``coro`` on the I/O loop and block this thread until it finishes."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("IoLoop.call from the I/O thread itself would deadlock")
        future = self.submit(coro)
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
