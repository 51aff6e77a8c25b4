"""Adapters from HTTP server protocols to ``Runtime.handle``: RSGI (granian) and ASGI."""

from __future__ import annotations

import asyncio
import gc
import gzip
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from nflow._http import Request, Response, json_response
from nflow.logs import access_log
from nflow.ratelimit import (
    Decision,
    MemoryRateLimiter,
    allowed_headers,
    rejection,
)
from nflow.runtime import Runtime
from nflow.server._body import read_asgi_body, read_rsgi_body
from nflow.server._routes import API_PREFIX, STUDIO_PREFIX, api_on, builtin

if TYPE_CHECKING:
    from nflow.server._lifecycle import WorkerLifecycle
    from nflow.server._reload import Reloader

log = logging.getLogger("nflow.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Plan:
    """What :func:`dispatch` reads from the config on every request, worked out once.

    A SIGHUP reload swaps ``runtime.config`` (and maybe the limiter) for new objects; the plan
    is rebuilt on the first request that sees them.
    """

    __slots__ = (
        "access",
        "api",
        "compress_min",
        "config",
        "debug",
        "excluded_paths",
        "limiter",
        "memory_limiter",
        "own_paths",
        "peer_keys",
        "rate_config",
        "studio",
    )

    def __init__(self, runtime: Runtime) -> None:
        config = runtime.config
        monitor = config.monitor
        self.config = config
        self.limiter = runtime.limiter
        self.memory_limiter = self.limiter if isinstance(self.limiter, MemoryRateLimiter) else None
        own: set[str] = set()
        if monitor.enabled:
            own.update((monitor.health_check_path, monitor.health_check_path + "/ready"))
            if not monitor.metrics_port:
                own.add(monitor.metrics_path)
        self.own_paths = frozenset(own)
        self.debug = config.debug.enabled
        self.api = api_on(config)
        self.studio = config.studio.enabled
        self.rate_config = config.rate_limit
        self.peer_keys = runtime.peer_keys.known(config.rate_limit)
        self.excluded_paths = tuple(config.rate_limit.excluded_paths)
        self.compress_min = config.server.compress_min_bytes
        # The access log's per-request call, bound once (the log outlives any config).
        self.access = access_log().request if config.logging.access else None


def _plan(runtime: Runtime) -> _Plan:
    plan = runtime.dispatch_plan
    if (
        not isinstance(plan, _Plan)
        or plan.config is not runtime.config
        or plan.limiter is not runtime.limiter
    ):
        plan = runtime.dispatch_plan = _Plan(runtime)
    return plan


async def dispatch(runtime: Runtime, request: Request) -> Response:
    """The request pipeline: rate limit, nflow's own routes, playbooks; metrics, gzip, log.

    Never lets an exception reach the server.
    """
    started = time.perf_counter()
    plan = _plan(runtime)
    path = request.path
    # Could this be one of nflow's own routes (_routes.builtin)? Those are not counted.
    own = (
        path in plan.own_paths
        or (plan.debug and path.startswith("/debug"))
        or (plan.api and path.startswith(API_PREFIX))
        or (plan.studio and path.startswith(STUDIO_PREFIX))
    )
    metrics = runtime.metrics
    if metrics is not None and not own:
        metrics.mark_started(1)  # request_started(), without the call
    response: Response | None = None
    extra: Sequence[tuple[str, str]] | None = None
    # nflow's own routes (health, metrics) are not traced, as they are not counted.
    tracing = runtime.tracing
    span = tracing.start_request(request) if tracing is not None and not own else None
    try:
        if plan.limiter is not None and not own and not path.startswith(plan.excluded_paths):
            memory = plan.memory_limiter
            if memory is not None:
                # The in-process bucket needs no await; a Decision is made only for a 429.
                key = plan.peer_keys.get(request.client)
                if key is None:
                    key = runtime.peer_keys.key(request.client, plan.rate_config)
                if key:
                    admitted = memory.admit(key)
                    if isinstance(admitted, tuple):
                        extra = admitted
                    else:
                        response = _rejected(runtime, request, key, memory.decision(admitted))
            else:
                response, extra = await _rate_limit(runtime, request)
        if response is None and own:
            response = await builtin(runtime, request)
        if response is None:
            response = await runtime.handle(request)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, path)
        response = json_response(500, {"message": "Internal Server Error"})
    finally:
        if span is not None:
            span.finish(request, response or json_response(500, {}))
    if extra:
        response.headers.extend(extra)
    elapsed = time.perf_counter() - started
    if metrics is not None and not own:
        # request_finished(), with the common case a dict lookup rather than a call
        labels = (response.app, response.route, response.status)
        observe = metrics.request_observers.get(labels)
        if observe is None:
            observe = metrics.request_observer(*labels)
        observe(elapsed)
    threshold = plan.compress_min
    if threshold and len(response.body) >= threshold:
        _compress(request, response)
    access = plan.access
    if access is not None and not own:
        access(
            request.method,
            path,
            response.status,
            elapsed,
            response.wid,
            response.app,
            response.route,
            request.client,
            span.trace_id if span is not None else "",
            span.span_id if span is not None else "",
            response.version,
        )
    return response


