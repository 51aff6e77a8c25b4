"""OpenTelemetry tracing, end to end: spans reach a real OTLP/HTTP receiver on 127.0.0.1.

The receiver is a plain HTTP server that accepts ``POST /v1/traces`` and decodes the protobuf
body with opentelemetry-proto, as a collector would. In-process tests drive a Runtime through
the server's dispatch (the Harness); one test runs ``nflow serve -v`` as a real process and
stops it with SIGTERM, so its spans arrive only through the flush at shutdown.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

import nflow.logs
from harness import Harness, app_doc, js, starter
from test_server import Server

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"

APP = app_doc(
    s1=starter("s1", "/two", "a", method="GET"),
    s2=starter("s2", "/fail", "x", method="GET"),
    a=js(
        "a",
        'function main(){ console.log("step a ran"); next = "output_2" }',
        output_1=None,
        output_2="b",
    ),
    b=js("b", "function main(){ c.JSON(200, {ok: true}) }"),
    x=js("x", 'function main(){ throw new Error("boom") }'),
    # sleep() makes the route run on a worker thread instead of the event loop.
    s3=starter("s3", "/threaded", "t", method="GET"),
    t=js("t", "function main(){ sleep(1); c.JSON(200, {ok: true}) }"),
)


# ------------------------------------------------------------------------------------------
# The receiver


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class Receiver:
    """An OTLP/HTTP trace receiver: every span it was sent, decoded, as a dict."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.posts = 0
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                message = ExportTraceServiceRequest()
                message.ParseFromString(body)
                receiver.add(message)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def add(self, message: ExportTraceServiceRequest) -> None:
        found = []
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        {
                            "service": resource.get("service.name"),
                            "name": span.name,
                            "kind": span.kind,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "attrs": {a.key: _value(a.value) for a in span.attributes},
                            "status": span.status.code,
                            "message": span.status.message,
                            "events": [e.name for e in span.events],
                        }
                    )
        with self.arrived:
            self.posts += 1
            self.spans.extend(found)
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.spans) >= count, timeout)
            return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def tracing_toml(receiver: Receiver) -> str:
    return f'[tracing]\nenabled = true\nendpoint = "{receiver.url}"\nservice_name = "shop"\n'


def traced_harness(tmp_path: Path, receiver: Receiver, *, access_log: bool = False) -> Harness:
    # Tracing has nothing to do with the database: SQLite only.
    return Harness(
        f"sqlite+aiosqlite:///{tmp_path / 'nflow.sqlite'}",
        tmp_path,
        apps=[APP],
        toml=tracing_toml(receiver),
        access_log=access_log,
    )


@pytest.fixture
def traced(tmp_path: Path, receiver: Receiver) -> Iterator[Harness]:
    h = traced_harness(tmp_path, receiver)
    try:
        yield h
    finally:
        if not h.loop.is_closed():
            h.close()


def by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in spans}


# ------------------------------------------------------------------------------------------
# In process


def test_request_span_with_one_child_span_per_node(traced: Harness, receiver: Receiver) -> None:
    r = traced.request("GET", "/two", client="10.1.2.3:5000")
    assert r.status == 200
    traced.close()  # the runtime's close flushes the batch processor
    spans = by_name(receiver.wait_for(3))
    assert set(spans) == {"GET /two", "js a", "js b"}
    server, a, b = spans["GET /two"], spans["js a"], spans["js b"]
    assert server["kind"] == Span.SPAN_KIND_SERVER and server["parent"] == ""
    assert server["service"] == "shop"
    assert server["attrs"] == {
        "http.request.method": "GET",
        "url.path": "/two",
        "url.scheme": "http",
        "client.address": "10.1.2.3",
        "http.route": "/two",
        "http.response.status_code": 200,
        "nflow.app": "app0",
        "nflow.wid": r.header("nflow-wid-1"),
    }
    for node in (a, b):
        assert node["kind"] == Span.SPAN_KIND_INTERNAL
        assert node["trace_id"] == server["trace_id"]
        assert node["parent"] == server["span_id"]
        assert node["attrs"]["nflow.wid"] == r.header("nflow-wid-1")
        assert node["attrs"]["nflow.node.type"] == "js"
        assert node["status"] == Status.STATUS_CODE_UNSET
    assert (a["attrs"]["nflow.node.id"], a["attrs"]["nflow.node.next"]) == ("a", "output_2")
    assert b["attrs"]["nflow.node.id"] == "b"


