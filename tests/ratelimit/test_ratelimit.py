"""Token-bucket rate limiting: memory (injected clock) and Redis (real time, real server)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from nflow.config import RateLimitConfig
from nflow.ratelimit import (
    DEFAULT_ERROR_MESSAGE,
    Decision,
    MemoryRateLimiter,
    PeerKeys,
    RedisRateLimiter,
    allowed_headers,
    bucket_key,
    bucket_parameters,
    client_ip,
    is_excluded,
    limiter_from_config,
    rejection,
)
from nflow.ratelimit._redis import TOKEN_BUCKET_SHA

REDIS_ENV = "NFLOW_TEST_REDIS"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def memory(rate: float, capacity: int, **kwargs: Any) -> tuple[MemoryRateLimiter, Clock]:
    clock = Clock()
    return MemoryRateLimiter(rate, capacity, clock=clock, wall_clock=clock, **kwargs), clock


def redis_client(**kwargs: Any) -> aioredis.Redis:
    host, _, port = os.environ.get(REDIS_ENV, "127.0.0.1:6379").partition(":")
    return aioredis.Redis(host=host, port=int(port or 6379), **kwargs)


# ------------------------------------------------------------------------------------------
# Memory backend


def test_config_gives_rate_and_capacity() -> None:
    config = RateLimitConfig(ip_rate_limit=10, ip_window_minutes=2, ip_burst_size=5)
    rate, capacity = bucket_parameters(config)
    assert rate == pytest.approx(10 / 120)
    assert capacity == 15


def test_new_bucket_is_full_and_burst_is_allowed_at_once() -> None:
    limiter, _ = memory(10 / 60, 12)  # ip_rate_limit=10 per minute, burst 2
    decisions = [limiter.hit_now("ip:a") for _ in range(12)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == list(range(11, -1, -1))
    assert all(d.limit == 12 for d in decisions)
    rejected = limiter.hit_now("ip:a")
    assert not rejected.allowed
    assert rejected.remaining == 0
    assert rejected.retry_after == pytest.approx(6.0)  # one token per 6 s


def test_refill_is_continuous_not_per_window() -> None:
    limiter, clock = memory(10 / 60, 12)
    for _ in range(12):
        assert limiter.hit_now("ip:a").allowed
    clock.advance(3.0)  # half a token: still no
    early = limiter.hit_now("ip:a")
    assert not early.allowed
    assert early.retry_after == pytest.approx(3.0)
    clock.advance(3.0)  # a whole token, long before the 60 s window ends
    assert limiter.hit_now("ip:a").allowed
    assert not limiter.hit_now("ip:a").allowed
    clock.advance(30.0)  # five tokens
    assert [limiter.hit_now("ip:a").allowed for _ in range(6)] == [True] * 5 + [False]


def test_rejections_take_no_tokens() -> None:
    limiter, clock = memory(1.0, 2)
    limiter.hit_now("k")
    limiter.hit_now("k")
    for _ in range(10):
        assert not limiter.hit_now("k").allowed
    clock.advance(1.0)
    assert limiter.hit_now("k").allowed


def test_refill_stops_at_capacity() -> None:
    limiter, clock = memory(1.0, 5)
    for _ in range(5):
        limiter.hit_now("k")
    clock.advance(3600)
    decision = limiter.hit_now("k")
    assert decision.allowed
    assert decision.remaining == 4
    assert [limiter.hit_now("k").allowed for _ in range(5)] == [True] * 4 + [False]


def test_reset_at_is_when_the_bucket_is_full_again() -> None:
    limiter, clock = memory(0.5, 4)
    decision = limiter.hit_now("k")
    assert decision.reset_at == pytest.approx(clock.now + 2.0)  # one token at 0.5/s
    limiter.hit_now("k")
    limiter.hit_now("k")
    limiter.hit_now("k")
    rejected = limiter.hit_now("k")
    assert rejected.reset_at == pytest.approx(clock.now + 8.0)
    assert rejected.retry_after == pytest.approx(2.0)


def test_keys_are_independent() -> None:
    limiter, _ = memory(1.0, 1)
    assert limiter.hit_now("ip:a").allowed
    assert not limiter.hit_now("ip:a").allowed
    assert limiter.hit_now("ip:b").allowed
    assert limiter.hit_now(bucket_key("app", "shop")).allowed


def test_cost_takes_several_tokens_and_zero_only_looks() -> None:
    limiter, _ = memory(1.0, 5)
    assert limiter.hit_now("k", cost=3).remaining == 2
    assert limiter.hit_now("k", cost=0).remaining == 2
    assert not limiter.hit_now("k", cost=3).allowed
    assert limiter.hit_now("k", cost=2).allowed
    with pytest.raises(ValueError, match="capacity"):
        limiter.hit_now("k", cost=6)
    with pytest.raises(ValueError):
        limiter.hit_now("k", cost=-1)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        MemoryRateLimiter(0.0, 5)
    with pytest.raises(ValueError):
        MemoryRateLimiter(1.0, 0)
    with pytest.raises(ValueError):
        MemoryRateLimiter(1.0, 5, max_keys=0)


def test_idle_buckets_are_forgotten() -> None:
    limiter, clock = memory(1.0, 10)
    for n in range(500):
        limiter.hit_now(f"ip:{n}")
    assert len(limiter) == 500
    clock.advance(10.0)  # every bucket is full again
    for _ in range(40):  # a sweep runs every few hits
        limiter.hit_now("ip:fresh")
    assert len(limiter) == 1


def test_an_idle_bucket_behind_a_busy_client_is_still_forgotten() -> None:
    """The busy client's place in the order is refreshed only once a second."""
    limiter, clock = memory(20.0, 40)  # full again 2 s after the last hit
    limiter.hit_now("ip:busy")
    limiter.hit_now("ip:idle")
    for _ in range(60):  # 6 s of a client hitting every 100 ms
        clock.advance(0.1)
        assert limiter.hit_now("ip:busy").allowed
    assert len(limiter) == 1  # "idle" was dropped; "busy" kept its bucket
    assert limiter.hit_now("ip:busy").remaining < 40


