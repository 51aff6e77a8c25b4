"""What passing debug session calls between workers costs, on real ``nflow serve`` servers.

    .venv/bin/python bench/debug_relay.py [N]

Starts ``nflow serve`` with 1 and then 2 workers on a throwaway SQLite file, opens a debug
session paused at a breakpoint, and reads it N times (default 200), each on a new connection
so that with 2 workers about half the calls reach the worker that does not own the session
and are passed on to it. Prints the share of calls answered 200 and the median and 90th
percentile latency. Not a test.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from nflow.store import Store


def _app() -> dict[str, Any]:
    def node(code: str, target: str | None) -> dict[str, Any]:
        conns = [{"node": target, "output": "input_1"}] if target else []
        return {
            "data": {"type": "js", "code": code},
            "outputs": {"output_1": {"connections": conns}},
        }

    starter = {
        "data": {"type": "starter", "method": "ANY", "urlpattern": "/flow"},
        "outputs": {"output_1": {"connections": [{"node": "a", "output": "input_1"}]}},
    }
    nodes = {
        "s": starter,
        "a": node("function main(){ return 'output_1' }", "b"),
        "b": node("function main(){ c.JSON(200, {ok: true}) }", None),
    }
    return {"drawflow": {"Home": {"data": {k: {"id": k, **v} for k, v in nodes.items()}}}}


def _serve(directory: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    db = directory / "nflow.sqlite"

    async def prepare() -> None:
        async with Store(f"sqlite+aiosqlite:///{db}") as store:
            await store.put_app("flow", orjson.dumps(_app()).decode())

    asyncio.run(prepare())
    (directory / "config.toml").write_text(
        f'[database_nflow]\ndsn = "{db}"\n[logging]\naccess = false\n'
        "[studio]\nenabled = true\n[debug]\nenabled = true\n"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    command = [sys.executable, "-m", "nflow", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers)]
    log = (directory / "server.log").open("wb")
    proc = subprocess.Popen(command, cwd=directory, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/flow", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server with {workers} worker(s) did not start")


def measure(workers: int, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _serve(Path(tmp), workers)
        try:
            headers = {"X-Nflow-Client": "bench", "Content-Type": "application/json"}
            body = b'{"path": "/flow", "breakpoints": [{"node": "b"}]}'
            started = httpx.post(
                url + "/_nflow/api/debug/sessions", content=body, headers=headers, timeout=30
            )
            session = started.json()["id"]
            times: list[float] = []
            ok = 0
            limits = httpx.Limits(max_keepalive_connections=0)
            with httpx.Client(base_url=url, timeout=30, limits=limits) as client:
                for _ in range(n):
                    t0 = time.perf_counter()
                    r = client.get(f"/_nflow/api/debug/sessions/{session}")
                    times.append((time.perf_counter() - t0) * 1000)
                    ok += r.status_code == 200
            times.sort()
            print(
                f"workers={workers} calls={n} answered_200={ok} "
                f"median={statistics.median(times):.2f} ms p90={times[int(n * 0.9)]:.2f} ms"
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    for w in (1, 2):
        measure(w, count)