def test_node_spans_of_a_run_on_a_worker_thread_join_the_request(
    traced: Harness, receiver: Receiver
) -> None:
    assert traced.request("GET", "/threaded").status == 200
    traced.close()
    spans = by_name(receiver.wait_for(2))
    server, node = spans["GET /threaded"], spans["js t"]
    assert (node["trace_id"], node["parent"]) == (server["trace_id"], server["span_id"])


def test_failing_node_gives_error_spans(traced: Harness, receiver: Receiver) -> None:
    r = traced.request("GET", "/fail")
    assert r.status == 500
    traced.close()
    spans = by_name(receiver.wait_for(2))
    node, server = spans["js x"], spans["GET /fail"]
    assert node["status"] == Status.STATUS_CODE_ERROR
    assert "boom" in node["message"] and "node x" in node["message"]
    assert node["events"] == ["exception"]
    assert node["attrs"]["nflow.node.next"] == ""
    assert node["parent"] == server["span_id"]
    assert server["status"] == Status.STATUS_CODE_ERROR
    assert server["attrs"]["http.response.status_code"] == 500


def test_incoming_traceparent_is_joined(traced: Harness, receiver: Receiver) -> None:
    traced.request("GET", "/two", headers=[("traceparent", TRACEPARENT)])
    traced.close()
    spans = by_name(receiver.wait_for(3))
    server = spans["GET /two"]
    assert (server["trace_id"], server["parent"]) == (CALLER_TRACE, CALLER_SPAN)
    assert {s["trace_id"] for s in spans.values()} == {CALLER_TRACE}


