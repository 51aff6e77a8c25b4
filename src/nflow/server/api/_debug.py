"""Debug sessions over HTTP: run a request paused at breakpoints, inspect, step, go on.

``POST /debug/sessions`` answers once the run has paused or ended (or after a few seconds if
it is still busy), so a client sees where it stopped without polling; ``step`` and
``continue`` do the same. Under ``nflow serve`` with several workers, calls on a session
reach it whatever worker receives them (see ``_relay``).
"""

from __future__ import annotations

__all__ = [
    "DebugSessionState",
    "NewDebugSession",
    "session_abort",
    "session_continue",
    "session_create",
    "session_get",
    "session_step",
]

import asyncio
import contextlib
import time
from typing import Any, Literal
from urllib.parse import urlencode

import msgspec
import orjson

from nflow._http import Request, Response
from nflow.engine import (
    Breakpoint,
    BreakpointError,
    Condition,
    DebugSession,
    SessionLimitReached,
)

from ._core import ApiCall, ApiError, ok
from ._relay import forward, listen

# How long a call waits for the run to pause or end before answering "running".
SETTLE_SECONDS = 10.0


class ConditionSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A test on the payload: ``key`` (a top-level key) or ``path`` (``user.id``,
    ``items[0].sku``) and exactly one of the tests."""

    key: str | msgspec.UnsetType = msgspec.UNSET
    path: str | msgspec.UnsetType = msgspec.UNSET
    equals: Any = msgspec.UNSET
    not_equals: Any = msgspec.UNSET
    in_: list[Any] | msgspec.UnsetType = msgspec.field(default=msgspec.UNSET, name="in")
    exists: bool | msgspec.UnsetType = msgspec.UNSET
    gt: float | msgspec.UnsetType = msgspec.UNSET
    lt: float | msgspec.UnsetType = msgspec.UNSET


class BreakpointSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Pause before ``node`` runs (when ``condition`` holds on its payload)."""

    node: str
    condition: ConditionSpec | None = None


