"""Operating nflow: metrics across workers, the debug API, rate limits, readiness, gzip,
the access log and the security audit trail."""

from __future__ import annotations

import gzip
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import Harness, app_doc, js, starter
from nflow.config import load_config
from test_server import Server

MakeHarness = Callable[..., Harness]
WARN_ONLY = "[security]\nblock_on_high_severity = false\n"
HELLO = app_doc(
    s1=starter("s1", "/hello", "a", method="GET"),
    s2=starter("s2", "/big", "b"),
    s3=starter("s3", "/evil", "e"),
    a=js("a", "function main(){ c.JSON(200, {ok: true}) }"),
    b=js("b", "function main(){ c.String(200, 'x'.repeat(5000)) }"),
    e=js("e", "function main(){ try { eval('1') } catch (x) {} c.JSON(200, {tried: true}) }"),
)


@pytest.fixture
def make(db_url: str, tmp_path: Path) -> Iterator[MakeHarness]:
    made: list[Harness] = []

    def factory(toml: str = "") -> Harness:
        # /evil probes eval at run time, so the analyzer only warns for these apps.
        harness = Harness(db_url, tmp_path, apps=[HELLO], toml=WARN_ONLY + toml, access_log=True)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        harness.close()


def samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (
                sample.name + json.dumps(sample.labels, sort_keys=True)
                if sample.labels
                else sample.name
            )
            out[key] = out.get(key, 0.0) + sample.value
    return out


def total(values: dict[str, float], name: str) -> float:
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


def test_metrics_count_exactly_across_two_workers(tmp_path: Path) -> None:
    (tmp_path / "app.json").write_text(json.dumps(HELLO))
    (tmp_path / "config.toml").write_text(WARN_ONLY)
    srv = Server(tmp_path, "--app", "app.json", "--workers", "2")
    try:
        srv.wait_ready()
        for _ in range(20):
            assert httpx.get(srv.url + "/hello", headers={"Connection": "close"}).status_code == 200
        for _ in range(3):
            assert httpx.get(srv.url + "/nope", headers={"Connection": "close"}).status_code == 404
        # Each worker writes its counts at most a second late; wait for them (bounded).
        deadline = time.monotonic() + 5
        while True:
            values = samples(httpx.get(srv.url + "/metrics").text)
            if total(values, "nflow_requests_total") >= 23 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert total(values, "nflow_requests_total") == 23
        assert total(values, "nflow_requests_errors_total") == 3
        assert total(values, "nflow_workflows_total") == 20
        assert total(values, "nflow_request_duration_seconds_count") == 23
        assert total(values, "nflow_node_duration_seconds_count") == 20
        assert values["nflow_up"] >= 1 and total(values, "nflow_workers") >= 1
        # A worker counts its warm JS runtimes when it answers a scrape; the one that served
        # runs has some, none busy now (bounded: scrapes land on either worker).
        idle = 'nflow_js_runtimes{"state": "idle"}'
        while values.get(idle, 0) < 1 and time.monotonic() < deadline + 5:
            time.sleep(0.1)
            values = samples(httpx.get(srv.url + "/metrics").text)
        assert values[idle] >= 1
        assert values['nflow_js_runtimes{"state": "busy"}'] == 0
    finally:
        assert srv.stop() == 0


def test_debug_api_needs_token_and_allowed_ip(make: MakeHarness) -> None:
    token = secrets.token_hex(16)
    h = make(f'[debug]\nenabled = true\nauth_token = "{token}"\nallowed_ips = "127.0.0.1/32"\n')
    assert h.request("GET", "/debug/processes").status == 401
    assert h.request("GET", "/debug/processes", headers=[("X-Debug-Token", "wrong")]).status == 401
    far = h.request(
        "GET", "/debug/processes", headers=[("X-Debug-Token", token)], client="10.9.9.9:1"
    )
    assert far.status == 403 and "10.9.9.9" in far.json()["error"]
    # X-Forwarded-For is not trusted for the allowlist (the original was spoofable through it).
    spoof = h.request(
        "GET",
        "/debug/info",
        headers=[("X-Debug-Token", token), ("X-Forwarded-For", "127.0.0.1")],
        client="10.9.9.9:1",
    )
    assert spoof.status == 403
    ok = h.request("GET", "/debug/processes", headers=[("X-Debug-Token", token)])
    assert ok.status == 200 and ok.json() == {"total": 0, "processes": {}}
    info = h.request("GET", "/debug/info", headers=[("X-Debug-Token", token)]).json()
    assert info["service"] == "nflow"


def test_debug_api_is_off_by_default(make: MakeHarness) -> None:
    r = make().request("GET", "/debug/info")
    assert r.status == 404 and r.json() == {"code": 404, "message": "not found"}


def test_rate_limit_token_bucket_in_memory(make: MakeHarness) -> None:
    h = make(
        "[rate_limit]\nenabled = true\nip_rate_limit = 3\nip_burst_size = 0\nip_window_minutes = 60\n"
    )
    for i in range(3):
        r = h.request("GET", "/hello")
        assert r.status == 200
        assert r.header("x-ratelimit-limit") == "3" and r.header("x-ratelimit-remaining") == str(
            2 - i
        )
    r = h.request("GET", "/hello")
    assert r.status == 429
    body = r.json()
    assert body["retry_after"] >= 1 and "Rate limit" in body["error"]
    assert int(r.header("retry-after")) >= 1 and r.header("x-ratelimit-remaining") == "0"
    # Another client has its own bucket; excluded paths are never limited.
    assert h.request("GET", "/hello", client="10.0.0.2:1").status == 200
    assert h.request("GET", "/health").status == 200


