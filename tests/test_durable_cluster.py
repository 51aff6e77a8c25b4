"""Durable runs across real ``nflow serve`` processes: an instance killed with SIGKILL (its
whole process tree) mid-way through 200 async runs on PostgreSQL, and parked runs that
outlive a restart of the only instance on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import make_url

from harness import app_doc, js, starter
from nflow.store import Store
from test_server import Server

API = "/_nflow/api"
# The server conftest.py uses (tests/conftest.py: NFLOW_TEST_PG); its name is ambiguous to
# import from here, since tests/plugins has a conftest of its own.
ADMIN = os.environ.get("NFLOW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
NODES = ("a", "b", "c", "d")


def tree(pid: int) -> list[int]:
    """``pid`` and every descendant, children first."""
    found: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        found.extend(tree(int(child)))
    found.append(pid)
    return found


def kill_tree(pid: int) -> list[int]:
    pids = tree(pid)
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return pids


def counting_flow() -> dict[str, Any]:
    """4 nodes; each logs its execution (run, node, execution wid) in node_runs, then works
    50 ms; the last answers."""

    def step(name: str, last: bool = False) -> str:
        tail = "c.JSON(200, {done: payload.trail})" if last else "next = 'output_1'"
        return (
            f"function main(){{ db_exec('log_node', [run_info().run_id, '{name}', wid]);"
            f" sleep(50); payload.trail = (payload.trail || '') + '{name}'; {tail} }}"
        )

    return app_doc(
        s=starter("s", "/work", "a", method="POST", **{"async": True}),
        a=js("a", step("a"), output_1="b"),
        b=js("b", step("b"), output_1="c"),
        c=js("c", step("c"), output_1="d"),
        d=js("d", step("d", last=True)),
    )


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """A database of its own for this test (SQLAlchemy URL), dropped afterwards."""
    admin = ADMIN
    name = f"nflow_durable_{os.getpid()}_{secrets.token_hex(4)}"

    async def admin_sql(sql: str) -> None:
        conn = await asyncpg.connect(_libpq(admin), timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(admin)
            .set(drivername="postgresql+asyncpg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _prepare(url: str) -> None:
    store = Store(url)
    await store.open()  # the schema, migrations included
    try:
        await store.put_query(
            "log_node", "INSERT INTO node_runs (run_id, node, wid) VALUES ($1, $2, $3)"
        )
        async with store.transaction("test table", write=True) as conn:
            from sqlalchemy import text

            await conn.execute(
                text(
                    "CREATE TABLE node_runs (run_id text NOT NULL, node text NOT NULL,"
                    " wid text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
                )
            )
    finally:
        await store.close()


def instance(root: Path, name: str, url: str) -> Server:
    where = root / name
    where.mkdir()
    (where / "app.json").write_text(json.dumps(counting_flow()))
    dsn = _libpq(url).replace("postgresql://", "postgres://")
    (where / "config.toml").write_text(
        f'[database_nflow]\ndriver = "postgres"\ndsn = "{dsn}"\n'
        "[durable]\nenabled = true\nlease_seconds = 3\npoll_interval_ms = 100\n"
        "[databases.nflow]\nread_only = false\n"
        "[logging]\naccess = false\n"
        '[history]\nmode = "off"\n'
    )
    return Server(where, "--app", "app.json", "--workers", "1")


async def _fetch(url: str, sql: str) -> list[Any]:
    conn = await asyncpg.connect(_libpq(url), timeout=10)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def fetch(url: str, sql: str) -> list[Any]:
    return asyncio.run(_fetch(url, sql))


def test_kill_9_of_one_instance_loses_no_run_and_reruns_no_completed_node(
    fresh_pg: str, tmp_path: Path
) -> None:
    asyncio.run(_prepare(fresh_pg))
    a = instance(tmp_path, "a", fresh_pg)
    b = instance(tmp_path, "b", fresh_pg)
    try:
        a.wait_ready()
        b.wait_ready()
        accepted: list[str] = []
        with httpx.Client(timeout=10) as client:
            for i in range(200):
                target = a if i % 2 == 0 else b
                r = client.post(f"{target.url}/work", json={"i": i})
                assert r.status_code == 202, r.text
                accepted.append(r.json()["run_id"])
        # Mid-way: some runs done, others in flight on both instances.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = fetch(
                fresh_pg, "SELECT count(*) FROM nflow_durable_runs WHERE status = 'completed'"
            )[0][0]
            if done >= 40:
                break
            time.sleep(0.02)
        killed_at = time.time()
        done_at_kill = done
        killed = kill_tree(a.proc.pid)
        a.proc.wait(10)
        assert done < 200, "every run finished before the kill: nothing was tested"
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            done = fetch(
                fresh_pg, "SELECT count(*) FROM nflow_durable_runs WHERE status = 'completed'"
            )[0][0]
            if done == 200:
                break
            time.sleep(0.1)
        statuses = dict(
            fetch(fresh_pg, "SELECT status, count(*) FROM nflow_durable_runs GROUP BY status")
        )
        assert statuses == {"completed": 200}, statuses
        ids = {r[0] for r in fetch(fresh_pg, "SELECT id FROM nflow_durable_runs")}
        assert ids == set(accepted)
        # Every run answered as its flow wrote it, through the surviving instance.
        with httpx.Client(timeout=10) as client:
            for run_id in accepted[:10]:
                state = client.get(f"{b.url}{API}/runs/{run_id}").json()
                assert state["status"] == "completed"
                assert json.loads(state["response"]["body"]) == {"done": "abcd"}
        # Each node checkpointed exactly once per run, in order.
        checkpoints = fetch(fresh_pg, "SELECT run_id, seq, node, attempt FROM nflow_durable_steps")
        assert len(checkpoints) == 800
        committed = {(r["run_id"], r["node"]): r["attempt"] for r in checkpoints}
        assert all(
            sorted(r["seq"] for r in checkpoints if r["run_id"] == run_id) == [1, 2, 3, 4]
            for run_id in accepted[:20]
        )
        # No node ran again once its checkpoint was committed: every execution of a node
        # belongs to the execution that committed it or to an earlier (interrupted) one.
        executions = fetch(fresh_pg, "SELECT run_id, node, wid, at FROM node_runs")
        again = 0
        for row in executions:
            attempt = int(row["wid"].rpartition(".")[2]) if "." in row["wid"] else 1
            assert attempt <= committed[(row["run_id"], row["node"])], row
            if attempt < committed[(row["run_id"], row["node"])]:
                again += 1
        assert {(r["run_id"], r["node"]) for r in executions} == set(committed)
        # Only nodes in flight on the killed instance ran twice (one worker, 8 runs at once).
        assert len(executions) - 800 == again <= 8
        resumed = [r["at"].timestamp() for r in executions if "." in r["wid"]]
        taken_over = len({r["run_id"] for r in executions if "." in r["wid"]})
        recovery = (min(resumed) - killed_at) if resumed else None
        print(
            f"\nkill -9 of {len(killed)} processes after {done_at_kill} of 200 runs completed: "
            f"{taken_over} runs taken over, first resumed "
            f"{f'{recovery:.2f} s' if recovery is not None else 'n/a'} after the kill, "
            f"{again} interrupted node executions repeated"
        )
    finally:
        for server in (a, b):  # what is left to stop needs no grace
            if server.proc.poll() is None:
                kill_tree(server.proc.pid)
                server.proc.wait(10)


def sqlite_instance(where: Path, port: int | None = None) -> Server:
    return Server(where, "--app", "app.json", "--workers", "1", port=port)


def test_parked_runs_outlive_a_restart_of_the_only_instance(tmp_path: Path) -> None:
    doc = app_doc(
        s1=starter("s1", "/nap", "n", method="POST", **{"async": True}),
        n=js(
            "n",
            "function main(){ payload.t0 = post_data.t0; sleep(3000); c.JSON(200, {slept: true}) }",
        ),
        s2=starter("s2", "/ask", "q", method="POST", **{"async": True}),
        q=js(
            "q", "function main(){ payload.who = post_data.who; next = 'output_1' }", output_1="w"
        ),
        w=js(
            "w",
            "function main(){ const answer = wait_for_signal('approve', 600000);"
            " c.JSON(200, {who: payload.who, answer: answer}) }",
        ),
    )
    (tmp_path / "app.json").write_text(json.dumps(doc))
    (tmp_path / "config.toml").write_text(
        '[database_nflow]\ndriver = "sqlite3"\ndsn = "nflow.db"\n'
        "[durable]\nenabled = true\npoll_interval_ms = 100\npark_sleep_ms = 500\n"
        "[logging]\naccess = false\n"
    )
    first = sqlite_instance(tmp_path)
    second: Server | None = None
    try:
        first.wait_ready()
        with httpx.Client(timeout=10) as client:
            nap = client.post(f"{first.url}/nap", json={}).json()["run_id"]
            ask = client.post(f"{first.url}/ask", json={"who": "ana"}).json()["run_id"]

            def state(server: Server, run_id: str) -> dict[str, Any]:
                r = client.get(f"{server.url}{API}/runs/{run_id}")
                assert r.status_code == 200, r.text
                return dict(r.json())

            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                states = (state(first, nap), state(first, ask))
                if all(s["status"] == "waiting" for s in states):
                    break
                time.sleep(0.05)
            assert [s["status"] for s in states] == ["waiting", "waiting"], states
            assert states[1]["waiting_for"] == "approve" and states[1]["next_node"] == "w"
            kill_tree(first.proc.pid)
            first.proc.wait(10)
            (tmp_path / "server.log").rename(tmp_path / "first.log")
            second = sqlite_instance(tmp_path, port=first.port)
            second.wait_ready()
            assert state(second, ask)["status"] == "waiting"
            r = client.post(
                f"{second.url}{API}/runs/{ask}/signals/approve",
                json={"ok": True},
                headers={"X-Nflow-Client": "test"},
            )
            assert r.status_code == 202, r.text
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                states = (state(second, nap), state(second, ask))
                if all(s["status"] == "completed" for s in states):
                    break
                time.sleep(0.1)
            assert [s["status"] for s in states] == ["completed", "completed"], states
            assert json.loads(states[0]["response"]["body"]) == {"slept": True}
            assert json.loads(states[1]["response"]["body"]) == {
                "who": "ana",
                "answer": {"ok": True},
            }
            assert states[1]["attempts"] == 2  # parked once, resumed once
    finally:
        for server in (first, second):
            if server is not None and server.proc.poll() is None:
                kill_tree(server.proc.pid)
                server.proc.wait(10)
