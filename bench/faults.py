"""Fault probes of ``nflow serve``: big uploads, SIGTERM under keep-alive load, killed workers.

A measurement, not a test: it prints figures (worker RSS during a 500 MB upload, requests lost
at SIGTERM, whether the server survives repeated worker kills). Everything runs on 127.0.0.1
against a server it starts itself in a temporary directory, and it stops what it starts.

    .venv/bin/python bench/faults.py [upload|sigterm|kills|all] [--workers 2] [--mb 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _starter(node_id: str, pattern: str, method: str, first: str) -> dict[str, object]:
    return {
        "id": node_id,
        "data": {"type": "starter", "method": method, "urlpattern": pattern, "name_box": ""},
        "inputs": {},
        "outputs": {"output_1": {"connections": [{"node": first, "output": "input_1"}]}},
    }


def _js(node_id: str, code: str) -> dict[str, object]:
    return {
        "id": node_id,
        "data": {"type": "js", "name_box": node_id, "code": code},
        "inputs": {},
        "outputs": {},
    }


APP = {
    "drawflow": {
        "Home": {
            "data": {
                "s1": _starter("s1", "/upload", "ANY", "a"),
                "a": _js("a", "function main(){ c.String(200, 'ok') }"),
                "s2": _starter("s2", "/slow", "GET", "b"),
                "b": _js("b", "function main(){ sleep(200); c.String(200, 'ok') }"),
            }
        }
    }
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Server:
    def __init__(self, workdir: Path, workers: int, config: str = "") -> None:
        (workdir / "app.json").write_text(json.dumps(APP))
        (workdir / "config.toml").write_text(config)
        self.port = free_port()
        self.log = workdir / "server.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nflow",
                "serve",
                "--port",
                str(self.port),
                "--app",
                "app.json",
                "--workers",
                str(workers),
            ],
            cwd=workdir,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is None and self.answers():
                break
            time.sleep(0.2)
        else:
            self.stop()
            raise SystemExit(f"server did not start:\n{self.log.read_text()}")
        deadline = time.monotonic() + 30
        while len(self.workers()) < workers and time.monotonic() < deadline:
            time.sleep(0.1)

    def workers(self) -> list[int]:
        # granian's multiprocessing may add a resource tracker: keep the serving ones.
        return [p for p in children(self.proc.pid) if "resource_tracker" not in cmdline(p)]

    def answers(self, timeout: float = 2.0) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self) -> None:
        pids = self.workers()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in pids:  # orphans of a master that died first
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


# upload --------------------------------------------------------------------------------------
def upload(port: int, total: int, chunked: bool, limit_s: float = 60.0) -> tuple[str, float, int]:
    """Send a ``total``-byte POST; return (status line, seconds, bytes the server took)."""
    block = b"x" * (1024 * 1024)
    started = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
        sock.sendall(head.encode() + b"\r\n")
        try:
            while sent < total and time.monotonic() - started < limit_s:
                part = block[: min(len(block), total - sent)]
                if chunked:
                    sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
                else:
                    sock.sendall(part)
                sent += len(part)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server stopped reading (413) and closed
        try:
            line = sock.recv(200).split(b"\r\n")[0].decode()
        except OSError as exc:
            line = f"no response ({exc.__class__.__name__})"
    return line or "connection closed, no response", time.monotonic() - started, sent


def probe_upload(workers: int, mb: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), workers)
        try:
            pids = srv.workers()
            idle = {p: rss_mb(p) for p in pids}
            for chunked in (True, False):
                peak = dict(idle)
                stop = threading.Event()

                def sample(peak: dict[int, float] = peak, stop: threading.Event = stop) -> None:
                    while not stop.wait(0.02):
                        for p in pids:
                            peak[p] = max(peak[p], rss_mb(p))

                thread = threading.Thread(target=sample, daemon=True)
                thread.start()
                status, took, sent = upload(srv.port, mb * 1_000_000, chunked)
                stop.set()
                thread.join()
                after = {p: round(rss_mb(p)) for p in pids}
                kind = "chunked" if chunked else "content-length"
                print(
                    f"upload {mb} MB {kind}: {status!r} after {took:.1f}s, {sent / 1e6:.0f} MB "
                    f"sent; worker RSS idle {sorted(round(v) for v in idle.values())} MB, "
                    f"peak {max(peak.values()):.0f} MB, after {sorted(after.values())} MB"
                )
            print("server answers afterwards:", srv.answers())
        finally:
            srv.stop()


# SIGTERM under keep-alive load ---------------------------------------------------------------
async def _keepalive_client(
    port: int, path: str, stats: dict[str, int], stop: asyncio.Event, reconnect: bool
) -> None:
    """One client on one keep-alive connection; with ``reconnect`` (like wrk) a new connection
    after each close, until connections are refused."""
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["connect_failed"] += 1
            return
        await _one_connection(reader, writer, path, stats, stop)
        if not reconnect:
            return


async def _one_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    path: str,
    stats: dict[str, int],
    stop: asyncio.Event,
) -> None:
    try:
        while True:
            if stop.is_set():
                return
            writer.write(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
            try:
                await writer.drain()
            except OSError:
                stats["lost"] += 1
                return
            stats["sent"] += 1
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            except (asyncio.IncompleteReadError, OSError, asyncio.LimitOverrunError):
                stats["lost"] += 1
                return
            except TimeoutError:
                stats["timed_out"] += 1
                return
            length = 0
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                if name.lower() == b"connection" and value.strip().lower() == b"close":
                    close = True
            try:
                await reader.readexactly(length)
            except (asyncio.IncompleteReadError, OSError):
                stats["lost"] += 1
                return
            stats["answered"] += 1
            if close:
                stats["closed_by_server"] += 1
                return
    finally:
        writer.close()


async def _sigterm_load(
    srv: Server, conns: int, path: str, before: float, reconnect: bool
) -> dict[str, int]:
    stats = dict.fromkeys(
        ("sent", "answered", "lost", "timed_out", "connect_failed", "closed_by_server"), 0
    )
    stop = asyncio.Event()
    client = _keepalive_client
    tasks = [
        asyncio.create_task(client(srv.port, path, stats, stop, reconnect)) for _ in range(conns)
    ]
    await asyncio.sleep(before)
    srv.proc.send_signal(signal.SIGTERM)
    stats["sent_before_sigterm"] = stats["sent"]
    await asyncio.wait(tasks, timeout=60)
    stop.set()
    for task in tasks:
        task.cancel()
    return stats


def probe_sigterm(workers: int, conns: int, path: str, reconnect: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), workers)
        try:
            started = time.monotonic()
            stats = asyncio.run(_sigterm_load(srv, conns, path, 3.0, reconnect))
            code = srv.proc.wait(60)
            print(
                f"SIGTERM under {conns} keep-alive connections on {path}"
                f"{' (reconnecting)' if reconnect else ''}: {stats}; "
                f"master exit {code} {time.monotonic() - started - 3:.1f}s after SIGTERM"
            )
        finally:
            srv.stop()


# killed workers ------------------------------------------------------------------------------
def probe_kills(workers: int, rounds: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), workers)
        try:
            for n in range(rounds):
                pids = srv.workers()
                if not pids:
                    break
                # After the first round, the newest worker: the replacement of the last victim.
                victim = max(pids) if n else pids[0]
                os.kill(victim, signal.SIGKILL)
                print(f"kill -9 worker {victim} (round {n + 1})")
                time.sleep(1.5)
            deadline = time.monotonic() + 20
            alive = False
            while time.monotonic() < deadline:
                if srv.proc.poll() is not None:
                    break
                if srv.answers():
                    alive = True
                    break
                time.sleep(0.25)
            print(
                f"after {rounds} worker kills 1.5 s apart: master "
                f"{'running' if srv.proc.poll() is None else f'exited {srv.proc.returncode}'}"
                f", answers: {alive}, workers now {srv.workers()}"
            )
        finally:
            srv.stop()


def probe_master(workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), workers)
        pids = srv.workers()
        srv.proc.kill()
        srv.proc.wait(10)
        killed = time.monotonic()
        deadline = killed + 10
        while time.monotonic() < deadline and any(_serving(p) for p in pids):
            time.sleep(0.05)
        left = [p for p in pids if _serving(p)]
        gone = f"{time.monotonic() - killed:.1f}s" if not left else "not within 10 s"
        for pid in left:  # what the master would have stopped
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        print(f"kill -9 master: its {len(pids)} workers gone after {gone}")


def _serving(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="?", default="all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--conns", type=int, default=64)
    args = parser.parse_args()
    if args.what in ("upload", "all"):
        probe_upload(args.workers, args.mb)
    if args.what in ("sigterm", "all"):
        for path in ("/upload", "/slow"):  # a fast route and a 200 ms one
            probe_sigterm(args.workers, args.conns, path, reconnect=False)
        probe_sigterm(args.workers, args.conns, "/upload", reconnect=True)
    if args.what in ("kills", "all"):
        probe_kills(args.workers)
    if args.what in ("master", "all"):
        probe_master(args.workers)


if __name__ == "__main__":
    main()
