"""The history writer: records leave the request path through a bounded queue.

:meth:`HistoryWriter.submit` only appends to a queue under a lock; a thread with its own event
loop and its own connection redacts, encodes and seals the records and writes them in batches
of multi-row inserts, one transaction per batch. A slow or locked database therefore makes the
server record less, never answer slower: when the queue is full, successful runs are dropped
first (a failed run evicts the oldest queued successful one), failed runs last, and every drop
is counted in ``nflow_history_dropped_total{outcome="ok"|"failed"}``. A batch that fails for an
operational reason (locked, timed out, disconnected) goes back to the queue and is retried with
backoff; one the database refuses (a duplicate id) is retried run by run, and the runs it still
refuses are dropped and counted.

The same thread prunes the tables every ``prune_interval`` seconds (``retention_days`` and
``max_runs`` of the policy).
"""

from __future__ import annotations

__all__ = ["HistoryWriter", "dropped_counter"]

import asyncio
import collections
import contextlib
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import Counter
from sqlalchemy import Table
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from nflow.errors import StoreError
from nflow.security import KeyRing

from ._codec import Codec
from ._policy import HistoryPolicy
from ._records import RunRecord
from ._tables import runs, steps

if TYPE_CHECKING:
    from nflow.config import Config

log = logging.getLogger("nflow.history")

_counter: Counter | None = None
_counter_lock = threading.Lock()


def dropped_counter() -> Counter:
    """``nflow_history_dropped_total``, made on first use so that a server which set up
    multiprocess metrics beforehand gets it in its shared files (it is registered nowhere
    else, like the server's other metrics)."""
    global _counter
    with _counter_lock:
        if _counter is None:
            _counter = Counter(
                "nflow_history_dropped_total",
                "Recorded runs the execution history did not store (queue full or write "
                "refused), by the run's outcome.",
                labelnames=("outcome",),
                registry=None,
            )
        return _counter


@functools.cache
def _insert_sql(table: Table, paramstyle: str) -> str:
    """``INSERT INTO table (all columns) VALUES (...)`` with the driver's placeholders."""
    names = [column.name for column in table.columns]
    if paramstyle == "qmark":
        marks = ["?"] * len(names)
    elif paramstyle == "numeric_dollar":
        marks = [f"${i}" for i in range(1, len(names) + 1)]
    elif paramstyle == "numeric":
        marks = [f":{i}" for i in range(1, len(names) + 1)]
    elif paramstyle in ("format", "pyformat"):  # psycopg takes %s with a row tuple
        marks = ["%s"] * len(names)
    else:
        raise ValueError(f"unsupported database driver parameter style {paramstyle!r}")
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join(marks)})"


def _bind_null_and_bool_directly() -> None:
    """Make SQLite bind ``None`` and ``bool`` without looking for an adapter.

    The sqlite3 module binds an exact int, float or str as it is, but any other value goes
    through its adapter lookup: with no adapter registered for the type it looks up
    ``__adapt__`` and ``__conform__`` and formats an AttributeError for each, about 2,500
    instructions a value. A history row has a dozen NULLs, so that was a fifth of the cost of
    inserting a run. Registered adapters are found first; these give what the module would
    bind anyway (NULL, and 0 or 1), so nothing else that uses sqlite3 in the process changes.
    """
    answer_none = cast("Callable[[None], None]", {}.get)  # a C callable, no Python frame
    sqlite3.register_adapter(type(None), answer_none)
    sqlite3.register_adapter(bool, int)


_bind_null_and_bool_directly()


