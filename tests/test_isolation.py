"""A route that hit a time or memory limit runs in a child process of its worker, so the
worker's other requests no longer wait behind it (``limits.isolate_seconds``)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness import app_doc, js, starter
from test_server import Server

# Spins for ?ms= milliseconds (forever without it), then answers.
SPIN = (
    "function main(){ var t = Date.now(), ms = payload.ms ? +payload.ms : Infinity;"
    " while (Date.now() - t < ms) {} c.JSON(200, {spun: +payload.ms}) }"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("isolation")
    doc = app_doc(
        s1=starter("s1", "/spin", "a", method="GET"),
        s2=starter("s2", "/good", "b", method="GET"),
        a=js("a", SPIN),
        b=js("b", "function main(){ c.JSON(200, {good: true}) }"),
    )
    (folder / "app.json").write_text(json.dumps(doc))
    (folder / "config.toml").write_text(
        "[limits]\nstep_timeout_seconds = 1.5\nisolate_seconds = 60\n[logging]\naccess = false\n"
    )
    srv = Server(folder, "--app", "app.json", "--workers", "1")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_a_route_past_its_limit_no_longer_holds_up_the_worker(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = client.get("/spin")
        assert first.status_code == 408
        assert "time limit of 1.5s" in first.json()["message"]

        # Isolated now: the same answers, from the child process.
        assert client.get("/spin", params={"ms": "10"}).json() == {"spun": 10}

        spinning = threading.Event()
        finished: list[int] = []

        def hostile() -> None:
            spinning.set()
            with httpx.Client(base_url=server.url, timeout=30) as other:
                finished.append(other.get("/spin").status_code)

        thread = threading.Thread(target=hostile)
        thread.start()
        spinning.wait()
        time.sleep(0.3)  # let the spin reach the child before the good requests go out
        # One worker: before isolation this request waited for the 1.5 s spin to end.
        good = [client.get("/good").json() for _ in range(5)]
        assert finished == [], "the good requests were answered while the spin still ran"
        assert good == [{"good": True}] * 5
        thread.join(30)
        assert finished == [408]
    assert "its requests run in a child process for 60s" in server.output()


def test_the_isolation_child_gets_only_idle_cpu_from_its_start(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.get("/spin", params={"ms": "1"})  # isolated since the test above
    # The child's start-up (importing nflow in a fresh interpreter) is its costliest part:
    # it must already run below the workers' priority, not only the requests after it.
    ready = [line for line in server.output().splitlines() if "isolation child" in line]
    assert ready, server.output()
    assert "CPU priority idle (SCHED_IDLE) from its start" in ready[0]
    children = [
        pid
        for pid in _descendants(server.proc.pid)
        if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    ]
    assert children, "no isolation child is running"
    assert {os.sched_getscheduler(pid) for pid in children} == {os.SCHED_IDLE}


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def test_requests_waiting_for_the_child_are_bounded(server: Server) -> None:
    from nflow._isolation import MAX_WAITING

    extra = 6
    with httpx.Client(base_url=server.url, timeout=60) as client:
        client.get("/spin", params={"ms": "1"})  # isolated since the first test; child warm
    statuses: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            status = client.get("/spin", params={"ms": "100"}).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=call) for _ in range(MAX_WAITING + extra)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    # The child answers one at a time; past MAX_WAITING the worker refuses at once rather
    # than queueing without end.
    assert statuses.count(200) >= MAX_WAITING - 2
    assert statuses.count(503) >= extra - 2
    assert sorted(set(statuses)) == [200, 503]
