"""Execution history: what each run did, recorded for inspection, replay and profiling.

* :class:`RunRecord`, :class:`StepRecord`, :class:`HostCall`, :class:`StepError`: what the
  engine hands over at the end of a run (whole payloads; the writer stores deltas).
* :class:`HistoryPolicy` (``[history]``): which runs are collected and kept, how long, how big.
* :class:`HistoryWriter`: a bounded queue and a thread that redacts, caps, seals (with the key
  ring when encryption is on) and writes in batches; it drops rather than slow a request.
* :class:`HistoryReader`: ``list_runs``, ``get_run``, ``get_step``, ``samples``; :func:`prune`.
* The JSON shapes of ``nflow runs … --json`` and the management API (``summary_json``,
  ``run_json``, ``step_view_json``; :data:`JSON_SHAPES` for an OpenAPI document), and
  :func:`profile`, per-node statistics for ``nflow runs stats``.

The tables come with the store's schema migrations (revision 0002).
"""

from __future__ import annotations

from ._codec import SNAPSHOT_EVERY, TRUNCATED_KEY, Codec, apply_delta, changes, delta
from ._json import SHAPES as JSON_SHAPES
from ._json import (
    NodeStats,
    Stats,
    VersionTotals,
    iso_time,
    run_json,
    step_json,
    step_view_json,
    summary_json,
    to_builtins,
)
from ._policy import HistoryMode, HistoryPolicy
from ._reader import HistoryError, HistoryReader, prune
from ._records import (
    RUN_STATUSES,
    Change,
    HostCall,
    RunRecord,
    RunSummary,
    StepError,
    StepRecord,
    StepView,
)
from ._stats import StepSample, parse_since, percentile, profile
from ._writer import HistoryWriter, dropped_counter

__all__ = [
    "JSON_SHAPES",
    "RUN_STATUSES",
    "SNAPSHOT_EVERY",
    "TRUNCATED_KEY",
    "Change",
    "Codec",
    "HistoryError",
    "HistoryMode",
    "HistoryPolicy",
    "HistoryReader",
    "HistoryWriter",
    "HostCall",
    "NodeStats",
    "RunRecord",
    "RunSummary",
    "Stats",
    "StepError",
    "StepRecord",
    "StepSample",
    "StepView",
    "VersionTotals",
    "apply_delta",
    "changes",
    "delta",
    "dropped_counter",
    "iso_time",
    "parse_since",
    "percentile",
    "profile",
    "prune",
    "run_json",
    "step_json",
    "step_view_json",
    "summary_json",
    "to_builtins",
]
