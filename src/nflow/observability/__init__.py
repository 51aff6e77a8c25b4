"""Observability: Prometheus metrics correct across worker processes."""

from __future__ import annotations

__all__ = [
    "Metrics",
    "get_metrics",
    "mark_worker_dead",
    "multiprocess_dir",
    "remove_multiprocess_dir",
    "render_metrics",
    "setup_multiprocess_dir",
]

from typing import TYPE_CHECKING, Any

from nflow.observability._directory import (
    mark_worker_dead,
    multiprocess_dir,
    remove_multiprocess_dir,
    setup_multiprocess_dir,
)

if TYPE_CHECKING:
    from nflow.observability.metrics import Metrics, get_metrics, render_metrics


def __getattr__(name: str) -> Any:
    # The metrics themselves (and prometheus_client) are imported by the processes that
    # record or serve them, not by the master of ``nflow serve``, which only manages the
    # directory.
    if name in ("Metrics", "get_metrics", "render_metrics"):
        from nflow.observability import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module 'nflow.observability' has no attribute {name!r}")
