"""Adapters from HTTP server protocols to ``Runtime.handle``: RSGI (granian) and ASGI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from nflow._http import Request, Response
from nflow.runtime import Runtime, json_response
from nflow.server._routes import builtin, is_builtin

log = logging.getLogger("nflow.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def dispatch(runtime: Runtime, request: Request) -> Response:
    """nflow's own routes first, then playbooks; never lets an exception reach the server."""
    try:
        response = None
        if is_builtin(runtime, request.path):
            response = await builtin(runtime, request)
        if response is None:
            response = await runtime.handle(request)
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        response = json_response(500, {"message": "Internal Server Error"})
    return response


class RsgiApp:
    """granian's RSGI interface: the fast path used by ``nflow serve``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.runtime.open())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.runtime.close())

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
    lifespan events, the runtime opens on the first request.
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
