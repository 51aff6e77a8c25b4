"""The worker's runtime factory: a Runtime built from the spec ``nflow serve`` left.

``serve`` writes the spec (config path, app files, flags) to an environment variable before
granian forks its workers; each worker, and each worker's isolation child, builds its own
Runtime from it.
"""

from __future__ import annotations

__all__ = ["SPEC_ENV", "worker_runtime"]

import os
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from nflow.runtime import Runtime

SPEC_ENV = "NFLOW_SERVE_SPEC"


def worker_runtime() -> Runtime:
    """A Runtime from the spec ``serve`` left: for a worker, or a worker's isolation child."""
    from nflow.config import load_config
    from nflow.logs import configure_logging
    from nflow.runtime import Runtime

    spec = orjson.loads(os.environ[SPEC_ENV])
    if spec.get("verdicts"):
        from nflow.security._findings import load_verdicts

        try:
            with open(spec["verdicts"], "rb") as f:
                load_verdicts(f.read())
        except OSError:
            pass  # gone with a master that stopped: the scripts are analysed here instead
    config = load_config(spec["config"])
    configure_logging(
        level=config.logging.level,
        fmt=config.logging.format,
        verbose=bool(spec.get("verbose")),
        security=config.security,
    )
    return Runtime(
        config,
        app_files=spec["apps"],
        example_if_empty=spec["example"],
        session_secret=spec.get("session_secret") or None,
        log_nodes=bool(spec.get("verbose")),  # -v: one line per executed node
        rate_table=spec.get("rate_table") or None,
    )
