"""The JSON shapes of the history, as ``nflow runs … --json`` prints them and the management
API serves them.

Each shape is a msgspec Struct, so the command line, the HTTP API and the API's OpenAPI
document (``msgspec.json.schema_components`` over :data:`SHAPES`) cannot drift apart. Times are
ISO 8601 strings in UTC with milliseconds; durations are milliseconds rounded to microseconds.
"""

from __future__ import annotations

__all__ = [
    "SHAPES",
    "NodeStats",
    "Stats",
    "VersionTotals",
    "iso_time",
    "run_json",
    "step_json",
    "step_view_json",
    "summary_json",
    "to_builtins",
]

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from . import _records as rec


def iso_time(seconds: float | None) -> str | None:
    """Unix seconds as ISO 8601 in UTC with milliseconds; ``None`` stays ``None``."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _ms(value: float) -> float:
    return round(value, 3)


class RunSummary(msgspec.Struct, kw_only=True):
    """A recorded run without its request, response and steps."""

    id: str
    app: str
    version: str
    status: str
    started_at: str | None
    duration_ms: float
    steps: int
    method: str
    path: str
    response_status: int | None
    journey: str | None
    parent: str | None
    limit: str | None
    error: str | None


class HostCall(msgspec.Struct, kw_only=True):
    """One call a step made to a host function, with its arguments and result (capped)."""

    function: str
    args: Any
    result: Any
    error: str | None
    duration_ms: float


class StepError(msgspec.Struct, kw_only=True):
    """Why a step failed: message, JavaScript stack and script line."""

    message: str
    stack: str
    line: int | None


class Step(msgspec.Struct, kw_only=True):
    """One executed node with its whole payload before and after."""

    index: int
    node: str
    type: str
    name: str
    next: str | None
    started_at: str | None
    duration_ms: float
    payload_before: Any
    payload_after: Any
    host_calls: list[HostCall]
    console: list[str]
    writes: list[Any]
    error: StepError | None


class Change(msgspec.Struct, kw_only=True):
    """A top-level payload key a step added, removed or changed."""

    key: str
    op: Literal["added", "removed", "changed"]
    before: Any
    after: Any


class StepDetail(Step, kw_only=True):
    """One step of a run with the difference between its payloads."""

    run: str
    diff: list[Change]


class RecordedRequest(msgspec.Struct, kw_only=True):
    """The request a run answered; credentials are redacted, bodies capped."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: Any


class RecordedResponse(msgspec.Struct, kw_only=True):
    """The response a run gave."""

    status: int | None
    headers: list[tuple[str, str]]
    body: Any


class Run(msgspec.Struct, kw_only=True):
    """A recorded run with its request, response and every step."""

    id: str
    app: str
    version: str
    status: str
    started_at: str | None
    ended_at: str | None
    duration_ms: float
    starter: str
    wid: str
    parent: str | None
    journey: str | None
    seed: int
    request: RecordedRequest
    response: RecordedResponse
    limit: str | None
    error: str | None
    steps: list[Step]


class NodeStats(msgspec.Struct, kw_only=True):
    """How one node performed over the selected runs (of one version when comparing)."""

    node: str
    type: str
    name: str
    version: str | None
    runs: int
    errors: int
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    total_ms: float
    time_share: float  # of the time all nodes took
    host_ms: float
    host_share: float  # of this node's own time, spent in host calls


class VersionTotals(msgspec.Struct, kw_only=True):
    """One version's runs, time and bottleneck, when two versions are compared."""

    version: str
    runs: int
    total_ms: float
    bottleneck: str | None


class Stats(msgspec.Struct, kw_only=True):
    """Per-node profile of an app's recorded runs; ``bottleneck`` is the node that took the
    most time in all. When comparing, ``nodes`` has one entry per node and version and
    ``compare`` the two versions' totals."""

    app: str
    since: str | None
    runs: int
    total_ms: float
    bottleneck: str | None
    nodes: list[NodeStats]
    compare: list[VersionTotals]


class Error(msgspec.Struct, kw_only=True):
    """Every error the management API answers."""

    code: int
    message: str


# The shapes the OpenAPI document describes (their nested shapes come along).
SHAPES: tuple[type[msgspec.Struct], ...] = (RunSummary, Run, StepDetail, Stats, Error)


def to_builtins(value: Any) -> Any:
    """Shapes as plain dicts and lists, keys in declaration order."""
    return msgspec.to_builtins(value)


def summary_json(run: rec.RunSummary) -> RunSummary:
    return RunSummary(
        id=run.id,
        app=run.app,
        version=run.version,
        status=run.status,
        started_at=iso_time(run.started_at),
        duration_ms=_ms(run.duration_ms),
        steps=run.steps,
        method=run.method,
        path=run.path,
        response_status=run.response_status,
        journey=run.journey,
        parent=run.parent_id,
        limit=run.limit_hit,
        error=run.error,
    )


def _step_fields(step: rec.StepRecord) -> dict[str, Any]:
    error = step.error
    return {
        "index": step.index,
        "node": step.node_id,
        "type": step.node_type,
        "name": step.node_name,
        "next": step.next,
        "started_at": iso_time(step.started_at),
        "duration_ms": _ms(step.duration_ms),
        "payload_before": step.payload_before,
        "payload_after": step.payload_after,
        "host_calls": [
            HostCall(
                function=c.function,
                args=c.args,
                result=c.result,
                error=c.error,
                duration_ms=_ms(c.duration_ms),
            )
            for c in step.host_calls
        ],
        "console": list(step.console),
        "writes": list(step.writes),
        "error": (
            StepError(message=error.message, stack=error.stack, line=error.line)
            if error is not None
            else None
        ),
    }


def step_json(step: rec.StepRecord) -> Step:
    return Step(**_step_fields(step))


def step_view_json(view: rec.StepView) -> StepDetail:
    """A step as ``runs show RUN --step N --json`` prints it: the run id and the diff too."""
    return StepDetail(
        run=view.run_id,
        diff=[Change(key=c.key, op=c.op, before=c.before, after=c.after) for c in view.diff],
        **_step_fields(view.step),
    )


def run_json(run: rec.RunRecord) -> Run:
    return Run(
        id=run.id,
        app=run.app,
        version=run.version,
        status=run.status,
        started_at=iso_time(run.started_at),
        ended_at=iso_time(run.ended_at),
        duration_ms=_ms(run.duration_ms),
        starter=run.starter,
        wid=run.wid,
        parent=run.parent_id,
        journey=run.journey,
        seed=run.seed,
        request=RecordedRequest(
            method=run.method,
            path=run.path,
            query=run.query,
            headers=[(k, v) for k, v in run.request_headers],
            body=run.request_body,
        ),
        response=RecordedResponse(
            status=run.response_status,
            headers=[(k, v) for k, v in run.response_headers],
            body=run.response_body,
        ),
        limit=run.limit_hit,
        error=run.error,
        steps=[step_json(s) for s in run.steps],
    )
