"""``nflow.client`` against real ``nflow serve`` processes with two workers: apps saved and
served by every worker, conflicts, replay and re-run of recorded runs, and debug sessions
driven whatever worker each call reaches. (Logins are tested in process, test_studio_api.)"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from harness import app_doc, js, starter
from nflow.client import ApiError, AsyncClient, Client, Conflict
from nflow.store import Store
from test_api import conforms

FLOW = app_doc(
    s=starter("s", "/flow", "a", method="ANY"),
    a=js(
        "a", "function main(){ payload.x = Number(form.n || 1); return 'output_1' }", output_1="b"
    ),
    b=js("b", "function main(){ payload.x = payload.x * 10; return 'output_1' }", output_1="c"),
    c=js("c", "function main(){ c.JSON(200, {x: payload.x, v: 1}) }"),
)


class Serve:
    """``nflow serve --workers 2`` in ``cwd`` on a free loopback port."""

    def __init__(self, cwd: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.log = cwd / "server.log"
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "nflow", "serve", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--workers", "2"),
            ],
            cwd=cwd,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/flow", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"server not ready: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def fresh(url: str) -> httpx.Client:
    """A client that opens a new connection per request, so calls spread over the workers."""
    return httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


def digest(password: str) -> str:
    return hashlib.new("sha512_256", password.encode()).hexdigest()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Serve]:
    """One server per database for the module's tests (a start takes seconds)."""
    tmp_path = tmp_path_factory.mktemp(f"studio-{request.param}")
    if request.param == "sqlite":
        db_url = f"sqlite+aiosqlite:///{tmp_path / 'nflow.sqlite'}"
    else:
        database = request.getfixturevalue("pg_database")
        asyncio.run(database.reset(keep_store_tables=False))
        db_url = database.url

    async def prepare() -> None:
        async with Store(db_url) as store:
            await store.put_app("flow", orjson.dumps(FLOW).decode())
            await store.put_user("dev", digest("dev-pass-1"), rol="developer")

    asyncio.run(prepare())
    if db_url.startswith("sqlite"):
        dsn = f'[database_nflow]\ndsn = "{db_url.split(":///", 1)[1]}"\n'
    else:
        from sqlalchemy.engine import make_url

        url = make_url(db_url)
        dsn = (
            '[database_nflow]\ndriver = "postgres"\n'
            f'dsn = "{url.set(drivername="postgresql").render_as_string(hide_password=False)}"\n'
        )
    (tmp_path / "config.toml").write_text(
        dsn
        + "[logging]\naccess = false\n"
        + "[studio]\nenabled = true\n"
        + "[debug]\nenabled = true\n"
        + '[history]\nmode = "all"\n'
        + '[session]\nsecret = "a-test-secret-of-at-least-32-characters!!"\n'
    )
    serve = Serve(tmp_path)
    try:
        yield serve
    finally:
        serve.stop()


