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
