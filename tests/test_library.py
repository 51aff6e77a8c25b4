"""nflow inside a Python program: the README's "Using nflow as a library" code, run as written.

The code blocks are read from README.md, so the documentation cannot drift from what works.
The Starlette example is served by a real granian process on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

import nflow
from harness import REPO


def readme_blocks(section: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def write_project(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory like a user's: config.toml on the test database and the bundled app."""
    if db_url.startswith("sqlite"):
        database = f'driver = "sqlite3"\ndsn = "{db_url.split(":///", 1)[1]}"'
    else:
        database = (
            f'driver = "postgres"\ndsn = "{db_url.replace("postgresql+asyncpg", "postgres")}"'
        )
    (tmp_path / "config.toml").write_text(
        f'[database_nflow]\n{database}\n[logging]\naccess = false\n[session]\nsecret = "{"k" * 40}"\n'
    )
    app = resources.files("nflow.examples").joinpath("hello.json").read_bytes()
    (tmp_path / "app.json").write_bytes(app)
    for key in list(os.environ):
        if key.startswith("NFLOW_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def project(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return write_project(tmp_path, db_url, monkeypatch)


def test_public_api_is_explicit() -> None:
    for name in ("Runtime", "Config", "load_config", "Request", "Response", "AsgiApp"):
        assert name in nflow.__all__
    for name in ("step", "StepContext", "NflowError", "ExecutionError", "StepError"):
        assert name in nflow.__all__
    assert all(hasattr(nflow, name) for name in nflow.__all__)


def test_readme_embedding_example_handles_a_request(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    embed, _ = readme_blocks("Using nflow as a library")
    exec(compile(embed, "README.md (embedding)", "exec"), {"__name__": "readme_embed"})
    assert capsys.readouterr().out == "200 Hola, Ana!\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served_shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # A server start costs seconds: SQLite only here; the embedding test covers both stores.
    project = write_project(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}", monkeypatch)
    _, shop = readme_blocks("Using nflow as a library")
    (project / "shop.py").write_text(shop, encoding="utf-8")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(project)}
    log = (project / "granian.log").open("wb")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "granian", "--interface", "asgi"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1", "shop:app"),
        ],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/status", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "the README's Starlette app did not start:\n"
                    + (project / "granian.log").read_text(errors="replace")
                )
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_readme_starlette_mount_serves_its_own_route_and_the_flows(served_shop: str) -> None:
    status = httpx.get(served_shop + "/status", timeout=10)
    assert status.json() == {"service": "shop", "apps": 1}

    greet = httpx.get(served_shop + "/flows/greet/Ana", params={"lang": "es"}, timeout=10)
    assert greet.status_code == 200
    assert greet.json()["greeting"] == "Hola, Ana!"
    assert greet.headers["nflow-wid-1"]
    assert httpx.get(served_shop + "/flows/hello", timeout=10).json() == {"ok": True}
    # nflow's own routes move under the mount too; outside it, Starlette answers.
    assert httpx.get(served_shop + "/flows/health", timeout=10).status_code == 200
    assert httpx.get(served_shop + "/hello", timeout=10).status_code == 404
