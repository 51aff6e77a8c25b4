"""The HTTP client plugin (Go's ``client_http``): ``http_get``, ``http_post_with_header``...

The Go helper made a new client per call with TLS verification off, no timeout and no limit,
and let any script reach any address the server could, including cloud metadata endpoints and
services bound to loopback. Here every call:

* runs on the worker's I/O loop with a deadline (the policy's timeout, never past the run's);
* verifies TLS certificates;
* follows at most ``max_redirects`` redirects, checking each new URL again;
* reads at most ``max_response_bytes`` of (decoded) body;
* connects only to addresses the policy allows. The check sits in the connection layer, on
  the very address the socket connects to, so DNS rebinding (a name that resolves to a public
  address when checked and a private one when connecting) cannot slip past it.

Failures (refused address, DNS, timeout, TLS, oversized body) raise :class:`HostError`, which a
script may catch; a 4xx or 5xx answer is not a failure and comes back with its status, as in
the original, because playbooks branch on ``status_code``.
"""

from __future__ import annotations

__all__ = [
    "USER_AGENT",
    "Fetched",
    "HttpFailure",
    "HttpPolicy",
    "address_problem",
    "allowed_addresses",
    "fetch",
    "http",
]

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from nflow._http import canonical_header
from nflow.jsapi._context import HostError, RunContext
from nflow.jsapi._host import HostTable
from nflow.plugins._addresses import (
    USER_AGENT,
    Fetched,
    HttpFailure,
    HttpPolicy,
    address_problem,
    allowed_addresses,
)

http = HostTable()


# --------------------------------------------------------------------------------------------
# Fetching


def shown_url(url: str) -> str:
    """``url`` for messages: no credentials, no query string (tokens often travel there)."""
    from nflow.plugins._http_client import shown_url

    return shown_url(url)


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
    # httpx (with httpcore, h11 and its CLI's imports) is loaded by the first script that
    # makes a request, not by every worker.
    from nflow.plugins._http_client import fetch

    return await fetch(
        method,
        url,
        content=content,
        headers=headers,
        policy=policy,
        timeout=timeout,
        guarded=guarded,
        max_redirects=max_redirects,
    )


# --------------------------------------------------------------------------------------------
# Host functions


def _timeout(ctx: RunContext, policy: HttpPolicy, name: str, url: str) -> float:
    remaining = ctx.remaining()
    if remaining <= 0.05:
        raise HostError(f"{name} {shown_url(url)}: no time left in this run")
    return min(policy.timeout_seconds, remaining)


def _body(name: str, body: object) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bool):
        return b"true" if body else b"false"
    if isinstance(body, int | float):
        return str(body).encode()
    if isinstance(body, dict | list):
        # Go took a string; an object is sent as JSON rather than "[object Object]".
        return orjson.dumps(body)
    raise HostError(f"{name}: the body must be a string")


_DROPPED = frozenset({"host", "content-length", "transfer-encoding", "trailer", "connection"})


def _headers(name: str, headers: object) -> list[tuple[str, str]]:
    """``{"Name": ["v", ...]}`` (Go's http.Header) or ``{"Name": "v"}`` to header pairs.

    Like Go's client, framing headers set by the script are ignored: the client computes them.
    """
    if headers is None:
        return []
    if not isinstance(headers, Mapping):
        raise HostError(f'{name}: headers must be an object such as {{"Name": ["value"]}}')
    out: list[tuple[str, str]] = []
    for key, value in headers.items():
        key = str(key)
        if not key or any(c in key for c in " \t\r\n:\0") or not key.isascii():
            raise HostError(f"{name}: invalid header name {key!r}")
        if key.lower() in _DROPPED:
            continue
        values = value if isinstance(value, list) else [value]
        for item in values:
            text = "" if item is None else str(item)
            if any(c in text for c in "\r\n\0"):
                raise HostError(f"{name}: header {key} has a line break in its value")
            out.append((key, text))
    return out


def _result(fetched: Fetched) -> dict[str, Any]:
    header: dict[str, list[str]] = {}
    for key, value in fetched.headers:
        canonical = canonical_header(key)
        if fetched.decoded and canonical in ("Content-Encoding", "Content-Length"):
            continue  # the body was decoded, so these no longer describe it (Go does the same)
        header.setdefault(canonical, []).append(value)
    reason = fetched.reason
    return {
        "body": fetched.body.decode("utf-8", "replace"),
        "err": None,
        "status": f"{fetched.status_code} {reason}" if reason else str(fetched.status_code),
        "header": header,
        "status_code": fetched.status_code,
    }


def _call(
    ctx: RunContext, name: str, method: str, url: object, body: object, headers: object
) -> dict[str, Any]:
    if not isinstance(url, str) or not url:
        raise HostError(f"{name}: the URL must be a non-empty string")
    policy = ctx.services.policies.get(HttpPolicy)
    timeout = _timeout(ctx, policy, name, url)
    content = None if method in ("GET", "DELETE") and body is None else _body(name, body)
    pairs = _headers(name, headers)
    durable = ctx.durable
    if durable is not None and not any(k.lower() == "idempotency-key" for k, _ in pairs):
        # The node may run again (its instance died, or it failed and is retried): the
        # same key on every attempt lets the service answer the repeat from its first call.
        pairs.append(("Idempotency-Key", durable.effect_key()))
    coro = fetch(method, url, content=content, headers=pairs, policy=policy, timeout=timeout)
    try:
        # The coroutine enforces the timeout itself; the margin only covers scheduling.
        fetched = ctx.services.io.call(coro, timeout=timeout + 1.0)
    except HttpFailure as exc:
        raise HostError(f"{name} {shown_url(url)}: {exc}") from None
    except TimeoutError:
        raise HostError(f"{name} {shown_url(url)}: timed out after {timeout:.3g} s") from None
    return _result(fetched)


def _register(method: str) -> None:
    lower = method.lower()
    plain, with_header = f"http_{lower}", f"http_{lower}_with_header"
    if method in ("GET", "DELETE"):

        def no_body(ctx: RunContext, url: object) -> dict[str, Any]:
            return _call(ctx, plain, method, url, None, None)

        def no_body_headers(ctx: RunContext, url: object, headers: object) -> dict[str, Any]:
            return _call(ctx, with_header, method, url, None, headers)

        http.register(plain, no_body)
        http.register(with_header, no_body_headers)
        return

    def with_body(ctx: RunContext, url: object, body: object = "") -> dict[str, Any]:
        return _call(ctx, plain, method, url, body, None)

    def with_body_headers(
        ctx: RunContext, url: object, body: object, headers: object
    ) -> dict[str, Any]:
        return _call(ctx, with_header, method, url, body, headers)

    http.register(plain, with_body)
    http.register(with_header, with_body_headers)


for _method in ("GET", "DELETE", "POST", "PUT", "PATCH"):
    _register(_method)

# Every http function waits in IoLoop.call: scripts may also await several at once.
http.allow_await(*http.names())