def _transient(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc
    return isinstance(
        cause, OperationalError | InterfaceError | DisconnectionError | PoolTimeout | OSError
    )


class HistoryWriter:
    """Writes :class:`RunRecord` s to the history tables of the database at ``url``.

    Call :meth:`start` once, :meth:`submit` from any thread, :meth:`close` at shutdown.
    The tables must exist: open a :class:`~nflow.store.Store` on the database first (it
    upgrades the schema), as the server does at start.
    """

    def __init__(
        self,
        url: str,
        policy: HistoryPolicy | None = None,
        *,
        keyring: KeyRing | None = None,
        custom_patterns: Mapping[str, str] | None = None,
        sensitive_keys: Sequence[str] = (),
        capacity: int = 2000,
        batch_size: int = 500,
        flush_interval: float = 0.25,
        prune_interval: float = 300.0,
    ) -> None:
        if capacity < 1 or batch_size < 1:
            raise ValueError("capacity and batch_size must be at least 1")
        self.policy = policy or HistoryPolicy()
        sanitizer = (
            Codec.default_sanitizer(
                (*sensitive_keys, *self.policy.redact_keys), custom_patterns=custom_patterns
            )
            if self.policy.redact
            else None
        )
        self.codec = Codec(
            max_value_bytes=self.policy.max_value_bytes, sanitizer=sanitizer, keyring=keyring
        )
        self._url = url
        self._capacity = capacity
        self._batch = batch_size
        self._interval = flush_interval
        self._prune_interval = prune_interval
        self._ok: collections.deque[RunRecord] = collections.deque()
        self._failed: collections.deque[RunRecord] = collections.deque()
        self._lock = threading.Condition()
        self._in_flight = 0
        self._woken = False
        self._stopping = False
        self._closed = False
        self._abandoned = False  # close() gave up waiting: what is left is counted, not written
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._counter = dropped_counter()
        self.written = 0
        self.dropped = {"ok": 0, "failed": 0}
        self.pruned = 0

    @classmethod
    def from_config(
        cls, config: Config, *, keyring: KeyRing | None = None, url: str | None = None
    ) -> HistoryWriter:
        """The writer ``[history]`` describes, on the nflow database (or ``url``), redacting
        what ``[security]`` names too (``always_encrypt_fields``, ``log_custom_patterns``).
        ``keyring``: the server's key ring when ``encrypt_sensitive_data`` is on."""
        history = config.history
        return cls(
            url or config.database_url,
            HistoryPolicy.from_config(history),
            keyring=keyring,
            custom_patterns=dict(config.security.log_custom_patterns),
            sensitive_keys=tuple(config.security.always_encrypt_fields),
            capacity=history.queue_size,
            batch_size=history.batch_size,
            flush_interval=history.flush_interval_ms / 1000.0,
        )

    # --- the request side ----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name="nflow-history", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)

    def submit(self, run: RunRecord) -> bool:
        """Queue ``run`` for writing; never blocks on the database. ``False`` when it was
        dropped (the queue was full of runs at least as important, or the writer closed)."""
        failed = run.failed
        evicted = False
        with self._lock:
            if self._closed:
                accepted = False
            elif len(self._ok) + len(self._failed) < self._capacity:
                (self._failed if failed else self._ok).append(run)
                accepted = True
            elif failed and self._ok:
                self._ok.popleft()
                self._failed.append(run)
                accepted = evicted = True
            else:
                accepted = False
            if not accepted:
                self.dropped["failed" if failed else "ok"] += 1
            elif evicted:
                self.dropped["ok"] += 1
            wake = (
                accepted
                and not self._woken
                and len(self._ok) + len(self._failed) >= self._batch
                and self._loop is not None
            )
            if wake:
                self._woken = True
        if not accepted:
            self._counter.labels(outcome="failed" if failed else "ok").inc()
        elif evicted:
            self._counter.labels(outcome="ok").inc()
        if wake:
            self._notify()
        return accepted

    def _notify(self) -> None:
        loop, event = self._loop, self._wake
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._ok) + len(self._failed)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued run is written or dropped; ``False`` on timeout."""
        self._notify()
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._ok or self._failed or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
                if self._ok or self._failed:
                    self._notify()
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (for up to ``timeout`` seconds), then stop. What is still
        queued then is dropped and counted."""
        with self._lock:
            self._closed = True
            self._stopping = True
        self._notify()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            self._abandoned = True
            left = list(self._ok) + list(self._failed)
            self._ok.clear()
            self._failed.clear()
        if left:
            self._count_dropped(left)
            log.warning("execution history: %d run(s) not written at shutdown", len(left))

    def _count_dropped(self, lost: Sequence[RunRecord]) -> None:
        failed = sum(1 for r in lost if r.failed)
        with self._lock:
            self.dropped["failed"] += failed
            self.dropped["ok"] += len(lost) - failed
        if failed:
            self._counter.labels(outcome="failed").inc(failed)
        if len(lost) - failed:
            self._counter.labels(outcome="ok").inc(len(lost) - failed)

    # --- the writer thread ---------------------------------------------------------------

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except Exception:  # pragma: no cover - a bug; the server must go on answering
            log.exception("execution history writer stopped")
        finally:
            self._ready.set()

    def _take(self) -> list[RunRecord]:
        with self._lock:
            self._woken = False
            batch: list[RunRecord] = []
            if self._abandoned:
                return batch
            while self._failed and len(batch) < self._batch:
                batch.append(self._failed.popleft())
            while self._ok and len(batch) < self._batch:
                batch.append(self._ok.popleft())
            self._in_flight = len(batch)
            return batch

    def _requeue(self, batch: Sequence[RunRecord]) -> None:
        """Put a batch that could not be written back in front, within the capacity."""
        lost: list[RunRecord] = []
        with self._lock:
            if self._abandoned:
                lost.extend(batch)
                batch = ()
            for run in reversed(batch):
                (self._failed if run.failed else self._ok).appendleft(run)
            while len(self._ok) + len(self._failed) > self._capacity:
                lost.append(self._ok.pop() if self._ok else self._failed.pop())
            self._in_flight = 0
            self._lock.notify_all()
        if lost:
            self._count_dropped(lost)

    def _done(self, written: int) -> None:
        with self._lock:
            self.written += written
            self._in_flight = 0
            self._lock.notify_all()

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def _serve(self) -> None:
        from nflow.store import Store

        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        store = Store(self._url, pool_size=1, migrate=False)
        pause = 0.5
        while True:
            try:
                await store.open()
                break
            except StoreError as exc:
                if self._stopping:
                    return
                log.warning("execution history: cannot open the database, will retry: %s", exc)
                await self._sleep(pause)
                pause = min(pause * 2, 10.0)
        backoff = 0.0
        next_prune = time.monotonic() + min(5.0, self._prune_interval)
        try:
            while True:
                await self._sleep(backoff or self._interval)
                backoff = 0.0
                while True:
                    batch = self._take()
                    if not batch:
                        break
                    if not await self._write(store, batch):
                        backoff = 0.5 if self._stopping else 1.0
                        break
                if self._stopping and (backoff == 0.0 or not self.queued or self._abandoned):
                    return
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self._prune_interval
                    await self._prune(store)
        finally:
            await store.close()

    async def _prune(self, store: Any) -> None:
        from ._reader import prune

        try:
            removed = await prune(
                store, retention_days=self.policy.retention_days, max_runs=self.policy.max_runs
            )
        except StoreError as exc:
            log.warning("execution history: pruning failed: %s", exc)
            return
        self.pruned += removed

    def _encode(
        self, batch: Sequence[RunRecord]
    ) -> tuple[list[RunRecord], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        kept: list[RunRecord] = []
        run_rows: list[tuple[Any, ...]] = []
        step_rows: list[tuple[Any, ...]] = []
        for run in batch:
            try:
                row, rows = self._rows(run)
            except Exception:
                log.exception("execution history: cannot encode run %s of %s", run.id, run.app)
                self._count_dropped([run])
                continue
            kept.append(run)
            run_rows.append(row)
            step_rows.extend(rows)
        return kept, run_rows, step_rows

    def _rows(self, run: RunRecord) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        """``run``'s row and its steps' rows as tuples in the tables' column order."""
        return self.codec.run_tuple(run), self.codec.step_tuples(run)

    async def _insert(
        self, store: Any, run_rows: list[tuple[Any, ...]], step_rows: list[tuple[Any, ...]]
    ) -> None:
        # The driver's own executemany with the rows as tuples: SQLAlchemy's insert() compiles
        # and binds each row's dict in Python, which cost more than SQLite's insert itself.
        async with store.transaction("write execution history", write=True) as conn:
            style = conn.dialect.paramstyle
            await conn.exec_driver_sql(_insert_sql(runs, style), run_rows)
            if step_rows:
                await conn.exec_driver_sql(_insert_sql(steps, style), step_rows)

    async def _write(self, store: Any, batch: list[RunRecord]) -> bool:
        """``False`` when the database is unavailable and the batch went back to the queue."""
        kept, run_rows, step_rows = self._encode(batch)
        if not kept:
            self._done(0)
            return True
        try:
            await self._insert(store, run_rows, step_rows)
        except StoreError as exc:
            if _transient(exc):
                log.warning("execution history: write failed, will retry: %s", exc)
                self._requeue(kept)
                return False
            await self._write_one_by_one(store, kept, exc)
            return True
        self._done(len(kept))
        return True

    async def _write_one_by_one(
        self, store: Any, batch: list[RunRecord], first: StoreError
    ) -> None:
        log.warning("execution history: batch refused (%s); writing its runs one by one", first)
        written = 0
        for run in batch:
            try:
                row, rows = self._rows(run)
                await self._insert(store, [row], rows)
            except StoreError as exc:
                if _transient(exc):
                    self._requeue([run])
                    continue
                log.error("execution history: run %s of %s refused: %s", run.id, run.app, exc)
                self._count_dropped([run])
                continue
            written += 1
        self._done(written)
