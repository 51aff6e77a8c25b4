"""Token buckets in a table of shared memory: one limit for all workers of one server.

Each worker of ``nflow serve`` is its own process; with a bucket per process a client got up
to N times its limit from N workers. The master creates a small file (:func:`create_table`)
before the workers start, and every worker maps it and keeps the buckets there.

The file is a header and a fixed number of 32-byte slots: the key's 64-bit hash (blake2b, the
same in every process; 0 marks a slot never used), the tokens left and the time of the last
update on ``CLOCK_MONOTONIC``, which every process of one machine shares. A key lives in one
of :data:`PROBE` slots after its hash's home slot (open addressing). A bucket untouched long
enough to be full again is as good as absent, so its slot is taken by the next new key; when
none of a key's slots is free or full again, the one updated longest ago is taken (that
client starts with a full bucket: errors only ever go in the client's favour, as the
in-process table's ``max_keys`` does).

Every access holds ``flock`` on the file: two system calls per request, which cost a few
microseconds (see ``bench/ratelimit.py``); each process opens the file itself, because
``flock`` does not exclude processes that share one open file description.
"""

from __future__ import annotations

__all__ = ["PROBE", "SharedMemoryRateLimiter", "create_table"]

import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
from collections.abc import Callable
from math import ceil

from nflow.ratelimit._bucket import (
    EPSILON,
    LIMIT_HEADER,
    REMAINING_HEADER,
    RESET_HEADER,
    Decision,
    check_cost,
    check_parameters,
)

_MAGIC = b"NFRLTBL1"
_HEADER = struct.Struct("<8sI")
_HEADER_BYTES = 64
_SLOT = struct.Struct("<Qdd8x")
# Slots a key may live in after its home slot; a lookup reads at most this many.
PROBE = 8
DEFAULT_SLOTS = 1 << 17  # 4 MiB of file, touched (and so resident) only where keys land
# Keys whose hash was worked out already; a client sends many requests.
_HASH_CACHE_MAX = 4096


def create_table(path: str | os.PathLike[str], slots: int = DEFAULT_SLOTS) -> None:
    """Create (or empty) the table file at ``path`` with ``slots`` slots, a power of two."""
    if slots < PROBE or slots & (slots - 1):
        raise ValueError(f"slots must be a power of two of at least {PROBE}, got {slots!r}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # Sparse: the pages of untouched slots take no memory.
        os.ftruncate(fd, _HEADER_BYTES + slots * _SLOT.size)
        os.pwrite(fd, _HEADER.pack(_MAGIC, slots), 0)
    finally:
        os.close(fd)


def _key_hash(key: str) -> int:
    value = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return value or 1  # 0 marks an empty slot


class SharedMemoryRateLimiter:
    """Token buckets in the table file at ``path``, shared by every process that opens it.

    The same interface as :class:`~nflow.ratelimit.MemoryRateLimiter` (``admit``, ``take``,
    ``decision``, ``hit``), so the server's per-request path is the same. Every process
    sharing a table must use the same ``rate`` and ``capacity``.
    """

    __slots__ = (
        "_capacity",
        "_clock",
        "_fd",
        "_full",
        "_full_after",
        "_hashes",
        "_limit_header",
        "_map",
        "_mask",
        "_rate",
        "_wall",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        rate: float,
        capacity: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        check_parameters(rate, capacity)
        self._rate = float(rate)
        self._capacity = int(capacity)
        self._full = float(capacity)
        self._full_after = self._capacity / self._rate
        self._clock = clock
        self._wall = wall_clock
        self._limit_header = (LIMIT_HEADER, str(self._capacity))
        self._hashes: dict[str, int] = {}
        self._fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(self._fd).st_size
            magic, slots = _HEADER.unpack(os.pread(self._fd, _HEADER.size, 0))
            if magic != _MAGIC or size != _HEADER_BYTES + slots * _SLOT.size:
                raise ValueError(f"{os.fspath(path)} is not a rate-limit table")
            self._map = mmap.mmap(self._fd, size)
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise
        self._mask = slots - 1

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def capacity(self) -> int:
        return self._capacity

    def close(self) -> None:
        """Unmap the table (the file stays for the other processes)."""
        if self._fd >= 0:
            self._map.close()
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # A limiter replaced by a reload goes when its last request is done: so does its file.
        if getattr(self, "_fd", -1) >= 0:
            self.close()

    def __len__(self) -> int:
        """Slots holding a bucket that is not full again (clients limited right now)."""
        now = self._clock()
        count = 0
        for slot in range(self._mask + 1):
            key, _, last = _SLOT.unpack_from(self._map, _HEADER_BYTES + slot * _SLOT.size)
            if key and now - last < self._full_after:
                count += 1
        return count

    async def hit(self, key: str, *, cost: int = 1) -> Decision:
        return self.hit_now(key, cost=cost)

    def hit_now(self, key: str, *, cost: int = 1) -> Decision:
        """:meth:`hit` without the coroutine."""
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
            int(tokens + EPSILON),
            self._wall() + (self._capacity - tokens) / self._rate,
            retry_after,
        )

    def admit(self, key: str) -> tuple[tuple[str, str], ...] | float:
        """One request's hit: its ``X-RateLimit-*`` headers if allowed, else the shortfall."""
        left = self.take(key)
        if left < 0.0:
            return left
        reset = ceil(self._wall() + (self._full - left) / self._rate)
        return (
            self._limit_header,
            (REMAINING_HEADER, str(int(left + EPSILON))),
            (RESET_HEADER, str(reset)),
        )

    def take(self, key: str, *, cost: int = 1) -> float:
        """Take ``cost`` tokens: the tokens left, or minus the shortfall if rejected."""
        if not 0 <= cost <= self._capacity:
            check_cost(cost, self._capacity)
        wanted = self._hashes.get(key)
        if wanted is None:
            if len(self._hashes) >= _HASH_CACHE_MAX:
                self._hashes.clear()
            wanted = self._hashes[key] = _key_hash(key)
        table = self._map
        mask = self._mask
        home = wanted & mask
        fd = self._fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            now = self._clock()
            at = reuse = oldest = -1
            oldest_last = math.inf
            tokens = self._full
            for step in range(PROBE):
                offset = _HEADER_BYTES + ((home + step) & mask) * _SLOT.size
                found, stored, last = _SLOT.unpack_from(table, offset)
                if found == wanted:
                    at = offset
                    tokens = stored
                    if now > last:
                        tokens += (now - last) * self._rate
                        if tokens > self._full:
                            tokens = self._full
                    break
                if found == 0:  # never used: the key is in no later slot
                    if reuse < 0:
                        reuse = offset
                    break
                if reuse < 0 and now - last >= self._full_after:
                    reuse = offset
                if last < oldest_last:
                    oldest_last, oldest = last, offset
            if at < 0:
                at = reuse if reuse >= 0 else oldest
            if tokens + EPSILON >= cost:
                tokens -= cost
                if tokens < 0.0:
                    tokens = 0.0
                _SLOT.pack_into(table, at, wanted, tokens, now)
                return tokens
            _SLOT.pack_into(table, at, wanted, tokens, now)
            return tokens - cost  # negative: the shortfall
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
