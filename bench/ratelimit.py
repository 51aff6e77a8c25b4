#!/usr/bin/env python3
"""What a rate-limit decision costs per request: the in-process buckets against the table in
shared memory that the workers of ``nflow serve`` use.

Times ``admit(key)`` (the server's per-request call) in a loop, for one client and for 10,000
clients in turn, in one process and then in two processes hitting the same table at once
(their ``flock`` calls contend). Prints microseconds per call, the best of 5 rounds: the
figure is wall time on a shared machine, so compare rows of one run, not runs.

Usage: bench/ratelimit.py [CALLS (200000)]
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

from nflow.ratelimit import MemoryRateLimiter, SharedMemoryRateLimiter, create_table

RATE, CAPACITY = 1e9, 1_000_000_000  # never rejects: the cost of an admitted request


def per_call(
    limiter: MemoryRateLimiter | SharedMemoryRateLimiter, keys: list[str], n: int
) -> float:
    best = float("inf")
    admit = limiter.admit
    for _ in range(5):
        started = time.perf_counter()
        for i in range(n):
            admit(keys[i % len(keys)])
        best = min(best, (time.perf_counter() - started) / n)
    return best * 1e6


def _worker(path: str, keys: list[str], n: int, start: object, out: object) -> None:
    limiter = SharedMemoryRateLimiter(path, RATE, CAPACITY)
    start.wait()  # type: ignore[attr-defined]
    out.put(per_call(limiter, keys, n))  # type: ignore[attr-defined]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory, "ratelimit.table"))
        create_table(path)
        for label, keys in (
            ("1 client", ["ip:10.0.0.1"]),
            ("10,000 clients", [f"ip:{i}" for i in range(10_000)]),
        ):
            memory = per_call(MemoryRateLimiter(RATE, CAPACITY), keys, n)
            shared = per_call(SharedMemoryRateLimiter(path, RATE, CAPACITY), keys, n)
            context = multiprocessing.get_context("fork")
            out = context.Queue()
            start = context.Barrier(2)
            procs = [
                context.Process(target=_worker, args=(path, keys, n, start, out)) for _ in range(2)
            ]
            for proc in procs:
                proc.start()
            both = [out.get(timeout=300) for _ in procs]
            for proc in procs:
                proc.join()
            print(
                f"{label:>15}: in-process {memory:.2f} µs/call, shared table {shared:.2f} µs/call,"
                f" shared by 2 processes at once {max(both):.2f} µs/call"
            )


if __name__ == "__main__":
    main()
