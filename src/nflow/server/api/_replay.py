"""Replaying a recorded run and re-running one from a step, over HTTP: the same as
``nflow runs replay`` and ``nflow runs rerun`` (see :mod:`nflow.replay`).

Both open a runtime of their own on the server's database, so they run in a thread and
never share this worker's JS runtimes or history writer.
"""

from __future__ import annotations

__all__ = ["ReplayOutcome", "RerunOutcome", "RerunRequest", "run_replay", "run_rerun"]

import asyncio
from typing import Any

import msgspec

from nflow._http import Response
from nflow.errors import NflowError
from nflow.replay import ReplayError, replay, rerun

from ._core import ApiCall, ApiError, ok


class DivergenceInfo(msgspec.Struct):
    """Where the replay first differed: ``step`` null for the response; ``what`` says how
    (``expected`` and ``actual`` are inside that text, null here)."""

    step: int | None
    node: str
    what: str
    expected: Any = None
    actual: Any = None


class ReplayOutcome(msgspec.Struct):
    run_id: str
    steps: int
    identical: bool
    divergence: DivergenceInfo | None


class RerunRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The step to start from (its recorded ``payload_before``); ``live``: make every host
    call for real instead of answering the recorded ones from the record."""

    from_step: int
    live: bool = False


class ResponseInfo(msgspec.Struct):
    status: int
    headers: list[tuple[str, str]]
    body: str


class RerunOutcome(msgspec.Struct):
    """The new run (recorded, with the re-run run as its parent) and what it answered."""

    run_id: str
    parent_id: str
    from_step: int
    node: str
    status: str
    response: ResponseInfo
    served: int
    live: int


async def run_replay(call: ApiCall) -> Response:
    runtime = call.runtime
    run_id = call.params["id"]
    try:
        result = await asyncio.to_thread(
            replay, runtime.config, run_id, database_url=runtime.database_url
        )
    except ReplayError as exc:
        raise ApiError(409, str(exc)) from None
    except NflowError as exc:  # an ambiguous id prefix, a database error …
        raise ApiError(400, str(exc)) from None
    if result is None:
        raise ApiError(404, f"no run {run_id!r} in the history")
    found = result.divergence
    return ok(
        ReplayOutcome(
            result.run_id,
            result.steps,
            result.identical,
            DivergenceInfo(found.step, found.node, found.what) if found is not None else None,
        )
    )


async def run_rerun(call: ApiCall) -> Response:
    runtime = call.runtime
    run_id = call.params["id"]
    try:
        spec = msgspec.json.decode(call.request.body or b"null", type=RerunRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(400, f'request body: expected {{"from_step": N}} ({exc})') from None
    try:
        result = await asyncio.to_thread(
            rerun,
            runtime.config,
            run_id,
            spec.from_step,
            live=spec.live,
            database_url=runtime.database_url,
        )
    except ReplayError as exc:
        raise ApiError(409, str(exc)) from None
    except NflowError as exc:  # an ambiguous id prefix, a database error …
        raise ApiError(400, str(exc)) from None
    if result is None:
        raise ApiError(404, f"no run {run_id!r} in the history")
    answered = result.response
    return ok(
        RerunOutcome(
            run_id=result.run_id,
            parent_id=result.parent_id,
            from_step=result.from_step,
            node=result.node,
            status=result.status,
            response=ResponseInfo(
                answered.status,
                list(answered.headers),
                answered.body.decode("utf-8", "replace"),
            ),
            served=result.served,
            live=result.live,
        )
    )