def test_log_lines_carry_the_trace_and_span_ids(
    tmp_path: Path,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = io.BytesIO()
    monkeypatch.setattr(nflow.logs, "_access", nflow.logs.AccessLog(stream=sink))
    caplog.set_level(logging.INFO, logger="nflow")
    h = traced_harness(tmp_path, receiver, access_log=True)
    try:
        h.request("GET", "/two")
        h.request("GET", "/fail")
    finally:
        h.close()
    nflow.logs.access_log().flush()
    spans = by_name(receiver.wait_for(5))
    console = next(rec for rec in caplog.records if "step a ran" in rec.getMessage())
    assert console.__dict__["trace_id"] == spans["GET /two"]["trace_id"]
    assert console.__dict__["span_id"] == spans["js a"]["span_id"]
    failed = next(rec for rec in caplog.records if rec.getMessage().startswith("run failed"))
    assert failed.__dict__["trace_id"] == spans["GET /fail"]["trace_id"]
    access = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [(a["path"], a["trace_id"], a["span_id"]) for a in access] == [
        ("/two", spans["GET /two"]["trace_id"], spans["GET /two"]["span_id"]),
        ("/fail", spans["GET /fail"]["trace_id"], spans["GET /fail"]["span_id"]),
    ]
    # The formatter writes them too.
    line = json.loads(nflow.logs._JsonFormatter().format(console))
    assert line["trace_id"] == spans["GET /two"]["trace_id"]


def test_tracing_off_exports_nothing(tmp_path: Path, receiver: Receiver) -> None:
    h = Harness(f"sqlite+aiosqlite:///{tmp_path / 'nflow.sqlite'}", tmp_path, apps=[APP])
    try:
        assert h.request("GET", "/two").status == 200
        assert h.runtime.tracing is None
        assert h.runtime.engine.interceptors == []
    finally:
        h.close()
    assert receiver.wait_for(1, timeout=0.5) == [] and receiver.posts == 0


def test_bad_endpoint_names_the_key(tmp_path: Path) -> None:
    from nflow.config import load_config
    from nflow.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text('[tracing]\nenabled = true\nendpoint = "127.0.0.1:4318"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert "tracing.endpoint" in str(caught.value) and "http://" in str(caught.value)


def test_standard_otel_endpoint_variables(tmp_path: Path) -> None:
    from nflow.config import load_config
    from nflow.observability.tracing import resolve_endpoint

    default = load_config(None, environ={}).tracing
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert resolve_endpoint(default, base) == "http://collector:4318/v1/traces"
    full = {**base, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/x"}
    assert resolve_endpoint(default, full) == "http://t:1/x"
    assert resolve_endpoint(default, {}) == "http://127.0.0.1:4318/v1/traces"
    configured = load_config(
        None, environ={"NFLOW_TRACING__ENDPOINT": "http://mine:4318/v1/traces"}
    ).tracing
    assert resolve_endpoint(configured, full) == "http://mine:4318/v1/traces"


# ------------------------------------------------------------------------------------------
# Real processes


def test_serve_exports_at_shutdown_and_logs_ids_and_node_lines(
    tmp_path: Path, receiver: Receiver
) -> None:
    (tmp_path / "app.json").write_text(json.dumps(APP))
    (tmp_path / "config.toml").write_text(tracing_toml(receiver))
    srv = Server(tmp_path, "--app", "app.json", "--workers", "1", "-v")
    try:
        srv.wait_ready()
        r = httpx.get(srv.url + "/two", headers={"traceparent": TRACEPARENT}, timeout=10)
        assert r.json() == {"ok": True}
        wid = r.headers["nflow-wid-1"]
        # The worker writes access lines while it serves, not only when it stops.
        deadline = time.monotonic() + 10
        while '"nflow.access"' not in srv.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert '"nflow.access"' in srv.output()
    finally:
        assert srv.stop() == 0, srv.output()
    # The batch processor waits 5 s between exports; these came with the shutdown flush.
    spans = by_name(receiver.wait_for(3))
    assert set(spans) == {"GET /two", "js a", "js b"}
    assert spans["GET /two"]["parent"] == CALLER_SPAN
    assert {s["trace_id"] for s in spans.values()} == {CALLER_TRACE}
    lines = []
    for raw in srv.output().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    console = [e for e in lines if "step a ran" in str(e.get("msg"))]
    assert console and console[0]["trace_id"] == CALLER_TRACE
    assert console[0]["span_id"] == spans["js a"]["span_id"]
    access = [e for e in lines if e.get("logger") == "nflow.access"]
    assert [(e["path"], e["trace_id"]) for e in access] == [("/two", CALLER_TRACE)]
    nodes = [e for e in lines if e.get("logger") == "nflow.nodes"]
    assert [(e["node"], e["node_type"], e.get("next")) for e in nodes] == [
        ("a", "js", "output_2"),
        ("b", "js", "output_1"),
    ]
    assert all(e["wid"] == wid and e["app"] == "app" and e["duration_ms"] >= 0 for e in nodes)


@pytest.mark.parametrize("verbose", [True, False])
def test_run_logs_one_line_per_node_only_with_v(
    tmp_path: Path,
    verbose: bool,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nflow.cli import main

    (tmp_path / "app.json").write_text(json.dumps(APP))
    config = tmp_path / "config.toml"
    config.write_text(
        f'[logging]\nformat = "json"\n[database_nflow]\ndsn = "{tmp_path / "run.db"}"\n'
    )
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        args = ["run", "--config", str(config), "app.json", "GET", "/fail"]
        assert main(args + (["-v"] if verbose else [])) == 1
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    out, err = capfd.readouterr()
    assert "boom" in out
    nodes = [
        json.loads(line)
        for line in err.splitlines()
        if line.startswith("{") and '"nflow.nodes"' in line
    ]
    if not verbose:
        assert nodes == []
        return
    assert len(nodes) == 1
    line = nodes[0]
    assert (line["node"], line["node_type"], line["app"]) == ("x", "js", "app")
    assert "boom" in line["error"] and line["duration_ms"] >= 0 and line["wid"]


def test_tracing_without_opentelemetry_installed_stops_the_start_naming_the_extra(
    tmp_path: Path,
) -> None:
    import socket
    import subprocess
    import sys

    (tmp_path / "app.json").write_text(json.dumps(APP))
    (tmp_path / "config.toml").write_text("[tracing]\nenabled = true\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    script = (
        "import sys\n"
        "sys.modules['opentelemetry.exporter.otlp.proto.http.trace_exporter'] = None\n"
        "from nflow.cli import main\n"
        f"sys.exit(main(['serve', '--app', 'app.json', '--host', '127.0.0.1', '--port', '{port}']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "tracing.enabled: tracing is enabled but OpenTelemetry is not installed" in done.stderr
    assert "opentelemetry.exporter.otlp.proto.http.trace_exporter is missing" in done.stderr
    assert "pip install 'nflow[otel]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert "nflow serving on" not in done.stdout
