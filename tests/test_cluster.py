"""Cluster mode with real ``nflow serve`` instances sharing PostgreSQL and Redis: membership
(heartbeats, ``nflow cluster status``, ``/health/ready``), changes reaching every instance
through LISTEN/NOTIFY, and one rate limit for a client across instances.

The instances poll for changes never (``reload_interval_seconds = 0``): whatever reaches the
other instance came through a change notice. Waits are bounded polls for the outcome.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from harness import app_doc, js, starter
from nflow.cli import main
from nflow.cluster import Me, list_instances, mark_stopped, write_heartbeat
from nflow.config import load_config
from nflow.errors import ConfigError
from nflow.store import Store
from test_rate_limit_serve import one_connection_per_worker, statuses
from test_server import Server
from test_server_process import wait_for, workers_of


def app(text: str) -> dict[str, Any]:
    return app_doc(
        s1=starter("s1", "/greet", "a", method="GET"),
        s2=starter("s2", "/hello", "b", method="GET"),
        a=js("a", f"function main(){{ c.String(200, '{text} ' + env.greeting) }}"),
        b=js("b", "function main(){ c.String(200, 'hello') }"),
    )


def config(dsn: str, redis_prefix: str, greeting: str) -> str:
    redis = os.environ.get("NFLOW_TEST_REDIS", "127.0.0.1:6379")
    return (
        f'[database_nflow]\ndriver = "postgres"\ndsn = "{dsn}"\n'
        "[server]\nreload_interval_seconds = 0\n"
        "[cluster]\nheartbeat_seconds = 0.5\ndead_after_seconds = 3\n"
        # 30 requests an hour: no token comes back during the test (see test_rate_limit_serve)
        "[rate_limit]\nenabled = true\nip_rate_limit = 30\nip_window_minutes = 60\n"
        'ip_burst_size = 0\nbackend = "redis"\nexcluded_paths = ["/health", "/greet", "/debug"]\n'
        f'[redis]\nhost = "{redis}"\nprefix = "{redis_prefix}"\n'
        "[debug]\nenabled = true\n"
        f'[env]\ngreeting = "{greeting}"\n'
    )


def nflow(capsys: pytest.CaptureFixture[str], directory: Path, *args: str) -> str:
    """Run an ``nflow`` command (in this process, as the CLI would) and return its output."""
    capsys.readouterr()
    code = main([*args, "--config", str(directory / "config.toml")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    return out


def serves(server: Server, text: str) -> bool:
    try:
        return httpx.get(server.url + "/greet", timeout=5).text == text
    except httpx.TransportError:
        return False


def status_of(capsys: pytest.CaptureFixture[str], directory: Path) -> dict[str, str]:
    listed = json.loads(nflow(capsys, directory, "cluster", "status", "--json"))
    return {i["id"]: i["status"] for i in listed}


def test_two_instances_share_changes_membership_and_rate_limits(
    tmp_path: Path, pg_database: Any, redis_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(pg_database.reset(keep_store_tables=False))
    dsn = pg_database.url.replace("postgresql+asyncpg://", "postgresql://")
    prefix = redis_prefix + secrets.token_hex(4) + ":"
    a, b = tmp_path / "a", tmp_path / "b"
    for directory in (a, b):
        directory.mkdir()
        (directory / "config.toml").write_text(config(dsn, prefix, "one"))
    (a / "shop.json").write_text(json.dumps(app("v1")))
    nflow(capsys, a, "import", str(a / "shop.json"))
    first = Server(a, "--workers", "2")
    second = Server(b, "--workers", "1")
    servers = [first, second]
    try:
        for server in servers:
            # Generous: two servers start at once on a machine the rest of the suite loads.
            server.wait_ready(timeout=120)
        wait_for("2 workers", lambda: len(workers_of(first.proc.pid)) == 2, 60)
        assert serves(first, "v1 one") and serves(second, "v1 one")

        # Membership: both live, in the CLI and in each instance's readiness.
        wait_for("two live instances", lambda: list(status_of(capsys, a).values()) == ["live"] * 2)
        ids = set(status_of(capsys, a))
        ready = httpx.get(second.url + "/health/ready", timeout=10).json()
        assert ready["status"] == "ready"
        assert {i["id"] for i in ready["instances"]} == ids
        assert {i["workers"] for i in ready["instances"]} == {1, 2}
        # Readiness needs no authentication: it names no host, address or pid.
        assert not {"host", "address", "pid"} & {k for i in ready["instances"] for k in i}

        # An app changed through one instance's CLI is served by the other.
        (a / "shop.json").write_text(json.dumps(app("v2")))
        nflow(capsys, a, "import", str(a / "shop.json"))
        changed = time.monotonic()
        wait_for("the new app on the second instance", lambda: serves(second, "v2 one"), 10)
        app_seconds = time.monotonic() - changed
        # A release change (rollback to the first version) likewise.
        nflow(capsys, a, "rollback", "shop")
        changed = time.monotonic()
        wait_for("the rollback on the second instance", lambda: serves(second, "v1 one"), 10)
        release_seconds = time.monotonic() - changed
        assert serves(first, "v1 one")
        # A configuration change: every instance re-reads its file when asked once.
        for directory in (a, b):
            (directory / "config.toml").write_text(config(dsn, prefix, "two"))
        nflow(capsys, a, "cluster", "reload")
        changed = time.monotonic()
        wait_for(
            "the new config on both",
            lambda: serves(second, "v1 two") and serves(first, "v1 two"),
            10,
        )
        config_seconds = time.monotonic() - changed
        print(
            f"reached the other instance after: app {app_seconds:.2f}s, release "
            f"{release_seconds:.2f}s, config {config_seconds:.2f}s"
        )

        # One client, three workers on two instances, one Redis bucket: exactly the limit.
        connections = one_connection_per_worker(first, 2) + one_connection_per_worker(second, 1)
        got = statuses(connections, 51)
        assert (got.count(200), got.count(429)) == (30, 21)

        # A clean stop is "stopped"; a killed instance turns "dead" once its heartbeat is old.
        second_id = next(i["id"] for i in ready["instances"] if i["workers"] == 1)
        assert second.stop() == 0
        assert status_of(capsys, a)[second_id] == "stopped"
        tree = [first.proc.pid, *workers_of(first.proc.pid)]
        for pid in tree:
            os.kill(pid, signal.SIGKILL)
        first.proc.wait(10)
        first_id = next(iter(ids - {second_id}))
        wait_for(
            "the killed instance to be dead", lambda: status_of(capsys, a)[first_id] == "dead", 20
        )
        assert "0 live of 2 known" in nflow(capsys, a, "cluster", "status")
    finally:
        for server in servers:
            server.stop()


def test_membership_on_each_database(db_url: str, run: Any) -> None:
    store = Store(db_url)
    run(store.open())
    try:
        now = time.time_ns() // 1000
        me = Me(id="one", host="h", pid=1, address="h:1", version="0", workers=2, started_at=now)
        other = Me(id="two", host="h", pid=2, address="h:2", version="0", workers=1, started_at=now)
        run(write_heartbeat(store, me))
        run(write_heartbeat(store, other))
        run(write_heartbeat(store, me))  # a second beat updates the same row
        found = run(list_instances(store, dead_after=5))
        assert sorted((i.id, i.status, i.workers) for i in found) == [
            ("one", "live", 2),
            ("two", "live", 1),
        ]
        run(mark_stopped(store, "two"))
        assert [i.id for i in run(list_instances(store, dead_after=5, live_only=True))] == ["one"]
        # Judged a second later with a limit of a tenth of one, "one" has missed its beats.
        time.sleep(0.2)
        statuses = {i.id: i.status for i in run(list_instances(store, dead_after=0.1))}
        assert statuses == {"one": "dead", "two": "stopped"}
    finally:
        run(store.close())


def test_cluster_status_says_when_nothing_registered_and_sqlite_cannot_broadcast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[database_nflow]\ndriver = "sqlite"\ndsn = "{tmp_path / "nflow.db"}"\n')
    assert "no instance has registered" in nflow(capsys, tmp_path, "cluster", "status")
    assert json.loads(nflow(capsys, tmp_path, "cluster", "status", "--json")) == []
    assert main(["cluster", "reload", "--config", str(config)]) == 1
    assert "SIGHUP" in capsys.readouterr().err


def test_dead_after_must_exceed_the_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[cluster]\nheartbeat_seconds = 5\ndead_after_seconds = 5\n")
    with pytest.raises(ConfigError, match=r"cluster\.dead_after_seconds.*must exceed"):
        load_config(path, environ={})


def test_writes_on_postgresql_send_change_notices(pg_database: Any, run: Any) -> None:
    asyncio.run(pg_database.reset(keep_store_tables=False))
    store = Store(pg_database.url)
    run(store.open())
    got: list[str] = []

    async def scenario() -> None:
        subscription = await store.subscribe(got.append)
        assert subscription is not None
        try:
            await store.put_app("shop", json.dumps(app("v1")))
            await store.put_secret("k", "enc:v1:x", key_id="k1")
            await store.set_release("shop", {"abcd": 100}, head=None)
            await store.notify("config")
            for _ in range(100):  # notices arrive asynchronously: wait for all four
                if len(got) >= 4:
                    break
                await asyncio.sleep(0.05)
        finally:
            await subscription.close()

    try:
        run(scenario())
    finally:
        run(store.close())
    assert got == ["apps", "config", "releases", "config"]


def test_sqlite_has_no_notices(tmp_path: Path, run: Any) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'nflow.db'}")
    run(store.open())
    try:
        assert run(store.subscribe(lambda kind: None)) is None
        run(store.notify("config"))  # nothing to send, and no error
        run(store.put_app("shop", "{}"))
    finally:
        run(store.close())


def test_a_broken_listening_connection_is_opened_again_and_resyncs(pg_database: Any) -> None:
    from nflow._io import IoLoop
    from nflow.cluster import Presence
    from nflow.config import ClusterConfig

    asyncio.run(pg_database.reset(keep_store_tables=False))
    io = IoLoop()
    store = Store(pg_database.url)
    io.call(store.open())
    got: list[str] = []
    now = time.time_ns() // 1000
    me = Me(id="solo", host="h", pid=1, address="h:1", version="0", workers=1, started_at=now)
    presence = Presence(
        store=store,
        io=io,
        config=ClusterConfig(heartbeat_seconds=0.2, dead_after_seconds=2),
        me=me,
        on_change=got.append,
    )

    async def listeners() -> list[int]:
        async with store.transaction("test") as conn:
            rows = await conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'nflow change listener'"
                )
            )
            return [int(r[0]) for r in rows]

    async def kill(pid: int) -> None:
        async with store.transaction("test") as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    presence.start()
    try:
        first = wait_for("the listener", lambda: io.call(listeners()), 20)
        io.call(kill(first[0]))  # type: ignore[index]
        wait_for("a new listener", lambda: (p := io.call(listeners())) and p != first, 20)
        # Notices sent while it was away are lost: the worker is told to look once.
        wait_for("the resync", lambda: "resync" in got, 10)
        io.call(store.put_app("shop", "{}"))
        wait_for("the next notice", lambda: "apps" in got, 10)
        live = io.call(list_instances(store, dead_after=2, live_only=True))
        assert [i.id for i in live] == ["solo"]
    finally:
        presence.stop(stopped=True)
        stopped = io.call(list_instances(store, dead_after=2))
        io.call(store.close())
        io.close()
    assert [(i.id, i.status) for i in stopped] == [("solo", "stopped")]
