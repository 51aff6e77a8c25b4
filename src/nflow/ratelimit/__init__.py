"""Rate limiting: a token bucket per client (IP, API token or app), in memory or in Redis.

The memory backend of ``nflow serve`` keeps every worker's buckets in one table of shared
memory (:class:`SharedMemoryRateLimiter`), so a limit holds per server whatever its number of
workers; the Redis backend shares them between servers too.

A bucket holds ``ip_rate_limit + ip_burst_size`` tokens, starts full, and refills
continuously at ``ip_rate_limit / (ip_window_minutes * 60)`` tokens per second; a request
takes one token or is rejected without taking any. This replaces the Go runtime's limiters
(see docs/compat.md, Rate limiting): its memory backend refilled only after whole windows (a
fixed window with a burst bonus), and its Redis backend was a sliding log that ignored the
burst and never sent ``Retry-After``.

Why not the ``limits`` library: it offers fixed window, moving window (a sliding log) and
sliding window counter, but no token bucket, so it cannot give the "burst on top of a steady
rate" semantics configured here. The bucket is small enough to own: a few lines in Python for
the memory backend and one atomic Lua script for Redis.

Typical use in the server::

    limiter = limiter_from_config(cfg.rate_limit, redis=client, redis_prefix=cfg.redis.prefix)
    ip = client_ip(request.client, request.header_items, trust_forwarded=False)
    if not is_excluded(request.path, ip, cfg.rate_limit):
        decision = await limiter.hit(bucket_key("ip", ip))
        if not decision.allowed:
            status, headers, body = rejection(decision, cfg.rate_limit)
        else:
            extra_headers = allowed_headers(decision)
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_ERROR_MESSAGE",
    "Decision",
    "MemoryRateLimiter",
    "PeerKeys",
    "RateLimiter",
    "RedisRateLimiter",
    "SharedMemoryRateLimiter",
    "allowed_headers",
    "bucket_key",
    "bucket_parameters",
    "client_ip",
    "create_table",
    "is_excluded",
    "limiter_from_config",
    "proxied_client",
    "rejection",
]

from typing import TYPE_CHECKING, Any

from nflow.ratelimit._bucket import Decision, MemoryRateLimiter, RateLimiter
from nflow.ratelimit._redis import RedisRateLimiter
from nflow.ratelimit._shared import SharedMemoryRateLimiter, create_table

if TYPE_CHECKING:
    from nflow.ratelimit._http import (
        DEFAULT_ERROR_MESSAGE,
        PeerKeys,
        allowed_headers,
        bucket_key,
        bucket_parameters,
        client_ip,
        is_excluded,
        limiter_from_config,
        proxied_client,
        rejection,
    )

_HTTP_NAMES = frozenset(
    (
        "DEFAULT_ERROR_MESSAGE",
        "PeerKeys",
        "allowed_headers",
        "bucket_key",
        "bucket_parameters",
        "client_ip",
        "is_excluded",
        "limiter_from_config",
        "proxied_client",
        "rejection",
    )
)


def __getattr__(name: str) -> Any:
    # The HTTP helpers read the configuration's models (pydantic); the master process of
    # `nflow serve` creates the shared table without loading them.
    if name in _HTTP_NAMES:
        from nflow.ratelimit import _http

        return getattr(_http, name)
    raise AttributeError(f"module 'nflow.ratelimit' has no attribute {name!r}")
