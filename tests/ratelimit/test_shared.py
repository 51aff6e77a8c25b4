"""The memory backend's table in shared memory: one limit for every process that maps it."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from nflow.config import RateLimitConfig
from nflow.ratelimit import SharedMemoryRateLimiter, create_table, limiter_from_config


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def table(tmp_path: Path, slots: int = 1 << 10) -> str:
    path = str(tmp_path / "ratelimit.table")
    create_table(path, slots)
    return path


def test_two_limiters_on_one_table_share_each_bucket(tmp_path: Path) -> None:
    path = table(tmp_path)
    clock = Clock()
    a = SharedMemoryRateLimiter(path, 1.0, 5, clock=clock, wall_clock=clock)
    b = SharedMemoryRateLimiter(path, 1.0, 5, clock=clock, wall_clock=clock)
    admitted = [x.hit_now("ip:10.0.0.1").allowed for x in (a, b) * 5]
    assert admitted == [True] * 5 + [False] * 5
    # Another client has its own bucket; the first refills with time, as one bucket does.
    assert b.hit_now("ip:10.0.0.2").remaining == 4
    clock.now += 2.0
    assert a.hit_now("ip:10.0.0.1").remaining == 1
    assert b.hit_now("ip:10.0.0.1").remaining == 0
    rejected = a.hit_now("ip:10.0.0.1")
    assert not rejected.allowed and rejected.retry_after == pytest.approx(1.0)
    assert len(a) == 2
    a.close()
    b.close()


def test_admit_gives_headers_or_the_shortfall(tmp_path: Path) -> None:
    clock = Clock()
    limiter = SharedMemoryRateLimiter(table(tmp_path), 0.5, 2, clock=clock, wall_clock=clock)
    first = limiter.admit("ip:a")
    assert isinstance(first, tuple)
    assert dict(first) == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "1",
        "X-RateLimit-Reset": "1002",
    }
    assert isinstance(limiter.admit("ip:a"), tuple)
    shortfall = limiter.admit("ip:a")
    assert shortfall == pytest.approx(-1.0)
    assert limiter.decision(float(shortfall)).retry_after == pytest.approx(2.0)


def test_a_full_table_takes_the_slot_updated_longest_ago(tmp_path: Path) -> None:
    # 8 slots, all a key may probe: the 9th client evicts the least recently updated one,
    # which then starts with a full bucket (an error in the client's favour, never against).
    clock = Clock()
    limiter = SharedMemoryRateLimiter(table(tmp_path, 8), 0.001, 1, clock=clock)
    for n in range(8):
        clock.now += 1
        assert limiter.hit_now(f"ip:{n}").allowed
    assert not limiter.hit_now("ip:7").allowed  # still held: its bucket is empty
    clock.now += 1
    assert limiter.hit_now("ip:new").allowed
    assert limiter.hit_now("ip:0").allowed  # evicted, so full again
    assert not limiter.hit_now("ip:5").allowed


def test_a_bucket_full_again_gives_its_slot_to_a_new_client(tmp_path: Path) -> None:
    clock = Clock()
    limiter = SharedMemoryRateLimiter(table(tmp_path, 8), 1.0, 2, clock=clock)
    for n in range(8):
        limiter.hit_now(f"ip:{n}")
    clock.now += 2.0  # every bucket is full again
    assert len(limiter) == 0
    assert limiter.hit_now("ip:other").remaining == 1
    assert not [n for n in range(8) if limiter.hit_now(f"ip:{n}").remaining != 1]


def test_bad_tables_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="power of two"):
        create_table(tmp_path / "t", 1000)
    other = tmp_path / "other"
    other.write_bytes(b"not a table" * 10)
    with pytest.raises(ValueError, match="is not a rate-limit table"):
        SharedMemoryRateLimiter(other, 1.0, 1)


def test_limiter_from_config_uses_the_table_when_given(tmp_path: Path) -> None:
    config = RateLimitConfig(enabled=True, ip_rate_limit=3, ip_burst_size=0)
    limiter = limiter_from_config(config, shared_table=table(tmp_path))
    assert isinstance(limiter, SharedMemoryRateLimiter) and limiter.capacity == 3


def _hammer(path: str, start: object, out: object) -> None:
    limiter = SharedMemoryRateLimiter(path, 1e-6, 20_000)
    start.wait()  # type: ignore[attr-defined]
    out.put(sum(limiter.hit_now("ip:one client").allowed for _ in range(10_000)))  # type: ignore[attr-defined]


def test_processes_hitting_one_bucket_at_once_admit_exactly_its_capacity(
    tmp_path: Path,
) -> None:
    # Four processes race on one bucket of 20,000 tokens with 40,000 hits: without the lock
    # their read-modify-writes overwrite each other and far more than the capacity passes
    # (23,448 and 40,000 in two runs without it).
    path = table(tmp_path)
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    start = context.Barrier(4)
    workers = [context.Process(target=_hammer, args=(path, start, out)) for _ in range(4)]
    for worker in workers:
        worker.start()
    counts = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert sum(counts) == 20_000
    assert os.path.getsize(path) == 64 + 32 * (1 << 10)
