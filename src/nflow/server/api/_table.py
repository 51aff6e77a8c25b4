"""The management API's routes, in matching order (``runs/stats`` before ``runs/{id}``)."""

from __future__ import annotations

__all__ = ["ROUTES", "openapi_document"]

import functools
from typing import Any

import msgspec

from nflow._http import Response
from nflow.history import JSON_SHAPES, RUN_STATUSES, Stats

from . import _debug, _durable, _runs
from ._core import CLIENT_HEADER, PREFIX, ApiCall, Param, Route, ok

_SINCE = Param(
    "since",
    "Only runs started since: a duration ago (`30m`, `2h`, `7d`), an ISO 8601 date or time "
    "(UTC unless it names a zone) or Unix seconds.",
)


async def _openapi(call: ApiCall) -> Response:
    return ok(openapi_document())


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/openapi.json",
        _openapi,
        "getOpenApi",
        "This document",
        schema={"type": "object"},
    ),
    Route(
        "GET",
        "/runs",
        _runs.run_list,
        "listRuns",
        "Recorded runs, newest first",
        schema={"type": "array", "items": {"$ref": "#/components/schemas/RunSummary"}},
        params=(
            Param("app", "Only runs of this app."),
            Param(
                "status", "Only runs that ended so.", {"type": "string", "enum": list(RUN_STATUSES)}
            ),
            Param("journey", "Only the runs of this journey (a session's form wizard)."),
            _SINCE,
            Param(
                "limit",
                "At most this many runs.",
                {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
            ),
        ),
        errors=(400,),
        description="The same objects as `nflow runs list --json`.",
    ),
    Route(
        "GET",
        "/runs/stats",
        _runs.run_stats,
        "runStats",
        "Per-node profile of an app's runs",
        response=Stats,
        params=(
            Param("app", "The app to profile.", required=True),
            _SINCE,
            Param(
                "compare",
                "Two versions (digests or unique prefixes), `V1,V2`: one row per node and version.",
            ),
            Param(
                "max_runs",
                "Only the newest this many runs.",
                {"type": "integer", "minimum": 1, "maximum": 1000000, "default": 10000},
            ),
        ),
        errors=(400,),
        description="The same object as `nflow runs stats APP --json`.",
    ),
    Route(
        "GET",
        "/runs/{id}",
        _runs.run,
        "getRun",
        "One run with every step, or a durable run's state and response",
        schema={
            "anyOf": [
                {"$ref": "#/components/schemas/Run"},
                {"$ref": "#/components/schemas/DurableRun"},
            ]
        },
        errors=(400, 404),
        durable=True,
        description="The same object as `nflow runs show RUN --json`. `id` may be a unique "
        "prefix of 6 characters or more. For a durable run (an async start or a durable "
        "background branch; the full id), its state: `status`, `attempts` and, once "
        "completed, `response`, with the history's fields when it was recorded. Served "
        "whenever `[durable] enabled`, even with the rest of the API off.",
    ),
    Route(
        "DELETE",
        "/runs/{id}",
        _durable.run_cancel,
        "cancelRun",
        "Cancel a durable run that has not ended",
        response=_durable.DurableRun,
        errors=(404, 409, 415),
        durable=True,
        description="A run executing on some instance stops at its next host call or node.",
    ),
    Route(
        "POST",
        "/runs/{id}/signals/{name}",
        _durable.run_signal,
        "signalRun",
        "Deliver a signal (its JSON body) to a durable run",
        response=_durable.DurableSignal,
        status=202,
        errors=(400, 404, 409, 415),
        durable=True,
        description="A run parked in `wait_for_signal(name, …)` resumes with the body; a "
        "signal sent before the run waits for it is kept for it.",
    ),
    Route(
        "GET",
        "/runs/{id}/steps/{n}",
        _runs.run_step,
        "getRunStep",
        "One step: payload before and after, diff, host calls, logs",
        response=JSON_SHAPES[2],
        errors=(400, 404),
        description="The same object as `nflow runs show RUN --step N --json`.",
    ),
    Route(
        "POST",
        "/debug/sessions",
        _debug.session_create,
        "createDebugSession",
        "Run a request paused at breakpoints",
        response=_debug.DebugSessionState,
        status=201,
        body=_debug.NewDebugSession,
        errors=(400, 404, 409, 413, 415, 429),
        debug=True,
        description="Needs `[debug] enabled`. Answers once the run has paused or ended (or "
        "after 10 s if it is still busy). Normal traffic never pauses.",
    ),
    Route(
        "GET",
        "/debug/sessions/{id}",
        _debug.session_get,
        "getDebugSession",
        "A debug session: where it is paused, the payload, steps and logs so far",
        response=_debug.DebugSessionState,
        errors=(404,),
        debug=True,
    ),
    Route(
        "POST",
        "/debug/sessions/{id}/step",
        _debug.session_step,
        "stepDebugSession",
        "Run the node paused at, and pause before the next",
        response=_debug.DebugSessionState,
        errors=(404, 409, 415),
        debug=True,
    ),
    Route(
        "POST",
        "/debug/sessions/{id}/continue",
        _debug.session_continue,
        "continueDebugSession",
        "Run on to the next breakpoint or the end",
        response=_debug.DebugSessionState,
        errors=(404, 409, 415),
        debug=True,
    ),
    Route(
        "POST",
        "/debug/sessions/{id}/abort",
        _debug.session_abort,
        "abortDebugSession",
        "End the run at its next step with an error",
        response=_debug.DebugSessionState,
        errors=(404, 409, 415),
        debug=True,
    ),
)

