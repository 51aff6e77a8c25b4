"""Execution history: records written through the real writer, read back, redacted, capped,
sealed, pruned, dropped under a locked database, and shown by ``nflow runs``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from nflow.cli import main
from nflow.config import load_config
from nflow.history import (
    SNAPSHOT_EVERY,
    TRUNCATED_KEY,
    HistoryPolicy,
    HistoryReader,
    HistoryWriter,
    HostCall,
    RunRecord,
    StepError,
    StepRecord,
    apply_delta,
    delta,
    dropped_counter,
    prune,
)
from nflow.history._tables import runs, steps
from nflow.security import KeyRing, generate_key
from nflow.store import Store

Run = Callable[..., Any]
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
BEARER = "sk_live_9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def record(
    n: int,
    *,
    app: str = "shop",
    status: str = "ok",
    journey: str | None = None,
    steps_count: int = 3,
    started: float | None = None,
    headers: tuple[tuple[str, str], ...] = (("Accept", "application/json"),),
) -> RunRecord:
    """A run of ``steps_count`` steps; step i sets ``k{i}`` and step 1 removes ``start``."""
    payload: dict[str, Any] = {"start": True, "user": "ana"}
    built = []
    for i in range(steps_count):
        before = dict(payload)
        after = dict(before)
        after[f"k{i}"] = i * 10
        if i == 1:
            after.pop("start", None)
        failing = status != "ok" and i == steps_count - 1
        built.append(
            StepRecord(
                index=i,
                node_id=str(i + 1),
                node_type="js" if i else "starter",
                node_name=f"node {i + 1}",
                started_at=(started or T0 + n) + i / 1000,
                payload_before=before,
                payload_after=after,
                next=None if i == steps_count - 1 else str(i + 2),
                duration_ms=0.5 + i,
                host_calls=(
                    HostCall(function="Date.now", args=(), result=1_700_000_000_000 + i),
                    HostCall(function="http_get", args=("http://127.0.0.1/x",), result={"ok": 1}),
                ),
                console=(f"step {i}",),
                writes=({"status": 200, "body": "done"},) if i == steps_count - 1 else (),
                error=StepError(message="boom", stack="at main (x.js:3)", line=3)
                if failing
                else None,
            )
        )
        payload = after
    start = started if started is not None else T0 + n
    return RunRecord(
        id=f"run-{n:04d}-{app}",
        app=app,
        version="v1abc",
        starter="1",
        wid=f"wid-{n}",
        journey=journey,
        seed=12345 + n,
        status=status,  # type: ignore[arg-type]
        started_at=start,
        ended_at=start + 0.004,
        method="POST",
        path="/checkout",
        query="a=1&token=abcdef123456",
        request_headers=headers,
        request_body=b'{"item": 7}',
        response_status=500 if status != "ok" else 200,
        response_headers=(("Content-Type", "application/json"), ("Set-Cookie", "sid=s3cr3t")),
        response_body=b'{"done": true}',
        error="boom" if status != "ok" else None,
        steps=tuple(built),
    )


def write_all(url: str, records: list[RunRecord], **kwargs: Any) -> HistoryWriter:
    writer = HistoryWriter(url, **kwargs)
    writer.start()
    try:
        for r in records:
            assert writer.submit(r)
        assert writer.flush(30.0)
    finally:
        writer.close()
    return writer


@pytest.fixture
def history_url(db_url: str, run: Run) -> str:
    """``db_url`` with the schema upgraded (as the server does before it starts a writer)."""

    async def upgrade() -> None:
        async with Store(db_url):
            pass

    run(upgrade())
    return db_url


async def _read(url: str, work: Callable[[HistoryReader], Any], **kwargs: Any) -> Any:
    async with Store(url) as store:
        return await work(HistoryReader(store, **kwargs))


# --- deltas and policy -----------------------------------------------------------------------


def test_delta_round_trips_including_null_and_type_changes() -> None:
    before = {"a": 1, "b": None, "c": [1, 2], "d": "x"}
    after = {"a": True, "b": None, "c": [1, 2, 3], "e": None}
    patch = delta(before, after)
    assert patch == {"set": {"a": True, "c": [1, 2, 3], "e": None}, "unset": ["d"]}
    assert apply_delta(before, patch) == after
    assert delta(after, dict(after)) is None
    assert apply_delta({"x": 1}, delta({"x": 1}, [1])) == [1]


def test_policy_modes_and_per_app_overrides() -> None:
    config = load_config(None).history
    policy = HistoryPolicy.from_config(config)
    assert policy.mode == "sampled" and policy.sample_rate == 0.01
    assert policy.keeps("a", failed=True)

    policy = HistoryPolicy(
        mode="errors", sample_rate=0.5, apps={"loud": ("all", None), "quiet": ("off", None)}
    )
    assert not policy.keeps("x", failed=False) and policy.keeps("x", failed=True)
    assert policy.keeps("loud", failed=False)
    assert not policy.collects("quiet") and not policy.keeps("quiet", failed=True)

    half = HistoryPolicy(mode="sampled", sample_rate=0.5)
    journeys = [f"session-{i}" for i in range(400)]
    kept = [j for j in journeys if half.keeps("x", failed=False, journey=j)]
    # A journey is kept or not as a whole: asking again gives the same answer.
    assert kept == [j for j in journeys if half.keeps("x", failed=False, journey=j)]
    assert 120 < len(kept) < 280
    with pytest.raises(ValueError, match="sample_rate"):
        HistoryPolicy(sample_rate=2.0)


# --- write and read --------------------------------------------------------------------------


def test_runs_written_by_the_writer_read_back_whole(history_url: str, run: Run) -> None:
    records = [record(1), record(2, status="error", journey="j1"), record(3, app="blog")]
    writer = write_all(history_url, records, batch_size=2)
    assert writer.written == 3 and writer.dropped == {"ok": 0, "failed": 0}

    async def read(reader: HistoryReader) -> Any:
        return (
            await reader.list_runs(),
            await reader.list_runs(app="shop"),
            await reader.list_runs(status="error"),
            await reader.list_runs(journey="j1"),
            await reader.get_run("run-0002-shop"),
            await reader.get_step("run-0002-shop", 1),
            await reader.get_run("run-0002"),  # a unique prefix
            await reader.get_run("nope-nope"),
            await reader.get_step("run-0002-shop", 9),
        )

    listed, shop, failed, journey, got, step, prefixed, missing, no_step = run(
        _read(history_url, read)
    )
    assert [r.id for r in listed] == ["run-0003-blog", "run-0002-shop", "run-0001-shop"]
    assert [r.id for r in shop] == ["run-0002-shop", "run-0001-shop"]
    assert [r.id for r in failed] == [r.id for r in journey] == ["run-0002-shop"]
    assert listed[1].steps == 3 and listed[1].error == "boom"
    assert missing is None and no_step is None
    assert prefixed is not None and prefixed.id == "run-0002-shop"

    original = records[1]
    assert got is not None
    assert (got.app, got.version, got.seed, got.status) == ("shop", "v1abc", 12347, "error")
    assert got.started_at == pytest.approx(original.started_at)
    assert got.duration_ms == pytest.approx(4.0, abs=0.01)
    assert got.request_body == '{"item": 7}'
    assert got.response_status == 500 and got.response_body == '{"done": true}'
    for mine, theirs in zip(got.steps, original.steps, strict=True):
        assert mine.payload_before == theirs.payload_before
        assert mine.payload_after == theirs.payload_after
        assert (mine.next, mine.node_type, mine.console) == (
            theirs.next,
            theirs.node_type,
            theirs.console,
        )
        assert [c.function for c in mine.host_calls] == ["Date.now", "http_get"]
        assert mine.host_calls[1].args == ["http://127.0.0.1/x"]
        assert mine.host_calls[1].result == {"ok": 1}
    assert got.steps[-1].error is not None and got.steps[-1].error.line == 3
    assert got.steps[-1].writes == ({"status": 200, "body": "done"},)

    assert step is not None
    assert step.step.payload_before == original.steps[1].payload_before
    assert [(c.key, c.op) for c in step.diff] == [("k1", "added"), ("start", "removed")]


def test_long_runs_rebuild_across_snapshots(history_url: str, run: Run) -> None:
    long = record(7, steps_count=SNAPSHOT_EVERY * 2 + 5)
    write_all(history_url, [long])

    async def read(reader: HistoryReader) -> Any:
        last = len(long.steps) - 1
        return await reader.get_step(long.id, last), await reader.get_run(long.id)

    view, whole = run(_read(history_url, read))
    assert view.step.payload_after == long.steps[-1].payload_after
    assert [s.payload_after for s in whole.steps] == [s.payload_after for s in long.steps]

    async def stored(reader: HistoryReader) -> Any:
        async with reader.store.transaction("t") as conn:
            rows = await conn.execute(
                select(steps.c.idx).where(steps.c.run_id == long.id, steps.c.before_full.is_(True))
            )
            return sorted(r[0] for r in rows)

    assert run(_read(history_url, stored)) == [0, SNAPSHOT_EVERY, SNAPSHOT_EVERY * 2]


def test_values_over_the_cap_are_cut_with_a_marker(history_url: str, run: Run) -> None:
    base = record(1)
    big_step = StepRecord(
        index=0,
        node_id="1",
        node_type="js",
        payload_before={"small": 1},
        payload_after={"small": 1, "text": "é" * 1000, "list": list(range(500))},
    )
    capped = RunRecord(
        id="capped",
        app="shop",
        started_at=T0,
        ended_at=T0 + 1,
        request_body=b"x" * 5000,
        response_body=bytes(range(256)) * 4,  # not UTF-8: kept as base64, then capped
        steps=(big_step,),
    )
    write_all(history_url, [capped, base], policy=HistoryPolicy(max_value_bytes=300))

    got = run(_read(history_url, lambda r: r.get_run("capped")))
    after = got.steps[0].payload_after
    assert after["small"] == 1
    assert after["text"].startswith("é" * 150) and after["text"].endswith("…[truncated 1700 bytes]")
    assert after["list"][TRUNCATED_KEY] > 300 and after["list"]["preview"].startswith("[0,1,2")
    assert got.request_body.endswith("…[truncated 4700 bytes]")
    assert TRUNCATED_KEY in got.response_body


def test_secrets_are_redacted_by_default(history_url: str, run: Run) -> None:
    headers = (
        ("Authorization", f"Bearer {BEARER}"),
        ("Cookie", "sid=abc"),
        ("X-Debug-Token", "dbg-123"),
        ("Accept", "text/html"),
    )
    base = record(1, headers=headers)
    step = StepRecord(
        index=0,
        node_id="1",
        node_type="js",
        payload_before={"form": {"password": "hunter2", "nested": {"api_key": "k-1"}}},
        payload_after={"note": f"call me at ana@example.com, auth Bearer {BEARER}"},
        host_calls=(HostCall(function="get_token", args=("svc",), result={"token": BEARER}),),
        console=(f"token={BEARER}",),
    )
    redacted = RunRecord(**{**_fields(base), "id": "secret-run", "steps": (step,)})
    write_all(history_url, [redacted])

    got = run(_read(history_url, lambda r: r.get_run("secret-run")))
    shown = json.dumps(
        [
            got.request_headers,
            got.response_headers,
            got.query,
            got.steps[0].payload_before,
            got.steps[0].payload_after,
            got.steps[0].console,
            str(got.steps[0].host_calls),
        ]
    )
    for secret in (
        BEARER,
        "hunter2",
        "k-1",
        "dbg-123",
        "sid=abc",
        "s3cr3t",
        "abcdef123456",
        "ana@example.com",
    ):
        assert secret not in shown, secret
    assert dict(got.request_headers)["Accept"] == "text/html"
    assert dict(got.request_headers)["Authorization"] == "[REDACTED:authorization]"
    assert got.query.startswith("a=1&token=[REDACTED")


def _fields(r: RunRecord) -> dict[str, Any]:
    return {name: getattr(r, name) for name in r.__struct_fields__}


def test_values_are_sealed_with_the_key_ring(history_url: str, run: Run) -> None:
    keys = KeyRing.parse(f"k1:{generate_key()}")
    write_all(history_url, [record(1)], keyring=keys)

    async def raw(reader: HistoryReader) -> Any:
        async with reader.store.transaction("t") as conn:
            row = (await conn.execute(select(runs))).mappings().one()
            # Step 0 holds the whole payload before; later ones only what changed.
            step = (await conn.execute(select(steps).where(steps.c.idx == 0))).mappings().one()
            return dict(row), dict(step)

    row, step = run(_read(history_url, raw))
    assert row["key_id"] == "k1"
    for column in ("query", "request_headers", "request_body", "response_headers", "response_body"):
        assert row[column].startswith("enc:v1:k1:"), column
    for column in ("payload_before", "payload_after", "host_calls", "console"):
        assert step[column].startswith("enc:v1:k1:"), column

    opened = run(_read(history_url, lambda r: r.get_run("run-0001-shop"), keyring=keys))
    assert opened.steps[2].payload_after == record(1).steps[2].payload_after
    closed = run(_read(history_url, lambda r: r.get_run("run-0001-shop")))
    assert closed.steps[0].payload_before == "[encrypted: key 'k1' needed]"


def test_prune_by_age_and_by_count(history_url: str, run: Run) -> None:
    records = [record(i, started=T0 + i * 3600) for i in range(10)]
    write_all(history_url, records)

    async def work(reader: HistoryReader) -> Any:
        now = T0 + 9 * 3600 + 1
        aged = await prune(reader.store, retention_days=4.5 / 24, max_runs=0, now=now)
        counted = await prune(reader.store, retention_days=365, max_runs=3, now=now)
        left = [r.id for r in await reader.list_runs()]
        async with reader.store.transaction("t") as conn:
            orphans = (await conn.execute(select(steps.c.run_id).distinct())).all()
        return aged, counted, left, sorted(r[0] for r in orphans)

    aged, counted, left, with_steps = run(_read(history_url, work))
    assert aged == 5  # runs 0..4 started more than 4.5 hours before "now"
    assert counted == 2
    assert left == ["run-0009-shop", "run-0008-shop", "run-0007-shop"]
    assert with_steps == sorted(left)


# --- a slow database -------------------------------------------------------------------------


@pytest.fixture
def locked_history(history_url: str) -> Iterator[Callable[[], None]]:
    """Holds a lock that blocks every write to the history tables until released."""
    url = make_url(history_url)
    release = threading.Event()
    holding = threading.Event()

    def hold_sqlite() -> None:
        conn = sqlite3.connect(url.database or "", timeout=30)
        try:
            conn.execute("BEGIN IMMEDIATE")
            holding.set()
            release.wait(60)
            conn.rollback()
        finally:
            conn.close()

    async def hold_pg() -> None:
        conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE nflow_runs IN ACCESS EXCLUSIVE MODE")
                holding.set()
                await asyncio.get_running_loop().run_in_executor(None, release.wait, 60)
        finally:
            await conn.close()

    target = hold_sqlite if url.get_backend_name() == "sqlite" else lambda: asyncio.run(hold_pg())
    thread = threading.Thread(target=target)
    thread.start()
    assert holding.wait(30)
    yield release.set
    release.set()
    thread.join(60)


def test_a_locked_database_drops_runs_instead_of_blocking(
    history_url: str, locked_history: Callable[[], None], run: Run
) -> None:
    counter = dropped_counter()
    ok_before = counter.labels(outcome="ok")._value.get()
    writer = HistoryWriter(history_url, capacity=10, batch_size=5, flush_interval=0.01)
    writer.start()
    ok_runs = [record(i) for i in range(40)]
    failed_runs = [record(100 + i, status="error") for i in range(6)]
    returned = threading.Event()

    def submit_all() -> None:
        for r in ok_runs:
            writer.submit(r)
        for r in failed_runs:
            writer.submit(r)
        returned.set()

    caller = threading.Thread(target=submit_all)
    caller.start()
    # Every submit returns while the tables are still locked: the caller never waits.
    assert returned.wait(30)
    caller.join()
    dropped_while_locked = dict(writer.dropped)
    assert dropped_while_locked["failed"] == 0
    # 46 runs, room for 10 queued plus at most one batch of 5 in flight.
    assert dropped_while_locked["ok"] >= 46 - 10 - 5
    assert counter.labels(outcome="ok")._value.get() - ok_before == dropped_while_locked["ok"]

    locked_history()  # release
    assert writer.flush(60.0)
    writer.close()
    assert writer.written + writer.dropped["ok"] + writer.dropped["failed"] == 46

    async def stored(reader: HistoryReader) -> Any:
        return {r.id for r in await reader.list_runs(limit=100)}

    ids = run(_read(history_url, stored))
    assert len(ids) == writer.written
    assert {r.id for r in failed_runs} <= ids


# --- redaction at rest -----------------------------------------------------------------------


def test_a_bearer_token_is_nowhere_in_the_sqlite_file(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "nflow.db"
    url = f"sqlite+aiosqlite:///{path}"
    run(Store(url).open())
    sent = record(1, headers=(("Authorization", f"Bearer {BEARER}"), ("X-Trace", "t")))
    payload_step = StepRecord(
        index=0,
        node_id="1",
        node_type="js",
        payload_before={"authorization": f"Bearer {BEARER}"},
        payload_after={"header": f"Bearer {BEARER}", "jwt_token": BEARER},
    )
    steps_with_token = (*sent.steps, StepRecord(**{**_step_fields(payload_step), "index": 3}))
    run_with_token = RunRecord(**{**_fields(sent), "steps": steps_with_token})
    writer = write_all(url, [run_with_token])
    assert writer.written == 1
    files = [p for p in tmp_path.iterdir() if p.name.startswith("nflow.db")]
    assert files
    for file in files:  # the database, and its WAL or journal if one is left
        assert BEARER.encode() not in file.read_bytes(), file.name
    shown = run(_read(url, lambda r: r.get_run(sent.id)))
    assert shown is not None and shown.request_headers[1] == ("X-Trace", "t")


def _step_fields(s: StepRecord) -> dict[str, Any]:
    return {name: getattr(s, name) for name in s.__struct_fields__}


# --- the CLI ---------------------------------------------------------------------------------


def test_runs_commands_read_the_database(
    tmp_path: Path, run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nflow.db"
    url = f"sqlite+aiosqlite:///{path}"
    run(Store(url).open())
    write_all(url, [record(1), record(2, status="error", journey="wizard"), record(3, app="blog")])
    config = tmp_path / "config.toml"
    config.write_text(f'[database_nflow]\ndsn = "{path}"\n')
    c = ["--config", str(config)]

    assert main(["runs", "list", "--json", *c]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in listed] == ["run-0003-blog", "run-0002-shop", "run-0001-shop"]
    for key in ("id", "app", "version", "status", "started_at", "duration_ms"):
        assert key in listed[0]
    assert listed[1]["started_at"] == "2026-01-01T00:00:02.000+00:00"

    assert main(["runs", "list", "--status", "error", "--json", *c]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == ["run-0002-shop"]
    assert main(["runs", "list", "--journey", "wizard", *c]) == 0
    out = capsys.readouterr().out
    assert "run-0002-shop" in out and "run-0001-shop" not in out
    assert main(["runs", "list", "--app", "blog", *c]) == 0
    assert capsys.readouterr().out.count("\n") == 1

    assert main(["runs", "show", "run-0002-shop", "--json", *c]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == "run-0002-shop" and shown["status"] == "error"
    assert [s["node"] for s in shown["steps"]] == ["1", "2", "3"]
    for key in (
        "node",
        "type",
        "next",
        "duration_ms",
        "payload_before",
        "payload_after",
        "host_calls",
        "error",
    ):
        assert key in shown["steps"][0]
    assert shown["steps"][2]["error"]["message"] == "boom"
    assert shown["steps"][1]["payload_after"] == {"user": "ana", "k0": 0, "k1": 10}

    assert main(["runs", "show", "run-0002", "--step", "1", "--json", *c]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["run"] == "run-0002-shop" and one["index"] == 1
    assert one["diff"] == [
        {"key": "k1", "op": "added", "before": None, "after": 10},
        {"key": "start", "op": "removed", "before": True, "after": None},
    ]
    assert one["host_calls"][0]["function"] == "Date.now"

    assert main(["runs", "show", "run-0002-shop", *c]) == 0
    timeline = capsys.readouterr().out
    assert "status error" in timeline and "ERROR" in timeline
    assert main(["runs", "show", "run-0002-shop", "--step", "1", *c]) == 0
    detail = capsys.readouterr().out
    assert "+ k1: 10" in detail and "- start: true" in detail and "host call http_get" in detail

    assert main(["runs", "show", "missing-run", *c]) == 2
    assert "no run 'missing-run'" in capsys.readouterr().err

    assert main(["runs", "prune", "--keep", "1", "--older-than-days", "100000", *c]) == 0
    assert capsys.readouterr().out.strip() == "removed 2 run(s)"


def test_runs_list_works_as_a_subprocess(tmp_path: Path, run: Run) -> None:
    import subprocess
    import sys

    path = tmp_path / "nflow.db"
    url = f"sqlite+aiosqlite:///{path}"
    run(Store(url).open())
    write_all(url, [record(5)])
    config = tmp_path / "config.toml"
    config.write_text(f'[database_nflow]\ndsn = "{path}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "nflow", "runs", "list", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [r["id"] for r in json.loads(done.stdout)] == ["run-0005-shop"]


def test_submit_after_close_is_counted_not_written(history_url: str) -> None:
    writer = HistoryWriter(history_url)
    writer.start()
    writer.close()
    assert not writer.submit(record(1))
    assert writer.dropped["ok"] == 1


def test_writer_from_config_redacts_what_security_names(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "nflow.db"
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        f'[database_nflow]\ndsn = "{path}"\n'
        '[security]\nalways_encrypt_fields = ["iban"]\n'
        'log_custom_patterns = { employee = "EMP\\\\d{6}" }\n'
        '[history]\nmode = "all"\nredact_keys = ["pin"]\nqueue_size = 5\n'
    )
    config = load_config(str(config_file))
    run(Store(config.database_url).open())
    writer = HistoryWriter.from_config(config)
    assert writer.policy.mode == "all" and writer.policy.redact_keys == ("pin",)
    step = StepRecord(
        index=0,
        node_id="1",
        node_type="js",
        payload_before={},
        payload_after={"iban": "DE89370400440532013000", "pin": "4321", "who": "EMP123456"},
    )
    writer.start()
    try:
        assert writer.submit(RunRecord(id="r", app="a", started_at=T0, ended_at=T0, steps=(step,)))
        assert writer.flush(30.0)
    finally:
        writer.close()
    got = run(_read(config.database_url, lambda r: r.get_run("r")))
    assert got.steps[0].payload_after == {
        "iban": "[REDACTED:iban]",
        "pin": "[REDACTED:pin]",
        "who": "[REDACTED:employee]",
    }
