"""The management API's routes, in matching order (``runs/stats`` before ``runs/{id}``)."""

from __future__ import annotations

__all__ = ["ROUTES", "openapi_document"]

import functools
from typing import Any

import msgspec

from nflow._http import Response
from nflow.history import JSON_SHAPES, RUN_STATUSES, Stats

from . import _apps, _catalog, _debug, _login, _replay, _runs, _versions
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
        "POST",
        "/login",
        _login.login,
        "login",
        "Log in to the studio with an nflow user; sets the nflow_studio cookie",
        response=_login.Me,
        body=_login.Credentials,
        errors=(400, 404, 415, 429),
        public=True,
        tag="auth",
        description="Needs `[studio] login = true`. The user's role must be in "
        "`[studio] roles`. The cookie is HttpOnly, SameSite=Strict, Path=/_nflow, and Secure "
        "over https.",
    ),
    Route(
        "POST",
        "/logout",
        _login.logout,
        "logout",
        "End the studio login (the cookie is revoked and cleared)",
        response=_login.Me,
        errors=(415,),
        public=True,
        tag="auth",
    ),
    Route("GET", "/me", _login.me, "me", "Who the caller is", response=_login.Me, tag="auth"),
    Route(
        "GET",
        "/apps",
        _apps.app_list,
        "listApps",
        "The apps served: version, tabs and routes",
        schema={"type": "array", "items": {"$ref": "#/components/schemas/AppSummary"}},
        tag="apps",
    ),
    Route(
        "GET",
        "/apps/{name}",
        _apps.app_get,
        "getApp",
        "An app's document (after the load-time fixes), its version as ETag",
        response=_apps.AppDocument,
        errors=(404, 409),
        tag="apps",
    ),
    Route(
        "PUT",
        "/apps/{name}",
        _apps.app_put,
        "saveApp",
        "Save an app's document as a new version, if it is still at the If-Match version",
        response=_apps.AppSaved,
        body=_apps.SaveRequest,
        errors=(400, 404, 409, 415, 428),
        tag="apps",
        description='Needs `If-Match: "<version>"` (428 without). 409 with `current` when '
        "the app changed meanwhile. The saving worker serves the new version at once, the "
        "others within their reload interval.",
    ),
    Route(
        "POST",
        "/apps/{name}/check",
        _apps.app_check,
        "checkApp",
        "The analyzer's findings (as `nflow check`) on a document, or on the stored one",
        response=_apps.Findings,
        body=_apps.CheckRequest,
        errors=(400, 404, 415),
        tag="apps",
    ),
    Route(
        "GET",
        "/apps/{name}/versions",
        _versions.app_versions,
        "listAppVersions",
        "An app's stored versions, newest first",
        schema={"type": "array", "items": {"$ref": "#/components/schemas/VersionInfo"}},
        errors=(400, 404),
        tag="versions",
    ),
    Route(
        "GET",
        "/apps/{name}/diff",
        _versions.app_diff,
        "diffAppVersions",
        "What changed between two versions",
        response=_versions.Diff,
        params=(
            Param("from", "The older version (id or a 4+ character prefix).", required=True),
            Param("to", "The newer version (id or a 4+ character prefix).", required=True),
        ),
        errors=(400,),
        tag="versions",
    ),
    Route(
        "GET",
        "/apps/{name}/release",
        _versions.app_release_get,
        "getAppRelease",
        "Which versions serve what share of new clients, and the release history",
        response=_versions.ReleaseState,
        errors=(400,),
        tag="versions",
    ),
    Route(
        "POST",
        "/apps/{name}/release",
        _versions.app_release,
        "releaseApp",
        "Serve versions at these percentages (adding up to 100)",
        response=_versions.ReleaseState,
        body=_versions.ReleaseChange,
        errors=(400, 415),
        tag="versions",
    ),
    Route(
        "POST",
        "/apps/{name}/rollback",
        _versions.app_rollback,
        "rollbackApp",
        "Restore the release before the last change (or serve `to` alone)",
        response=_versions.ReleaseState,
        body=_versions.RollbackRequest,
        errors=(400, 415),
        tag="versions",
    ),
    Route(
        "GET",
        "/modules",
        _catalog.module_list,
        "listModules",
        "The modules table: the designer's palette",
        schema={"type": "array", "items": {"$ref": "#/components/schemas/ModuleInfo"}},
        tag="catalog",
        description="`form` is the original designer's panel HTML: never render it as markup.",
    ),
    Route(
        "GET",
        "/templates",
        _catalog.template_list,
        "listTemplates",
        "The templates' names",
        schema={"type": "array", "items": {"$ref": "#/components/schemas/TemplateName"}},
        tag="catalog",
    ),
    Route(
        "GET",
        "/templates/{name}",
        _catalog.template_get,
        "getTemplate",
        "One template",
        response=_catalog.TemplateInfo,
        errors=(404,),
        tag="catalog",
    ),
    Route(
        "GET",
        "/queries",
        _catalog.query_list,
        "listQueries",
        "The pinned queries",
        schema={"type": "array", "items": {"$ref": "#/components/schemas/QueryInfo"}},
        tag="catalog",
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
            Param("version", "Only runs of this app version (an id or a 4+ character prefix)."),
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
        "One run with every step",
        response=JSON_SHAPES[1],
        errors=(400, 404),
        description="The same object as `nflow runs show RUN --json`. `id` may be a unique "
        "prefix of 6 characters or more.",
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
        "/runs/{id}/replay",
        _replay.run_replay,
        "replayRun",
        "Replay a run on its version with its recorded host calls; the first difference",
        response=_replay.ReplayOutcome,
        errors=(400, 404, 409, 415),
        description="The same as `nflow runs replay RUN`. No mail is sent, no HTTP call made.",
    ),
    Route(
        "POST",
        "/runs/{id}/rerun",
        _replay.run_rerun,
        "rerunRun",
        "Re-run a run from a step on the app's current version; the new run is recorded",
        response=_replay.RerunOutcome,
        body=_replay.RerunRequest,
        errors=(400, 404, 409, 415),
        description="The same as `nflow runs rerun RUN --from-step N`. Host calls the record "
        "made are answered from it unless `live`.",
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
    409: "A conflict: the app changed meanwhile, or the session is in no state for this",
    413: "Request body too large",
    415: "A change must be sent as application/json",
    428: "A save needs If-Match",
    429: "Too many debug sessions, or too many failed logins",
}


