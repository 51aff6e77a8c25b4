"""A route that hit a time or memory limit runs in a child process of its worker, so the
worker's other requests no longer wait behind it (``limits.isolate_seconds``)."""

from __future__ import annotations

import json
import os
import signal
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


def write_spin_app(folder: Path) -> None:
    """app.json: GET /spin runs SPIN, GET /good answers {"good": true}."""
    doc = app_doc(
        s1=starter("s1", "/spin", "a", method="GET"),
        s2=starter("s2", "/good", "b", method="GET"),
        a=js("a", SPIN),
        b=js("b", "function main(){ c.JSON(200, {good: true}) }"),
    )
    (folder / "app.json").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("isolation")
    write_spin_app(folder)
    # A second app whose own limits make the worker wait only 1 s + GRACE_SECONDS for it.
    quick = app_doc(s3=starter("s3", "/quick", "q", method="GET"), q=js("q", SPIN))
    quick["nflow_limits"] = {"request_timeout_seconds": 1, "step_timeout_seconds": 0.5}
    (folder / "quick.json").write_text(json.dumps(quick))
    (folder / "config.toml").write_text(
        "[limits]\nstep_timeout_seconds = 1.5\nisolate_seconds = 60\n[logging]\naccess = false\n"
    )
    srv = Server(folder, "--app", "app.json", "--app", "quick.json", "--workers", "1")
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
    children = _isolation_children(server)
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
    from nflow.server._isolation import MAX_WAITING

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

    # The child is held stopped until every request is in, so how many wait does not depend
    # on how fast this machine starts threads and connections.
    (child,) = _isolation_children(server)
    os.kill(child, signal.SIGSTOP)
    try:
        threads = [threading.Thread(target=call) for _ in range(MAX_WAITING + extra)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if statuses.count(503) >= extra:
                    break
            time.sleep(0.05)
    finally:
        os.kill(child, signal.SIGCONT)
    for thread in threads:
        thread.join(90)
    # The child answers one at a time; past MAX_WAITING the worker refuses at once rather
    # than queueing without end.
    assert statuses.count(503) == extra
    assert statuses.count(200) == MAX_WAITING


def test_a_child_starved_of_cpu_is_kept_and_the_request_told_to_retry(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.get("/quick").status_code == 408  # in the worker; isolated now
        assert client.get("/quick", params={"ms": "1"}).json() == {"spun": 1}  # child warm
        children = _isolation_children(server)
        assert len(children) == 1, children
        started_before = server.output().count("isolation child")
        # A stopped process gets no CPU at all: the same state as a child that every busy
        # worker keeps off the CPUs, without depending on how loaded this machine is.
        os.kill(children[0], signal.SIGSTOP)
        try:
            starved = client.get("/quick", params={"ms": "1"})
        finally:
            os.kill(children[0], signal.SIGCONT)
        assert starved.status_code == 503, starved.text
        assert "got no CPU" in starved.json()["message"]
        assert starved.headers["retry-after"] == "1"
        # Kept, not replaced: the same child answers once it runs again.
        assert client.get("/quick", params={"ms": "1"}).json() == {"spun": 1}
    assert _isolation_children(server) == children
    assert server.output().count("isolation child") == started_before, "the child was replaced"


def _isolation_children(server: Server) -> list[int]:
    return [
        pid
        for pid in _descendants(server.proc.pid)
        if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    ]


def test_limit_hits_in_the_child_count_towards_the_quarantine(tmp_path: Path) -> None:
    write_spin_app(tmp_path)
    (tmp_path / "config.toml").write_text(
        "[limits]\nstep_timeout_seconds = 0.3\nisolate_seconds = 60\n"
        "quarantine_after_hits = 2\nquarantine_seconds = 60\n[logging]\naccess = false\n"
    )
    srv = Server(tmp_path, "--app", "app.json", "--workers", "1")
    try:
        srv.wait_ready()
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            assert client.get("/spin").status_code == 408  # in the worker: now isolated
            assert client.get("/spin").status_code == 408  # in the child: the second hit
            paused = client.get("/spin")
            assert paused.status_code == 503, paused.text
            assert "after repeated limit hits" in paused.text
            assert client.get("/good").json() == {"good": True}
        output = srv.output()
        assert "its requests run in a child process" in output
        assert "quarantined for 60s: 2 limit hits" in output
    finally:
        srv.stop()
