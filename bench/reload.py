"""What hot reload costs a worker: one idle poll, one reload of a changed app, and requests.

    .venv/bin/python bench/reload.py [ROUNDS]

Prints the mean time of a poll that finds nothing new (done every
``server.reload_interval_seconds`` by each worker), of a poll that loads, analyzes and swaps
in a changed ``bench/apps/bench.json``, and the in-process time of one ``GET /hello``
(the request path reads the swapped catalog once per request). Then, for ``/hello`` and
``/chain10``, the first request after a reload that changed every script (the new version's
steps are compiled and its flows defined somewhere: by the warm-up on the loop's thread right
after the swap, or by that request when the warm-up is off) beside the steady median of the
same request (the target is at most 2x) and beside the first request after the same pause
without a reload (on a loaded machine a pause alone slows the next request). Not a test:
nothing checks these numbers.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nflow import Request, Runtime
from nflow.config import load_config
from nflow.server import dispatch
from nflow.server._reload import Reloader

BENCH_APP = Path(__file__).parent / "apps" / "bench.json"


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        app = Path(folder) / "bench.json"
        text = BENCH_APP.read_text()
        app.write_text(text)
        (Path(folder) / "config.toml").write_text("[logging]\naccess = false\n")
        runtime = Runtime(
            load_config(Path(folder) / "config.toml", environ={}),
            app_files=[app],
            database_url=f"sqlite+aiosqlite:///{folder}/nflow.db",
        )
        await runtime.open()
        reloader = Reloader(runtime)
        try:
            # Steady state: a file last written long ago is only stat()ed, not read.
            old = time.time() - 60
            os.utime(app, (old, old))
            await asyncio.to_thread(reloader.check)
            started = time.perf_counter()
            for _ in range(rounds):
                assert not await asyncio.to_thread(reloader.check)
            idle = (time.perf_counter() - started) / rounds
            swap = 0.0
            for i in range(rounds // 10 or 1):
                app.write_text(text.replace('"Home"', f'"Home{i}"', 1) if i % 2 else text + " ")
                started = time.perf_counter()
                assert await asyncio.to_thread(reloader.check)
                swap += time.perf_counter() - started
            swap /= rounds // 10 or 1
            request = Request("GET", "/hello")
            for _ in range(200):
                await dispatch(runtime, request)
            started = time.perf_counter()
            for _ in range(rounds * 10):
                await dispatch(runtime, request)
            per_request = (time.perf_counter() - started) / (rounds * 10)
            first = await first_after_reload(runtime, reloader, app, text, rounds // 25 or 1)
        finally:
            await runtime.close()
    print(f"idle poll (nothing changed): {idle * 1e6:8.1f} µs")
    print(f"poll that reloads bench.json: {swap * 1e3:8.2f} ms")
    print(f"GET /hello in process:        {per_request * 1e6:8.1f} µs")
    print()
    print("first request after a reload that changed every script (medians, in process):")
    print(
        f"{'path':<10} {'warm-up':<8} {'steady µs':>10} {'after pause':>12} {'first µs':>10}"
        f" {'first/steady':>13} {'first/pause':>12}"
    )
    for (path, warm), (steady, idle, after) in first.items():
        print(
            f"{path:<10} {'on' if warm else 'off':<8} {steady * 1e6:10.1f} {idle * 1e6:12.1f}"
            f" {after * 1e6:10.1f} {after / steady:12.2f}x {after / idle:11.2f}x"
        )


async def first_after_reload(
    runtime: Runtime, reloader: Reloader, app: Path, text: str, rounds: int
) -> dict[tuple[str, bool], tuple[float, float, float]]:
    """Medians per path and warm-up: steady, the first request after a 4 ms pause without a
    reload, the first request after a reload."""
    out: dict[tuple[str, bool], tuple[float, float, float]] = {}
    version = 0
    for warm in (True, False):
        runtime.warm_on_reload = warm
        for path in ("/hello", "/chain10"):
            request = Request("GET", path)
            firsts = []
            for _ in range(rounds):
                version += 1
                # A comment in every script: new sources, so new steps to compile.
                app.write_text(text.replace("function main(){", f"function main(){{ // {version}"))
                # The swap hands the warm-up to the loop before check() returns: it runs
                # before this coroutine goes on.
                assert await asyncio.to_thread(reloader.check)
                started = time.perf_counter()
                await dispatch(runtime, request)
                firsts.append(time.perf_counter() - started)
            idle = []
            for _ in range(rounds):
                # The same wait on another thread without a reload: what a pause alone costs
                # the next request (cold caches, the CPU given to other processes).
                await asyncio.to_thread(time.sleep, 0.004)
                started = time.perf_counter()
                await dispatch(runtime, request)
                idle.append(time.perf_counter() - started)
            steady = []
            for _ in range(300):
                started = time.perf_counter()
                await dispatch(runtime, request)
                steady.append(time.perf_counter() - started)
            out[path, warm] = (
                statistics.median(steady),
                statistics.median(idle),
                statistics.median(firsts),
            )
    runtime.warm_on_reload = True
    return out


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
