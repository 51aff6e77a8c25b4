"""Host functions of durable runs: ``run_info()`` and ``wait_for_signal(name, timeout_ms)``.

``sleep`` (in ``_core``) parks a durable run too when it is long enough.
"""

from __future__ import annotations

__all__ = ["durable"]

from typing import Any

from nflow.jsapi._context import DurableContext, HostError, RunContext
from nflow.jsapi._host import HostTable

durable = HostTable()


@durable.function("run_info")
def run_info(ctx: RunContext) -> dict[str, Any] | None:
    """``{run_id, attempt, idempotency_key}`` in a durable run; ``null`` elsewhere.

    The node that was running when an instance died, or that failed, runs again: the key is
    the same on every attempt of a node, so a service that deduplicates on it sees one call.
    """
    state = ctx.durable
    if state is None:
        return None
    return {"run_id": state.run_id, "attempt": state.attempt, "idempotency_key": state.step_key()}


@durable.function("wait_for_signal")
def wait_for_signal(ctx: RunContext, name: object, timeout_ms: object) -> Any:
    """The JSON body posted to ``/_nflow/api/runs/{id}/signals/{name}``, or ``null`` after
    ``timeout_ms``; the run is parked meanwhile."""
    state = _durable(ctx, "wait_for_signal")
    if not isinstance(name, str) or not name or len(name) > 200:
        raise HostError("wait_for_signal(name, timeout_ms): name must be a non-empty string")
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float) or timeout_ms <= 0:
        raise HostError("wait_for_signal(name, timeout_ms): timeout_ms must be a positive number")
    _, body = state.wait_for_signal(name, int(timeout_ms))
    return body


def _durable(ctx: RunContext, fn: str) -> DurableContext:
    state = ctx.durable
    if state is None:
        raise HostError(
            f"{fn} works only in durable runs: an async starter (data.async), a request with "
            "Prefer: respond-async, or a gorutine branch, with [durable] enabled"
        )
    return state