def test_busy_buckets_are_kept_and_memory_is_capped() -> None:
    limiter, clock = memory(1.0, 10, max_keys=100)
    limiter.hit_now("ip:busy")
    for n in range(1000):
        limiter.hit_now(f"ip:{n}")
        assert len(limiter) <= 100
    # Not idle long enough to be full again: a bucket drained now is still remembered.
    limiter, clock = memory(1.0, 10)
    for _ in range(10):
        limiter.hit_now("ip:busy")
    clock.advance(5.0)
    for n in range(100):
        limiter.hit_now(f"ip:{n}")
    decision = limiter.hit_now("ip:busy")
    assert decision.remaining == 4  # 5 tokens refilled, one taken


def test_hit_is_a_coroutine(run: Any) -> None:
    limiter, _ = memory(1.0, 1)
    assert run(limiter.hit("k")).allowed
    assert not run(limiter.hit("k")).allowed


def test_limiter_from_config(run: Any) -> None:
    config = RateLimitConfig(ip_rate_limit=60, ip_window_minutes=1, ip_burst_size=0)
    limiter = limiter_from_config(config)
    assert isinstance(limiter, MemoryRateLimiter)
    assert limiter.rate == pytest.approx(1.0)
    assert limiter.capacity == 60
    with pytest.raises(ValueError, match="Redis"):
        limiter_from_config(RateLimitConfig(backend="redis"))
    client = redis_client()
    redis_limiter = limiter_from_config(
        RateLimitConfig(backend="redis"), redis=client, redis_prefix="nflow:"
    )
    assert isinstance(redis_limiter, RedisRateLimiter)
    assert redis_limiter.capacity == 110
    run(client.aclose())


# ------------------------------------------------------------------------------------------
# Redis backend


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    """A fresh key prefix per test, under the session's prefix (deleted at the end)."""
    return f"{redis_prefix}rl:{secrets.token_hex(4)}:"