def account_refused(runtime: Runtime, request: Request, response: Response, started: float) -> None:
    """Count and log a request the adapter answered itself (413 or 408 for the body), as
    :func:`dispatch` does for the others: operators must see 413s in the access log and in
    ``nflow_requests_total``."""
    elapsed = time.perf_counter() - started
    metrics = runtime.metrics
    if metrics is not None:
        metrics.request_started()
        metrics.request_finished(response.app, response.route, response.status, elapsed)
    access = _plan(runtime).access
    if access is not None:
        access(
            request.method,
            request.path,
            response.status,
            elapsed,
            "",
            response.app,
            response.route,
            request.client,
        )


async def _rate_limit(
    runtime: Runtime, request: Request
) -> tuple[Response | None, list[tuple[str, str]] | None]:
    """A limiter that is not in-process (Redis): its hit is awaited, on nflow's I/O loop."""
    limiter = runtime.limiter
    assert limiter is not None
    key = runtime.peer_keys.key(request.client, runtime.config.rate_limit)
    if not key:
        return None, None
    hit = limiter.hit(key)
    decision = await (runtime.io.run(hit) if runtime.limiter_on_io else hit)
    if decision.allowed:
        return None, allowed_headers(decision)
    return _rejected(runtime, request, key, decision), None


def _rejected(runtime: Runtime, request: Request, key: str, decision: Decision) -> Response:
    if runtime.metrics is not None:
        runtime.metrics.rate_limited()
    log.warning("rate limited", extra={"ip": key.partition(":")[2], "path": request.path})
    status, headers, body = rejection(decision, runtime.config.rate_limit)
    return Response(status, body, list(headers))


def _compress(request: Request, response: Response) -> None:
    accept = request.header("accept-encoding")
    if "gzip" not in accept or response.header("content-encoding"):
        return
    response.body = gzip.compress(response.body, compresslevel=5)
    response.headers.append(("content-encoding", "gzip"))
    response.headers.append(("vary", "Accept-Encoding"))


class RsgiApp:
    """granian's RSGI interface: the fast path used by ``nflow serve``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.reloader: Reloader | None = None
        self.lifecycle: WorkerLifecycle | None = None
        # Set while the worker stops or rebalances: every response then closes its connection.
        self.close_connections = False
        self.served = 0

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.runtime.open())
        if self.reloader is not None:
            self.reloader.start(loop)
        if self.lifecycle is not None:
            self.lifecycle.install(loop)
        # Everything loaded so far (libraries, apps, JS runtimes) lives as long as the worker:
        # out of the collector's sight, a collection walks only what requests allocate.
        gc.freeze()

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.lifecycle is not None:
            self.lifecycle.close()
        if self.reloader is not None:
            self.reloader.stop()
        loop.run_until_complete(self.runtime.close())
        # Workers may leave through os._exit, which skips the access log's atexit flush.
        access_log().flush()

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        self.served += 1
        runtime = self.runtime
        headers = scope.headers
        body = b""
        # Awaiting the body costs a round trip into the server even when there is none.
        started = time.perf_counter()
        if "content-length" in headers or "transfer-encoding" in headers:
            read = await read_rsgi_body(
                protocol,
                headers.get("content-length"),
                runtime.body_limit(scope.method, scope.path),
                runtime.config.server.body_timeout_seconds,
            )
            if isinstance(read, Response):
                # The rest of the body is never read, so the connection cannot go on.
                read.headers.append(("connection", "close"))
                protocol.response_bytes(read.status, read.headers, read.body)
                account_refused(
                    runtime, Request(scope.method, scope.path, client=scope.client), read, started
                )
                return
            body = read
        request = Request(
            scope.method,
            scope.path,
            query_string=scope.query_string,
            headers=headers.items(),
            body=body,
            client=scope.client,
            scheme=scope.scheme,
            host=scope.authority or "",
        )
        response = await dispatch(runtime, request)
        if self.close_connections:
            protocol.response_bytes(
                response.status, [*response.headers, ("connection", "close")], response.body
            )
            return
        protocol.response_bytes(response.status, response.headers, response.body)


class AsgiApp:
    """ASGI interface, to mount nflow inside Starlette or any ASGI server.

    The lifespan protocol opens and closes the runtime; when the host server does not send
    lifespan events (a mounted app never gets them), the runtime opens on the first request
    and the host application should close it. Under a mount, ``root_path`` is stripped.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if not self.runtime.is_open:
            async with self._lock:
                await self.runtime.open()
        client = scope.get("client") or ("127.0.0.1", 0)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        path = scope.get("raw_path")
        raw_path = path.decode("latin-1") if isinstance(path, bytes) else scope["path"]
        root = scope.get("root_path", "")
        if root and raw_path.startswith(root):
            # Mounted under a prefix (Starlette's Mount): starters match the rest of the path.
            raw_path = raw_path[len(root) :] or "/"
        path = raw_path.split("?", 1)[0]
        runtime = self.runtime
        started = time.perf_counter()
        body = await read_asgi_body(
            receive,
            next((v for k, v in headers if k.lower() == "content-length"), None),
            runtime.body_limit(scope["method"], path),
            runtime.config.server.body_timeout_seconds,
        )
        if body is None:
            return  # the client went away
        if isinstance(body, Response):
            body.headers.append(("connection", "close"))
            await _send(send, body)
            peer = Request(scope["method"], path, client=f"{client[0]}:{client[1]}")
            account_refused(runtime, peer, body, started)
            return
        request = Request(
            scope["method"],
            path,
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
            client=f"{client[0]}:{client[1]}",
            scheme=scope.get("scheme", "http"),
        )
        await _send(send, await dispatch(self.runtime, request))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.open()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _send(send: Send, response: Response) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers],
        }
    )
    await send({"type": "http.response.body", "body": response.body})
