"""Tracker rows: one per executed node, written in batches off the request path.

Steps only append to an in-memory queue. A task on the I/O loop writes batches of
``batch_size`` rows, or whatever is queued every ``flush_interval`` ms, with three retries.
When the queue is full, rows are dropped and counted rather than slowing requests down.
"""

from __future__ import annotations

__all__ = ["Tracker"]

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence

from nflow.store import TrackerRow

log = logging.getLogger("nflow.tracker")

Insert = Callable[[Sequence[TrackerRow]], Awaitable[None]]


class Tracker:
    def __init__(
        self,
        *,
        insert: Insert,
        loop: asyncio.AbstractEventLoop,
        batch_size: int = 100,
        flush_interval_ms: int = 250,
        capacity: int = 100_000,
    ) -> None:
        self._insert = insert
        self._loop = loop
        self._batch = batch_size
        self._interval = flush_interval_ms / 1000.0
        self._queue: collections.deque[TrackerRow] = collections.deque()
        self._capacity = capacity
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self._task = asyncio.run_coroutine_threadsafe(self._run(), loop)
        self._stopping = False

    def record(self, row: TrackerRow) -> None:
        with self._lock:
            if len(self._queue) >= self._capacity:
                self.dropped += 1
                return
            self._queue.append(row)
            full = len(self._queue) >= self._batch
        if full:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _take(self) -> list[TrackerRow]:
        with self._lock:
            n = min(len(self._queue), self._batch)
            return [self._queue.popleft() for _ in range(n)]

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()
            await self._flush_all()
            if self._stopping:
                return

    async def _flush_all(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            for attempt, pause in enumerate((0.1, 0.2, 0.4, None)):
                try:
                    await self._insert(batch)
                    self.written += len(batch)
                    break
                except Exception as exc:
                    if pause is None:
                        self.failed += len(batch)
                        log.error("tracker lost %d rows after retries: %s", len(batch), exc)
                        break
                    log.warning("tracker batch failed (attempt %d): %s", attempt + 1, exc)
                    await asyncio.sleep(pause)

    async def close(self) -> None:
        """Flush what is queued and stop (awaited from another loop)."""
        self._stopping = True
        self._loop.call_soon_threadsafe(self._wake.set)
        await asyncio.wrap_future(self._task)