def test_redis_bucket_burst_and_real_time_refill(run: Any, prefix: str) -> None:
    async def scenario() -> tuple[list[Decision], Decision, Decision, int, bool]:
        client = redis_client()
        try:
            limiter = RedisRateLimiter(client, prefix, 1.0, 3)  # one token per second
            burst = [await limiter.hit("ip:a") for _ in range(3)]
            rejected = await limiter.hit("ip:a")
            await asyncio.sleep(rejected.retry_after + 0.05)
            after_wait = await limiter.hit("ip:a")
            ttl = await client.pttl(prefix + "ip:a")
            loaded = (await client.script_exists(TOKEN_BUCKET_SHA))[0]
            return burst, rejected, after_wait, ttl, bool(loaded)
        finally:
            await client.aclose()

    burst, rejected, after_wait, ttl, loaded = run(scenario())
    assert [d.allowed for d in burst] == [True, True, True]
    assert [d.remaining for d in burst] == [2, 1, 0]
    assert [d.limit for d in burst] == [3, 3, 3]
    assert not rejected.allowed
    assert 0 < rejected.retry_after <= 1.0
    assert rejected.reset_at > burst[0].reset_at
    assert after_wait.allowed  # refilled by the time that passed, not by a window boundary
    assert 0 < ttl <= 4000  # forgotten once it would be full again (3 s) plus a margin
    assert loaded


def test_redis_refill_stops_at_capacity(run: Any, prefix: str) -> None:
    async def scenario() -> tuple[Decision, Decision]:
        client = redis_client()
        try:
            limiter = RedisRateLimiter(client, prefix, 1.0, 5)
            for _ in range(5):
                await limiter.hit("k")
            drained = await limiter.hit("k")
            # An hour passes for this bucket: move its last update back.
            stored = await client.hget(prefix + "k", "ts")
            assert stored is not None
            stamp = float(stored)
            await client.hset(prefix + "k", "ts", repr(stamp - 3600))
            return drained, await limiter.hit("k")
        finally:
            await client.aclose()

    drained, later = run(scenario())
    assert not drained.allowed
    assert later.allowed
    assert later.remaining == 4


