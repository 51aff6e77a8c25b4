"""Token buckets in Redis, shared by every worker and instance.

One hash per key (``<prefix><key>``: fields ``t`` tokens and ``ts`` last update, unix seconds
on the Redis clock) updated by one Lua script, so concurrent hits from any number of
processes are serialised by Redis and never lose an update. The script reads the time from
Redis itself (``TIME``), so instances whose clocks disagree still share one notion of "now".
The hash expires once the bucket would be full again, which is exactly when forgetting it
changes nothing.

The script is sent with ``EVALSHA``; when Redis does not know it yet (first use, restart,
``SCRIPT FLUSH``) it is sent once with ``EVAL``, which also caches it for the next calls.

Redis errors **fail open**, as the Go runtime's Redis limiter did: the request is allowed and
a warning is logged (at most one a minute per limiter, with the number of requests let through
in between). Rate limiting protects capacity; an outage of Redis should not become an outage
of every endpoint. So that an outage adds no latency either, each call is bounded by
``timeout`` (redis-py's own retries can otherwise hold a request for seconds), and after a
failure Redis is left alone for ``cooldown`` seconds, during which requests are let through
at once; the first request after it tries Redis again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from nflow.ratelimit._bucket import EPSILON, Decision, check_cost, check_parameters

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("nflow.ratelimit")

# KEYS[1]: the bucket hash. ARGV: rate (tokens/s), capacity, cost.
# Returns {allowed 0|1, tokens left, now}; floats travel as strings because Redis truncates
# Lua numbers to integers in replies.
TOKEN_BUCKET_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tokens = capacity
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local stored, last = tonumber(state[1]), tonumber(state[2])
if stored and last then
  tokens = stored
  if now > last then tokens = tokens + (now - last) * rate end
  if tokens > capacity then tokens = capacity end
  if last > now then now = last end
end
local allowed = 0
if tokens + 1e-9 >= cost then
  tokens = tokens - cost
  if tokens < 0 then tokens = 0 end
  allowed = 1
end
local t = string.format('%.17g', tokens)
local n = string.format('%.17g', now)
redis.call('HSET', KEYS[1], 't', t, 'ts', n)
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return {allowed, t, n}
"""

TOKEN_BUCKET_SHA = hashlib.sha1(TOKEN_BUCKET_LUA.encode()).hexdigest()

_WARN_EVERY = 60.0


class RedisRateLimiter:
    """Token buckets kept in Redis under ``prefix + key``.

    ``client`` is a ``redis.asyncio.Redis``; :meth:`hit` must run on the event loop the client
    belongs to (when the server keeps Redis on its I/O loop: ``await io.run(limiter.hit(k))``).
    """

    __slots__ = (
        "_capacity",
        "_client",
        "_cooldown",
        "_down_until",
        "_prefix",
        "_rate",
        "_suppressed",
        "_timeout",
        "_warned_at",
    )

    def __init__(
        self,
        client: Redis,
        prefix: str,
        rate: float,
        capacity: int,
        *,
        timeout: float = 0.5,
        cooldown: float = 1.0,
    ) -> None:
        check_parameters(rate, capacity)
        self._client = client
        self._prefix = prefix
        self._rate = float(rate)
        self._capacity = int(capacity)
        self._timeout = timeout
        self._cooldown = cooldown
        self._down_until = -math.inf
        self._warned_at = -math.inf
        self._suppressed = 0

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def capacity(self) -> int:
        return self._capacity

    async def hit(self, key: str, *, cost: int = 1) -> Decision:
        # Here, not at the top: only a limiter on Redis imports the client library.
        from redis.exceptions import NoScriptError, RedisError

        check_cost(cost, self._capacity)
        if self._down_until > time.monotonic():
            self._suppressed += 1
            return self._open_decision()
        name = self._prefix + key
        args = (repr(self._rate), str(self._capacity), str(cost))
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    reply: Any = await self._client.evalsha(TOKEN_BUCKET_SHA, 1, name, *args)
                except NoScriptError:
                    reply = await self._client.eval(TOKEN_BUCKET_LUA, 1, name, *args)
            allowed = int(reply[0]) == 1
            tokens = float(reply[1])
            now = float(reply[2])
        except (TimeoutError, RedisError, OSError, ValueError, IndexError) as exc:
            return self._fail_open(exc)
        capacity = self._capacity
        rate = self._rate
        return Decision(
            allowed=allowed,
            limit=capacity,
            remaining=math.floor(tokens + EPSILON),
            reset_at=now + (capacity - tokens) / rate,
            retry_after=0.0 if allowed else (cost - tokens) / rate,
        )

    def _fail_open(self, exc: BaseException) -> Decision:
        now = time.monotonic()
        self._down_until = now + self._cooldown
        if now - self._warned_at >= _WARN_EVERY:
            also = f"; {self._suppressed} more let through since the last warning"
            log.warning(
                "rate limiting is off: Redis failed (%s: %s), requests are let through "
                "(fail open) and Redis is tried again in %gs%s",
                type(exc).__name__,
                str(exc) or "timed out",
                self._cooldown,
                also if self._suppressed else "",
            )
            self._warned_at = now
            self._suppressed = 0
        else:
            self._suppressed += 1
        return self._open_decision()

    def _open_decision(self) -> Decision:
        return Decision(
            allowed=True,
            limit=self._capacity,
            remaining=self._capacity,
            reset_at=time.time(),
            retry_after=0.0,
        )
