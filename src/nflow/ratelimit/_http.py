"""What the HTTP layer needs around a limiter: the client's key, exclusions, headers, 429."""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from nflow.config import RateLimitConfig
from nflow.ratelimit._bucket import (
    LIMIT_HEADER,
    REMAINING_HEADER,
    RESET_HEADER,
    Decision,
    MemoryRateLimiter,
    RateLimiter,
)
from nflow.ratelimit._redis import RedisRateLimiter
from nflow.ratelimit._shared import SharedMemoryRateLimiter

if TYPE_CHECKING:
    from redis.asyncio import Redis

DEFAULT_ERROR_MESSAGE = "Rate limit exceeded. Please try again later."

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Headers = Iterable[tuple[str, str]] | Mapping[str, str]


def bucket_parameters(config: RateLimitConfig) -> tuple[float, int]:
    """``(rate in tokens per second, capacity)`` for ``[rate_limit]``.

    The bucket holds ``ip_rate_limit + ip_burst_size`` tokens and gains ``ip_rate_limit``
    tokens per window, continuously.
    """
    rate = config.ip_rate_limit / (config.ip_window_minutes * 60.0)
    return rate, config.ip_rate_limit + config.ip_burst_size


def limiter_from_config(
    config: RateLimitConfig,
    *,
    redis: Redis | None = None,
    redis_prefix: str = "nflow:",
    shared_table: str | None = None,
) -> RateLimiter:
    """The limiter ``config.backend`` asks for.

    The Redis backend needs ``redis`` (a ``redis.asyncio.Redis``); its keys are
    ``<redis_prefix>ratelimit:<key>``, so pass ``[redis] prefix``. The memory backend keeps
    its buckets in the table file ``shared_table`` when given (every worker of one server
    shares it, see :func:`create_table`), else in this process.
    """
    rate, capacity = bucket_parameters(config)
    if config.backend == "redis":
        if redis is None:
            raise ValueError('rate_limit.backend = "redis" needs a Redis client ([redis] host)')
        return RedisRateLimiter(redis, redis_prefix + "ratelimit:", rate, capacity)
    if shared_table:
        return SharedMemoryRateLimiter(shared_table, rate, capacity)
    return MemoryRateLimiter(rate, capacity)


def bucket_key(kind: str, value: str) -> str:
    """A bucket key such as ``ip:203.0.113.9``, ``app:shop`` or ``token:<digest>``.

    API tokens are secrets, so they are hashed rather than written to Redis or memory dumps.
    """
    if kind == "token":
        value = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"{kind}:{value}"


def _header_items(headers: Headers) -> Iterable[tuple[str, str]]:
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def _peer_host(peer: str) -> str:
    if peer.startswith("["):  # [::1]:8080
        return peer[1:].partition("]")[0]
    if peer.count(":") == 1:  # 10.0.0.1:8080
        return peer.partition(":")[0]
    return peer  # bare IPv4, bare IPv6, or not an address (unix socket)


# Clients come back: parsing their address on every request cost more than the bucket.
@lru_cache(maxsize=65536)
def _normal_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


def client_ip(peer: str, headers: Headers, *, trust_forwarded: bool) -> str:
    """The client address a limit applies to.

    ``peer`` is the socket's remote address (``host:port``, ``[v6]:port`` or a bare host). Only
    with ``trust_forwarded`` (the server sits behind a proxy that sets these headers) are
    ``X-Real-IP`` and then the first ``X-Forwarded-For`` entry used, in the Go rate limiter's
    order; a header value that is not an IP address is ignored. Without it the headers are
    ignored, because any client can send them and would get a fresh bucket per request.
    """
    if trust_forwarded:
        real = forwarded = ""
        for name, value in _header_items(headers):
            lname = name.lower()
            if lname == "x-real-ip":
                real = real or value
            elif lname == "x-forwarded-for":
                forwarded = forwarded or value.split(",", 1)[0]
        for candidate in (real, forwarded):
            if candidate:
                ip = _normal_ip(candidate)
                if ip is not None:
                    return ip
    host = _peer_host(peer)
    return _normal_ip(host) or host


