"""``-v``: one log line per executed node, as an engine interceptor.

Installed only by ``nflow serve -v`` and ``nflow run -v`` (``Runtime(log_nodes=True)``);
without it the engine's chain has no entry for it and nothing is logged per node.
"""

from __future__ import annotations

__all__ = ["log_node"]

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nflow.engine import StepResult
    from nflow.jsapi import RunContext
    from nflow.playbook import Node

log = logging.getLogger("nflow.nodes")


def log_node(ctx: RunContext, node: Node, proceed: Callable[[], StepResult]) -> StepResult:
    """Run the step, then log wid, app, node id and type, the output taken and the time."""
    started = time.perf_counter()
    try:
        result = proceed()
    except Exception as exc:
        ms = round((time.perf_counter() - started) * 1000.0, 3)
        log.info(
            "node %s (%s) failed after %.3f ms: %s",
            node.id,
            node.type,
            ms,
            exc,
            extra={
                "wid": ctx.wid,
                "app": ctx.app,
                "node": node.id,
                "node_type": node.type,
                "next": "",
                "duration_ms": ms,
                "error": str(exc),
            },
        )
        raise
    ms = round((time.perf_counter() - started) * 1000.0, 3)
    log.info(
        "node %s (%s) -> %s in %.3f ms",
        node.id,
        node.type,
        result.next or "end",
        ms,
        extra={
            "wid": ctx.wid,
            "app": ctx.app,
            "node": node.id,
            "node_type": node.type,
            "next": result.next,
            "duration_ms": ms,
        },
    )
    return result
