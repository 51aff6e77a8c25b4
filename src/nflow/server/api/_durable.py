"""Durable runs over HTTP: state and response, cancellation, signals.

Served whenever ``[durable] enabled`` (with the management API's access rules), even when
the rest of the API is off: an async start answers with this status URL.
"""

from __future__ import annotations

__all__ = ["DurableRun", "DurableSignal", "run_cancel", "run_signal", "run_state"]

from typing import Any, Literal

import msgspec
import orjson

from nflow._http import Response
from nflow.durable import DurableRuns, RunView
from nflow.history import HistoryError, HistoryReader, run_json, to_builtins

from ._core import ApiCall, ApiError, full_api, ok


class DurableResponse(msgspec.Struct, kw_only=True):
    """The response as the flow wrote it (``body_base64`` when the body is not UTF-8)."""

    status: int
    headers: dict[str, str]
    body: str
    body_base64: bool = False


class DurableRun(msgspec.Struct, kw_only=True):
    """A durable run. When the run was also recorded in the execution history, the
    history's fields of its first execution come with it (``history_status`` is the
    history's own status)."""

    id: str
    app: str
    kind: Literal["request", "fork"]
    parent: str | None
    status: Literal["queued", "running", "waiting", "completed", "failed", "cancelled"]
    attempts: int
    steps_done: int
    next_node: str
    waiting_for: str | None
    error: str | None
    error_node: str | None
    created_at: str
    updated_at: str
    ended_at: str | None
    response: DurableResponse | None = None


class DurableSignal(msgspec.Struct, kw_only=True):
    """A signal delivered: the run's status after it (``queued`` when it was waiting for it)."""

    run_id: str
    signal: str
    status: str


def _durable(call: ApiCall) -> DurableRuns:
    durable = call.runtime.durable
    if durable is None:
        raise ApiError(404, "durable runs need [durable] enabled = true")
    return durable


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    import datetime

    moment = datetime.datetime.fromtimestamp(us / 1_000_000, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _view(view: RunView) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": view.id,
        "app": view.app,
        "kind": view.kind,
        "parent": view.parent_id,
        "status": view.status,
        "attempts": view.attempts,
        "steps_done": view.steps,
        "next_node": view.next_node,
        "waiting_for": view.waiting_for,
        "error": view.error,
        "error_node": view.error_node,
        "created_at": _iso(view.created_at),
        "updated_at": _iso(view.updated_at),
        "ended_at": _iso(view.ended_at),
    }
    if view.status == "completed" and view.response is not None:
        out["response"] = view.response
    return out


async def run_state(call: ApiCall) -> Response | None:
    """The durable run ``id``, merged with its history record; None: not a durable run."""
    runtime = call.runtime
    durable = runtime.durable
    if durable is None:
        return None
    run_id = call.params["id"]
    view = await runtime.io.run(durable.queue.get(run_id))
    if view is None:
        return None
    merged: dict[str, Any] = {}
    if full_api(runtime.config):  # the history's fields are the full API's to show
        reader = HistoryReader(runtime.store, keyring=runtime.services.keyring)
        try:
            found = await runtime.store_call(reader.get_run(run_id))
        except HistoryError:
            found = None
        if found is not None:
            merged = dict(to_builtins(run_json(found)))
            merged["history_status"] = merged.get("status")
            merged.pop("response", None)
    merged.update(_view(view))
    return ok(merged)


async def run_cancel(call: ApiCall) -> Response:
    durable = _durable(call)
    run_id = call.params["id"]
    outcome = await call.runtime.io.run(durable.queue.cancel(run_id))
    if outcome is None:
        raise ApiError(404, f"no durable run {run_id!r}")
    status, cancelled = outcome
    if not cancelled:
        raise ApiError(409, f"run {run_id} has already ended: {status}")
    view = await call.runtime.io.run(durable.queue.get(run_id))
    assert view is not None
    return ok(_view(view))


async def run_signal(call: ApiCall) -> Response:
    durable = _durable(call)
    run_id, name = call.params["id"], call.params["name"]
    if len(name) > 200:
        raise ApiError(400, "signal name: at most 200 characters")
    body = call.json_body()
    status = await call.runtime.io.run(
        durable.queue.signal(run_id, name, orjson.dumps(body).decode())
    )
    if status is None:
        raise ApiError(404, f"no durable run {run_id!r}")
    if status in ("completed", "failed", "cancelled"):
        raise ApiError(409, f"run {run_id} has already ended: {status}")
    return ok({"run_id": run_id, "signal": name, "status": status}, status=202)
