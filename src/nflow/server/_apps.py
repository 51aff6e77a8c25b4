"""Adapters from HTTP server protocols to ``Runtime.handle``: RSGI (granian) and ASGI."""

from __future__ import annotations

import asyncio
import gc
import gzip
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from nflow._http import Request, Response
from nflow.logs import access_log
from nflow.ratelimit import MemoryRateLimiter, allowed_headers, rejection
from nflow.runtime import Runtime, json_response
from nflow.server._routes import builtin, is_builtin

if TYPE_CHECKING:
    from nflow._reload import Reloader

log = logging.getLogger("nflow.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def dispatch(runtime: Runtime, request: Request) -> Response:
    """The request pipeline: rate limit, nflow's own routes, playbooks; metrics, gzip, log.

    Never lets an exception reach the server.
    """
    started = time.perf_counter()
    metrics = runtime.metrics
    own = is_builtin(runtime, request.path)
    if metrics is not None and not own:
        metrics.request_started()
    response: Response | None = None
    extra: list[tuple[str, str]] = []
    # nflow's own routes (health, metrics) are not traced, as they are not counted.
    tracing = runtime.tracing
    span = tracing.start_request(request) if tracing is not None and not own else None
    try:
        if runtime.limiter is not None and not own:
            response, extra = await _rate_limit(runtime, request)
        if response is None and own:
            response = await builtin(runtime, request)
        if response is None:
            response = await runtime.handle(request)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        response = json_response(500, {"message": "Internal Server Error"})
    finally:
        if span is not None:
            span.finish(request, response or json_response(500, {}))
    if extra:
        response.headers.extend(extra)
    elapsed = time.perf_counter() - started
    if metrics is not None and not own:
        metrics.request_finished(response.app, response.route, response.status, elapsed)
    config = runtime.config
    threshold = config.server.compress_min_bytes
    if threshold and len(response.body) >= threshold:
        _compress(request, response)
    if config.logging.access and not own:
        event: dict[str, object] = {
            "level": "info",
            "logger": "nflow.access",
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "duration_ms": round(elapsed * 1000, 3),
            "wid": response.wid,
            "app": response.app,
            "starter": response.route,
            "ip": request.client_ip,
        }
        if span is not None:
            event["trace_id"] = span.trace_id
            event["span_id"] = span.span_id
        access_log().write(event)
    return response


async def _rate_limit(
    runtime: Runtime, request: Request
) -> tuple[Response | None, list[tuple[str, str]]]:
    config = runtime.config.rate_limit
    limiter = runtime.limiter
    assert limiter is not None
    if request.path.startswith(tuple(config.excluded_paths)):
        return None, []
    key = runtime.peer_keys.key(request.client, config)
    if not key:
        return None, []
    if isinstance(limiter, MemoryRateLimiter):
        decision = limiter.hit_now(key)
    else:
        hit = limiter.hit(key)
        decision = await (runtime.io.run(hit) if runtime.limiter_on_io else hit)
    if decision.allowed:
        return None, allowed_headers(decision)
    if runtime.metrics is not None:
        runtime.metrics.rate_limited()
    log.warning("rate limited", extra={"ip": key.partition(":")[2], "path": request.path})
    status, headers, body = rejection(decision, config)
    return Response(status, body, list(headers)), []


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

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.runtime.open())
        if self.reloader is not None:
            self.reloader.start(loop)
        # Everything loaded so far (libraries, apps, JS runtimes) lives as long as the worker:
        # out of the collector's sight, a collection walks only what requests allocate.
        gc.freeze()

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.reloader is not None:
            self.reloader.stop()
        loop.run_until_complete(self.runtime.close())
        # Workers may leave through os._exit, which skips the access log's atexit flush.
        access_log().flush()

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        limit = self.runtime.services.limits.max_body_bytes
        headers = scope.headers
        # Awaiting the body costs a round trip into the server even when there is none.
        has_body = "content-length" in headers or "transfer-encoding" in headers
        body = await protocol() if has_body else b""
        if len(body) > limit:
            protocol.response_bytes(
                413,
                [("content-type", "application/json")],
                b'{"code":413,"message":"request body too large (limits.max_body_bytes)"}\n',
            )
            return
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
        response = await dispatch(self.runtime, request)
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
        limit = self.runtime.services.limits.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _send(
                    send, json_response(413, {"code": 413, "message": "request body too large"})
                )
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        client = scope.get("client") or ("127.0.0.1", 0)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        path = scope.get("raw_path")
        raw_path = path.decode("latin-1") if isinstance(path, bytes) else scope["path"]
        root = scope.get("root_path", "")
        if root and raw_path.startswith(root):
            # Mounted under a prefix (Starlette's Mount): starters match the rest of the path.
            raw_path = raw_path[len(root) :] or "/"
        request = Request(
            scope["method"],
            raw_path.split("?", 1)[0],
            query_string=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=b"".join(chunks),
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
