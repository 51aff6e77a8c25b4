"""The access log: one JSON line per request, written in batches."""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from typing import Any

import orjson
import pytest

import nflow.logs
from nflow.logs import BATCH_LINES, AccessLog


def test_access_lines_hold_each_request_as_served() -> None:
    stream = io.BytesIO()
    log = AccessLog(stream=stream, json_lines=True)
    log.request("GET", "/a", 200, 0.00123456, "w-1", "shop", "/a", "10.0.0.7:51000")
    log.request(
        "POST", "/b", 502, 1.5, "w-2", "shop", "/b", "[2001:db8::1]:443", "t" * 32, "s" * 16
    )
    log.request("GET", "/a", 200, 0.0004, "w-3", "shop", "/a", "10.0.0.7:51000")
    # The background writer may have written some already; what is left is written now.
    log.flush()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["wid"] for line in lines] == ["w-1", "w-2", "w-3"]
    first, second, third = lines
    assert {k: v for k, v in first.items() if k != "ts"} == {
        "level": "info",
        "logger": "nflow.access",
        "method": "GET",
        "path": "/a",
        "status": 200,
        "duration_ms": 1.235,  # milliseconds, three decimals
        "wid": "w-1",
        "app": "shop",
        "starter": "/a",
        "ip": "10.0.0.7",
    }
    # The same ts as application lines: RFC 3339, UTC, milliseconds.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert second["ip"] == "2001:db8::1"
    assert second["duration_ms"] == 1500.0
    assert (second["trace_id"], second["span_id"]) == ("t" * 32, "s" * 16)
    assert "trace_id" not in first
    assert third["ip"] == "10.0.0.7" and third["duration_ms"] == 0.4
    assert log.flush() == 0  # nothing left to write


def test_a_line_orjson_refuses_is_written_escaped_and_the_rest_of_its_batch_too() -> None:
    stream = io.BytesIO()
    log = AccessLog(stream=stream, json_lines=True)
    log.request("GET", "/before", 200, 0.001, "w-1", "shop", "/a", "10.0.0.7:51000")
    # A lone surrogate (an embedding caller's path, say) is not valid UTF-8.
    log.request("GET", "/bad\ud800", 200, 0.001, "w-2", "shop", "/a", "10.0.0.7:51000")
    log.request("GET", "/after", 200, 0.001, "w-3", "shop", "/a", "10.0.0.7:51000")
    log.flush()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["path"] for line in lines] == ["/before", "/bad\\ud800", "/after"]


def test_text_lines_for_a_terminal() -> None:
    stream = io.BytesIO()
    log = AccessLog(stream=stream, json_lines=False)
    log.request("GET", "/a", 201, 0.0025, "w-1", "shop", "GET /a", "10.0.0.7:51000", "t" * 32)
    assert log.flush() == 1
    line = stream.getvalue().decode()
    assert " ACCESS  GET /a 201 2.5ms  [wid=w-1 app=shop starter=GET /a trace_id=" in line
    assert line.endswith("]\n") and line.count("\n") == 1


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_full_batch_is_written_without_a_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    # The writer's period never ends here; every full batch wakes it.
    monkeypatch.setattr(nflow.logs, "WAKE_WRITER_BYTES", 1)
    stream = io.BytesIO()
    log = AccessLog(stream=stream, json_lines=True, idle_write_after=3600)
    for i in range(BATCH_LINES - 1):
        log.request("GET", f"/{i}", 200, 0.001, f"w-{i}", "shop", "/a", "10.0.0.7:51000")
    time.sleep(0.2)
    assert stream.getvalue() == b""  # queued, not written line by line
    log.request("GET", "/last", 200, 0.001, "w-last", "shop", "/a", "10.0.0.7:51000")
    wait_for(lambda: stream.getvalue().count(b"\n") == BATCH_LINES)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    expected = [f"/{i}" for i in range(BATCH_LINES - 1)] + ["/last"]
    assert [line["path"] for line in lines] == expected
    assert log.flush() == 0


class _CountingStream(io.BytesIO):
    writes = 0

    def write(self, data: Any) -> int:
        self.writes += 1
        return super().write(data)


def test_lines_go_out_in_order_in_a_few_writes() -> None:
    stream = _CountingStream()
    log = AccessLog(stream=stream, json_lines=True, idle_write_after=0.05)
    total = 10 * BATCH_LINES + 5
    for i in range(total):
        log.request("GET", f"/{i}", 200, 0.001, f"w-{i}", "shop", "/a", "10.0.0.7:51000")
    wait_for(lambda: stream.getvalue().count(b"\n") == total)
    paths = [orjson.loads(line)["path"] for line in stream.getvalue().splitlines()]
    assert paths == [f"/{i}" for i in range(total)]
    assert stream.writes <= 11  # a write per batch at most, not one per line


def test_lines_left_when_requests_stop_are_written_without_a_flush() -> None:
    stream = io.BytesIO()
    log = AccessLog(stream=stream, json_lines=True, idle_write_after=0.05)
    log.request("GET", "/only", 200, 0.001, "w-1", "shop", "/a", "10.0.0.7:51000")
    wait_for(lambda: bool(stream.getvalue()))
    assert [orjson.loads(line)["wid"] for line in stream.getvalue().splitlines()] == ["w-1"]


class _StreamThatFails(io.BytesIO):
    def write(self, data: Any) -> int:
        raise RuntimeError("disk on fire")


def test_a_batch_that_cannot_be_written_is_logged_and_requests_go_on(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nflow.logs, "WAKE_WRITER_BYTES", 1)
    log = AccessLog(stream=_StreamThatFails(), json_lines=True, idle_write_after=3600)
    with caplog.at_level(logging.ERROR, logger="nflow.logs"):
        for i in range(2 * BATCH_LINES):
            log.request("GET", f"/{i}", 200, 0.001, "w", "shop", "/a", "10.0.0.7:51000")
        wait_for(lambda: "access log write failed" in caplog.text)
    assert "disk on fire" in caplog.text


class _StalledStream(io.BytesIO):
    """A stream whose writes wait until ``release`` is set (a pipe nobody reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, data: Any) -> int:
        self.release.wait(30)
        return super().write(data)


def test_a_stalled_stream_holds_requests_up_only_past_the_pending_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nflow.logs, "MAX_PENDING_BYTES", 64 * 1024)
    monkeypatch.setattr(nflow.logs, "WAKE_WRITER_BYTES", 1)
    stream = _StalledStream()
    log = AccessLog(stream=stream, json_lines=True, idle_write_after=3600)
    served: list[int] = []

    def traffic(n: int) -> None:
        for i in range(n):
            log.request("GET", f"/{i}", 200, 0.001, f"w-{i}", "shop", "/a", "10.0.0.7:5")
            served.append(i)

    # Two batches: the writer is stuck on the first, the second waits in memory.
    traffic(2 * BATCH_LINES)
    assert len(served) == 2 * BATCH_LINES  # the requests did not wait for the stream
    # Past 64 kB waiting, a request waits for the writer instead of queueing more.
    many = 20 * BATCH_LINES
    blocked = threading.Thread(target=traffic, args=(many,))
    blocked.start()
    wait_for(lambda: len(served) > 2 * BATCH_LINES and not stream.getvalue(), 1.0)
    time.sleep(0.3)
    assert len(served) < 2 * BATCH_LINES + many
    stream.release.set()
    blocked.join(30)
    log.flush()
    paths = [orjson.loads(line)["path"] for line in stream.getvalue().splitlines()]
    assert paths == [f"/{i}" for i in range(2 * BATCH_LINES)] + [f"/{i}" for i in range(many)]
