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

from nflow.observability.metrics import (
    Metrics,
    get_metrics,
    mark_worker_dead,
    multiprocess_dir,
    remove_multiprocess_dir,
    render_metrics,
    setup_multiprocess_dir,
)