def test_two_limiters_share_one_redis_bucket(run: Any, prefix: str) -> None:
    """Two limiter objects with their own connections stand for two worker processes."""

    async def scenario() -> list[tuple[str, Decision]]:
        first, second = redis_client(), redis_client()
        try:
            a = RedisRateLimiter(first, prefix, 0.001, 4)
            b = RedisRateLimiter(second, prefix, 0.001, 4)
            results = []
            for name, limiter in [("a", a), ("b", b), ("a", a), ("b", b), ("a", a), ("b", b)]:
                results.append((name, await limiter.hit("ip:shared")))
            concurrent = await asyncio.gather(*(x.hit("ip:other") for x in [a, b] * 5))
            results += [("gather", d) for d in concurrent]
            return results
        finally:
            await first.aclose()
            await second.aclose()

    results = run(scenario())
    sequential = [d for name, d in results if name != "gather"]
    assert [d.allowed for d in sequential] == [True, True, True, True, False, False]
    assert [d.remaining for d in sequential[:4]] == [3, 2, 1, 0]
    gathered = [d for name, d in results if name == "gather"]
    assert sum(d.allowed for d in gathered) == 4  # no update lost under concurrency


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_redis_unreachable_fails_open_with_one_warning(
    run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> list[Decision]:
        # No retries, so the refused connection is the error the limiter sees.
        client = aioredis.Redis(host="127.0.0.1", port=_closed_port(), retry=Retry(NoBackoff(), 0))
        try:
            limiter = RedisRateLimiter(client, "nflow_unused:", 1.0, 2, cooldown=3600)
            return [await limiter.hit("ip:a") for _ in range(5)]
        finally:
            await client.aclose()

    with caplog.at_level(logging.WARNING, logger="nflow.ratelimit"):
        decisions = run(scenario())
    assert all(d.allowed for d in decisions)  # more than the capacity of 2
    assert all(d.remaining == 2 and d.limit == 2 for d in decisions)
    warnings = [r for r in caplog.records if r.name == "nflow.ratelimit"]
    assert len(warnings) == 1
    assert "fail open" in warnings[0].getMessage()
    assert "ConnectionError" in warnings[0].getMessage()


def test_redis_that_does_not_answer_fails_open_after_the_timeout(
    run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]

        async def scenario() -> list[Decision]:
            client = aioredis.Redis(host="127.0.0.1", port=port)
            try:
                limiter = RedisRateLimiter(client, "nflow_unused:", 1.0, 1, timeout=0.2)
                return [await limiter.hit("ip:a") for _ in range(3)]
            finally:
                await client.aclose()

        with caplog.at_level(logging.WARNING, logger="nflow.ratelimit"):
            decisions = run(scenario())
    assert all(d.allowed for d in decisions)
    warnings = [r.getMessage() for r in caplog.records if r.name == "nflow.ratelimit"]
    assert len(warnings) == 1
    assert "TimeoutError" in warnings[0]


# ------------------------------------------------------------------------------------------
# HTTP helpers


def test_client_ip_ignores_forwarding_headers_unless_trusted() -> None:
    headers = [("X-Forwarded-For", "203.0.113.7, 10.0.0.1"), ("X-Real-IP", "198.51.100.2")]
    assert client_ip("10.0.0.9:51234", headers, trust_forwarded=False) == "10.0.0.9"
    assert client_ip("10.0.0.9:51234", headers, trust_forwarded=True) == "198.51.100.2"
    only_xff = [("x-forwarded-for", " 203.0.113.7 , 10.0.0.1")]
    assert client_ip("10.0.0.9:51234", only_xff, trust_forwarded=True) == "203.0.113.7"
    assert client_ip("10.0.0.9:1", {"X-Real-Ip": "2001:DB8::1"}, trust_forwarded=True) == (
        "2001:db8::1"
    )
    junk = [("X-Real-IP", "not an ip"), ("X-Forwarded-For", "also junk")]
    assert client_ip("10.0.0.9:51234", junk, trust_forwarded=True) == "10.0.0.9"


def test_client_ip_peer_forms() -> None:
    assert client_ip("[::1]:8080", [], trust_forwarded=False) == "::1"
    assert client_ip("::1", [], trust_forwarded=False) == "::1"
    assert client_ip("192.0.2.1", [], trust_forwarded=False) == "192.0.2.1"
    assert client_ip("unix-socket", [], trust_forwarded=False) == "unix-socket"


def test_exclusions_by_path_prefix_and_ip_or_network() -> None:
    config = RateLimitConfig(
        excluded_paths=("/health", "/metrics", "/static/"),
        excluded_ips=("10.1.2.3", "192.168.0.0/16", "2001:db8::/32"),
    )
    assert is_excluded("/health", "1.1.1.1", config)
    assert is_excluded("/health/ready", "1.1.1.1", config)
    assert is_excluded("/static/app.js", "1.1.1.1", config)
    assert not is_excluded("/api/health", "1.1.1.1", config)
    assert is_excluded("/api", "10.1.2.3", config)
    assert not is_excluded("/api", "10.1.2.4", config)
    assert is_excluded("/api", "192.168.44.5", config)
    assert is_excluded("/api", "::ffff:192.168.1.1", config)
    assert is_excluded("/api", "2001:db8:1::5", config)
    assert not is_excluded("/api", "2001:db9::5", config)
    assert not is_excluded("/api", "not-an-ip", config)
    assert not is_excluded("/api", "10.1.2.3", RateLimitConfig(excluded_paths=()))


def test_peer_keys_per_connection_follow_the_config_they_are_given() -> None:
    exempt = RateLimitConfig(excluded_ips=("10.0.0.0/8",))
    peers = PeerKeys(max_peers=2)
    assert peers.key("10.1.1.1:5000", exempt) == ""
    assert peers.key("[2001:db8::1]:443", exempt) == bucket_key("ip", "2001:db8::1")
    # A reloaded section (a new object) is worked out afresh for the same connection.
    assert peers.key("10.1.1.1:5000", RateLimitConfig()) == bucket_key("ip", "10.1.1.1")
    # Past max_peers the table starts over instead of growing.
    for port in range(10):
        assert peers.key(f"192.0.2.7:{port}", exempt) == bucket_key("ip", "192.0.2.7")
    assert len(peers) <= 2


def test_rejection_response() -> None:
    config = RateLimitConfig()
    decision = Decision(
        allowed=False, limit=110, remaining=0, reset_at=1_700_000_050.2, retry_after=2.3
    )
    status, headers, body = rejection(decision, config)
    assert status == 429
    assert orjson.loads(body) == {"error": DEFAULT_ERROR_MESSAGE, "retry_after": 3}
    assert body == b'{"error":"Rate limit exceeded. Please try again later.","retry_after":3}'
    assert dict(headers) == {
        "Content-Type": "application/json; charset=utf-8",
        "X-RateLimit-Limit": "110",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1700000051",
        "Retry-After": "3",
    }


def test_rejection_without_retry_after_header_and_custom_message() -> None:
    config = RateLimitConfig(retry_after_header=False, error_message="Slow down")
    decision = Decision(allowed=False, limit=5, remaining=0, reset_at=100.0, retry_after=0.01)
    status, headers, body = rejection(decision, config)
    assert status == 429
    assert orjson.loads(body) == {"error": "Slow down", "retry_after": 1}  # never 0
    names = [name for name, _ in headers]
    assert "Retry-After" not in names
    assert "X-RateLimit-Reset" in names


def test_headers_for_allowed_requests() -> None:
    decision = Decision(
        allowed=True, limit=12, remaining=7, reset_at=1_700_000_000.5, retry_after=0
    )
    assert allowed_headers(decision) == [
        ("X-RateLimit-Limit", "12"),
        ("X-RateLimit-Remaining", "7"),
        ("X-RateLimit-Reset", "1700000001"),
    ]


def test_admit_agrees_with_the_decision_at_every_step() -> None:
    """The request path's form gives what hit_now + allowed_headers would."""
    fast, clock = memory(0.5, 3)
    slow = MemoryRateLimiter(0.5, 3, clock=clock, wall_clock=clock)
    seen = []
    for step in range(12):
        admitted = fast.admit("ip:a")
        decision = slow.hit_now("ip:a")
        if isinstance(admitted, tuple):
            assert list(admitted) == allowed_headers(decision), step
            assert decision.allowed, step
        else:
            assert fast.decision(admitted) == decision, step
        seen.append(decision.allowed)
        clock.advance(0.7)
    # 3 tokens, +0.35 a step: the burst, then one request in three; both branches compared.
    assert seen == [True] * 4 + [False, False, True] + [False, False, True] + [False, False]


def test_admit_headers_of_a_client_under_its_limit_follow_the_clock() -> None:
    """Refilled to the top before each request: the same tokens left, a reset that moves."""
    fast, clock = memory(10.0, 5)
    slow = MemoryRateLimiter(10.0, 5, clock=clock, wall_clock=clock)
    resets = set()
    for step in range(12):
        admitted = fast.admit(f"ip:{step % 3}")  # three clients, each under the limit
        decision = slow.hit_now(f"ip:{step % 3}")
        assert isinstance(admitted, tuple), step
        assert list(admitted) == allowed_headers(decision), step
        assert decision.remaining == 4, step
        resets.add(dict(admitted)["X-RateLimit-Reset"])
        clock.advance(0.45)
    assert len(resets) == 6  # 12 steps of 0.45 s: the reset second moved on five times


def test_take_reports_the_shortfall_of_a_rejection() -> None:
    limiter, clock = memory(2.0, 2)
    assert limiter.take("k") == pytest.approx(1.0)
    assert limiter.take("k") == pytest.approx(0.0)
    clock.advance(0.25)  # half a token
    left = limiter.take("k")
    assert left == pytest.approx(-0.5)  # rejected, nothing taken
    assert limiter.decision(left).retry_after == pytest.approx(0.25)
    clock.advance(0.25)
    assert limiter.take("k") == pytest.approx(0.0)


def test_bucket_keys_do_not_hold_secrets() -> None:
    assert bucket_key("ip", "10.0.0.1") == "ip:10.0.0.1"
    token_key = bucket_key("token", "secret-api-token")
    assert token_key.startswith("token:")
    assert "secret" not in token_key
    assert token_key == bucket_key("token", "secret-api-token")
