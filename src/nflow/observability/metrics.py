"""Prometheus metrics that add up across worker processes.

The server runs several worker processes and a scrape of ``/metrics`` reaches only one of
them, so every value lives in prometheus_client's multiprocess files: each process writes
its own memory-mapped files under one directory, and :func:`render_metrics` (in whichever
worker serves the scrape) merges all of them. Counters and histograms are summed; gauges use
``livesum`` (or ``livemax``), so a worker that exits takes its share with it once
:func:`mark_worker_dead` is called for it (a scrape also drops the gauges of workers that no
longer exist).

Recording is buffered: a :class:`Metrics` call only queues or updates plain numbers in this
process (well under a microsecond), and a daemon thread adds the accumulated deltas to the
shared files once a second (:data:`FLUSH_INTERVAL`), as does :func:`render_metrics` for its
own process, :meth:`Metrics.flush`, and the process's exit. A scrape therefore shows other
workers' values as of at most a second ago; a worker killed with SIGKILL loses at most its
last second. Writing each event straight to the files costs about 1.3 µs per value with
prometheus_client (lock, pid check, packing), 8 µs for a request; aggregated, a second of
traffic on one route costs a handful of writes.

Lifecycle:

1. the parent calls :func:`setup_multiprocess_dir` once, before starting workers (it creates
   or empties the directory and exports ``PROMETHEUS_MULTIPROC_DIR`` to the workers);
2. each worker uses :func:`get_metrics` (or ``Metrics()``: instances share the process's
   buffer) and calls its methods; on shutdown it calls :meth:`Metrics.flush` (done at exit
   too, but some process managers end workers with ``os._exit``);
3. ``GET /metrics`` returns :func:`render_metrics`;
4. the parent calls :func:`mark_worker_dead` when a worker exits.

A process that never called :func:`setup_multiprocess_dir` gets a private directory the
first time it creates a :class:`Metrics`, which is right for a single process only.

The Go runtime's metric names are kept without labels, now with real values (see
docs/compat.md, Health, metrics and debug);
``nflow_uptime_seconds`` is a gauge (as a counter the client library would rename it
``nflow_uptime_seconds_total``) and the Go memory metrics become ``nflow_memory_*_bytes``.
Label values (app, starter, node type, limit, rule, state) must come from configuration or
playbooks, never from raw request data; past :data:`MAX_LABEL_SETS` combinations per metric
new ones are counted under ``"_other"``.
"""

from __future__ import annotations

__all__ = [
    "FLUSH_INTERVAL",
    "MAX_LABEL_SETS",
    "NODE_BUCKETS",
    "REQUEST_BUCKETS",
    "Metrics",
    "get_metrics",
    "mark_worker_dead",
    "multiprocess_dir",
    "record_worker_restart",
    "remove_multiprocess_dir",
    "render_metrics",
    "setup_multiprocess_dir",
]

import atexit
import logging
import math
import multiprocessing.util
import os
import re
import sys
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from nflow.observability._directory import (
    _STARTED_FILE,
    _worker_restarts,
    mark_worker_dead,
    multiprocess_dir,
    record_worker_restart,
    remove_multiprocess_dir,
    setup_multiprocess_dir,
)

log = logging.getLogger("nflow.metrics")


FLUSH_INTERVAL = 1.0
MAX_LABEL_SETS = 2_000
OTHER = "_other"

