"""``nflow serve`` as a real process: start-up output, bad input, and it keeps serving."""

from __future__ import annotations

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

from harness import COMPAT, app_doc, js, starter


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, cwd: Path, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = cwd / "server.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nflow", "serve", "--port", str(self.port), *args],
            cwd=cwd,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "NFLOW_LOGGING__FORMAT": "json"},
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.output()}")
            try:
                httpx.get(self.url + "/health", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"server not ready: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    doc = app_doc(
        s1=starter("s1", "/hello", "a", method="GET"),
        s2=starter("s2", "/loop", "b"),
        s3=starter("s3", "/echo", "c"),
        a=js("a", "function main(){ c.JSON(200, {ok: true}) }"),
        b=js("b", "function main(){ while (true) {} }"),
        c=js("c", "function main(){ c.JSON(200, {post: post_data, form: form}) }"),
    )
    (tmp_path / "app.json").write_text(json.dumps(doc))
    (tmp_path / "config.toml").write_text(
        "[limits]\nstep_timeout_seconds = 0.3\nmax_body_bytes = 100000\n"
    )
    srv = Server(
        tmp_path,
        "--app",
        "app.json",
        "--app",
        str(COMPAT / "legacy" / "legacy_app_earliest_2023-03.json"),
        "--workers",
        "1",
    )
    srv.wait_ready()
    yield srv
    srv.stop()


def test_serve_prints_url_apps_and_routes(server: Server) -> None:
    out = server.output()
    assert f"nflow serving on http://127.0.0.1:{server.port}" in out
    assert "app 'app':" in out and "GET    /hello" in out and "ANY    /loop" in out
    assert "/pepe" in out


def test_serves_and_survives_bad_input(server: Server) -> None:
    base = server.url
    with httpx.Client(base_url=base, timeout=10) as client:
        r = client.get("/hello")
        assert (r.status_code, r.json()) == (200, {"ok": True})
        assert r.headers["content-type"] == "application/json"
        assert client.get("/pepe").json() == {"aa": "ss"}
        assert client.get("/nothing").json() == {"code": 404, "message": "not found"}
        # A body over limits.max_body_bytes.
        r = client.post("/echo", content=b"x" * 200_000)
        assert r.status_code == 413 and "max_body_bytes" in r.text
        # A body that claims JSON but is cut off, and one with a content type nobody reads.
        r = client.post(
            "/echo", content=b'{"a": [1, 2', headers={"content-type": "application/json"}
        )
        assert r.status_code == 200 and r.json()["post"] == {"*": "echo"}
        r = client.post(
            "/echo", content=b"\x00\xff binary", headers={"content-type": "application/x-unknown"}
        )
        assert r.status_code == 200
        r = client.post(
            "/echo",
            content=b"--zz\r\nbroken",
            headers={"content-type": "multipart/form-data; boundary=zz"},
        )
        assert r.status_code == 200 and r.json()["form"] == {}
        # A runaway script is stopped and the server goes on.
        r = client.get("/loop")
        assert r.status_code == 408
        for _ in range(3):
            assert client.get("/hello").json() == {"ok": True}
    assert server.stop() == 0


def _requests_total(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("nflow_requests_total "):
            return float(line.split()[1])
    return 0.0


def test_404_and_413_reach_the_access_log_and_the_request_count(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/no-such-route").status_code == 404
        assert client.post("/echo", content=b"x" * 200_000).status_code == 413
        assert client.get("/hello").status_code == 200
        # Metrics reach the scrape within a flush interval: poll, bounded.
        deadline = time.monotonic() + 20
        total = 0.0
        while time.monotonic() < deadline:
            total = _requests_total(client.get("/metrics").text)
            if total >= 3:
                break
            time.sleep(0.2)
        assert total == 3
        metrics = client.get("/metrics").text
    assert 'status_class="4xx"' in metrics
    assert server.stop() == 0  # the access log is flushed on the way out
    lines = [json.loads(line) for line in server.output().splitlines() if '"nflow.access"' in line]
    seen = {(line["method"], line["path"], line["status"]) for line in lines}
    assert {("GET", "/no-such-route", 404), ("POST", "/echo", 413), ("GET", "/hello", 200)} <= seen


def test_serve_refuses_truncated_app_file(tmp_path: Path) -> None:
    text = (COMPAT / "examples_login_flow21_static_json.json").read_text()
    (tmp_path / "cut.json").write_text(text[:300])
    proc = subprocess.run(
        [sys.executable, "-m", "nflow", "serve", "--port", str(free_port()), "--app", "cut.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "cut.json: not valid JSON at line" in proc.stderr


def test_serve_with_no_app_serves_bundled_example(tmp_path: Path) -> None:
    srv = Server(tmp_path, "--workers", "1")
    try:
        srv.wait_ready()
        assert httpx.get(srv.url + "/hello").json() == {"ok": True}
        r = httpx.get(srv.url + "/greet/Ana?lang=es")
        assert r.json()["greeting"] == "Hola, Ana!"
        assert (tmp_path / "nflow.db").exists()
    finally:
        assert srv.stop() == 0


def test_sessions_work_across_workers_without_configured_secret(tmp_path: Path) -> None:
    doc = app_doc(
        s1=starter("s1", "/set", "a"),
        s2=starter("s2", "/get", "b"),
        a=js(
            "a",
            "function main(){ set_session('prefs', 'n', c.QueryParam('n')); c.String(200, 'ok') }",
        ),
        b=js("b", "function main(){ c.JSON(200, {n: get_session('prefs', 'n'), pid: wid}) }"),
    )
    (tmp_path / "app.json").write_text(json.dumps(doc))
    srv = Server(tmp_path, "--app", "app.json", "--workers", "2")
    try:
        srv.wait_ready()
        assert "no [session] secret configured" in srv.output()
        jar = httpx.Cookies()
        r = httpx.get(srv.url + "/set?n=7", cookies=jar)
        jar.update(r.cookies)
        # A new connection each time, so both worker processes serve some of these.
        for _ in range(12):
            r = httpx.get(srv.url + "/get", cookies=jar, headers={"Connection": "close"})
            assert r.json()["n"] == "7"
    finally:
        assert srv.stop() == 0


def test_sigterm_lets_requests_in_flight_finish(tmp_path: Path) -> None:
    import threading

    doc = app_doc(
        s=starter("s", "/slow", "a", method="GET"),
        a=js("a", "function main(){ sleep(1200); c.JSON(200, {done: true}) }"),
    )
    (tmp_path / "app.json").write_text(json.dumps(doc))
    srv = Server(tmp_path, "--app", "app.json", "--workers", "1")
    srv.wait_ready()
    result: dict[str, object] = {}

    def call() -> None:
        try:
            result["response"] = httpx.get(srv.url + "/slow", timeout=10)
        except httpx.HTTPError as exc:
            result["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.4)  # the request is now inside its sleep
    assert srv.stop() == 0
    thread.join(10)
    response = result.get("response")
    assert isinstance(response, httpx.Response), result
    assert (response.status_code, response.json()) == (200, {"done": True})