def _schema(route: Route) -> dict[str, Any]:
    if route.response is not None:
        return {"$ref": f"#/components/schemas/{route.response.__name__}"}
    return route.schema or {}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation,
        "summary": route.summary,
        "tags": [
            route.tag or ("debug" if route.debug else "runs" if "/runs" in route.path else "meta")
        ],
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
    if route.method == "PUT":
        params.append(
            {
                "name": "If-Match",
                "in": "header",
                "required": True,
                "description": 'The version edited: the ETag of the GET (`"<version>"`).',
                "schema": {"type": "string"},
            }
        )
    if route.method in ("POST", "PUT"):
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
    shapes = {*JSON_SHAPES, _debug.DebugSessionState, _debug.NewDebugSession}
    shapes |= {r.response for r in ROUTES if r.response is not None}
    shapes |= {r.body for r in ROUTES if r.body is not None}
    shapes |= {
        _apps.AppSummary,
        _versions.VersionInfo,
        _catalog.ModuleInfo,
        _catalog.TemplateName,
        _catalog.QueryInfo,
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
                "Off unless `[api] enabled = true` or `[studio] enabled = true`. Without "
                "`api.token` and `[studio] login` only loopback clients are served; otherwise "
                "clients in `api.allowed_ips` sending the bearer token or a studio login "
                "cookie (`POST /login`). "
                f"Changes need `Content-Type: application/json` and an `{CLIENT_HEADER}` header. "
                'Errors are `{"code": status, "message": …}`.'
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{}, {"bearer": []}, {"studioLogin": []}],
        "tags": [
            {"name": "auth", "description": "Studio logins"},
            {"name": "apps", "description": "App documents: read, save, check"},
            {"name": "versions", "description": "Versions and releases"},
            {"name": "catalog", "description": "Modules, templates and queries"},
            {"name": "runs", "description": "The execution history, replay and re-run"},
            {"name": "debug", "description": "Breakpoints (needs `[debug] enabled`)"},
            {"name": "meta", "description": "This API"},
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "studioLogin": {"type": "apiKey", "in": "cookie", "name": "nflow_studio"},
            },
        },
    }
