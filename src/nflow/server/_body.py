"""Reading a request body under the server's rules, for the RSGI and ASGI adapters.

A declared ``Content-Length`` over the route's :class:`~nflow._http.BodyLimit` is answered 413
before any of the body is read; a chunked body is read piece by piece and cut off with a 413
as soon as it passes the limit, so a worker never holds more than the limit of one body. The
whole body must arrive within ``server.body_timeout_seconds`` (408 otherwise): a client that
trickles bytes cannot hold a worker's connection, or a stopping server, for long.

Both rejections close the connection: the rest of the body is never read.
"""

from __future__ import annotations

__all__ = ["read_asgi_body", "read_rsgi_body", "timed_out"]

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from nflow._http import BodyLimit, Response

Message = MutableMapping[str, Any]


def timed_out(seconds: float) -> Response:
    message = f"request body not received within {seconds:g} seconds (server.body_timeout_seconds)"
    return Response(
        408,
        orjson.dumps({"code": 408, "message": message}),
        [("content-type", "application/json")],
    )


def _declared(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None  # the HTTP parser refuses these; never trust one here


async def _collect(chunks: AsyncIterable[bytes], limit: BodyLimit) -> bytes | Response:
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit.max_bytes:
            return limit.too_large()
        parts.append(chunk)
    return b"".join(parts)


async def read_rsgi_body(
    protocol: Any, content_length: str | None, limit: BodyLimit, timeout: float
) -> bytes | Response:
    """The body of an RSGI request, or the 413/408 response to send instead."""
    declared = _declared(content_length)
    if declared is not None and declared > limit.max_bytes:
        return limit.too_large()
    try:
        async with asyncio.timeout(timeout):
            if declared is not None:
                # Bounded by the check above: one call into the server reads it all.
                body: bytes = await protocol()
                return body
            # The protocol itself is the async iterable (its iterator is not).
            return await _collect(protocol, limit)
    except TimeoutError:
        return timed_out(timeout)


async def _asgi_chunks(receive: Callable[[], Awaitable[Message]]) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client disconnected")
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def read_asgi_body(
    receive: Callable[[], Awaitable[Message]],
    content_length: str | None,
    limit: BodyLimit,
    timeout: float,
) -> bytes | Response | None:
    """The body of an ASGI request, the 413/408 response, or None if the client left."""
    declared = _declared(content_length)
    if declared is not None and declared > limit.max_bytes:
        return limit.too_large()
    try:
        async with asyncio.timeout(timeout):
            return await _collect(_asgi_chunks(receive), limit)
    except TimeoutError:
        return timed_out(timeout)
    except ConnectionResetError:
        return None
