"""Execution history: what each run did, recorded for inspection, replay and profiling.

* :class:`RunRecord`, :class:`StepRecord`, :class:`HostCall`, :class:`StepError`: what the
  engine hands over at the end of a run (whole payloads; the writer stores deltas).
* :class:`HistoryPolicy` (``[history]``): which runs are collected and kept, how long, how big.
* :class:`HistoryWriter`: a bounded queue and a thread that redacts, caps, seals (with the key
  ring when encryption is on) and writes in batches; it drops rather than slow a request.
* :class:`HistoryReader`: ``list_runs``, ``get_run``, ``get_step``; :func:`prune`.

The tables come with the store's schema migrations (revision 0002).
"""

from __future__ import annotations

from ._codec import SNAPSHOT_EVERY, TRUNCATED_KEY, Codec, apply_delta, changes, delta
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
from ._writer import HistoryWriter, dropped_counter

__all__ = [
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
    "RunRecord",
    "RunSummary",
    "StepError",
    "StepRecord",
    "StepView",
    "apply_delta",
    "changes",
    "delta",
    "dropped_counter",
    "prune",
]
