"""Each process imports what it uses: optional libraries load when something needs them.

The checks run in fresh interpreters (``sys.modules`` of the test process holds everything the
other tests imported) or read a served worker's memory map.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from harness import app_doc, js, starter
from nflow.store._heads import _scanned_head
from nflow.store._migrate import alembic_head
from test_server import Server

# Loaded on first use only: none of them is needed to serve a plain JS route.
OPTIONAL = (
    "alembic",
    "mako",
    "httpx",
    "httpcore",
    "aiosmtplib",
    "cryptography",
    "redis",
    "opentelemetry",
    # The store's upserts load their dialect's module: a SQLite store never needs PostgreSQL's.
    "sqlalchemy.dialects.postgresql",
)


def _python(script: str, cwd: Path, *args: str) -> list[str]:
    """Run ``script`` in a fresh interpreter; its last output line, parsed as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found: list[str] = json.loads(done.stdout.splitlines()[-1])
    return found


def _hello(tmp_path: Path) -> Path:
    path = tmp_path / "hello.json"
    doc = app_doc(
        s=starter("s", "/hi", "a", method="GET"),
        a=js("a", "function main(){ c.JSON(200, {ok: true}) }"),
    )
    path.write_text(json.dumps(doc))
    return path


def test_the_newest_revision_read_from_the_files_is_alembics() -> None:
    assert _scanned_head() == alembic_head()


_OPEN_STORE = """
import asyncio, json, sys
from nflow.store import Store

async def main():
    async with Store(sys.argv[1]) as store:
        await store.list_apps()

asyncio.run(main())
print(json.dumps([m for m in ("alembic", "mako") if m in sys.modules]))
"""


def test_a_store_at_the_newest_revision_opens_without_alembic(db_url: str, tmp_path: Path) -> None:
    # The first open upgrades the empty database, with Alembic.
    assert _python(_OPEN_STORE, tmp_path, db_url) == ["alembic", "mako"]
    # Every later open (each worker, each restart) finds nothing to do: no Alembic.
    assert _python(_OPEN_STORE, tmp_path, db_url) == []


_WORKER = """
import asyncio, json, os, sys
from nflow import Request
from nflow.server import worker_app

os.environ["NFLOW_SERVE_SPEC"] = json.dumps(
    {"config": None, "apps": [sys.argv[1]], "example": False, "session_secret": "s" * 40}
)
app = worker_app()
loop = asyncio.new_event_loop()
app.__rsgi_init__(loop)
response = loop.run_until_complete(app.runtime.handle(Request("GET", "/hi")))
assert response.status == 200, response.body
print(json.dumps([m for m in sys.argv[2:] if m in sys.modules]))
"""


def test_a_worker_serving_a_plain_route_loads_no_optional_library(tmp_path: Path) -> None:
    app = _hello(tmp_path)
    # The first process creates the database (and may import what migrating takes).
    _python(_WORKER, tmp_path, str(app))
    assert _python(_WORKER, tmp_path, str(app), *OPTIONAL) == []


def test_the_master_maps_no_config_models_and_workers_no_crypto_until_needed(
    tmp_path: Path,
) -> None:
    """The master only starts and watches workers: the configuration is checked (pydantic)
    in a child before the start. A worker loads cryptography for the first session cookie."""
    _hello(tmp_path)
    srv = Server(tmp_path, "--app", "hello.json", "--workers", "1")
    try:
        srv.wait_ready()
        assert httpx.get(srv.url + "/hi").json() == {"ok": True}
        master = Path(f"/proc/{srv.proc.pid}/maps").read_text()
        worker = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()
        maps = Path(f"/proc/{worker[0]}/maps").read_text()
    finally:
        srv.stop()
    assert "pydantic_core" not in master
    assert "jsbox" in maps and "pydantic_core" in maps
    assert "cryptography" not in maps


def _worker_maps(srv: Server) -> str:
    worker = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()
    return Path(f"/proc/{worker[0]}/maps").read_text()


def test_workers_take_the_start_up_checks_verdicts_and_parse_only_changed_scripts(
    tmp_path: Path,
) -> None:
    """The script analyzer (tree-sitter, 3.9 MB a worker) runs in the check before the start;
    workers apply its findings (an app breaking [security] rules is still not served) and
    load the parser only for a script it did not see."""
    _hello(tmp_path)
    bad = app_doc(
        s=starter("s", "/bad", "a", method="GET"),
        a=js("a", "function main(){ eval('1'); c.JSON(200, {ok: true}) }"),
    )
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    srv = Server(tmp_path, "--app", "hello.json", "--app", "bad.json", "--workers", "1")
    try:
        srv.wait_ready()
        assert httpx.get(srv.url + "/hi").json() == {"ok": True}
        assert httpx.get(srv.url + "/bad").status_code == 404
        assert "tree_sitter" not in _worker_maps(srv)
        assert "eval_usage" in srv.output()

        changed = app_doc(
            s=starter("s", "/hi", "a", method="GET"),
            a=js("a", "function main(){ c.JSON(200, {ok: 'changed'}) }"),
        )
        (tmp_path / "hello.json").write_text(json.dumps(changed))
        deadline = time.monotonic() + 30
        while httpx.get(srv.url + "/hi").json() != {"ok": "changed"}:
            assert time.monotonic() < deadline, srv.output()
            time.sleep(0.2)
        assert "tree_sitter" in _worker_maps(srv)
    finally:
        srv.stop()
