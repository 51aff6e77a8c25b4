"""The management API in process: the history endpoints on both databases, errors, CSRF
rules, the audit log and the OpenAPI document (validated, and every answer checked against
it). Access from other addresses and tokens is tested on a real server in test_api_server.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from harness import Harness, app_doc, js, starter
from nflow.history import HistoryWriter, RunRecord
from nflow.server._routes import API_PREFIX
from nflow.server.api import PREFIX, ROUTES, openapi_document
from test_history import record
from test_runs_stats import RECORDS as STATS_RECORDS

API = "/_nflow/api"
JSON_CLIENT = [("X-Nflow-Client", "tests")]


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
def api(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    doc = app_doc(
        s=starter("s", "/hello", "a", method="GET"),
        a=js("a", "function main(){ c.JSON(200, {ok: true}) }"),
    )
    h = Harness(db_url, tmp_path, apps=[doc], toml="[api]\nenabled = true\n")
    try:
        write_records(
            db_url,
            [record(1), record(2, status="error", journey="wizard"), record(3, app="blog")],
        )
        yield h
    finally:
        h.close()


def _schema_for(path: str, method: str, status: int) -> dict[str, Any]:
    """The response schema the OpenAPI document gives, resolvable on its own."""
    doc = openapi_document()
    op = doc["paths"][path][method]
    schema = op["responses"][str(status)]["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}


def conforms(body: Any, path: str, method: str = "get", status: int = 200) -> None:
    jsonschema.validate(
        body,
        _schema_for(path, method, status),
        cls=jsonschema.Draft202012Validator,
    )


def test_openapi_document_is_valid_and_describes_every_route() -> None:
    doc = openapi_document()
    validate(doc)  # OpenAPI 3.1, with its JSON Schema dialect
    assert doc["openapi"] == "3.1.0"
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert described == {(r.method, PREFIX + r.path) for r in ROUTES}
    for name in ("RunSummary", "Run", "Step", "StepDetail", "Stats", "NodeStats", "Error"):
        assert name in doc["components"]["schemas"]
    # The prefix the dispatcher checks is the API's.
    assert API_PREFIX == PREFIX == API


def test_openapi_is_served(api: Harness) -> None:
    r = api.request("GET", f"{API}/openapi.json")
    assert r.status == 200 and r.json() == json.loads(json.dumps(openapi_document()))


def test_runs_endpoints_answer_as_the_cli(api: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    r = api.request("GET", f"{API}/runs")
    assert r.status == 200
    listed = r.json()
    conforms(listed, f"{API}/runs")
    assert [x["id"] for x in listed] == ["run-0003-blog", "run-0002-shop", "run-0001-shop"]
    assert listed[1]["started_at"] == "2026-01-01T00:00:02.000+00:00"

    def ids(query: str) -> list[str]:
        r = api.request("GET", f"{API}/runs?{query}")
        assert r.status == 200, r.text
        return [x["id"] for x in r.json()]

    assert ids("status=error") == ["run-0002-shop"]
    assert ids("app=blog") == ["run-0003-blog"]
    assert ids("journey=wizard") == ["run-0002-shop"]
    assert ids("app=shop&limit=1") == ["run-0002-shop"]
    assert ids("since=2026-01-01T00:00:02Z") == ["run-0003-blog", "run-0002-shop"]

    r = api.request("GET", f"{API}/runs/run-0002-shop")
    assert r.status == 200
    shown = r.json()
    conforms(shown, f"{API}/runs/{{id}}")
    assert shown["status"] == "error" and [s["node"] for s in shown["steps"]] == ["1", "2", "3"]
    assert shown["steps"][1]["payload_after"] == {"user": "ana", "k0": 0, "k1": 10}
    assert shown["steps"][2]["error"]["message"] == "boom"
    # Credentials were redacted when recorded, and stay so over HTTP.
    assert "s3cr3t" not in r.text

    r = api.request("GET", f"{API}/runs/run-0002/steps/1")  # a prefix is enough
    assert r.status == 200
    step = r.json()
    conforms(step, f"{API}/runs/{{id}}/steps/{{n}}")
    assert step["run"] == "run-0002-shop" and step["index"] == 1
    assert step["diff"] == [
        {"key": "k1", "op": "added", "before": None, "after": 10},
        {"key": "start", "op": "removed", "before": True, "after": None},
    ]
    assert [c["function"] for c in step["host_calls"]] == ["Date.now", "http_get"]
    assert step["console"] == ["step 1"]


def test_runs_errors_are_clear(api: Harness) -> None:
    cases = [
        (f"{API}/runs/nope-nope", 404, "no run 'nope-nope'"),
        (f"{API}/runs/run-0002-shop/steps/9", 404, "no step 9 of run"),
        (f"{API}/runs/run-0002-shop/steps/x", 400, "step number: expected an integer"),
        (f"{API}/runs?status=weird", 400, "status: expected one of ok, error, limit"),
        (f"{API}/runs?limit=0", 400, "limit: expected 1 to 1000"),
        (f"{API}/runs?since=later", 400, "since: expected a duration ago"),
        (f"{API}/runs/run-00", 400, "matches several runs; give more of it"),
        (f"{API}/runs/run-0", 404, "no run"),  # a prefix under 6 characters is not looked up
        (f"{API}/runs/stats", 400, "app: required"),
        (f"{API}/runs/stats?app=shop&compare=v1", 400, "compare: expected V1,V2"),
        (f"{API}/nothing", 404, "no management API endpoint"),
        (f"{API}/debug/sessions/abc", 404, "debug sessions need [debug] enabled = true"),
    ]
    for url, status, message in cases:
        r = api.request("GET", url)
        assert r.status == status, (url, r.text)
        body = r.json()
        assert body["code"] == status and message in body["message"], (url, body)
        assert r.header("content-type") == "application/json"
    r = api.request("DELETE", f"{API}/runs", headers=JSON_CLIENT)
    assert r.status == 405 and r.header("allow") == "GET"
    assert r.json() == {
        "code": 405,
        "message": f"DELETE is not allowed on {API}/runs; use GET",
    }


def test_stats_over_http(db_url: str, tmp_path: Path) -> None:
    h = Harness(db_url, tmp_path, toml="[api]\nenabled = true\n")
    try:
        write_records(db_url, STATS_RECORDS)
        r = h.request("GET", f"{API}/runs/stats?app=shop")
        assert r.status == 200, r.text
        stats = r.json()
        conforms(stats, f"{API}/runs/stats")
        nodes = {n["node"]: n for n in stats["nodes"]}
        assert stats["runs"] == 6 and stats["bottleneck"] == "b"
        assert (nodes["a"]["p50_ms"], nodes["a"]["p95_ms"]) == (1.5, 3.75)
        assert nodes["b"]["error_rate"] == round(1 / 6, 4)
        r = h.request("GET", f"{API}/runs/stats?app=shop&compare=v1aaaa,v2b")
        assert r.status == 200, r.text
        compared = r.json()
        assert [v["version"] for v in compared["compare"]] == ["v1aaaa", "v2bbbb"]
        assert {(n["node"], n["version"]) for n in compared["nodes"]} == {
            ("a", "v1aaaa"),
            ("a", "v2bbbb"),
            ("b", "v1aaaa"),
            ("b", "v2bbbb"),
        }
    finally:
        h.close()


def test_changes_need_json_and_the_client_header(db_url: str, tmp_path: Path) -> None:
    h = Harness(db_url, tmp_path, toml="[api]\nenabled = true\n[debug]\nenabled = true\n")
    try:
        url = f"{API}/debug/sessions"
        # A form post, as a page on another site could send.
        r = h.request("POST", url, form={"path": "/x"})
        assert r.status == 415 and "Content-Type: application/json" in r.json()["message"]
        r = h.request("POST", url, json={"path": "/x"})
        assert r.status == 403 and "X-Nflow-Client" in r.json()["message"]
    finally:
        h.close()


def test_every_call_is_audited(api: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nflow.audit")
    api.request("GET", f"{API}/runs?app=shop")
    api.request("GET", f"{API}/runs/missing-run")
    api.request("GET", f"{API}/runs", client="10.1.2.3:4000")  # not loopback, no token
    lines = [r for r in caplog.records if r.name == "nflow.audit"]
    assert [(r.method, r.path, r.ip, r.status, r.outcome) for r in lines] == [  # type: ignore[attr-defined]
        ("GET", f"{API}/runs", "127.0.0.1", 200, "ok"),
        ("GET", f"{API}/runs/missing-run", "127.0.0.1", 404, "error"),
        ("GET", f"{API}/runs", "10.1.2.3", 403, "refused"),
    ]
    assert lines[2].levelno == logging.WARNING
    assert lines[0].getMessage() == f"api GET {API}/runs from 127.0.0.1: ok (200)"


def test_api_is_off_unless_enabled(db_url: str, tmp_path: Path) -> None:
    h = Harness(db_url, tmp_path)
    try:
        r = h.request("GET", f"{API}/runs")
        # Nothing answers there: the playbooks' 404.
        assert r.status == 404 and r.json() == {"code": 404, "message": "not found"}
    finally:
        h.close()
