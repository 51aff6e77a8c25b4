"""Rate limits of a real ``nflow serve``: exact per client across the workers of one server
(the shared table). Two servers sharing Redis are in test_cluster.

The requests go round keep-alive connections to every worker (each connection first asks
``/debug/info`` which worker it reached), so each worker serves its share.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from harness import app_doc, js, starter
from test_server import Server
from test_server_process import read_response, wait_for, workers_of

# 30 requests a window, no burst. The window is an hour so that the bucket refills one
# token every 2 minutes: under load the 50 requests may take seconds, and a one-minute window
# would refill a token every 2 s and make the count depend on the speed of the machine.
LIMIT = (
    "[rate_limit]\nenabled = true\nip_rate_limit = 30\nip_window_minutes = 60\nip_burst_size = 0\n"
)
DEBUG = "[debug]\nenabled = true\n"


def write_app(directory: Path, config: str) -> None:
    directory.mkdir(exist_ok=True)
    doc = app_doc(
        s1=starter("s1", "/hello", "a", method="GET"),
        a=js("a", "function main(){ c.String(200, 'hello') }"),
    )
    (directory / "app.json").write_text(json.dumps(doc))
    (directory / "config.toml").write_text(config)


def start(directory: Path, workers: int = 2) -> Server:
    srv = Server(directory, "--app", "app.json", "--workers", str(workers))
    srv.wait_ready(timeout=120)  # generous: the rest of the suite may load the machine
    wait_for(f"{workers} workers", lambda: len(workers_of(srv.proc.pid)) == workers, 60)
    return srv


def worker_of(sock: socket.socket) -> int:
    """The pid of the worker serving this connection."""
    sock.sendall(b"GET /debug/info HTTP/1.1\r\nHost: x\r\n\r\n")
    _, _, body = read_response(sock)
    return int(json.loads(body)["pid"])


def one_connection_per_worker(server: Server, workers: int) -> list[socket.socket]:
    """A keep-alive connection to each worker.

    Each worker listens on its own socket (SO_REUSEPORT) once it has built its runtime, and
    the kernel picks a socket by the connection's addresses: new connections reach every
    worker soon after all of them listen.
    """
    found: dict[int, socket.socket] = {}
    deadline = time.monotonic() + 60
    try:
        while len(found) < workers:
            assert time.monotonic() < deadline, f"connections reached {len(found)} worker(s)"
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
            pid = worker_of(sock)
            if pid in found:
                sock.close()
                time.sleep(0.05)
            else:
                found[pid] = sock
    except BaseException:
        for sock in found.values():
            sock.close()
        raise
    return list(found.values())


def hello(sock: socket.socket) -> int:
    sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, _ = read_response(sock)
    return status


def statuses(connections: list[socket.socket], requests: int) -> list[int]:
    """``requests`` GET /hello from one client, spread evenly over ``connections``."""
    try:
        return [hello(connections[n % len(connections)]) for n in range(requests)]
    finally:
        for sock in connections:
            sock.close()


def test_one_client_gets_exactly_its_limit_from_a_server_with_two_workers(
    tmp_path: Path,
) -> None:
    # With a bucket per worker, 25 requests to each of 2 workers were all admitted (50).
    write_app(tmp_path, LIMIT + DEBUG)
    srv = start(tmp_path)
    try:
        got = statuses(one_connection_per_worker(srv, 2), 50)
    finally:
        srv.stop()
    assert (got.count(200), got.count(429)) == (30, 20)
    assert got[:30] == [200] * 30
