"""The access log: one JSON line per request, written in batches."""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import orjson
import pytest

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
    assert isinstance(first["ts"], float)
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


def test_the_request_that_fills_a_batch_writes_it() -> None:
    stream = io.BytesIO()
    # A background writer that does not wake up during the test: only requests write.
    log = AccessLog(stream=stream, json_lines=True, idle_write_after=3600)
    for i in range(BATCH_LINES - 1):
        log.request("GET", f"/{i}", 200, 0.001, f"w-{i}", "shop", "/a", "10.0.0.7:51000")
    assert stream.getvalue() == b""  # queued, not written line by line
    log.request("GET", "/last", 200, 0.001, "w-last", "shop", "/a", "10.0.0.7:51000")
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    expected = [f"/{i}" for i in range(BATCH_LINES - 1)] + ["/last"]
    assert [line["path"] for line in lines] == expected
    assert log.flush() == 0


def test_lines_left_when_requests_stop_are_written_without_a_flush() -> None:
    stream = io.BytesIO()
    log = AccessLog(stream=stream, json_lines=True, idle_write_after=0.05)
    log.request("GET", "/only", 200, 0.001, "w-1", "shop", "/a", "10.0.0.7:51000")
    deadline = time.monotonic() + 10
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [orjson.loads(line)["wid"] for line in stream.getvalue().splitlines()] == ["w-1"]


class _StreamThatFails(io.BytesIO):
    def write(self, data: Any) -> int:
        raise RuntimeError("disk on fire")


def test_a_batch_that_cannot_be_written_never_fails_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = AccessLog(stream=_StreamThatFails(), json_lines=True, idle_write_after=3600)
    with caplog.at_level(logging.ERROR, logger="nflow.logs"):
        for i in range(BATCH_LINES):
            log.request("GET", f"/{i}", 200, 0.001, "w", "shop", "/a", "10.0.0.7:51000")
    assert "access log write failed" in caplog.text
