"""``nflow serve`` under faults, as real processes: hostile request input, killed workers, a
killed master, SIGTERM under keep-alive load, rebalancing after a replacement.

Everything talks raw HTTP/1.1 over sockets to 127.0.0.1 and sends real signals to the pids.
Waits are bounded polls; assertions are about outcomes (status codes, log lines, processes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from harness import app_doc, js, starter
from nflow.server._master import backoff_seconds
from test_server import Server


def wait_for(what: str, check: Callable[[], object], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def workers_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    pids = [int(p) for p in text.split()]
    # multiprocessing may add its resource tracker: only granian's workers serve.
    return [p for p in pids if b"resource_tracker" not in _cmdline(p)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, parent not reaping: init will) no longer serves.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body; raises ConnectionError on EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        rest += chunk
    return status, headers, rest[:length]


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def log_lines(server: Server) -> list[dict[str, object]]:
    lines = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def messages(server: Server) -> list[str]:
    return [str(line.get("msg", "")) for line in log_lines(server)]


def start(tmp_path: Path, config: str = "", workers: int = 1, port: int | None = None) -> Server:
    doc = app_doc(
        s1=starter("s1", "/hello", "a", method="GET"),
        s2=starter("s2", "/echo", "b"),
        s3=starter("s3", "/slow", "c", method="GET"),
        a=js("a", "function main(){ c.String(200, 'hello') }"),
        b=js("b", "function main(){ c.String(200, 'ok') }"),
        c=js("c", "function main(){ sleep(1500); c.String(200, 'slow') }"),
    )
    (tmp_path / "app.json").write_text(json.dumps(doc))
    (tmp_path / "config.toml").write_text(config)
    srv = Server(tmp_path, "--app", "app.json", "--workers", str(workers), port=port)
    srv.wait_ready()
    wait_for(f"{workers} workers", lambda: len(workers_of(srv.proc.pid)) == workers)
    return srv


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Server]:
    srv = start(
        tmp_path,
        "[limits]\nmax_body_bytes = 100000\n"
        "[server]\nbody_timeout_seconds = 1.5\nmax_header_bytes = 16384\n",
    )
    yield srv
    srv.stop()


# Request input ---------------------------------------------------------------------------------
def test_declared_length_over_the_limit_is_refused_before_the_body(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500000000\r\n\r\n")
        # Not one byte of the body was sent: the answer comes from the header alone.
        status, headers, body = read_response(sock)
    assert status == 413 and headers["connection"] == "close"
    assert b"larger than 100000 bytes (limits.max_body_bytes)" in body


def test_chunked_body_is_cut_off_at_the_limit(limited: Server) -> None:
    total = 200 * 1024 * 1024
    block = b"x" * 65536
    sent = 0
    with connect(limited) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while sent < total:
                sock.sendall(b"10000\r\n" + block + b"\r\n")
                sent += len(block)
        except OSError:
            pass  # the server stopped reading and closed: what this test wants
        status, headers, body = read_response(sock)
    assert status == 413 and headers["connection"] == "close"
    assert b"limits.max_body_bytes" in body
    assert sent < total  # it did not take the whole body before answering
    # Bodies within the limit still arrive whole, chunked or not.
    r = httpx.post(limited.url + "/echo", content=iter([b"a" * 50_000, b"b" * 40_000]))
    assert (r.status_code, r.text) == (200, "ok")
    assert httpx.post(limited.url + "/echo", content=b"z" * 90_000).text == "ok"


def test_slow_body_gets_408(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        answered = None
        for _ in range(30):  # a byte a second, far slower than body_timeout_seconds allows
            try:
                sock.sendall(b"x")
            except OSError:
                break
            sock.settimeout(1.0)
            try:
                answered = read_response(sock)
                break
            except TimeoutError:
                continue
        if answered is None:
            sock.settimeout(10)
            answered = read_response(sock)
    status, headers, body = answered
    assert status == 408 and headers["connection"] == "close"
    assert b"server.body_timeout_seconds" in body
    assert httpx.get(limited.url + "/hello").text == "hello"


def test_header_bytes_are_capped(limited: Server) -> None:
    with connect(limited) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 500_000 + b"\r\n\r\n")
        status, _, _ = read_response(sock)
    assert status == 431
    ok = httpx.get(limited.url + "/hello", headers={"x-fine": "a" * 8000})
    assert ok.status_code == 200


# Worker deaths --------------------------------------------------------------------------------
def test_worker_deaths_never_stop_the_server(tmp_path: Path) -> None:
    srv = start(tmp_path, workers=2)
    try:
        first = workers_of(srv.proc.pid)
        victim = first[0]
        os.kill(victim, signal.SIGKILL)
        replacement = wait_for(
            "a replacement",
            lambda: [p for p in workers_of(srv.proc.pid) if p not in first],
        )
        assert isinstance(replacement, list)
        time.sleep(1.5)
        os.kill(replacement[0], signal.SIGKILL)  # granian alone gave up here (exit 1)
        wait_for(
            "the second replacement",
            lambda: sum("replaced: pid" in m for m in messages(srv)) >= 2,
        )
        assert srv.proc.poll() is None
        wait_for("2 workers", lambda: len(workers_of(srv.proc.pid)) == 2)
        for _ in range(5):
            r = httpx.get(srv.url + "/hello", headers={"connection": "close"}, timeout=10)
            assert r.text == "hello"
        deaths = [m for m in messages(srv) if " died after " in m]
        assert len(deaths) == 2
        assert f"(pid {victim}) died after" in deaths[0] and "SIGKILL" in deaths[0]
        assert f"(pid {replacement[0]}) died after" in deaths[1]
        assert "replacing it in 0.5s (2 deaths in a row)" in deaths[1]
        metrics = httpx.get(srv.url + "/metrics").text
        assert re.search(r"^nflow_worker_restarts_total 2\.0$", metrics, re.M)
    finally:
        assert srv.stop() == 0


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff_seconds(n) for n in (1, 2, 3, 4)] == [0.0, 0.5, 1.0, 2.0]
    assert backoff_seconds(50) == 30.0


def test_killed_master_takes_its_workers_along(tmp_path: Path) -> None:
    srv = start(tmp_path, workers=2)
    workers = workers_of(srv.proc.pid)
    try:
        srv.proc.kill()
        srv.proc.wait(10)
        wait_for("orphaned workers to exit", lambda: not any(alive(p) for p in workers), 10)
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    # The port is free again: a new server starts on it.
    again = start(tmp_path, workers=1, port=srv.port)
    try:
        assert httpx.get(again.url + "/hello").text == "hello"
    finally:
        assert again.stop() == 0


# SIGTERM ---------------------------------------------------------------------------------------
def test_sigterm_answers_every_request_sent_on_busy_keepalive_connections(
    tmp_path: Path,
) -> None:
    srv = start(tmp_path, workers=1)
    results: list[tuple[int, int, bool]] = []  # (sent, answered, last one said close)
    go = threading.Event()

    def client() -> None:
        sent = answered = 0
        closed = False
        with connect(srv) as sock:
            go.wait(10)
            try:
                for _ in range(100_000):
                    sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                    sent += 1
                    _, headers, _ = read_response(sock)
                    answered += 1
                    if headers.get("connection") == "close":
                        closed = True
                        break
            except OSError:
                pass
        results.append((sent, answered, closed))

    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    go.set()
    time.sleep(1.0)
    srv.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(30)
    assert srv.proc.wait(30) == 0
    assert len(results) == 16
    assert all(sent == answered for sent, answered, _ in results), results
    assert all(closed for _, _, closed in results), results


def test_sigterm_finishes_running_requests_and_closes_idle_ones(tmp_path: Path) -> None:
    srv = start(tmp_path, workers=1)
    idle = connect(srv)
    idle.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(idle)[0] == 200
    busy = connect(srv)
    busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)  # the slow request is running
    srv.proc.send_signal(signal.SIGTERM)
    status, headers, body = read_response(busy)
    assert (status, body, headers["connection"]) == (200, b"slow", "close")
    idle.settimeout(10)
    assert idle.recv(100) == b""  # closed by the server, not left open
    assert srv.proc.wait(30) == 0
    idle.close()
    busy.close()


def test_shutdown_timeout_bounds_the_drain(tmp_path: Path) -> None:
    srv = start(tmp_path, "[server]\nshutdown_timeout_seconds = 1\n", workers=1)
    # A body that never comes (its timeout is the default 60 s) holds the request open.
    stuck = connect(srv)
    stuck.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
    time.sleep(0.3)
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(20)
    # Stopped by the drain deadline, far before the body timeout.
    assert time.monotonic() - started < 20
    stuck.close()


# Rebalancing -----------------------------------------------------------------------------------
def test_survivors_close_keepalive_connections_after_a_replacement(tmp_path: Path) -> None:
    srv = start(tmp_path, workers=2)
    stop = threading.Event()
    closes: list[float] = []
    killed_at: list[float] = []

    def client() -> None:
        sock: socket.socket | None = None
        while not stop.is_set():
            try:
                if sock is None:
                    sock = connect(srv)
                sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                _, headers, _ = read_response(sock)
                if headers.get("connection") == "close":
                    closes.append(time.monotonic())
                    sock.close()
                    sock = None
                time.sleep(0.01)
            except OSError:  # its worker was killed: reconnect
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.05)
        if sock is not None:
            sock.close()

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        assert not closes  # keep-alive as usual
        killed_at.append(time.monotonic())
        os.kill(workers_of(srv.proc.pid)[0], signal.SIGKILL)
        wait_for(
            "the survivor to be asked",
            lambda: any("surviving worker(s)" in m for m in messages(srv)),
            60,
        )
        wait_for("connections closed by the survivor", lambda: closes, 10)
        assert any("a sibling worker was replaced" in m for m in messages(srv))
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        assert srv.stop() == 0


def test_metrics_port_serves_every_workers_metrics_off_the_main_port(tmp_path: Path) -> None:
    from test_server import free_port

    metrics_port = free_port()
    srv = start(tmp_path, f"[monitor]\nenabled = true\nmetrics_port = {metrics_port}\n", workers=2)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            for _ in range(20):
                assert client.get("/hello").text == "hello"
            # The metrics path now belongs to the playbooks: nothing there.
            assert client.get("/metrics").status_code == 404
        scrape = f"http://127.0.0.1:{metrics_port}"

        def total() -> float:
            for line in httpx.get(scrape + "/metrics", timeout=10).text.splitlines():
                if line.startswith("nflow_requests_total "):
                    return float(line.split()[1])
            return 0.0

        # Both workers flush within a flush interval; the master sums them.
        wait_for("20 requests counted", lambda: total() >= 20)
        response = httpx.get(scrape + "/metrics", timeout=10)
        assert response.headers["content-type"].startswith("text/plain")
        assert httpx.get(scrape + "/other", timeout=10).status_code == 404
    finally:
        assert srv.stop() == 0


def test_metrics_port_in_use_is_refused_naming_the_setting(tmp_path: Path) -> None:
    import subprocess
    import sys

    from test_server import free_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        (tmp_path / "config.toml").write_text(
            f"[monitor]\nenabled = true\nmetrics_port = {taken}\n"
        )
        proc = subprocess.run(
            [sys.executable, "-m", "nflow", "serve", "--port", str(free_port())],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2
    assert f"127.0.0.1:{taken} is already in use" in proc.stderr
    assert "monitor.metrics_port" in proc.stderr
