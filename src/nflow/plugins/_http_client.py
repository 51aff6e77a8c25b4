"""The HTTP client behind the HTTP plugin's ``fetch``: httpx on a transport that checks addresses.

Imported by the first request a script (or the LLM or Twilio plugin) makes, so that workers
whose scripts never call out do not load httpx. The policy, the address check and the host
functions are in :mod:`nflow.plugins._http`.
"""

from __future__ import annotations

__all__ = ["fetch", "shown_url"]

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from functools import cache
from typing import Any, cast

import httpcore
import httpx

from nflow.plugins._addresses import (
    USER_AGENT,
    Fetched,
    HttpFailure,
    HttpPolicy,
    _Refused,
    allowed_addresses,
)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects in one place, so the checked address is the one used."""

    def __init__(self, policy: HttpPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await allowed_addresses(host, port, self._policy)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # try the next address, as dialers do
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise _Refused("refused: unix sockets are not reachable from scripts")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Stream(httpx.AsyncByteStream):
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._inner:
            yield part

    async def aclose(self) -> None:
        close = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()


class _GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's default transport, with :class:`_GuardedBackend` under its connection pool."""

    def __init__(self, policy: HttpPolicy) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=8,
            retries=0,
            network_backend=_GuardedBackend(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=cast(Any, request.stream),
            extensions=request.extensions,
        )
        response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Stream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


@cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs milliseconds; one verifying context serves every call.
    return httpx.create_ssl_context(verify=True, trust_env=False)


# --------------------------------------------------------------------------------------------
# Fetching


def shown_url(url: str | httpx.URL) -> str:
    """``url`` for messages: no credentials, no query string (tokens often travel there)."""
    try:
        parsed = httpx.URL(str(url))
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))


def check_url(url: httpx.URL) -> None:
    if url.scheme not in ("http", "https"):
        raise _Refused(f"refused: scheme {url.scheme or '(none)'!r} (only http and https)")
    if not url.host:
        raise HttpFailure("the URL has no host")


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise HttpFailure(f"response larger than {limit} bytes (Content-Length {length})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise HttpFailure(f"response larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch(
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    headers: Sequence[tuple[str, str]] = (),
    policy: HttpPolicy,
    timeout: float,
    guarded: bool = True,
    max_redirects: int | None = None,
) -> Fetched:
    """One request with redirects, on the running loop; raises :class:`HttpFailure`.

    ``guarded=False`` skips the address check, for URLs that come from the operator's
    configuration (a local Ollama, say) rather than from a script.
    """
    redirects = policy.max_redirects if max_redirects is None else max_redirects
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise HttpFailure(f"invalid URL ({exc})") from None
    check_url(target)
    transport: httpx.AsyncBaseTransport
    if guarded:
        transport = _GuardedTransport(policy)
    else:
        transport = httpx.AsyncHTTPTransport(verify=_ssl_context(), trust_env=False)
    try:
        async with asyncio.timeout(timeout):
            async with httpx.AsyncClient(
                transport=transport,
                timeout=httpx.Timeout(timeout),
                follow_redirects=False,
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
            ) as client:
                request = client.build_request(method, target, content=content, headers=headers)
                hops = 0
                while True:
                    check_url(request.url)
                    response = await client.send(request, stream=True)
                    try:
                        next_request = response.next_request
                        if next_request is not None:
                            if hops >= redirects:
                                raise HttpFailure(f"stopped after {redirects} redirects")
                            hops += 1
                            request = next_request
                            continue
                        body = await _read_capped(response, policy.max_response_bytes)
                        encoding = response.headers.get("content-encoding", "").strip()
                        return Fetched(
                            url=str(request.url),
                            status_code=response.status_code,
                            reason=response.reason_phrase,
                            headers=list(response.headers.multi_items()),
                            body=body,
                            decoded=encoding.lower() not in ("", "identity"),
                        )
                    finally:
                        await response.aclose()
    except HttpFailure:
        raise
    except (TimeoutError, httpx.TimeoutException, httpcore.TimeoutException):
        raise HttpFailure(f"timed out after {timeout:.3g} s") from None
    except (httpx.ConnectError, httpcore.ConnectError) as exc:
        reason = _reason(exc)
        if not reason.startswith("TLS"):
            reason = f"cannot connect ({reason})"
        raise HttpFailure(reason) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise HttpFailure(_reason(exc)) from None
    except (
        httpcore.NetworkError,
        httpcore.ProtocolError,
        httpcore.UnsupportedProtocol,
        ssl.SSLError,
        OSError,
    ) as exc:
        raise HttpFailure(_reason(exc)) from None


def _reason(exc: BaseException) -> str:
    cause: BaseException = exc
    while cause.__context__ is not None and not str(cause):
        cause = cause.__context__
    text = str(cause) or type(cause).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS certificate verification failed ({text})"
    return text