class NewDebugSession(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The request to run under the debugger. A ``body`` that is not a string is sent as
    JSON (with ``Content-Type: application/json`` unless ``headers`` name one); ``query``
    is a query string or an object of names to values."""

    path: str
    method: str = "GET"
    query: str | dict[str, str | list[str]] = ""
    headers: dict[str, str] = {}
    body: Any = None
    breakpoints: list[BreakpointSpec] = []


class PausedAt(msgspec.Struct, kw_only=True):
    node: str
    type: str
    name: str


class TraceStep(msgspec.Struct, kw_only=True):
    """A step the run has done: the output it took (``next``) and how long it took."""

    node: str
    type: str
    next: str | None
    duration_ms: float
    error: str | None


class LogLine(msgspec.Struct, kw_only=True):
    level: str
    node: str
    message: str


class FinalResponse(msgspec.Struct, kw_only=True):
    """What the run answered; ``body`` is cut at 64 KiB, ``body_bytes`` its whole size."""

    status: int
    headers: list[tuple[str, str]]
    body: str
    body_bytes: int


class RunFailure(msgspec.Struct, kw_only=True):
    message: str
    node: str | None


class DebugSessionState(msgspec.Struct, kw_only=True):
    """A debug session: ``payload`` is what the node it is paused at is about to get;
    ``steps`` the steps done so far; ``response`` once the run has ended. ``node`` repeats
    ``paused_at.node`` and ``next`` the output the last step took, for a quick look."""

    id: str
    state: Literal["running", "paused", "finished", "aborted", "timed_out"]
    wid: str
    created_at: float
    expires_in_seconds: float
    request: dict[str, str]
    breakpoints: list[BreakpointSpec]
    paused_at: PausedAt | None
    payload: Any
    steps: list[TraceStep]
    logs: list[LogLine]
    response: FinalResponse | None
    error: RunFailure | None
    node: str | None = None
    next: str | None = None


def _view(session: DebugSession) -> dict[str, Any]:
    shown = session.snapshot()
    paused = shown.get("paused_at")
    steps = shown.get("steps") or []
    shown["node"] = paused["node"] if paused else None
    shown["next"] = steps[-1]["next"] if steps else None
    return shown


def _breakpoints(specs: list[BreakpointSpec]) -> list[Breakpoint]:
    out = []
    for i, spec in enumerate(specs):
        condition = None
        if spec.condition is not None:
            raw = {
                ("in" if name == "in_" else name): value
                for name, value in msgspec.structs.asdict(spec.condition).items()
                if value is not msgspec.UNSET
            }
            condition = Condition.parse(raw, f"breakpoints[{i}].condition")
        out.append(Breakpoint(node=spec.node, condition=condition))
    return out


def _request(spec: NewDebugSession, peer: str) -> Request:
    headers = dict(spec.headers)
    body = spec.body
    if body is None:
        raw = b""
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = orjson.dumps(body)
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    if raw and not any(k.lower() == "content-length" for k in headers):
        headers["Content-Length"] = str(len(raw))
    query = spec.query if isinstance(spec.query, str) else urlencode(spec.query, doseq=True)
    path = spec.path if spec.path.startswith("/") else "/" + spec.path
    return Request(
        spec.method,
        path,
        query_string=query.lstrip("?"),
        headers=list(headers.items()),
        body=raw,
        client=peer,
    )


async def _settled(session: DebugSession) -> Response:
    deadline = time.monotonic() + SETTLE_SECONDS
    while not session.settled() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return ok(_view(session))


def _missing(call: ApiCall) -> ApiError:
    return ApiError(404, f"no debug session {call.params['id']!r} (it may have timed out)")


async def _elsewhere(call: ApiCall) -> Response:
    """The answer of the worker that owns the session (see ``_relay``), or 404."""
    forwarded = await forward(call.params["id"], call.request, call.caller)
    if forwarded is None:
        raise _missing(call)
    return forwarded


async def session_create(call: ApiCall) -> Response:
    try:
        spec = msgspec.json.decode(call.request.body or b"null", type=NewDebugSession)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"request body: invalid JSON ({exc})") from None
    try:
        breakpoints = _breakpoints(spec.breakpoints)
    except BreakpointError as exc:
        raise ApiError(400, str(exc)) from None
    runtime = call.runtime
    await listen(runtime)  # so other workers can pass this session's calls on to us
    try:
        started = await runtime.debug_session(_request(spec, call.request.client), breakpoints)
    except SessionLimitReached as exc:
        raise ApiError(429, str(exc)) from None
    if isinstance(started, Response):
        # The request never reached a step: no route, a body too large …
        message = started.text
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            message = str(orjson.loads(started.body).get("message") or message)
        raise ApiError(started.status, f"the request was refused before any step: {message}")
    response = await _settled(started)
    response.status = 201
    response.headers.append(("location", f"{call.request.path}/{started.id}"))
    return response


async def session_get(call: ApiCall) -> Response:
    session = call.runtime.debug_sessions.get(call.params["id"])
    if session is None:
        return await _elsewhere(call)
    return ok(_view(session))


async def _go(call: ApiCall, command: Literal["continue", "step", "abort"]) -> Response:
    session = call.runtime.debug_sessions.get(call.params["id"])
    if session is None:
        return await _elsewhere(call)
    if not session.resume(command):
        raise ApiError(
            409,
            f"debug session {session.id} is {session.state}: "
            + ("it has ended" if command == "abort" else "only a paused run can go on"),
        )
    return await _settled(session)


async def session_step(call: ApiCall) -> Response:
    return await _go(call, "step")


async def session_continue(call: ApiCall) -> Response:
    return await _go(call, "continue")


async def session_abort(call: ApiCall) -> Response:
    return await _go(call, "abort")