def test_rate_limit_excluded_ips_follow_a_reloaded_config_on_open_connections(
    make: MakeHarness, tmp_path: Path
) -> None:
    section = "[rate_limit]\nenabled = true\nip_rate_limit = 1\nip_burst_size = 0\n"
    h = make(section + 'excluded_ips = ["10.7.0.0/16"]\n')
    kept_alive = "10.7.1.2:40000"  # one client connection, many requests
    for _ in range(3):
        r = h.request("GET", "/hello", client=kept_alive)
        assert r.status == 200 and r.header("x-ratelimit-limit") == ""
    assert h.request("GET", "/hello", client="10.8.0.1:1").status == 200
    assert h.request("GET", "/hello", client="10.8.0.1:1").status == 429
    # SIGHUP drops the exclusion: the connection that was exempt is limited from now on.
    path = tmp_path / "reloaded.toml"
    path.write_text(WARN_ONLY + section)
    h.runtime.apply_config(load_config(path, environ={}), ["rate_limit.excluded_ips"])
    assert h.request("GET", "/hello", client=kept_alive).header("x-ratelimit-limit") == "1"
    assert h.request("GET", "/hello", client=kept_alive).status == 429


def test_rate_limit_excluded_paths_follow_a_reloaded_config(
    make: MakeHarness, tmp_path: Path
) -> None:
    section = "[rate_limit]\nenabled = true\nip_rate_limit = 5\nip_burst_size = 0\n"
    h = make(section + 'excluded_paths = ["/hel"]\n')
    for _ in range(7):  # a prefix, as in the Go runtime: never limited, no headers
        r = h.request("GET", "/hello")
        assert r.status == 200 and r.header("x-ratelimit-limit") == ""
    path = tmp_path / "reloaded.toml"
    path.write_text(WARN_ONLY + section)
    h.runtime.apply_config(load_config(path, environ={}), ["rate_limit.excluded_paths"])
    assert h.request("GET", "/hello").header("x-ratelimit-remaining") == "4"


def test_rate_limit_shared_by_two_servers_through_redis(
    db_url: str, tmp_path: Path, redis_prefix: str
) -> None:
    prefix = redis_prefix + secrets.token_hex(4) + ":"
    toml = WARN_ONLY + (
        '[redis]\nhost = "127.0.0.1:6379"\nprefix = "' + prefix + '"\n'
        '[rate_limit]\nenabled = true\nbackend = "redis"\nip_rate_limit = 4\nip_burst_size = 0\nip_window_minutes = 60\n'
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Harness(db_url, tmp_path / "a", apps=[HELLO], toml=toml)
    b = Harness(db_url, tmp_path / "b", apps=[HELLO], toml=toml)
    try:
        statuses = [h.request("GET", "/hello").status for h in (a, b, a, b, a, b)]
        assert statuses == [200, 200, 200, 200, 429, 429]
    finally:
        a.close()
        b.close()


def test_ready_reports_each_component(make: MakeHarness) -> None:
    h = make()
    r = h.request("GET", "/health/ready")
    assert r.status == 200
    assert r.json()["components"] == {
        "database": {"status": "healthy"},
        "js": {"status": "healthy"},
    }
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    h2 = make(f'[redis]\nhost = "127.0.0.1:{closed}"\n')
    r = h2.request("GET", "/health/ready")
    assert r.status == 503
    assert r.json()["failing"] == ["redis"]
    assert r.json()["components"]["database"]["status"] == "healthy"


def test_large_responses_are_gzipped_when_accepted(make: MakeHarness) -> None:
    h = make()
    plain = h.request("GET", "/big")
    assert plain.header("content-encoding") == "" and len(plain.body) == 5000
    zipped = h.request("GET", "/big", headers=[("Accept-Encoding", "gzip, br")])
    assert zipped.header("content-encoding") == "gzip"
    assert gzip.decompress(zipped.body) == plain.body
    small = h.request("GET", "/hello", headers=[("Accept-Encoding", "gzip")])
    assert small.header("content-encoding") == ""


def test_one_access_line_per_request(make: MakeHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import nflow.logs

    sink = io.BytesIO()
    monkeypatch.setattr(nflow.logs, "_access", nflow.logs.AccessLog(stream=sink))
    h = make()
    r = h.request("GET", "/hello?secret=zzz")
    nflow.logs.access_log().flush()
    lines = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert (line["method"], line["path"], line["status"]) == ("GET", "/hello", 200)
    assert line["wid"] == r.header("nflow-wid-1")
    assert (line["app"], line["starter"]) == ("app0", "/hello")
    assert line["duration_ms"] > 0 and line["ip"] == "127.0.0.1"
    assert "zzz" not in sink.getvalue().decode(), "query strings are never logged"


def test_blocked_attempts_are_security_events(
    make: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    h = make()
    caplog.set_level(logging.WARNING, logger="nflow.security")
    r = h.request("GET", "/evil", client="10.4.4.4:9")
    assert r.json() == {"tried": True}
    events = [rec for rec in caplog.records if rec.name == "nflow.security"]
    assert events and events[0].__dict__["rule"] == "blocked:eval"
    assert events[0].__dict__["node"] == "e" and events[0].__dict__["ip"] == "10.4.4.4"
    assert events[0].__dict__["wid"] == r.header("nflow-wid-1")
