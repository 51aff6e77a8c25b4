"""The access log: one JSON line per request, written in batches by a background thread."""

from __future__ import annotations

import io

import orjson

from nflow.logs import AccessLog


def test_access_lines_hold_each_request_as_served() -> None:
    stream = io.BytesIO()
    log = AccessLog(stream=stream, json_lines=True)
    log.request("GET", "/a", 200, 0.00123456, "w-1", "shop", "/a", "10.0.0.7:51000")
    log.request(
        "POST", "/b", 502, 1.5, "w-2", "shop", "/b", "[2001:db8::1]:443", "t" * 32, "s" * 16
    )
    log.request("GET", "/a", 200, 0.0004, "w-3", "shop", "/a", "10.0.0.7:51000")
    # The background thread may have written some already; what is left is written now.
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
