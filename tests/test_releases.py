"""Releases on a real ``nflow serve`` with two workers, on SQLite and PostgreSQL: weighted
split of new clients, sticky clients and wizards, rollback, automatic rollback of a failing
canary, and a designer's direct change to the ``nflow`` table becoming a version."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from harness import app_doc, js, starter
from nflow.cli import main as nflow_cli
from test_reload import _db_config
from test_server import Server

CONFIG = (
    "[server]\nreload_interval_seconds = 0.2\n"
    "[logging]\naccess = false\n"
    '[session]\nsecret = "a-test-secret-that-is-long-enough-0123456789"\n'
)


def shop(tag: str, *, throw: bool = False) -> dict[str, Any]:
    """GET /v answers the version's tag (or throws); /w is a two-page wizard."""
    answer = "throw new Error('boom')" if throw else f"c.JSON(200, {{v: '{tag}'}})"
    return app_doc(
        s1=starter("s1", "/v", "a", method="GET"),
        s2=starter("s2", "/w", "p"),
        a=js("a", f"function main(){{ {answer} }}"),
        p=js(
            "p",
            f"function main(){{ payload.break = true; c.JSON(200, {{v: '{tag}', step: 1}}) }}",
            output_1="q",
        ),
        q=js("q", f"function main(){{ c.JSON(200, {{v: '{tag}', step: 2}}) }}"),
    )


class Env:
    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.db_url = db_url
        self.tmp = tmp_path
        self.config = tmp_path / "config.toml"
        self.config.write_text(_db_config(db_url) + CONFIG)
        self.servers: list[Server] = []

    def cli(self, *args: str, capsys: pytest.CaptureFixture[str] | None = None) -> str:
        if capsys is not None:
            capsys.readouterr()  # what earlier commands printed
        assert nflow_cli([*args, "--config", str(self.config)]) == 0
        return capsys.readouterr().out if capsys is not None else ""

    def write(self, name: str, doc: dict[str, Any]) -> str:
        path = self.tmp / f"{name}.json"
        path.write_bytes(orjson.dumps(doc))
        return str(path)

    def serve(self) -> Server:
        srv = Server(self.tmp, "--workers", "2")
        self.servers.append(srv)
        srv.wait_ready()
        return srv

    def versions(self, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.cli("versions", "shop", "--json", capsys=capsys))
        return data


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    e = Env(db_url, tmp_path)
    yield e
    for srv in e.servers:
        srv.stop()


def new_client(url: str, path: str = "/v") -> httpx.Response:
    return httpx.get(url + path, timeout=10)


def eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> float:
    """Seconds until ``check`` held."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout}s: {what}")


def serves_only(url: str, version: str, n: int = 12) -> bool:
    return all(new_client(url).headers["nflow-version"] == version for _ in range(n))


def test_split_sticky_clients_wizard_and_rollback(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.cli("import", env.write("a", shop("A")), "--name", "shop")
    out = env.cli("import", "--stage", env.write("b", shop("B")), "--name", "shop", capsys=capsys)
    assert "staged" in out
    listed = env.versions(capsys)["versions"]
    by_source = {v["id"]: v for v in listed}
    (a,) = [v for v, d in by_source.items() if d["weight"] == 100.0]
    (b,) = [v for v in by_source if v != a]
    srv = env.serve()
    assert serves_only(srv.url, a)  # staged is not served

    env.cli("release", "shop", b[:8], "--weight", "50")
    eventually(lambda: new_client(srv.url).headers["nflow-version"] == b, "B serves")

    # 400 new clients (no cookie) split about evenly, each answered by its version.
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=10) as plain:
        for _ in range(400):
            r = plain.get(srv.url + "/v", headers={"connection": "close"})
            plain.cookies.clear()
            version = r.headers["nflow-version"]
            assert r.json() == {"v": "A" if version == a else "B"}
            seen[version] += 1
    assert 160 <= seen[b] <= 240 and seen[a] + seen[b] == 400, seen

    # A client keeps its version over 20 requests (its cookie), on whichever worker.
    for _ in range(3):
        with httpx.Client(base_url=srv.url, timeout=10) as client:
            first = client.get("/v").headers["nflow-version"]
            assert {client.get("/v").headers["nflow-version"] for _ in range(20)} == {first}

    # A wizard that started on a version finishes on it across a release change.
    wizards: dict[str, httpx.Client] = {}
    while len(wizards) < 2:
        client = httpx.Client(base_url=srv.url, timeout=10)
        page = client.get("/w")
        assert page.json()["step"] == 1
        version = page.headers["nflow-version"]
        if version in wizards:
            client.close()
        else:
            wizards[version] = client
    env.cli("release", "shop", b[:8], "--weight", "100")
    eventually(lambda: serves_only(srv.url, b), "B alone")
    for version, client in wizards.items():
        done = client.post("/w", data={"nflow_next_node_run": "q"})
        assert done.headers["nflow-version"] == version
        assert done.json() == {"v": "A" if version == a else "B", "step": 2}
        # A fresh start of the wizard goes to the version released now.
        assert client.get("/w").headers["nflow-version"] == b
        client.close()

    # Rollback restores the previous release (50/50), then the one before (A alone).
    env.cli("rollback", "shop")
    eventually(lambda: new_client(srv.url).headers["nflow-version"] == a, "50/50 again")
    env.cli("rollback", "shop")
    took = eventually(lambda: serves_only(srv.url, a), "A alone")
    assert took < 10
    data = env.versions(capsys)
    assert {v["id"]: v["weight"] for v in data["versions"]} == {a: 100.0, b: 0.0}
    assert [e["kind"] for e in data["events"][:2]] == ["rollback", "rollback"]


def test_a_canary_that_throws_is_rolled_back_automatically(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.cli("import", env.write("a", shop("A")), "--name", "shop")
    env.cli("import", "--stage", env.write("c", shop("C", throw=True)), "--name", "shop")
    srv = env.serve()
    (canary,) = [v["id"] for v in env.versions(capsys)["versions"] if v["weight"] == 0]
    env.cli("release", "shop", canary[:10], "--weight", "50")
    canary_requests = 0
    ok_after = 0
    for _ in range(400):
        r = new_client(srv.url)
        if r.headers["nflow-version"] == canary:
            assert r.status_code == 500
            canary_requests += 1
            ok_after = 0
        else:
            assert r.status_code == 200
            ok_after += 1
        if canary_requests and ok_after >= 40:
            break
    assert 20 <= canary_requests < 40, canary_requests
    assert ok_after >= 40  # no client is sent to the canary any more
    data = env.versions(capsys)
    event = data["events"][0]
    assert event["kind"] == "auto_rollback"
    assert event["detail"]["version"] == canary
    assert event["detail"]["requests"] >= 20 and event["detail"]["error_rate"] > 0.2
    assert {v["id"]: v["weight"] for v in data["versions"]}[canary] == 0
    assert "rolled back automatically" in srv.output()
    out = env.cli("versions", "shop", capsys=capsys)
    assert f"auto rollback of {canary[:12]}" in out


def test_a_designer_change_to_the_nflow_table_becomes_a_version(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.cli("import", env.write("a", shop("A")), "--name", "shop")
    srv = env.serve()
    (a,) = [v["id"] for v in env.versions(capsys)["versions"]]
    assert serves_only(srv.url, a)

    async def designer_save() -> None:
        engine = create_async_engine(env.db_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE nflow SET json = :j WHERE name = 'shop'"),
                    {"j": json.dumps(shop("D"))},
                )
        finally:
            await engine.dispose()

    asyncio.run(designer_save())
    eventually(lambda: new_client(srv.url).json() == {"v": "D"}, "the designer's version")
    eventually(lambda: len(env.versions(capsys)["versions"]) == 2, "two versions")
    data = env.versions(capsys)
    (d,) = [v for v in data["versions"] if v["id"] != a]
    assert d["source"] == "designer" and d["weight"] == 100.0
    # Each worker finds the designer's change at its own next poll: soon every one serves it.
    eventually(lambda: serves_only(srv.url, d["id"]), "every worker serving the designer's version")
    # The change is node-level in `nflow diff`; rollback serves the imported version again.
    diff = env.cli("diff", "shop", a[:6], d["id"][:6], capsys=capsys)
    assert "node changed: a" in diff and "-function main(){ c.JSON(200, {v: 'A'}) }" in diff
    env.cli("rollback", "shop")
    eventually(lambda: serves_only(srv.url, a), "A again")
