"""Routes nflow answers itself, before any playbook: health, the debug API, the management
API (``nflow.server.api``) and the studio page."""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import logging
import os
import platform
import sys
import time
from typing import TYPE_CHECKING, Any

from nflow._http import Request, Response, json_response

if TYPE_CHECKING:
    from nflow.config import Config
    from nflow.runtime import Runtime

log = logging.getLogger("nflow.server")

# Kept in step with nflow.server.api.PREFIX, which is imported only when the API is on.
API_PREFIX = "/_nflow/api"
# Kept in step with nflow.server._studio.STUDIO_PREFIX.
STUDIO_PREFIX = "/_nflow/studio"


def api_on(config: Config) -> bool:
    """Whether the management API is served: ``[api] enabled``, or the studio, which uses it."""
    return config.api.enabled or config.studio.enabled


async def builtin(runtime: Runtime, request: Request) -> Response | None:
    """A response for nflow's own routes, or None to let playbooks handle the request."""
    config = runtime.config
    path = request.path
    monitor = config.monitor
    if monitor.enabled and path == monitor.metrics_path and not monitor.metrics_port:
        return await _metrics(runtime)
    if monitor.enabled and path == monitor.health_check_path + "/ready":
        return await _ready(runtime)
    if config.monitor.enabled and path == config.monitor.health_check_path:
        if request.method not in ("GET", "HEAD"):
            return None
        return json_response(
            200,
            {
                "status": "healthy",
                "timestamp": int(time.time()),
                "uptime_seconds": round(time.time() - runtime.started, 3),
                "version": _version(),
                "processes": len(runtime.services.processes),
            },
        )
    if config.debug.enabled and (path == "/debug" or path.startswith("/debug/")):
        return await _debug(runtime, request)
    if api_on(config) and (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
        from nflow.server import api

        return await api.handle(runtime, request)
    if config.studio.enabled and (path == STUDIO_PREFIX or path.startswith(STUDIO_PREFIX + "/")):
        from nflow.server import api

        return api.studio_page(runtime, request)
    return None


async def _metrics(runtime: Runtime) -> Response:
    from nflow.observability import render_metrics

    metrics = runtime.metrics
    if metrics is not None:
        metrics.set_processes(len(runtime.services.processes))
        if runtime.is_open:
            metrics.set_js_runtimes(runtime.engine.vms.counts())
        try:
            stats = await runtime.store_call(runtime.store.pool_stats())
            metrics.set_db_pool(stats.get("open", 0), stats.get("in_use", 0), stats.get("idle", 0))
        except Exception:  # metrics must render even when the database is down
            log.warning("database pool statistics unavailable")
    body, content_type = await asyncio.to_thread(render_metrics)
    return Response(200, body, [("content-type", content_type)])


async def _ready(runtime: Runtime) -> Response:
    """Readiness: database, Redis when configured, a JS runtime that evaluates."""
    components: dict[str, dict[str, str]] = {}

    async def check(name: str, probe: Any) -> None:
        try:
            await asyncio.wait_for(probe, timeout=5)
            components[name] = {"status": "healthy"}
        except Exception as exc:
            components[name] = {"status": "unhealthy", "message": f"{type(exc).__name__}: {exc}"}

    await check("database", runtime.store_call(runtime.store.ping()))
    if runtime.config.redis.host:
        await check("redis", runtime.redis_ping())
    await check("js", asyncio.to_thread(runtime.js_selftest))
    failing = [name for name, c in components.items() if c["status"] != "healthy"]
    status = 503 if failing else 200
    body: dict[str, Any] = {
        "status": "ready" if not failing else "not ready",
        "components": components,
    }
    if failing:
        body["failing"] = failing
    return json_response(status, body)


def _client_ip(request: Request) -> str:
    # The peer address only: X-Forwarded-For is trivially spoofed (the original trusted it).
    return request.client_ip


def _allowed(runtime: Runtime, request: Request) -> Response | None:
    debug = runtime.config.debug
    token = request.header("x-debug-token") or (request.query.get("debug_token") or [""])[0]
    if debug.auth_token and not hmac.compare_digest(token.encode(), debug.auth_token.encode()):
        log.warning("debug access refused: bad token", extra={"ip": _client_ip(request)})
        return json_response(401, {"error": "Invalid or missing debug token"})
    if debug.allowed_ips:
        ip = _client_ip(request)
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            addr = None
        if addr is None or not any(
            addr in ipaddress.ip_network(net, strict=False) for net in debug.allowed_ips
        ):
            log.warning("debug access refused: ip not allowed", extra={"ip": ip})
            return json_response(403, {"error": f"IP {ip} not allowed"})
    return None


async def _debug(runtime: Runtime, request: Request) -> Response:
    from nflow.runtime import app_summary

    refused = _allowed(runtime, request)
    if refused is not None:
        return refused
    log.info("debug access %s %s", request.method, request.path, extra={"ip": _client_ip(request)})
    parts = [p for p in request.path.split("/") if p][1:]
    processes = runtime.services.processes
    if request.method == "GET" and parts == ["info"]:
        return json_response(
            200,
            {
                "service": "nflow",
                "version": _version(),
                "python_version": sys.version.split()[0],
                "os": sys.platform,
                "arch": platform.machine(),
                "cpus": os.cpu_count(),
                "pid": os.getpid(),
                "uptime_seconds": round(time.time() - runtime.started, 3),
            },
        )
    if request.method == "GET" and parts == ["processes"]:
        procs = processes.list()
        return json_response(
            200, {"total": len(procs), "processes": {p.wid: p.as_dict() for p in procs}}
        )
    if len(parts) == 2 and parts[0] == "process":
        process = processes.get(parts[1])
        if request.method == "GET":
            if process is None:
                return json_response(404, {"error": "Process not found"})
            return json_response(200, process.as_dict())
        if request.method == "DELETE":
            if not processes.kill(parts[1]):
                return json_response(404, {"error": "Process not found"})
            return json_response(200, {"message": "Process killed", "wid": parts[1]})
    if request.method == "GET" and parts == ["starters"]:
        routes = app_summary(runtime)
        return json_response(200, {"total_starters": len(routes), "starters": routes})
    return json_response(404, {"error": "unknown debug endpoint"})


@functools.cache
def _version() -> str:
    # Cached: reading package metadata from disk on every health probe cost ~300 µs.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nflow")
    except PackageNotFoundError:
        return "0"
