"""The values of the execution history: what the engine hands over and what readers get back.

They are frozen msgspec Structs: cheap to build on the request path (about a dict's cost), and
they never change once submitted, so the writer can encode them on its own thread. The records
the engine hands over are untracked by the garbage collector (``gc=False``): they refer to
their values and nothing refers back, and thousands of them may wait in the writer's queue,
which each collection would otherwise walk.

On the way in, payloads are whole (the writer stores deltas) and a body may be bytes. On the way
out (:class:`HistoryReader`) the same types come back redacted and capped: payloads whole again,
bodies as text (or ``{"base64": …}`` for binary bodies), and a value cut at
``history.max_value_bytes`` carries a visible marker (see ``nflow.history._codec``).
"""

from __future__ import annotations

__all__ = [
    "RUN_STATUSES",
    "Change",
    "HostCall",
    "RunRecord",
    "RunSummary",
    "StepError",
    "StepRecord",
    "StepView",
]

from typing import Any, Literal

import msgspec

# ok: answered normally; error: a step failed (or the run answered 5xx by an error);
# limit: a limit ended the run (steps, time, memory, host calls).
RunStatus = Literal["ok", "error", "limit"]
RUN_STATUSES: tuple[str, ...] = ("ok", "error", "limit")


class HostCall(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One call a step made to a host function (``http_get``, ``get_user``, ``Date.now`` …)."""

    function: str
    args: Any = ()
    result: Any = None
    error: str | None = None
    duration_ms: float = 0.0


class StepError(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Why a step failed: the message, the JavaScript stack and the script line."""

    message: str
    stack: str = ""
    line: int | None = None


class StepRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One executed node. ``payload_before``/``payload_after`` are whole JSON values; the
    caller must not change them after submitting (pass the objects the step produced)."""

    index: int
    node_id: str
    node_type: str
    node_name: str = ""
    started_at: float | None = None  # Unix time, seconds
    payload_before: Any = None
    payload_after: Any = None
    next: str | None = None
    duration_ms: float = 0.0
    host_calls: tuple[HostCall, ...] = ()
    console: tuple[str, ...] = ()
    writes: tuple[Any, ...] = ()  # response writes, in order (status, headers, body parts)
    error: StepError | None = None


class RunRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One run of an app, from request to response.

    ``seed`` is the run's random seed; it must fit a signed 64-bit integer. ``journey`` ties
    the requests of one session together (a form wizard); ``parent_id`` names the run a fork
    or re-run came from.
    """

    id: str
    app: str
    started_at: float  # Unix time, seconds
    ended_at: float
    status: RunStatus = "ok"
    version: str = ""
    starter: str = ""
    wid: str = ""
    parent_id: str | None = None
    journey: str | None = None
    seed: int = 0
    method: str = ""
    path: str = ""
    query: str = ""
    request_headers: tuple[tuple[str, str], ...] = ()
    request_body: Any = None  # bytes or str on the way in
    response_status: int | None = None
    response_headers: tuple[tuple[str, str], ...] = ()
    response_body: Any = None
    limit_hit: str | None = None
    error: str | None = None
    steps: tuple[StepRecord, ...] = ()

    @property
    def failed(self) -> bool:
        return self.status != "ok"

    @property
    def duration_ms(self) -> float:
        return max(0.0, (self.ended_at - self.started_at) * 1000.0)


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A row of ``runs list``: the run without its request, response and steps."""

    id: str
    app: str
    version: str
    status: str
    started_at: float
    duration_ms: float
    steps: int
    method: str
    path: str
    response_status: int | None
    journey: str | None
    parent_id: str | None
    limit_hit: str | None
    error: str | None


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """One top-level key a step added, removed or changed in the payload."""

    key: str
    op: Literal["added", "removed", "changed"]
    before: Any = None
    after: Any = None


class StepView(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a recorded run with its payloads rebuilt and the difference between them."""

    run_id: str
    step: StepRecord
    diff: tuple[Change, ...] = ()
