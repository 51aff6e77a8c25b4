"""The decision type, the limiter protocol and the in-process token bucket."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from math import ceil
from typing import Protocol

# Float slack when comparing token counts: 6 s at 1/6 token per second must give a whole token.
EPSILON = 1e-9
# Idle buckets are looked for every this many hits (and whenever there are too many).
_SWEEP_EVERY = 32
# A bucket's place in the least-recently-used order is refreshed at most this often (s).
_REORDER_AFTER = 1.0
# The headers of a decision (see nflow.ratelimit.allowed_headers).
LIMIT_HEADER = "X-RateLimit-Limit"
REMAINING_HEADER = "X-RateLimit-Remaining"
RESET_HEADER = "X-RateLimit-Reset"


@dataclass(slots=True)
class Decision:
    """The outcome of one :meth:`RateLimiter.hit`.

    ``limit`` is the bucket capacity (the most requests a client can make at once),
    ``remaining`` the whole tokens left after this hit, ``reset_at`` the unix time at which the
    bucket is full again, and ``retry_after`` the seconds until this request would have been
    allowed (0 when it was).
    """

    allowed: bool
    limit: int
    remaining: int
    reset_at: float
    retry_after: float


class RateLimiter(Protocol):
    """A token bucket per key; one call takes ``cost`` tokens or rejects without taking any."""

    async def hit(self, key: str, *, cost: int = 1) -> Decision: ...


def check_parameters(rate: float, capacity: int) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a positive number of tokens per second, got {rate!r}")
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1 token, got {capacity!r}")


def check_cost(cost: int, capacity: int) -> None:
    if not 0 <= cost <= capacity:
        raise ValueError(
            f"cost must be between 0 and the bucket capacity {capacity}, got {cost!r} "
            "(a larger cost could never be allowed)"
        )


class MemoryRateLimiter:
    """Token buckets in this process's memory.

    Each worker process has its own buckets, so with N workers a client may get up to N times
    the limit; use :class:`~nflow.ratelimit.RedisRateLimiter` to share them.

    Memory stays bounded: buckets are kept in least-recently-used order (a bucket's place is
    refreshed at most once a second), and one untouched for
    ``capacity / rate`` seconds is full again, so it is dropped (a new bucket starts full: the
    client sees no difference); they are looked for every few hits. Beyond ``max_keys``
    buckets the least recently used are dropped even if not yet full, which only ever errs in
    the client's favour.
    """

    __slots__ = (
        "_buckets",
        "_capacity",
        "_clock",
        "_full_after",
        "_hits",
        "_limit_header",
        "_max_keys",
        "_rate",
        "_reset",
        "_reset_header",
        "_wall",
    )

    def __init__(
        self,
        rate: float,
        capacity: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_keys: int = 100_000,
    ) -> None:
        check_parameters(rate, capacity)
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys!r}")
        self._rate = float(rate)
        self._capacity = int(capacity)
        self._clock = clock
        self._wall = wall_clock
        self._max_keys = max_keys
        self._full_after = self._capacity / self._rate
        self._limit_header = (LIMIT_HEADER, str(self._capacity))
        self._reset = -1
        self._reset_header = (RESET_HEADER, "")
        self._hits = 0
        # key -> [tokens, last update, last move to the end] on ``clock``; ordered by the
        # last move, which is at most _REORDER_AFTER behind the last update.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        """Buckets currently held in memory."""
        return len(self._buckets)

    async def hit(self, key: str, *, cost: int = 1) -> Decision:
        return self.hit_now(key, cost=cost)

    def hit_now(self, key: str, *, cost: int = 1) -> Decision:
        """:meth:`hit` without the coroutine, for callers outside an event loop."""
        return self.decision(self.take(key, cost=cost), cost=cost)

    def decision(self, left: float, *, cost: int = 1) -> Decision:
        """The :class:`Decision` for a result of :meth:`take` with the same ``cost``."""
        if left >= 0.0:
            allowed, tokens, retry_after = True, left, 0.0
        else:
            allowed, tokens, retry_after = False, left + cost, -left / self._rate
        return Decision(
            allowed,
            self._capacity,
            int(tokens + EPSILON),  # floor: tokens are never negative
            self.reset_at(tokens),
            retry_after,
        )

    def reset_at(self, tokens: float) -> float:
        """The unix time at which a bucket holding ``tokens`` now is full again."""
        return self._wall() + (self._capacity - tokens) / self._rate

    def take(self, key: str, *, cost: int = 1) -> float:
        """Take ``cost`` tokens: the tokens left, or minus the shortfall if rejected.

        The bucket itself, without building a :class:`Decision`: a result ``>= 0`` means the
        request is allowed and that many tokens remain; a negative one means it was rejected
        (nothing taken) and ``-result / rate`` seconds would have been enough.
        """
        capacity = self._capacity
        if not 0 <= cost <= capacity:
            check_cost(cost, capacity)
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            tokens = float(capacity)
            bucket = buckets[key] = [tokens, now, now]
        else:
            tokens = bucket[0]
            if now > bucket[1]:
                tokens += (now - bucket[1]) * self._rate
                if tokens > capacity:
                    tokens = float(capacity)
                bucket[1] = now
            if now - bucket[2] >= _REORDER_AFTER:
                # Moving on every hit cost a busy client more than the arithmetic; a place in
                # the order up to a second stale only delays a sweep (which reads bucket[1]).
                bucket[2] = now
                buckets.move_to_end(key)
        if tokens + EPSILON >= cost:
            tokens -= cost
            if tokens < 0.0:
                tokens = 0.0
            left = tokens
        else:
            left = tokens - cost  # negative: the shortfall
        bucket[0] = tokens
        self._hits += 1
        if self._hits >= _SWEEP_EVERY or len(buckets) > self._max_keys:
            self._hits = 0
            self._evict(now)
        return left

    def headers(self, left: float) -> list[tuple[str, str]]:
        """The ``X-RateLimit-*`` headers for an allowed :meth:`take` result (``left >= 0``).

        ``allowed_headers(decision(left))`` without the Decision and the property lookups:
        the request path's form (measured: the separate calls cost the server more than the
        bucket arithmetic).
        """
        reset = ceil(self._wall() + (self._capacity - left) / self._rate)
        if reset != self._reset:
            # Whole seconds: a busy client gets the same header for many requests in a row.
            self._reset = reset
            self._reset_header = (RESET_HEADER, str(reset))
        return [
            self._limit_header,
            (REMAINING_HEADER, str(int(left + EPSILON))),
            self._reset_header,
        ]

    def _evict(self, now: float) -> None:
        # Oldest first: stop at the first bucket that is neither surplus nor full again.
        buckets = self._buckets
        full_after = self._full_after
        while buckets:
            oldest = next(iter(buckets.values()))
            if len(buckets) > self._max_keys or now - oldest[1] >= full_after:
                buckets.popitem(last=False)
            else:
                break
