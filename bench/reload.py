"""What hot reload costs a worker: one idle poll, one reload of a changed app, and requests.

    .venv/bin/python bench/reload.py [ROUNDS]

Prints the mean time of a poll that finds nothing new (done every
``server.reload_interval_seconds`` by each worker), of a poll that loads, analyzes and swaps
in a changed ``bench/apps/bench.json``, and the in-process time of one ``GET /hello``
(the request path reads the swapped catalog once per request). Not a test: nothing checks
these numbers.
"""

from __future__ import annotations

import asyncio
import os
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
        finally:
            await runtime.close()
    print(f"idle poll (nothing changed): {idle * 1e6:8.1f} µs")
    print(f"poll that reloads bench.json: {swap * 1e3:8.2f} ms")
    print(f"GET /hello in process:        {per_request * 1e6:8.1f} µs")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