REQUEST_BUCKETS = (
    *(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0),
)
NODE_BUCKETS = (
    *(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
    *(0.25, 0.5, 1.0, 2.5, 5.0),
)

# Upper bounds as prometheus_client keeps them (with +Inf), for bisect: an observation
# belongs to the first bucket whose bound is >= it.
_REQUEST_BOUNDS = (*REQUEST_BUCKETS, math.inf)
_NODE_BOUNDS = (*NODE_BUCKETS, math.inf)
# The engine times nodes in milliseconds.
_NODE_BOUNDS_MS = tuple(bound * 1000.0 for bound in _NODE_BOUNDS)

_STATUS_CLASSES = tuple(f"{n}xx" for n in range(10))


_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db\Z")


def _drop_vanished_workers(directory: str) -> None:
    if sys.platform == "win32":
        return
    dead: set[int] = set()
    for name in os.listdir(directory):
        match = _LIVE_GAUGE_FILE.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid in dead:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(pid)
        except PermissionError:  # exists, owned by someone else
            pass
    for pid in dead:
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


# ------------------------------------------------------------------------------------------
# Memory


def _page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 4096


_PAGE = _page_size()


def _memory() -> tuple[float, float]:
    """(resident, virtual) bytes of this process; virtual is 0 where unknown."""
    try:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
        return float(int(fields[1]) * _PAGE), float(int(fields[0]) * _PAGE)
    except (OSError, IndexError, ValueError):
        pass
    try:
        import resource
    except ImportError:
        return 0.0, 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(peak if sys.platform == "darwin" else peak * 1024), 0.0


# ------------------------------------------------------------------------------------------
# Instruments (the prometheus_client objects) and the buffer in front of them


def _histogram_parts(child: Histogram) -> tuple[Any, list[Any]]:
    # Aggregated observations are added to the child's sum and per-bucket values directly;
    # Histogram.observe would need one call (two file writes) per observation.
    return child._sum, child._buckets


class _Instruments:
    """The prometheus_client objects of this process."""

    def __init__(self) -> None:
        # Registered nowhere: in multiprocess mode a scrape reads the files.
        reg = None
        self.requests_total = Counter(
            "nflow_requests_total",
            "HTTP requests served (except the health and metrics endpoints).",
            registry=reg,
        )
        self.requests_errors_total = Counter(
            "nflow_requests_errors_total",
            "HTTP requests answered with a status of 400 or more.",
            registry=reg,
        )
        self.requests_active = Gauge(
            "nflow_requests_active",
            "HTTP requests being served now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.workflows_total = Counter(
            "nflow_workflows_total", "Workflow runs finished.", registry=reg
        )
        self.workflows_errors_total = Counter(
            "nflow_workflows_errors_total", "Workflow runs that ended in an error.", registry=reg
        )
        self.workflow_runs = Counter(
            "nflow_workflow_runs_total",
            "Workflow runs finished, by app and result (ok or error).",
            ["app", "result"],
            registry=reg,
        )
        self.version_requests = Counter(
            "nflow_version_requests_total",
            "Requests of apps released at several versions, by app, version (its first 12 "
            "characters) and result (ok, or error: a 5xx answer or a limit hit).",
            ["app", "version", "result"],
            registry=reg,
        )
        self.processes_active = Gauge(
            "nflow_processes_active",
            "Workflow processes (wids) held now.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.processes_total = Counter(
            "nflow_processes_total", "Workflow processes started.", registry=reg
        )
        self.db_open = Gauge(
            "nflow_db_connections_open",
            "Database connections open.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.db_in_use = Gauge(
            "nflow_db_connections_in_use",
            "Database connections checked out.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.db_idle = Gauge(
            "nflow_db_connections_idle",
            "Database connections idle in the pool.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.memory_rss = Gauge(
            "nflow_memory_rss_bytes",
            "Resident memory of all worker processes.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.memory_vms = Gauge(
            "nflow_memory_virtual_bytes",
            "Virtual memory of all worker processes.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.memory_rss_max = Gauge(
            "nflow_memory_worker_rss_max_bytes",
            "Resident memory of the largest worker process.",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.workers = Gauge(
            "nflow_workers",
            "Worker processes recording metrics.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.request_duration = Histogram(
            "nflow_request_duration_seconds",
            "HTTP request duration by app, starter and status class.",
            ["app", "starter", "status_class"],
            registry=reg,
            buckets=REQUEST_BUCKETS,
        )
        self.node_duration = Histogram(
            "nflow_node_duration_seconds",
            "Workflow node (step) duration by app and node type.",
            ["app", "node_type"],
            registry=reg,
            buckets=NODE_BUCKETS,
        )
        self.limit_hits = Counter(
            "nflow_limit_hits_total",
            "Resource limits reached (time, memory, output, ...), by limit.",
            ["limit"],
            registry=reg,
        )
        self.cache_hits = Counter(
            "nflow_cache_hits_total",
            "Steps of nodes with cache_ttl_seconds served from the step cache, by app.",
            ["app"],
            registry=reg,
        )
        self.cache_misses = Counter(
            "nflow_cache_misses_total",
            "Steps of nodes with cache_ttl_seconds that ran (not in the step cache), by app.",
            ["app"],
            registry=reg,
        )
        self.ratelimit_rejections = Counter(
            "nflow_ratelimit_rejections_total",
            "Requests rejected by the rate limiter (429).",
            registry=reg,
        )
        self.security_events = Counter(
            "nflow_security_events_total",
            "Security rule matches, by rule.",
            ["rule"],
            registry=reg,
        )
        self.js_runtimes = Gauge(
            "nflow_js_runtimes",
            "JavaScript runtimes in the pool, by state.",
            ["state"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self._request_parts: dict[tuple[str, ...], tuple[Any, list[Any]]] = {}
        self._node_parts: dict[tuple[str, ...], tuple[Any, list[Any]]] = {}

    def request_parts(self, key: tuple[str, ...]) -> tuple[Any, list[Any]]:
        parts = self._request_parts.get(key)
        if parts is None:
            parts = self._request_parts[key] = _histogram_parts(self.request_duration.labels(*key))
        return parts

    def node_parts(self, key: tuple[str, ...]) -> tuple[Any, list[Any]]:
        parts = self._node_parts.get(key)
        if parts is None:
            parts = self._node_parts[key] = _histogram_parts(self.node_duration.labels(*key))
        return parts

    def refresh_process(self) -> None:
        # Also right after a fork: the child's gauges start from its own, empty, files.
        self.workers.set(1)
        rss, vms = _memory()
        self.memory_rss.set(rss)
        self.memory_rss_max.set(rss)
        self.memory_vms.set(vms)


class _Pending:
    """What happened since the last flush, as plain numbers."""

    __slots__ = (
        "active",
        "counters",
        "db",
        "errors",
        "js",
        "node_hist",
        "processes",
        "processes_started",
        "rejections",
        "request_hist",
        "requests",
        "workflow_errors",
        "workflows",
    )

    def __init__(self) -> None:
        self.active = 0
        self.requests = 0
        self.errors = 0
        self.workflows = 0
        self.workflow_errors = 0
        self.processes_started = 0
        self.rejections = 0
        # (metric attribute, label values) -> increment
        self.counters: dict[tuple[str, tuple[str, ...]], int] = {}
        # label values -> [sum, count in bucket 0, count in bucket 1, ...]
        self.request_hist: dict[tuple[str, ...], list[float]] = {}
        self.node_hist: dict[tuple[str, ...], list[float]] = {}
        # Gauges: the last value set, or None when not set since the last flush.
        self.processes: int | None = None
        self.db: tuple[int, int, int] | None = None
        self.js: dict[str, int] = {}


_Key = TypeVar("_Key", bound=Hashable)


class _Queues(Generic[_Key]):
    """Observations waiting for the fold, one queue per label set.

    A producer looks up the ``append`` of its queue by a key of its own (``observers``, a
    plain dict: one lookup without a call) and appends the value; a deque append is atomic,
    so producers take no lock. Keys map to label sets through ``labels`` (several keys may
    share a queue, e.g. statuses 200 and 204 both count as ``2xx``), admitted under the
    recorder's lock by :meth:`observer` the first time. The fold drains each queue in C
    (:meth:`drain`), so the per-observation Python work is the producer's lookup alone.
    """

    __slots__ = ("_admit", "_labels", "_lock", "metric", "observers", "queues")

    def __init__(
        self,
        metric: str,
        labels: Callable[[_Key], tuple[tuple[str, ...], bool]],
        admit: Callable[[str, tuple[str, ...]], tuple[str, ...]],
        lock: threading.Lock,
    ) -> None:
        self.metric = metric
        self._labels = labels
        self._admit = admit
        self._lock = lock
        # key -> append of its label set's queue
        self.observers: dict[_Key, Callable[[float], None]] = {}
        # (admitted label values, flag) -> values; the flag (an error status, an ok run)
        # splits a label set where the fold needs it
        self.queues: dict[tuple[tuple[str, ...], bool], deque[float]] = {}

    def observer(self, key: _Key) -> Callable[[float], None]:
        """The ``append`` for ``key``'s queue (``observers.get(key)``, made on first use)."""
        observe = self.observers.get(key)
        if observe is None:
            labels, flag = self._labels(key)
            with self._lock:
                name = (self._admit(self.metric, labels), flag)
                queue = self.queues.get(name)
                if queue is None:
                    queue = self.queues[name] = deque()
                observe = queue.append
                # Keys past the cap still reach their (_other) queue, through this call.
                if len(self.observers) < _MAX_OBSERVER_KEYS:
                    self.observers[key] = observe
        return observe

    def drain(self) -> Iterator[tuple[tuple[str, ...], bool, list[float]]]:
        """Each label set's values queued so far, taken out. Called with the lock held."""
        for (labels, flag), queue in self.queues.items():
            n = len(queue)  # only the fold takes values out: these n are there
            if n:
                yield labels, flag, list(islice(iter(queue.popleft, None), n))

    def clear(self) -> None:
        # In place: the server's cached observers (bound appends) stay valid after a fork.
        for queue in self.queues.values():
            queue.clear()


def _add_observations(
    hist: dict[tuple[str, ...], list[float]],
    labels: tuple[str, ...],
    values: list[float],
    bounds: tuple[float, ...],
    unit: float = 1.0,
) -> None:
    """Add ``values`` (in seconds times ``unit``) to a pending histogram's sum and buckets.

    Sorted once, so each bucket's count is a bisection instead of one per value: C code
    does all the per-value work. ``bounds`` are in the values' unit.
    """
    sums = hist.get(labels)
    if sums is None:
        sums = hist[labels] = [0.0] * (len(bounds) + 1)
    total = sum(values)
    if not (total == total and min(values) >= 0.0):
        # Negative or NaN (a clock gone wrong, a caller's bad value) counts as 0.
        values = [value if value >= 0.0 else 0.0 for value in values]
        total = sum(values)
    values.sort()
    sums[0] += total / unit
    below = 0
    for index, bound in enumerate(bounds, 1):
        upto = bisect_right(values, bound)  # the values <= bound: Prometheus's "le"
        if upto != below:
            sums[index] += upto - below
            below = upto


def _request_labels(key: tuple[str, str, int]) -> tuple[tuple[str, ...], bool]:
    app, starter, status = key
    status_class = _STATUS_CLASSES[status // 100] if 0 <= status < 1000 else "other"
    return (app, starter, status_class), status >= 400


def _run_labels(key: tuple[str, bool]) -> tuple[tuple[str, ...], bool]:
    app, ok = key
    return (app, "ok" if ok else "error"), ok


def _node_labels(key: tuple[str, str]) -> tuple[tuple[str, ...], bool]:
    return key, True


class _Recorder:
    """The process's buffer, its flusher thread, and the instruments it flushes into."""

    def __init__(self) -> None:
        self.instruments = _Instruments()
        self.lock = threading.Lock()
        self.flush_lock = threading.Lock()
        self.pending = _Pending()
        self.label_sets: dict[str, set[tuple[str, ...]]] = {}
        # Per-request observations, folded into ``pending`` by the flusher (see Metrics):
        # a 1 per request started; request durations (s) by (app, starter, status); a 1 per
        # run by (app, ok); node durations (ms) by (app, node type).
        self.started: deque[int] = deque()
        self.requests: _Queues[tuple[str, str, int]] = _Queues(
            "request", _request_labels, self.admit, self.lock
        )
        self.runs: _Queues[tuple[str, bool]] = _Queues(
            "workflow_runs", _run_labels, self.admit, self.lock
        )
        self.nodes: _Queues[tuple[str, str]] = _Queues("node", _node_labels, self.admit, self.lock)
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()
        self.instruments.refresh_process()

    # label sets ----------------------------------------------------------------------------
    def admit(self, metric: str, key: tuple[str, ...]) -> tuple[str, ...]:
        """``key``, or the ``_other`` key once ``metric`` has too many label sets."""
        seen = self.label_sets.setdefault(metric, set())
        if key in seen:
            return key
        if len(seen) >= MAX_LABEL_SETS:
            return (OTHER,) * len(key)
        seen.add(key)
        return key

    # flushing ------------------------------------------------------------------------------
    def start(self) -> None:
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="nflow-metrics", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        wake = self.wake
        while not wake.wait(FLUSH_INTERVAL):
            try:
                self.flush()
            except Exception:  # a metrics failure must never take the worker down
                log.exception("metrics flush failed")

    def fold(self) -> None:
        """Fold the queued per-request observations into ``pending``.

        Per label set, not per observation: each queue is drained and added up by C code
        (:meth:`_Queues.drain`, :func:`_add_observations`), which at a few thousand requests
        a second per worker cost a fraction of a Python loop over the values. Requests are
        drained before the starts, so a request is never seen finished and not started.
        """
        with self.lock:
            p = self.pending
            finished = 0
            for labels, error, values in self.requests.drain():
                finished += len(values)
                if error:
                    p.errors += len(values)
                _add_observations(p.request_hist, labels, values, _REQUEST_BOUNDS)
            p.requests += finished
            started = self.started
            p.active += sum(islice(iter(started.popleft, None), len(started))) - finished
            counters = p.counters
            for labels, ok, values in self.runs.drain():
                runs = len(values)
                p.processes_started += runs
                p.workflows += runs
                if not ok:
                    p.workflow_errors += runs
                key = ("workflow_runs", labels)
                counters[key] = counters.get(key, 0) + runs
            for labels, _, values in self.nodes.drain():
                _add_observations(p.node_hist, labels, values, _NODE_BOUNDS_MS, 1000.0)

    def flush(self) -> None:
        with self.flush_lock:
            self.fold()
            with self.lock:
                p, self.pending = self.pending, _Pending()
            i = self.instruments
            if p.active:
                i.requests_active.inc(p.active)
            for count, counter in (
                (p.requests, i.requests_total),
                (p.errors, i.requests_errors_total),
                (p.workflows, i.workflows_total),
                (p.workflow_errors, i.workflows_errors_total),
                (p.processes_started, i.processes_total),
                (p.rejections, i.ratelimit_rejections),
            ):
                if count:
                    counter.inc(count)
            for (attribute, labels), count in p.counters.items():
                getattr(i, attribute).labels(*labels).inc(count)
            for hist, parts in ((p.request_hist, i.request_parts), (p.node_hist, i.node_parts)):
                for labels, sums in hist.items():
                    total, buckets = parts(labels)
                    total.inc(sums[0])
                    for bucket, observed in zip(buckets, sums[1:], strict=True):
                        if observed:
                            bucket.inc(observed)
            if p.processes is not None:
                i.processes_active.set(p.processes)
            if p.db is not None:
                i.db_open.set(p.db[0])
                i.db_in_use.set(p.db[1])
                i.db_idle.set(p.db[2])
            for state, n in p.js.items():
                i.js_runtimes.labels(state).set(n)
            i.refresh_process()

    def after_fork(self) -> None:
        # The parent's unflushed numbers are the parent's to flush; locks held by threads
        # that do not exist here must not be inherited; the flusher thread did not survive.
        self.lock = threading.Lock()
        self.flush_lock = threading.Lock()
        self.pending = _Pending()
        self.started.clear()
        for queues in (self.requests, self.runs, self.nodes):
            queues.clear()
            queues._lock = self.lock
        self.pid = os.getpid()
        self.start()


_recorder_lock = threading.Lock()
_recorder: _Recorder | None = None


def _use_multiprocess_values() -> None:
    # prometheus_client picks its value class when first imported, from the environment; if
    # it was imported before the directory was set up, switch now, before any metric exists.
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def _flush_at_exit() -> None:
    recorder = _recorder
    if recorder is not None and recorder.pid == os.getpid():
        try:
            recorder.flush()
        except Exception:
            log.exception("metrics flush at exit failed")


def _register_exit_flush(_: object = None) -> None:
    # multiprocessing children leave through os._exit, which skips atexit; their finalizers
    # registered after the fork still run.
    multiprocessing.util.Finalize(None, _flush_at_exit, exitpriority=100)


def _remove_own_dir(directory: str, pid: int) -> None:
    if os.getpid() == pid:  # not in a forked child that inherited the handler
        remove_multiprocess_dir(directory)


def _after_fork_in_child() -> None:
    recorder = _recorder
    if recorder is not None:
        recorder.after_fork()


def _get_recorder() -> _Recorder:
    global _recorder
    recorder = _recorder
    if recorder is not None:
        return recorder
    with _recorder_lock:
        if _recorder is None:
            if not multiprocess_dir():
                directory = setup_multiprocess_dir()
                log.debug("metrics: no multiprocess directory set up, using %s", directory)
                # Registered before the exit flush, so it runs after it (atexit is LIFO).
                atexit.register(_remove_own_dir, directory, os.getpid())
            _use_multiprocess_values()
            created = _Recorder()
            created.start()
            atexit.register(_flush_at_exit)
            _register_exit_flush()
            multiprocessing.util.register_after_fork(created, _register_exit_flush)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_after_fork_in_child)
            _recorder = created
        return _recorder


# ------------------------------------------------------------------------------------------
# The API


def _bump(
    counters: dict[tuple[str, tuple[str, ...]], int],
    admit: Callable[[str, tuple[str, ...]], tuple[str, ...]],
    attribute: str,
    labels: tuple[str, ...],
) -> None:
    """Count one event of a labelled counter. Called with the recorder's lock held."""
    key = (attribute, labels)
    count = counters.get(key)
    if count is None:
        key = (attribute, admit(attribute, labels))
        count = counters.get(key, 0)
    counters[key] = count + 1


class NodeTiming(Protocol):
    """One executed node as :meth:`Metrics.run_finished` reads it (the engine's TraceEntry)."""

    @property
    def type(self) -> str: ...

    @property
    def duration_ms(self) -> float: ...


# Keys (e.g. app, starter and status) remembered per queue kind for a call-free lookup.
_MAX_OBSERVER_KEYS = 10_000


class Metrics:
    """What the server and the engine record.

    Cheap to create (instances share the process's buffer) and cheap to call: the
    per-request methods queue a value without a lock, the others update a few numbers under
    one; values reach the shared files within :data:`FLUSH_INTERVAL`. Safe to call from any
    thread.
    """

    __slots__ = ("_r", "mark_started", "request_observers")

    def __init__(self) -> None:
        r = self._r = _get_recorder()
        # The server's per-request fast path, without a Python call:
        # ``mark_started(1)`` is :meth:`request_started`, and
        # ``request_observers.get((app, starter, status))``, when not None, takes the
        # seconds of :meth:`request_finished` (else call :meth:`request_observer`).
        self.mark_started: Callable[[int], None] = r.started.append
        self.request_observers: Mapping[tuple[str, str, int], Callable[[float], None]] = (
            r.requests.observers
        )

    # requests ------------------------------------------------------------------------------
    # Every call only queues a value (see _Queues); the flusher folds them in a batch.
    def request_started(self) -> None:
        """A request began (``nflow_requests_active`` +1). Pair with :meth:`request_finished`."""
        self._r.started.append(1)

    def request_finished(self, app: str, starter: str, status: int, seconds: float) -> None:
        """A request ended: counts it, its error if ``status >= 400``, and its duration.

        ``app`` and ``starter`` name the matched starter (``""`` when none matched, as for a
        404). Call neither method for the health and metrics endpoints (the Go runtime did not
        count them).
        """
        self.request_observer(app, starter, status)(seconds)

    def request_observer(self, app: str, starter: str, status: int) -> Callable[[float], None]:
        """What :meth:`request_finished` calls with the seconds, for these labels."""
        return self._r.requests.observer((app, starter, status))

    def rate_limited(self) -> None:
        """A request was rejected with 429 by the rate limiter."""
        r = self._r
        with r.lock:
            r.pending.rejections += 1

    # workflows -----------------------------------------------------------------------------
    def workflow_finished(self, app: str, ok: bool) -> None:
        r = self._r
        with r.lock:
            p = r.pending
            p.workflows += 1
            if not ok:
                p.workflow_errors += 1
            self._count("workflow_runs", (app, "ok" if ok else "error"))

    def node_finished(self, app: str, node_type: str, seconds: float) -> None:
        """One node of ``app`` ran for ``seconds``."""
        self._r.nodes.observer((app, node_type))(seconds * 1000.0)

    def run_finished(self, app: str, ok: bool, nodes: Sequence[NodeTiming]) -> None:
        """One call per run: the process, the workflow outcome and each node's duration.

        Equivalent to :meth:`process_started`, :meth:`workflow_finished` and one
        :meth:`node_finished` per node (its ``type`` and ``duration_ms``, as in the engine's
        trace, which is passed as it is); queued like a request's.
        """
        r = self._r
        key = (app, ok)
        (r.runs.observers.get(key) or r.runs.observer(key))(1)
        nodes_queues = r.nodes
        observers = nodes_queues.observers
        for node in nodes:
            node_key = (app, node.type)
            (observers.get(node_key) or nodes_queues.observer(node_key))(node.duration_ms)

    def step_cache(self, app: str, hit: bool) -> None:
        """A cached node's lookup (``nflow_cache_hits_total`` / ``nflow_cache_misses_total``)."""
        with self._r.lock:
            self._count("cache_hits" if hit else "cache_misses", (app,))

    def process_started(self) -> None:
        """A workflow process (wid) was created (``nflow_processes_total``)."""
        r = self._r
        with r.lock:
            r.pending.processes_started += 1

    def set_processes(self, n: int) -> None:
        """Workflow processes held by this worker now (``nflow_processes_active``)."""
        r = self._r
        with r.lock:
            r.pending.processes = n

    def version_request(self, app: str, version: str, ok: bool) -> None:
        """A request of an app released at several versions answered by ``version``."""
        with self._r.lock:
            self._count("version_requests", (app, version[:12], "ok" if ok else "error"))

    # limits and security -------------------------------------------------------------------
    def limit_hit(self, name: str) -> None:
        """A resource limit stopped something; ``name`` from a fixed set (``time``, ...)."""
        with self._r.lock:
            self._count("limit_hits", (name,))

    def security_event(self, rule: str) -> None:
        with self._r.lock:
            self._count("security_events", (rule,))

    def _count(self, attribute: str, labels: tuple[str, ...]) -> None:
        # Called with the lock held.
        r = self._r
        _bump(r.pending.counters, r.admit, attribute, labels)

    # resources -----------------------------------------------------------------------------
    def set_db_pool(self, open: int, in_use: int, idle: int) -> None:
        """This worker's database pool now; the scrape shows the sum over workers."""
        r = self._r
        with r.lock:
            r.pending.db = (open, in_use, idle)

    def set_js_runtimes(self, counts: Mapping[str, int]) -> None:
        """This worker's JS runtimes by state, e.g. ``{"idle": 3, "busy": 1}``."""
        r = self._r
        with r.lock:
            js = r.pending.js
            for state, n in counts.items():
                js[r.admit("js_runtimes", (state,))[0]] = n

    def flush(self) -> None:
        """Write this process's numbers to the shared files now (tests, worker shutdown)."""
        self._r.flush()


def get_metrics() -> Metrics:
    """The process's :class:`Metrics`."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


_metrics: Metrics | None = None


# ------------------------------------------------------------------------------------------
# Exposition


class _RunCollector(Collector):
    def __init__(self, directory: str | None) -> None:
        self._directory = directory

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("nflow_up", "1 while the server is running.")
        up.add_metric([], 1.0)
        yield up
        started = _started_at(self._directory)
        uptime = GaugeMetricFamily(
            "nflow_uptime_seconds", "Seconds since the server (its parent process) started."
        )
        uptime.add_metric([], max(0.0, time.time() - started))
        yield uptime
        restarts = CounterMetricFamily(
            "nflow_worker_restarts", "Worker processes that died and were replaced."
        )
        restarts.add_metric([], float(_worker_restarts(self._directory)))
        yield restarts


_PROCESS_STARTED = time.time()


def _started_at(directory: str | None) -> float:
    if directory:
        try:
            return float(Path(directory, _STARTED_FILE).read_text())
        except (OSError, ValueError):
            pass
    return _PROCESS_STARTED


def render_metrics(path: str | os.PathLike[str] | None = None) -> tuple[bytes, str]:
    """The Prometheus text of every worker's metrics: ``(body, content_type)``.

    ``path`` defaults to the directory of :func:`setup_multiprocess_dir`.
    """
    directory = os.fspath(path) if path is not None else multiprocess_dir()
    recorder = _recorder
    if recorder is not None and recorder.pid == os.getpid():
        recorder.flush()
    registry = CollectorRegistry(auto_describe=False)
    if directory and os.path.isdir(directory):
        _drop_vanished_workers(directory)
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    registry.register(_RunCollector(directory))
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
