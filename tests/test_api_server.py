"""Who may call the management API, on a real ``nflow serve`` bound to 127.0.0.1: loopback
without a token; with a token, the bearer token and a peer in ``api.allowed_ips``. The peer
is the socket's, so ``X-Forwarded-For`` changes nothing. Every call is in the audit log."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nflow.store import Store
from test_api import write_records
from test_history import record

API = "/_nflow/api"
TOKEN = "tok_4f9a2c7e1b8d3a6f5e0c9b2d7a4e1f8c"


class Server:
    """``nflow serve`` in ``cwd`` (which holds config.toml), one worker, JSON logs."""

    def __init__(self, cwd: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.log = cwd / "server.log"
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "nflow", "serve", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--workers", "1"),
            ],
            cwd=cwd,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "NFLOW_LOGGING__FORMAT": "json"},
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.output()}")
            try:
                httpx.get(self.url + "/health", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"server not ready: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def audit(self) -> list[dict[str, object]]:
        lines = [json.loads(x) for x in self.output().splitlines() if x.startswith("{")]
        return [x for x in lines if x.get("logger") == "nflow.audit"]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def serve(tmp_path: Path, api: str) -> Iterator[Server]:
    db = tmp_path / "nflow.db"
    url = f"sqlite+aiosqlite:///{db}"

    async def upgrade() -> None:
        async with Store(url):
            pass

    asyncio.run(upgrade())
    write_records(url, [record(1), record(2, status="error")])
    (tmp_path / "config.toml").write_text(
        f'[database_nflow]\ndsn = "{db}"\n[logging]\naccess = false\n[api]\nenabled = true\n{api}'
    )
    server = Server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[Server]:
    yield from serve(tmp_path, "")


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[Server]:
    yield from serve(tmp_path, f'token = "{TOKEN}"\n')


@pytest.fixture
def elsewhere_server(tmp_path: Path) -> Iterator[Server]:
    yield from serve(tmp_path, f'token = "{TOKEN}"\nallowed_ips = ["10.0.0.0/8", "192.0.2.7"]\n')


def test_without_a_token_loopback_is_served(open_server: Server) -> None:
    with httpx.Client(base_url=open_server.url, timeout=10) as client:
        r = client.get(f"{API}/runs")
        assert r.status_code == 200
        assert [x["id"] for x in r.json()] == ["run-0002-shop", "run-0001-shop"]
        r = client.get(f"{API}/runs/run-0002-shop/steps/0")
        assert r.status_code == 200 and r.json()["node"] == "1"
        assert client.get(f"{API}/openapi.json").json()["openapi"] == "3.1.0"
    assert open_server.stop() == 0
    audit = open_server.audit()
    assert [(a["method"], a["path"], a["ip"], a["outcome"], a["status"]) for a in audit] == [
        ("GET", f"{API}/runs", "127.0.0.1", "ok", 200),
        ("GET", f"{API}/runs/run-0002-shop/steps/0", "127.0.0.1", "ok", 200),
        ("GET", f"{API}/openapi.json", "127.0.0.1", "ok", 200),
    ]


def test_with_a_token_the_bearer_is_required(token_server: Server) -> None:
    with httpx.Client(base_url=token_server.url, timeout=10) as client:
        r = client.get(f"{API}/runs")
        assert r.status_code == 401
        assert r.json() == {
            "code": 401,
            "message": "missing bearer token: send Authorization: Bearer <api.token>",
        }
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = client.get(f"{API}/runs", headers={"Authorization": "Bearer wrong"})
        assert (r.status_code, r.json()["message"]) == (401, "invalid bearer token")
        r = client.get(f"{API}/runs", headers={"Authorization": f"Basic {TOKEN}"})
        assert r.status_code == 401
        r = client.get(f"{API}/runs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and len(r.json()) == 2
    assert token_server.stop() == 0
    outcomes = [(a["status"], a["outcome"], a["level"]) for a in token_server.audit()]
    assert outcomes == [
        (401, "refused", "warning"),
        (401, "refused", "warning"),
        (401, "refused", "warning"),
        (200, "ok", "info"),
    ]
    # The token is in no log line.
    assert TOKEN not in token_server.output()


def test_with_a_token_the_peer_must_be_allowed(elsewhere_server: Server) -> None:
    with httpx.Client(base_url=elsewhere_server.url, timeout=10) as client:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        r = client.get(f"{API}/runs", headers=headers)
        assert r.status_code == 403
        assert r.json() == {"code": 403, "message": "client 127.0.0.1 is not in api.allowed_ips"}
        # A header claiming an allowed address is not the peer.
        r = client.get(
            f"{API}/runs",
            headers={**headers, "X-Forwarded-For": "10.1.2.3", "X-Real-Ip": "192.0.2.7"},
        )
        assert r.status_code == 403
    assert elsewhere_server.stop() == 0
    assert [(a["ip"], a["status"]) for a in elsewhere_server.audit()] == [
        ("127.0.0.1", 403),
        ("127.0.0.1", 403),
    ]
