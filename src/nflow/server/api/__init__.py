"""The management API under ``/_nflow/api``: off unless ``[api] enabled = true``.

Endpoints (described by ``GET /_nflow/api/openapi.json``): the execution history
(``/runs``, ``/runs/{id}``, ``/runs/{id}/steps/{n}``, ``/runs/stats``) and, with
``[debug] enabled``, debug sessions that pause a run at breakpoints (``/debug/sessions``).
Access rules, CSRF protection and the audit log are in ``_core``; the route table and the
OpenAPI document in ``_table``.
"""

from __future__ import annotations

__all__ = ["PREFIX", "ROUTES", "handle", "openapi_document", "studio_page"]

import logging
from typing import TYPE_CHECKING

from nflow._http import Request, Response

from ._core import (
    PREFIX,
    ApiCall,
    ApiError,
    Caller,
    audit,
    check_access,
    check_mutation,
    check_peer,
    error_response,
    full_api,
)
from ._relay import answer_with
from ._table import ROUTES, openapi_document

if TYPE_CHECKING:
    from nflow.runtime import Runtime

log = logging.getLogger("nflow.server")


async def handle(runtime: Runtime, request: Request) -> Response:
    """Answer a request whose path starts with :data:`PREFIX`; every call is audited."""
    outcome = "ok"
    try:
        caller = await check_access(runtime, request, public=_public(request))
        response = await _route(runtime, request, caller)
    except ApiError as exc:
        outcome = "refused" if exc.status in (401, 403) else "error"
        response = error_response(exc)
    except Exception:
        log.exception("management API: %s %s failed", request.method, request.path)
        outcome = "error"
        response = error_response(ApiError(500, "internal error; see the server log"))
    audit(request, response.status, outcome)
    return response


def _public(request: Request) -> bool:
    sub = request.path[len(PREFIX) :] or "/"
    return any(r.public and r.method == request.method and r.match(sub) is not None for r in ROUTES)


async def _route(runtime: Runtime, request: Request, caller: Caller) -> Response:
    sub = request.path[len(PREFIX) :] or "/"
    allowed: list[str] = []
    debug_off = False
    for route in ROUTES:
        params = route.match(sub)
        if params is None:
            continue
        if not route.durable and not full_api(runtime.config):
            continue  # only [durable] is on: its routes alone are served
        if route.debug and not runtime.config.debug.enabled:
            debug_off = True
            continue
        if route.method != request.method and not (
            route.method == "GET" and request.method == "HEAD"
        ):
            allowed.append(route.method)
            continue
        check_mutation(request)
        return await route.handler(ApiCall(runtime, request, params, caller))
    if allowed:
        raise ApiError(
            405,
            f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}",
            {"allow": ", ".join(allowed)},
        )
    if debug_off:
        raise ApiError(404, "debug sessions need [debug] enabled = true")
    raise ApiError(404, f"no management API endpoint {request.path}; see {PREFIX}/openapi.json")


async def _passed_on(runtime: Runtime, request: Request, caller: Caller) -> Response:
    """A call another worker passed on (see ``_relay``): already let in and audited there."""
    try:
        return await _route(runtime, request, caller)
    except ApiError as exc:
        return error_response(exc)


# A worker that owns a debug session answers the calls other workers pass on.
answer_with(_passed_on)


def studio_page(runtime: Runtime, request: Request) -> Response:
    """A studio file for a peer that may reach the API (the page needs no credentials: it
    holds none, and every API call it makes is checked)."""
    from nflow.server._studio import studio_file

    try:
        check_peer(runtime, request)
    except ApiError as exc:
        audit(request, exc.status, "refused")
        return error_response(exc)
    return studio_file(request)