@lru_cache(maxsize=16)
def _networks(entries: tuple[str, ...]) -> tuple[_IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def is_excluded(path: str, ip: str, config: RateLimitConfig) -> bool:
    """True when ``[rate_limit]`` exempts this request.

    ``excluded_paths`` are plain prefixes as in the Go runtime (``/health`` also covers
    ``/health/ready``); ``excluded_ips`` are addresses or CIDR networks. An IPv4 address seen
    as IPv6 (``::ffff:10.0.0.1``) matches IPv4 entries too.
    """
    for prefix in config.excluded_paths:
        if path.startswith(prefix):
            return True
    return _in_networks(ip, config.excluded_ips)


def _in_networks(ip: str, entries: Iterable[str]) -> bool:
    entries = tuple(entries)
    if not entries:
        return False
    try:
        address: _IPAddress = ipaddress.ip_address(ip)
    except ValueError:
        return False
    candidates: list[_IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    networks = _networks(entries)
    return any(candidate in network for candidate in candidates for network in networks)


def proxied_client(headers: Headers) -> str | None:
    """The client address a trusted proxy reports: ``X-Real-IP``, else the last
    ``X-Forwarded-For`` entry (the one the proxy itself added; entries before it come from
    the client and may be forged). None when neither holds an IP address."""
    real = forwarded = ""
    for name, value in _header_items(headers):
        lname = name.lower()
        if lname == "x-real-ip":
            real = real or value
        elif lname == "x-forwarded-for":
            forwarded = value  # the last header line, whose last entry is the proxy's
    for candidate in (real, forwarded.rsplit(",", 1)[-1]):
        if candidate.strip():
            ip = _normal_ip(candidate)
            if ip is not None:
                return ip
    return None


class PeerKeys:
    """The bucket key of each peer address, worked out once per client connection.

    A keep-alive client sends thousands of requests from one ``host:port``; parsing the address
    and matching it against ``excluded_ips`` on each of them cost more than the bucket itself.
    ``key`` returns ``""`` for an excluded address. The table follows the ``[rate_limit]``
    section it is given: a different one (a SIGHUP reload) starts it afresh, so new
    exclusions apply to connections already open. It holds at most ``max_peers`` entries.
    Forwarding headers are trusted only from ``trusted_proxies``, whose connections carry
    many clients and are never held in the table (see :func:`proxied_client`).
    """

    __slots__ = ("_config", "_keys", "_max_peers")

    def __init__(self, max_peers: int = 4096) -> None:
        self._keys: dict[str, str] = {}
        self._config: RateLimitConfig | None = None
        self._max_peers = max_peers

    def __len__(self) -> int:
        """Peers held now."""
        return len(self._keys)

    def known(self, config: RateLimitConfig) -> Mapping[str, str]:
        """The keys worked out so far for ``config``: a live view, for a lookup without a call.

        A peer missing from it needs :meth:`key`. The mapping stays the same object (it is
        cleared, not replaced), so it can be held for as long as ``config`` is current.
        """
        return self._table(config)

    def _table(self, config: RateLimitConfig) -> dict[str, str]:
        if config is not self._config:  # a reload: exclusions may have changed
            self._keys.clear()
            self._config = config
        return self._keys

    def key(self, peer: str, config: RateLimitConfig, headers: Headers = ()) -> str:
        keys = self._table(config)
        if len(keys) >= self._max_peers:
            keys.clear()
        key = keys.get(peer)
        if key is None:
            ip = client_ip(peer, (), trust_forwarded=False)
            if config.trusted_proxies and _in_networks(ip, config.trusted_proxies):
                ip = proxied_client(headers) or ip
                return "" if is_excluded("", ip, config) else bucket_key("ip", ip)
            key = keys[peer] = "" if is_excluded("", ip, config) else bucket_key("ip", ip)
        return key


def allowed_headers(decision: Decision) -> list[tuple[str, str]]:
    """``X-RateLimit-*`` headers for a response that was let through."""
    return [
        (LIMIT_HEADER, str(decision.limit)),
        (REMAINING_HEADER, str(decision.remaining)),
        (RESET_HEADER, str(math.ceil(decision.reset_at))),
    ]


def rejection(
    decision: Decision, config: RateLimitConfig
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The 429 response for a rejected ``decision``: status, headers, JSON body.

    The body is ``{"error": <error_message>, "retry_after": <whole seconds>}``; seconds are
    rounded up (and at least 1) so a client that waits that long is let through.
    """
    retry_after = max(1, math.ceil(decision.retry_after))
    body: dict[str, Any] = {
        "error": config.error_message or DEFAULT_ERROR_MESSAGE,
        "retry_after": retry_after,
    }
    headers = [("Content-Type", "application/json; charset=utf-8"), *allowed_headers(decision)]
    if config.retry_after_header:
        headers.append(("Retry-After", str(retry_after)))
    return 429, headers, orjson.dumps(body)
