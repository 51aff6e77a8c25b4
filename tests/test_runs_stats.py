"""``nflow runs stats``: per-node profile of recorded runs, over known records on both databases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nflow.cli import main
from nflow.history import (
    HistoryReader,
    HistoryWriter,
    HostCall,
    RunRecord,
    StepError,
    StepRecord,
    parse_since,
    percentile,
)
from nflow.store import Store

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def profiled_run(
    n: int,
    *,
    version: str,
    a_ms: float,
    b_ms: float,
    b_host_ms: float = 0.0,
    b_fails: bool = False,
    app: str = "shop",
) -> RunRecord:
    """Two steps: node ``a`` (starter) then node ``b`` (js, maybe failing, maybe calling out)."""
    calls = (
        (HostCall(function="http_get", args=("http://127.0.0.1/x",), duration_ms=b_host_ms),)
        if b_host_ms
        else ()
    )
    steps = (
        StepRecord(
            index=0,
            node_id="a",
            node_type="starter",
            node_name="start",
            payload_before={},
            payload_after={"x": n},
            next="output_1",
            duration_ms=a_ms,
        ),
        StepRecord(
            index=1,
            node_id="b",
            node_type="js",
            node_name="lookup",
            payload_before={"x": n},
            payload_after={"x": n},
            duration_ms=b_ms,
            host_calls=calls,
            error=StepError(message="boom") if b_fails else None,
        ),
    )
    return RunRecord(
        id=f"run-{n:04d}",
        app=app,
        version=version,
        status="error" if b_fails else "ok",
        started_at=T0 + n,
        ended_at=T0 + n + 0.01,
        method="GET",
        path="/shop",
        steps=steps,
    )


# v1: a = 1, 2, 3, 4 ms; b = 10 ms each, half of it in host calls; one b fails.
# v2: a = 1, 1 ms;       b = 2, 4 ms, no host calls.
RECORDS = [
    profiled_run(1, version="v1aaaa", a_ms=1, b_ms=10, b_host_ms=5),
    profiled_run(2, version="v1aaaa", a_ms=2, b_ms=10, b_host_ms=5),
    profiled_run(3, version="v1aaaa", a_ms=3, b_ms=10, b_host_ms=5, b_fails=True),
    profiled_run(4, version="v1aaaa", a_ms=4, b_ms=10, b_host_ms=5),
    profiled_run(5, version="v2bbbb", a_ms=1, b_ms=2),
    profiled_run(6, version="v2bbbb", a_ms=1, b_ms=4),
    profiled_run(7, version="v1aaaa", a_ms=100, b_ms=100, app="other"),
]


def write_records(url: str, records: list[RunRecord]) -> None:
    writer = HistoryWriter(url)
    writer.start()
    try:
        for r in records:
            assert writer.submit(r)
        assert writer.flush(30.0)
    finally:
        writer.close()


@pytest.fixture
def stats_url(db_url: str, run: Any) -> str:
    async def upgrade() -> None:
        async with Store(db_url):
            pass

    run(upgrade())
    write_records(db_url, RECORDS)
    return db_url


def test_percentiles_interpolate_linearly() -> None:
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([1, 2, 3, 4], 0.95) == pytest.approx(3.85)
    assert percentile([7], 0.99) == 7
    assert percentile([], 0.5) == 0.0


def test_since_accepts_durations_dates_and_seconds() -> None:
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("7d", now=1e6) == 1e6 - 7 * 86400
    assert parse_since("2026-01-01") == T0
    assert parse_since("2026-01-01T01:00:00+01:00") == T0
    assert parse_since("1767225600") == T0
    with pytest.raises(ValueError, match="expected a duration ago"):
        parse_since("yesterday")


def test_stats_numbers_on_known_runs(stats_url: str, run: Any) -> None:
    async def read() -> Any:
        async with Store(stats_url) as store:
            return await HistoryReader(store).stats("shop")

    stats = run(read())
    assert stats.runs == 6
    nodes = {n.node: n for n in stats.nodes}
    a, b = nodes["a"], nodes["b"]
    assert (a.runs, b.runs) == (6, 6)
    # a: 1, 1, 1, 2, 3, 4
    assert a.p50_ms == 1.5 and a.p95_ms == 3.75 and a.p99_ms == 3.95
    assert a.error_rate == 0 and a.host_share == 0
    # b: 2, 4, 10, 10, 10, 10; one failure; 20 of its 46 ms in host calls
    assert b.p50_ms == 10 and b.errors == 1 and b.error_rate == round(1 / 6, 4)
    assert b.total_ms == 46 and b.host_ms == 20 and b.host_share == round(20 / 46, 4)
    assert b.time_share == round(46 / 58, 4)
    assert stats.bottleneck == "b" and stats.nodes[0].node == "b"
    assert stats.total_ms == 58 and stats.compare == []


def test_stats_since_keeps_later_runs(stats_url: str, run: Any) -> None:
    async def read() -> Any:
        async with Store(stats_url) as store:
            return await HistoryReader(store).stats("shop", since=T0 + 5)

    stats = run(read())
    assert stats.runs == 2 and {n.node: n.runs for n in stats.nodes} == {"a": 2, "b": 2}


def test_stats_command_compares_two_versions(
    stats_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    dsn = stats_url.replace("sqlite+aiosqlite:///", "").replace("postgresql+asyncpg", "postgres")
    driver = "sqlite3" if stats_url.startswith("sqlite") else "postgres"
    config.write_text(f'[database_nflow]\ndriver = "{driver}"\ndsn = "{dsn}"\n')
    c = ["--config", str(config)]

    # Version prefixes are enough.
    assert main(["runs", "stats", "shop", "--compare", "v1", "v2", "--json", *c]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(n["node"], n["version"]) for n in out["nodes"]] == [
        ("b", "v1aaaa"),
        ("b", "v2bbbb"),
        ("a", "v1aaaa"),
        ("a", "v2bbbb"),
    ]
    b1, b2 = out["nodes"][0], out["nodes"][1]
    assert (b1["runs"], b1["p50_ms"], b1["error_rate"]) == (4, 10, 0.25)
    assert (b2["runs"], b2["p50_ms"], b2["p95_ms"], b2["error_rate"]) == (2, 3, 3.9, 0)
    assert out["compare"] == [
        {"version": "v1aaaa", "runs": 4, "total_ms": 50, "bottleneck": "b"},
        {"version": "v2bbbb", "runs": 2, "total_ms": 8, "bottleneck": "b"},
    ]

    assert main(["runs", "stats", "shop", *c]) == 0
    text = capsys.readouterr().out
    assert "6 run(s)" in text and "bottleneck: node b (js) lookup" in text

    assert main(["runs", "stats", "shop", "--compare", "v1", "v9", *c]) == 2
    assert "no recorded run of app 'shop' has version 'v9'" in capsys.readouterr().err
    assert main(["runs", "stats", "shop", "--since", "soon", *c]) == 2
    assert "--since: expected a duration ago" in capsys.readouterr().err