_ERRORS = {
    400: "A parameter or the body is not valid",
    401: "Missing or wrong bearer token",
    403: "Client not allowed, or a change without the client header",
    404: "No such thing",
    405: "Method not allowed on this path",
    409: "The session or run is in no state for this",
    413: "Request body too large",
    415: "A change must be sent as application/json",
    429: "Too many debug sessions",
}


def _schema(route: Route) -> dict[str, Any]:
    if route.response is not None:
        return {"$ref": f"#/components/schemas/{route.response.__name__}"}
    return route.schema or {}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation,
        "summary": route.summary,
        "tags": ["debug" if route.debug else "runs" if "/runs" in route.path else "meta"],
        "responses": {
            str(route.status): {
                "description": route.summary,
                "content": {"application/json": {"schema": _schema(route)}},
            },
        },
    }
    if route.description:
        op["description"] = route.description
    params: list[dict[str, Any]] = []
    for name in route.pattern.groupindex:
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 0} if name == "n" else {"type": "string"},
            }
        )
    for p in route.params:
        params.append(
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "description": p.description,
                "schema": p.schema,
            }
        )
    if route.method == "POST":
        params.append(
            {
                "name": CLIENT_HEADER,
                "in": "header",
                "required": True,
                "description": "Any value: proves the call is not a forged browser form (CSRF).",
                "schema": {"type": "string"},
            }
        )
        body_schema = (
            {"$ref": f"#/components/schemas/{route.body.__name__}"}
            if route.body is not None
            else {"type": "object"}
        )
        op["requestBody"] = {
            "required": route.body is not None,
            "content": {"application/json": {"schema": body_schema}},
        }
    if params:
        op["parameters"] = params
    for status in sorted({401, 403, *route.errors}):
        op["responses"][str(status)] = {
            "description": _ERRORS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return op


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nflow")
    except PackageNotFoundError:
        return "0"


@functools.cache
def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for every route; the shapes' schemas come from their Structs."""
    shapes = {
        *JSON_SHAPES,
        _debug.DebugSessionState,
        _debug.NewDebugSession,
        _durable.DurableRun,
        _durable.DurableSignal,
    }
    _, components = msgspec.json.schema_components(
        sorted(shapes, key=lambda t: t.__name__), ref_template="#/components/schemas/{name}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(PREFIX + route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "nflow management API",
            "version": _version(),
            "description": (
                "Off unless `[api] enabled = true`. Without `api.token` only loopback clients "
                "are served; with it, clients in `api.allowed_ips` sending the bearer token. "
                f"Changes need `Content-Type: application/json` and an `{CLIENT_HEADER}` header. "
                'Errors are `{"code": status, "message": …}`.'
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{}, {"bearer": []}],
        "tags": [
            {"name": "runs", "description": "The execution history"},
            {"name": "debug", "description": "Breakpoints (needs `[debug] enabled`)"},
            {"name": "meta", "description": "This API"},
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
