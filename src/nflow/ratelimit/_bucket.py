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
# Idle buckets are looked for this often, in seconds of the bucket clock (and whenever there
# are too many).
_SWEEP_EVERY = 1.0
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

    The buckets belong to this process (an embedding program, ``nflow run``); the workers of
    ``nflow serve`` share theirs through :class:`~nflow.ratelimit.SharedMemoryRateLimiter`, and
    :class:`~nflow.ratelimit.RedisRateLimiter` shares them between servers.

    Memory stays bounded: buckets are kept in least-recently-used order (a bucket's place is
    refreshed at most once a second), and one untouched for
    ``capacity / rate`` seconds is full again, so it is dropped (a new bucket starts full: the
    client sees no difference); they are looked for once a second. Beyond ``max_keys``
    buckets the least recently used are dropped even if not yet full, which only ever errs in
    the client's favour.
    """

    __slots__ = (
        "_buckets",
        "_capacity",
        "_clock",
        "_full",
        "_full_after",
        "_headers",
        "_left",
        "_limit_header",
        "_max_keys",
        "_offset",
        "_rate",
        "_reset",
        "_reset_header",
        "_same_until",
        "_sweep_at",
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
        # As a float: comparing a float with a large int costs several times more.
        self._full = float(self._capacity)
        self._clock = clock
        self._wall = wall_clock
        self._max_keys = max_keys
        self._full_after = self._capacity / self._rate
        self._limit_header = (LIMIT_HEADER, str(self._capacity))
        self._reset = -1
        self._reset_header = (RESET_HEADER, "")
        # Wall clock minus bucket clock, for reset times without reading both clocks on
        # every hit; refreshed by each sweep.
        self._offset = wall_clock() - clock()
        self._sweep_at = -math.inf
        # admit()'s last headers, the tokens left they were for, and the bucket-clock time
        # until which they hold for the same tokens left
        self._headers: tuple[tuple[str, str], ...] = ()
        self._left = -1.0
        self._same_until = -math.inf
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
        if not 0 <= cost <= self._capacity:
            check_cost(cost, self._capacity)
        now = self._clock()
        bucket = self._bucket(key, now)
        tokens = bucket[0]
        if tokens + EPSILON >= cost:
            tokens -= cost
            if tokens < 0.0:
                tokens = 0.0
            bucket[0] = tokens
            return tokens
        return tokens - cost  # negative: the shortfall

    def admit(self, key: str) -> tuple[tuple[str, str], ...] | float:
        """One request's hit: its ``X-RateLimit-*`` headers if allowed, else the shortfall.

        ``take(key)`` and :func:`~nflow.ratelimit.allowed_headers` in one call, which is the
        server's per-request path (a rejected request gets :meth:`take`'s negative result,
        for :meth:`decision`). The usual case, a known client, is written out here rather
        than through :meth:`_bucket`: at this rate a call costs as much as the arithmetic.
        The headers are a tuple that later calls may return again: copy it, never change it.
        """
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None or now >= self._sweep_at:
            bucket = self._bucket(key, now)
            tokens = bucket[0]
        else:
            tokens = bucket[0]
            if now > bucket[1]:
                tokens += (now - bucket[1]) * self._rate
                if tokens > self._full:
                    tokens = self._full
                bucket[1] = now
            if now - bucket[2] >= _REORDER_AFTER:
                bucket[2] = now
                self._buckets.move_to_end(key)
        if tokens + EPSILON < 1.0:
            bucket[0] = tokens
            return tokens - 1.0  # negative: the shortfall
        tokens -= 1.0
        if tokens < 0.0:
            tokens = 0.0
        bucket[0] = tokens
        if tokens == self._left and now <= self._same_until:
            # A client under its limit finds its bucket refilled to the top before each
            # request, so it keeps the same tokens left and, within a second, the same reset:
            # the same headers, whichever client it is.
            return self._headers
        full_at = now + self._offset + (self._full - tokens) / self._rate
        reset = ceil(full_at)
        if reset != self._reset:
            self._reset = reset
            self._reset_header = (RESET_HEADER, str(reset))
        self._left = tokens
        self._same_until = now + (reset - full_at)  # until then ceil(full_at) stays reset
        self._headers = (
            self._limit_header,
            (REMAINING_HEADER, str(int(tokens + EPSILON))),
            self._reset_header,
        )
        return self._headers

    def _bucket(self, key: str, now: float) -> list[float]:
        """``key``'s bucket refilled up to ``now`` (created full), and the sweep when due."""
        if now >= self._sweep_at:
            self._sweep_at = now + _SWEEP_EVERY
            self._offset = self._wall() - now
            self._same_until = -math.inf  # the reset time moved with the offset
            self._evict(now)
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = [self._full, now, now]
            if len(buckets) > self._max_keys:
                self._evict(now)
            return bucket
        if now > bucket[1]:
            tokens = bucket[0] + (now - bucket[1]) * self._rate
            bucket[0] = tokens if tokens < self._full else self._full
            bucket[1] = now
        if now - bucket[2] >= _REORDER_AFTER:
            # Moving on every hit cost a busy client more than the arithmetic; a place in
            # the order up to a second stale only delays a sweep (which reads bucket[1]).
            bucket[2] = now
            buckets.move_to_end(key)
        return bucket

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
