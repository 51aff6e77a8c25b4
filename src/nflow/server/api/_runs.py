"""The execution history over HTTP: the same JSON as ``nflow runs list|show|stats --json``."""

from __future__ import annotations

__all__ = ["run", "run_list", "run_stats", "run_step"]

from typing import Any

from nflow._http import Response
from nflow.history import (
    RUN_STATUSES,
    HistoryError,
    HistoryReader,
    parse_since,
    run_json,
    step_view_json,
    summary_json,
)

from ._core import ApiCall, ApiError, full_api, ok
from ._durable import run_state


async def _read(call: ApiCall, work: Any) -> Any:
    runtime = call.runtime
    reader = HistoryReader(runtime.store, keyring=runtime.services.keyring)
    try:
        # The store belongs to nflow's I/O loop, not to the server's.
        return await runtime.store_call(work(reader))
    except HistoryError as exc:
        raise ApiError(400, str(exc)) from None


def _since(call: ApiCall) -> float | None:
    text = call.query("since")
    if not text:
        return None
    try:
        return parse_since(text)
    except ValueError as exc:
        raise ApiError(400, f"query parameter {exc}") from None


async def run_list(call: ApiCall) -> Response:
    status = call.query("status")
    if status is not None and status not in RUN_STATUSES:
        raise ApiError(
            400,
            f"query parameter status: expected one of {', '.join(RUN_STATUSES)}, got {status!r}",
        )
    limit = call.query_int("limit", 50, low=1, high=1000)
    since = _since(call)

    async def work(reader: HistoryReader) -> Any:
        return await reader.list_runs(
            app=call.query("app") or None,
            status=status,
            journey=call.query("journey") or None,
            since=since,
            limit=limit,
            version=call.query("version") or None,
        )

    return ok([summary_json(r) for r in await _read(call, work)])


async def run(call: ApiCall) -> Response:
    durable = await run_state(call)
    if durable is not None:
        return durable
    if not full_api(call.runtime.config):
        raise ApiError(404, f"no durable run {call.params['id']!r}")
    run_id = call.params["id"]

    async def work(reader: HistoryReader) -> Any:
        return await reader.get_run(run_id)

    found = await _read(call, work)
    if found is None:
        raise ApiError(404, f"no run {run_id!r} in the history")
    return ok(run_json(found))


async def run_step(call: ApiCall) -> Response:
    run_id, text = call.params["id"], call.params["n"]
    try:
        index = int(text)
    except ValueError:
        raise ApiError(400, f"step number: expected an integer, got {text!r}") from None

    async def work(reader: HistoryReader) -> Any:
        return await reader.get_step(run_id, index)

    found = await _read(call, work)
    if found is None:
        raise ApiError(404, f"no step {index} of run {run_id!r} in the history")
    return ok(step_view_json(found))


async def run_stats(call: ApiCall) -> Response:
    app = call.query("app")
    if not app:
        raise ApiError(400, "query parameter app: required (the app to profile)")
    since = _since(call)
    compare: tuple[str, str] | None = None
    text = call.query("compare")
    if text:
        versions = [v.strip() for v in text.split(",")]
        if len(versions) != 2 or not all(versions):
            raise ApiError(400, f"query parameter compare: expected V1,V2, got {text!r}")
        compare = (versions[0], versions[1])
    max_runs = call.query_int("max_runs", 10_000, low=1, high=1_000_000)

    async def work(reader: HistoryReader) -> Any:
        return await reader.stats(app, since=since, compare=compare, max_runs=max_runs)

    return ok(await _read(call, work))
