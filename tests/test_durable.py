"""Durable runs in one process: async starts, checkpoints, retries, waits, signals, forks,
cancellation, idempotency keys; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import http.server
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest

from harness import Harness, app_doc, js, node, starter
from nflow.cli import main as cli
from nflow.durable import Queue
from nflow.store import Store

API = "/_nflow/api"
JSON_CLIENT = [("Content-Type", "application/json"), ("X-Nflow-Client", "test")]
DURABLE = """
[durable]
enabled = true
poll_interval_ms = 50
retry_backoff_ms = 0
park_sleep_ms = 100
"""


def four_nodes() -> dict[str, Any]:
    """A 4-node async flow: each node adds its name to payload.trail; the last answers."""
    step = "function main(){{ payload.trail = (payload.trail || '') + '{n}'; next = 'output_1' }}"
    return app_doc(
        s=starter("s", "/order", "a", method="POST", **{"async": True}),
        a=js("a", step.format(n="a"), output_1="b"),
        b=js("b", step.format(n="b"), output_1="c"),
        c=js("c", step.format(n="c"), output_1="d"),
        d=js(
            "d",
            "function main(){ const i = run_info();"
            " c.JSON(201, {trail: payload.trail + 'd', item: post_data.item,"
            " run: i.run_id, attempt: i.attempt, key: i.idempotency_key}) }",
        ),
    )


def wait_status(h: Harness, run_id: str, want: set[str], seconds: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = h.request("GET", f"{API}/runs/{run_id}")
        assert r.status == 200, r.text
        body = r.json()
        if body["status"] in want:
            return body
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still {body.get('status')}: {body}")


@pytest.fixture
def durable(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(db_url, tmp_path, apps=[four_nodes()], toml=DURABLE)
    try:
        yield h
    finally:
        h.close()


def test_async_start_answers_202_and_the_status_url_gives_the_response(durable: Harness) -> None:
    r = durable.request("POST", "/order", json={"item": 7})
    assert r.status == 202, r.text
    accepted = r.json()
    run_id = accepted["run_id"]
    assert accepted["status_url"] == f"{API}/runs/{run_id}"
    assert r.header("location") == accepted["status_url"]
    done = wait_status(durable, run_id, {"completed"})
    assert done["attempts"] == 1 and done["steps_done"] == 4
    response = done["response"]
    assert response["status"] == 201
    assert response["headers"]["content-type"] == "application/json"
    assert orjson.loads(response["body"]) == {
        "trail": "abcd",
        "item": 7,
        "run": run_id,
        "attempt": 1,
        "key": f"{run_id}:4",
    }


def test_prefer_respond_async_makes_any_start_durable(db_url: str, tmp_path: Path) -> None:
    doc = app_doc(
        s=starter("s", "/hello", "a", method="GET"),
        a=js("a", "function main(){ c.String(200, 'hi ' + (run_info() ? 'durable' : 'sync')) }"),
    )
    h = Harness(db_url, tmp_path, apps=[doc], toml=DURABLE)
    try:
        assert h.request("GET", "/hello").text == "hi sync"
        r = h.request("GET", "/hello", headers=[("Prefer", "wait=5, respond-async")])
        assert r.status == 202, r.text
        done = wait_status(h, r.json()["run_id"], {"completed"})
        assert done["response"]["body"] == "hi durable"
    finally:
        h.close()


def test_async_starter_without_durable_is_refused_clearly(db_url: str, tmp_path: Path) -> None:
    h = Harness(db_url, tmp_path, apps=[four_nodes()])
    try:
        r = h.request("POST", "/order", json={})
        assert r.status == 503
        assert "set [durable] enabled = true" in r.json()["message"]
    finally:
        h.close()


def test_a_failing_node_is_retried_then_failed_and_runs_retry_resumes_it(
    db_url: str, tmp_path: Path
) -> None:
    doc = app_doc(
        s=starter("s", "/job", "a", method="POST", **{"async": True}),
        a=js("a", "function main(){ payload.n = 1; next = 'output_1' }", output_1="b"),
        b=js(
            "b",
            "function main(){ if (get_env('go') !== 'yes')"
            " throw new Error('not yet, attempt ' + run_info().attempt);"
            " c.JSON(200, {n: payload.n, attempt: run_info().attempt}) }",
        ),
    )
    doc["drawflow"]["Home"]["data"]["b"]["data"]["max_attempts"] = 2
    config = tmp_path / "config.toml"
    h = Harness(db_url, tmp_path, apps=[doc], toml=DURABLE)
    try:
        run_id = h.request("POST", "/job", json={}).json()["run_id"]
        failed = wait_status(h, run_id, {"failed"})
        assert failed["attempts"] == 2
        assert failed["error_node"] == "b"
        assert "not yet, attempt 2" in failed["error"]
        assert failed["steps_done"] == 1  # node a is checkpointed and never runs again
        h.runtime.services.env["go"] = "yes"
        url = h.runtime.database_url
        config.write_text(
            f'{DURABLE}\n[database_nflow]\ndriver = "{_driver(url)}"\ndsn = "{_dsn(url)}"\n'
        )
        assert cli(["runs", "retry", run_id, "--config", str(config)]) == 0
        done = wait_status(h, run_id, {"completed"})
        assert orjson.loads(done["response"]["body"]) == {"n": 1, "attempt": 1}
        assert done["attempts"] == 3
        assert done["error"] is None
    finally:
        h.close()


def _driver(url: str) -> str:
    return "sqlite3" if url.startswith("sqlite") else "postgres"


def _dsn(url: str) -> str:
    if url.startswith("sqlite"):
        return url.split("///", 1)[1]
    return url.replace("postgresql+asyncpg://", "postgres://")


def test_sleep_and_signal_park_the_run_and_resume_it(db_url: str, tmp_path: Path) -> None:
    doc = app_doc(
        s=starter("s", "/approve", "a", method="POST", **{"async": True}),
        a=js(
            "a", "function main(){ payload.asked = post_data.who; next = 'output_1' }", output_1="b"
        ),
        b=js(
            "b",
            "function main(){ sleep(300); payload.slept = true; next = 'output_1' }",
            output_1="c",
        ),
        c=js(
            "c",
            "function main(){ const answer = wait_for_signal('approval', 60000);"
            " c.JSON(200, {asked: payload.asked, slept: payload.slept, answer: answer}) }",
        ),
    )
    h = Harness(db_url, tmp_path, apps=[doc], toml=DURABLE)
    try:
        run_id = h.request("POST", "/approve", json={"who": "ana"}).json()["run_id"]
        waiting = wait_status(h, run_id, {"waiting"})
        assert waiting["waiting_for"] in (None, "approval")
        waiting = wait_status(h, run_id, {"waiting"})
        deadline = time.monotonic() + 10
        while waiting["waiting_for"] != "approval" and time.monotonic() < deadline:
            time.sleep(0.05)
            waiting = h.request("GET", f"{API}/runs/{run_id}").json()
        assert waiting["waiting_for"] == "approval" and waiting["next_node"] == "c"
        r = h.request(
            "POST",
            f"{API}/runs/{run_id}/signals/approval",
            headers=JSON_CLIENT,
            body=orjson.dumps({"ok": True, "by": "boss"}),
        )
        assert r.status == 202, r.text
        assert r.json() == {"run_id": run_id, "signal": "approval", "status": "queued"}
        done = wait_status(h, run_id, {"completed"})
        assert orjson.loads(done["response"]["body"]) == {
            "asked": "ana",
            "slept": True,
            "answer": {"ok": True, "by": "boss"},
        }
        # Parking gave its attempts back: each node counted one attempt.
        r = h.request(
            "POST", f"{API}/runs/{run_id}/signals/approval", headers=JSON_CLIENT, body=b"{}"
        )
        assert r.status == 409 and "already ended: completed" in r.json()["message"]
    finally:
        h.close()


def test_a_signal_wait_times_out_with_null_and_cancel_stops_a_waiting_run(
    db_url: str, tmp_path: Path
) -> None:
    doc = app_doc(
        s=starter("s", "/w", "a", method="POST", **{"async": True}),
        a=js(
            "a",
            "function main(){ const v = wait_for_signal(post_data.name, post_data.ms);"
            " c.JSON(200, {value: v}) }",
        ),
    )
    h = Harness(db_url, tmp_path, apps=[doc], toml=DURABLE)
    try:
        quick = h.request("POST", "/w", json={"name": "x", "ms": 200}).json()["run_id"]
        done = wait_status(h, quick, {"completed"})
        assert orjson.loads(done["response"]["body"]) == {"value": None}
        slow = h.request("POST", "/w", json={"name": "y", "ms": 600000}).json()["run_id"]
        wait_status(h, slow, {"waiting"})
        r = h.request("DELETE", f"{API}/runs/{slow}", headers=JSON_CLIENT)
        assert r.status == 200 and r.json()["status"] == "cancelled"
        r = h.request("DELETE", f"{API}/runs/{slow}", headers=JSON_CLIENT)
        assert r.status == 409
        assert h.request("GET", f"{API}/runs/nope").status == 404
    finally:
        h.close()


def test_gorutine_branches_become_durable_runs(durable: Harness, tmp_path: Path) -> None:
    doc = app_doc(
        s=starter("s", "/fork", "f", method="GET"),
        f=node("f", "gorutine", output_1="main", output_2="bg"),
        main=js("main", "function main(){ c.JSON(200, {main: true}) }"),
        bg=js("bg", "function main(){ set_env('bg', run_info().run_id + ':' + payload.item) }"),
    )
    durable.serve(doc, "forks")
    r = durable.request("GET", "/fork?item=5")
    assert r.status == 200 and r.json() == {"main": True}
    branch = r.header("dromedary-wid-2")
    done = wait_status(durable, branch, {"completed"})
    assert done["kind"] == "fork" and done["parent"] == r.header("nflow-wid-1")
    assert durable.runtime.services.env["bg"] == f"{branch}:5"


class _Echo(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        _Echo.seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        return


def test_http_calls_carry_an_idempotency_key_stable_across_attempts(
    db_url: str, tmp_path: Path
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Echo.seen = []
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    doc = app_doc(
        s=starter("s", "/call", "a", method="POST", **{"async": True}),
        a=js(
            "a",
            f"function main(){{ http_post('{url}', '{{}}'); http_post('{url}', '{{}}');"
            " if (run_info().attempt < 2) throw new Error('flaky');"
            " c.JSON(200, {}) }",
        ),
    )
    toml = DURABLE + "\n[http]\nallow_private = true\n"
    h = Harness(db_url, tmp_path, apps=[doc], toml=toml)
    try:
        run_id = h.request("POST", "/call", json={}).json()["run_id"]
        wait_status(h, run_id, {"completed"})
        keys = [seen["Idempotency-Key"] for seen in _Echo.seen]
        # Two calls per attempt, two attempts: the n-th call of the node keeps its key.
        assert keys == [f"{run_id}:1:1", f"{run_id}:1:2", f"{run_id}:1:1", f"{run_id}:1:2"]
    finally:
        h.close()
        server.shutdown()


def test_with_only_durable_on_the_rest_of_the_api_stays_off(durable: Harness) -> None:
    assert durable.request("GET", f"{API}/runs").status == 404
    r = durable.request("GET", f"{API}/runs/whatever", client="10.1.2.3:4000")
    assert r.status == 403  # the management API's access rules apply


def test_nflow_check_names_bad_durable_settings(tmp_path: Path, capsys: Any) -> None:
    doc = four_nodes()
    data = doc["drawflow"]["Home"]["data"]
    data["s"]["data"]["async"] = "maybe"
    data["b"]["data"]["max_attempts"] = 0
    data["c"]["data"]["retry_backoff_ms"] = "soon"
    path = tmp_path / "app.json"
    path.write_bytes(orjson.dumps(doc))
    assert cli(["check", str(path), "--no-db"]) == 1
    out = capsys.readouterr().out
    assert "async must be true or false, got 'maybe'" in out
    assert "max_attempts must be a whole number of at least 1, got 0" in out
    assert "retry_backoff_ms must be a whole number of at least 0, got 'soon'" in out


def test_delete_stops_a_run_while_it_executes(db_url: str, tmp_path: Path) -> None:
    doc = app_doc(
        s=starter("s", "/long", "a", method="POST", **{"async": True}),
        a=js(
            "a",
            "function main(){ for (let i = 1; i <= 100; i++) { set_env('ticks', String(i));"
            " sleep(50) } c.JSON(200, {}) }",
        ),
    )
    h = Harness(db_url, tmp_path, apps=[doc], toml=DURABLE + "lease_seconds = 1.5\n")
    env = h.runtime.services.env
    try:
        run_id = h.request("POST", "/long", json={}).json()["run_id"]
        deadline = time.monotonic() + 10
        while int(env.get("ticks", "0")) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        r = h.request("DELETE", f"{API}/runs/{run_id}", headers=JSON_CLIENT)
        assert r.status == 200 and r.json()["status"] == "cancelled", r.text
        # The executing instance learns it at its next lease renewal and stops the node.
        last, deadline = "", time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.3)
            if env["ticks"] == last:
                break
            last = env["ticks"]
        assert env["ticks"] == last and int(last) < 100
        assert h.request("GET", f"{API}/runs/{run_id}").json()["status"] == "cancelled"
    finally:
        h.close()


def test_a_retried_node_sends_its_mail_with_the_same_message_id(
    db_url: str, tmp_path: Path
) -> None:
    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Recorder:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope.content)
            return "250 OK"

    port = free_port()
    controller = Controller(Recorder(), hostname="127.0.0.1", port=port, ready_timeout=5.0)
    controller.start()
    doc = app_doc(
        s=starter("s", "/mail", "a", method="POST", **{"async": True}),
        a=js(
            "a",
            f"function main(){{ mail_config('127.0.0.1', {port}, 'robot@example.com', '');"
            " send_mail('ana@example.com', 'hi', 'hello');"
            " if (run_info().attempt < 2) throw new Error('after the mail'); c.JSON(200, {}) }",
        ),
    )
    toml = DURABLE + '\n[http]\nallowed_hosts = ["127.0.0.1"]\n'
    h = Harness(db_url, tmp_path, apps=[doc], toml=toml)
    try:
        run_id = h.request("POST", "/mail", json={}).json()["run_id"]
        wait_status(h, run_id, {"completed"})
        ids = [
            line.split(b":", 1)[1].strip()
            for message in received
            for line in message.splitlines()
            if line.lower().startswith(b"message-id:")
        ]
        assert ids == [f"<{run_id}.1.1@example.com>".encode()] * 2
    finally:
        h.close()
        controller.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_with_encryption_on_what_a_run_carries_is_sealed_at_rest(
    db_url: str, tmp_path: Path
) -> None:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    toml = (
        DURABLE + f'\n[security]\nenable_encryption = true\nencryption_key = "{key}"\n'
        "encrypt_sensitive_data = true\n"
    )
    h = Harness(db_url, tmp_path, apps=[four_nodes()], toml=toml)
    try:
        r = h.request("POST", "/order", json={"item": "card 4111111111111111"})
        run_id = r.json()["run_id"]
        done = wait_status(h, run_id, {"completed"})
        assert orjson.loads(done["response"]["body"])["item"] == "card 4111111111111111"

        async def raw() -> Any:
            from sqlalchemy import text

            async with h.runtime.store.transaction("read") as conn:
                return (
                    await conn.execute(
                        text(
                            "SELECT request, sessions, payload, response"
                            " FROM nflow_durable_runs WHERE id = :id"
                        ),
                        {"id": run_id},
                    )
                ).one()

        row = h.run(h.runtime.store_call(raw()))
        assert all(value.startswith("enc:v1:") for value in row)
        assert "4111" not in "".join(row)
    finally:
        h.close()


def test_the_status_of_a_recorded_durable_run_carries_its_history(
    db_url: str, tmp_path: Path
) -> None:
    toml = DURABLE + '\n[api]\nenabled = true\n[history]\nmode = "all"\nflush_interval_ms = 20\n'
    h = Harness(db_url, tmp_path, apps=[four_nodes()], toml=toml)
    try:
        run_id = h.request("POST", "/order", json={"item": 1}).json()["run_id"]
        wait_status(h, run_id, {"completed"})
        deadline, state = time.monotonic() + 10, {}
        while time.monotonic() < deadline:
            state = h.request("GET", f"{API}/runs/{run_id}").json()
            if "steps" in state:
                break
            time.sleep(0.05)
        assert state["status"] == "completed" and state["history_status"] == "ok"
        assert [step["node"] for step in state["steps"]] == ["a", "b", "c", "d"]
        assert orjson.loads(state["response"]["body"])["trail"] == "abcd"
        # The history's own listing has it too, under the same id.
        listed = h.request("GET", f"{API}/runs?limit=5").json()
        assert run_id in [run["id"] for run in listed]
    finally:
        h.close()


def test_nflow_run_accepts_an_async_run_and_leaves_it_to_the_servers(
    tmp_path: Path, capsys: Any
) -> None:
    app = tmp_path / "app.json"
    app.write_bytes(orjson.dumps(four_nodes()))
    db = tmp_path / "nflow.db"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'{DURABLE}\n[database_nflow]\ndriver = "sqlite3"\ndsn = "{db}"\n')
    assert cli(["run", "--config", str(cfg), str(app), "POST", "/order", "-d", "{}"]) == 0
    run_id = orjson.loads(capsys.readouterr().out)["run_id"]
    # No worker ran in `nflow run`: the run waits, queued, for a server.
    assert asyncio.run(_status(f"sqlite+aiosqlite:///{db}", run_id)) == "queued"
    h = Harness(f"sqlite+aiosqlite:///{db}", tmp_path, apps=[app], toml=DURABLE)
    try:
        assert wait_status(h, run_id, {"completed"})["attempts"] == 1
    finally:
        h.close()


async def _status(url: str, run_id: str) -> str | None:
    store = Store(url)
    await store.open()
    try:
        view = await Queue(store).get(run_id)
        return view.status if view is not None else None
    finally:
        await store.close()


async def _accept_three(url: str) -> tuple[list[str], list[str], dict[str, tuple[str, int]]]:
    from sqlalchemy import make_url

    from nflow.durable import NewRun
    from nflow.durable._pg import PgPath

    store = Store(url)
    await store.open()
    fast = None
    if url.startswith("postgresql"):
        libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        fast = PgPath(libpq, 2)
        await fast.open()
    queue = Queue(store, fast=fast)
    try:
        batch = [
            NewRun(
                id=secrets.token_hex(8),
                app="app",
                version="v1",
                kind="request",
                request="{}",
                vars="{}",
                sessions="{}",
                next_node="a",
            )
            for _ in range(3)
        ]
        taken = await queue.enqueue(batch, owner="here", take=2, lease_seconds=60.0)
        claimed = await queue.claim("elsewhere", 10, 60.0, sweep=True)
        views = {run.id: await queue.get(run.id) for run in batch}
        return (
            [c.id for c in taken],
            [c.id for c in claimed],
            {k: (v.status, v.attempts) for k, v in views.items() if v is not None},
        )
    finally:
        if fast is not None:
            await fast.close()
        await store.close()


def test_runs_accepted_with_free_slots_are_committed_leased_to_the_accepting_worker(
    db_url: str,
) -> None:
    # The accepting worker executes them without a claim; the rest stay queued for any
    # worker, and a leased run is another's only once its lease lapses.
    taken, claimed, views = asyncio.run(_accept_three(db_url))
    assert len(taken) == 2 and len(claimed) == 1 and not set(taken) & set(claimed)
    assert all(views[run_id] == ("running", 1) for run_id in taken + claimed)