def test_client_saves_apps_every_worker_serves_and_replays_runs(server: Serve) -> None:
    with Client(server.url, client_name="tests") as api:
        assert api.me() == {"user": None, "auth": "loopback"}
        [listed] = api.apps()
        assert listed["name"] == "flow"
        app = api.app("flow")
        doc = app["document"]
        doc["drawflow"]["Home"]["data"]["c"]["data"]["code"] = (
            "function main(){ c.JSON(200, {x: payload.x, v: 2}) }"
        )
        saved = api.save_app("flow", doc, version=app["version"])
        assert saved["version"] != app["version"]
        with pytest.raises(Conflict) as conflict:
            api.save_app("flow", doc, version=app["version"])
        assert conflict.value.status == 409 and conflict.value.current == saved["version"]
        with pytest.raises(ApiError) as missing:
            api.app("nope")
        assert missing.value.status == 404

        # Every worker serves the saved version within its reload interval.
        seen: list[int] = []
        deadline = time.monotonic() + 30
        with fresh(server.url) as http:
            while time.monotonic() < deadline and seen[-12:].count(2) < 12:
                seen.append(http.get("/flow", params={"n": 3}).json()["v"])
        assert seen[-12:] == [2] * 12

        # The runs were recorded; a replay is identical, a re-run is a new labelled run.
        # The workers write runs to the history in the background: wait for the new ones.
        newer: list[Any] = []
        deadline = time.monotonic() + 30
        while not newer and time.monotonic() < deadline:
            newer = api.runs(app="flow", version=saved["version"][:8], limit=50)
            time.sleep(0.1)
        assert newer and {r["version"] for r in newer} == {saved["version"]}
        runs = api.runs(app="flow", limit=5)
        with pytest.raises(ApiError) as bad_version:
            api.runs(version="v1;drop")
        assert bad_version.value.status == 400
        run = api.run(runs[0]["id"])
        assert run["response"]["status"] == 200
        replayed = api.replay(run["id"])
        assert replayed["identical"] is True and replayed["divergence"] is None
        conforms(replayed, "/_nflow/api/runs/{id}/replay", "post")
        step_b = next(s for s in run["steps"] if s["node"] == "b")
        again = api.rerun(run["id"], step_b["index"])
        assert again["parent_id"] == run["id"] and again["node"] == "b"
        conforms(again, "/_nflow/api/runs/{id}/rerun", "post")
        assert again["response"]["status"] == 200
        # From b's recorded payload, on the current version (which answers v 2).
        x = step_b["payload_before"]["x"]
        assert orjson.loads(again["response"]["body"]) == {"x": x * 10, "v": 2}
        assert api.run(again["run_id"])["parent"] == run["id"]
        with pytest.raises(ApiError) as bad_step:
            api.rerun(run["id"], 99)
        assert bad_step.value.status == 409 and "no step 99" in bad_step.value.message


def test_debug_sessions_answer_on_any_worker(server: Serve) -> None:
    with Client(server.url, client_name="tests") as api:
        state = api.debug({"path": "/flow", "query": {"n": "4"}, "breakpoints": [{"node": "b"}]})
        sid = state["id"]
        assert state["state"] == "paused" and state["paused_at"]["node"] == "b"
        assert state["node"] == "b" and state["next"] == "output_1"  # a's output
        conforms(state, "/_nflow/api/debug/sessions", "post", 201)
    # Each call on a new connection: the kernel spreads them over both workers.
    with fresh(server.url) as http:
        for _ in range(12):
            r = http.get(f"/_nflow/api/debug/sessions/{sid}")
            assert r.status_code == 200, r.text
            assert r.json()["payload"]["x"] == 4
        headers = {"X-Nflow-Client": "tests", "Content-Type": "application/json"}
        r = http.post(f"/_nflow/api/debug/sessions/{sid}/step", content=b"{}", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json()["paused_at"]["node"] == "c" and r.json()["payload"]["x"] == 40
        r = http.post(f"/_nflow/api/debug/sessions/{sid}/continue", content=b"{}", headers=headers)
        assert r.status_code == 200 and r.json()["state"] == "finished"
        for _ in range(6):
            r = http.get(f"/_nflow/api/debug/sessions/{sid}")
            assert r.json()["state"] == "finished"
            assert orjson.loads(r.json()["response"]["body"])["x"] == 40
            r = http.post(f"/_nflow/api/debug/sessions/{sid}/step", content=b"{}", headers=headers)
            assert r.status_code == 409
        assert http.get("/_nflow/api/debug/sessions/p1.0000").status_code == 404


def test_async_client_and_the_page(server: Serve) -> None:
    async def scenario() -> tuple[dict[str, Any], list[Any], list[Any]]:
        async with AsyncClient(server.url, client_name="tests") as api:
            assert (await api.app("flow"))["source"] == "store"
            findings = await api.check_app("flow")
            with pytest.raises(ApiError) as refused:
                await api.login("dev", "dev-pass-1")  # logins are off on this server
            assert refused.value.status == 404
            return await api.me(), findings, await api.versions("flow")

    me, findings, versions = asyncio.run(scenario())
    assert me == {"user": None, "auth": "loopback"}
    assert [f for f in findings if f["severity"] == "error"] == []
    assert sum(1 for v in versions if v["current"]) == 1
    page = httpx.get(server.url + "/_nflow/studio", timeout=10)
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
