"""Recorded runs replay identical: the compat playbooks (the form wizard as one journey),
seeded Math.random and taped clocks; an untaped source is named at its step; re-runs."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import nflow
from harness import COMPAT, SUPPORT, Browser, Harness, app_doc, js, node, parse_form, starter
from nflow.cli import main
from nflow.history import HistoryReader, RunRecord, RunSummary, StepView
from nflow.replay import replay, rerun

MakeHarness = Callable[..., Harness]
SECRET = '[session]\nbackend = "cookie"\nsecret = "' + "k" * 40 + '"\n'
RECORD_ALL = '[history]\nmode = "all"\nflush_interval_ms = 20\n'
SQLITE_SUPPORT = (SUPPORT / "modules_app_sqlite.json", SUPPORT / "templates_app_sqlite.json")
INITSQL_SUPPORT = (SUPPORT / "modules_initsql.json", SUPPORT / "templates_initsql.json")
WIZARD_FIELDS = {
    "cantidad": "1000",
    "cuotas": "12",
    "interes": "5",
    "valorCuota": "87.5",
    "valorTotal": "1050",
}


@pytest.fixture
def make(db_url: str, tmp_path: Path) -> Iterator[MakeHarness]:
    made: list[Harness] = []

    def factory(
        *apps: Path | dict[str, Any], support: tuple[Path, ...] = (), extra: str = ""
    ) -> Harness:
        h = Harness(db_url, tmp_path, apps=apps, support=support, toml=SECRET + RECORD_ALL + extra)
        made.append(h)
        return h

    yield factory
    for h in made:
        h.close()


def finished(h: Harness) -> None:
    """Every fork done and every recorded run written."""
    assert h.runtime.wait_forks(10.0)
    history = h.runtime.history
    assert history is not None
    assert history.flush(20.0)


def summaries(h: Harness, **filters: Any) -> list[RunSummary]:
    finished(h)

    async def read() -> list[RunSummary]:
        return await HistoryReader(h.runtime.store).list_runs(**{"limit": 1000, **filters})

    found: list[RunSummary] = h.run(h.runtime.store_call(read()))
    return found


def get_run(h: Harness, run_id: str) -> RunRecord:
    async def read() -> RunRecord | None:
        return await HistoryReader(h.runtime.store).get_run(run_id)

    found: RunRecord | None = h.run(h.runtime.store_call(read()))
    assert found is not None
    return found


def replays_identical(h: Harness, db_url: str, **filters: Any) -> list[RunSummary]:
    runs = summaries(h, **filters)
    assert runs
    for run in runs:
        result = replay(h.runtime.config, run.id, database_url=db_url)
        assert result is not None
        assert result.identical, f"{run.app} {run.method} {run.path}: {result.divergence}"
    return runs


# --- the compat playbooks ------------------------------------------------------------------


def test_static_and_token_apps_replay_identical(make: MakeHarness, db_url: str) -> None:
    h = make(COMPAT / "examples_login_flow21_static_json.json")
    for method in ("GET", "POST", "DELETE"):
        assert h.request(method, "/login_flow21").status == 200
    assert h.request("GET", "/login_flow21?pretty").status == 200
    assert h.request("GET", "/nope").status == 404  # not a run: nothing recorded
    assert len(replays_identical(h, db_url)) == 4

    h = make(
        COMPAT / "examples_login_flow1_validate_token.json",
        support=(SUPPORT / "modules_app_sqlite.json",),
    )
    h.store("add_token", "api1", "dXNlcjpwYXNz", token_type="Basic")
    assert h.request("GET", "/login_flow1").status == 401
    ok = h.request("GET", "/login_flow1", headers=[("Authorization", "Basic dXNlcjpwYXNz")])
    assert ok.status == 200
    runs = replays_identical(h, db_url, app="examples_login_flow1_validate_token")
    assert {r.response_status for r in runs} == {200, 401}


@pytest.mark.parametrize(
    ("file", "path", "support", "status"),
    [
        ("examples_login_flow21_static_json_initsql_variant.json", "/login_flow21", (), 200),
        ("legacy/legacy_app_earliest_2023-03.json", "/pepe", (), 200),
        ("legacy/legacy_app1_pepe_hello_2023-06-14.json", "/pepe", (), 200),
        # Its modules are files the old runtime read from disk: a failed run, replayed too.
        ("legacy/legacy_app_file_based_modules_2023-07.json", "/login_flow1", SQLITE_SUPPORT, 500),
        ("legacy/legacy_app_file_based_modules_2023-07.json", "/login_flow2", SQLITE_SUPPORT, 200),
        ("app_nflow_sqlite_full.json", "/pepe11", SQLITE_SUPPORT, 200),
        ("app_nflow_sqlite_full.json", "/login_flow21", SQLITE_SUPPORT, 200),
        ("app_nflow_runtime_repo_full.json", "/pepe11", SQLITE_SUPPORT, 200),
        ("app_nflow_runtime_repo_full.json", "/nflow_login", SQLITE_SUPPORT, 200),
        ("app_nflow_initsql_postgres_full.json", "/pepe11", INITSQL_SUPPORT, 200),
        ("app_nflow_initsql_postgres_full.json", "/login_flow21", INITSQL_SUPPORT, 200),
        ("reconstructed/benchmark_httpstart_js_jsonrender_RECONSTRUCTED.json", "/bench", (), 200),
    ],
)
def test_single_request_apps_replay_identical(
    make: MakeHarness, db_url: str, file: str, path: str, support: tuple[Path, ...], status: int
) -> None:
    h = make(COMPAT / file, support=support)
    assert h.request("GET", path).status == status
    [run] = replays_identical(h, db_url)
    assert run.path == path and run.response_status == status


def test_form_wizard_is_one_journey_and_replays_identical(make: MakeHarness, db_url: str) -> None:
    h = make(COMPAT / "home_pepe11_multistep_form_wizard.json", support=SQLITE_SUPPORT)
    b = Browser(h)
    b.get("/pepe11")
    b.submit({"nombre": "Ana"})
    page = b.submit({"tipo": "celular", "celular": "555-1234", "mail": ""})
    fork = page.header("dromedary-wid-2")
    b.submit({"codigo": "0000"})  # wrong code: back to Paso 2
    b.submit({"tipo": "celular", "celular": "555-1234", "mail": ""})
    b.submit({"codigo": "1111"})
    done = b.submit(WIZARD_FIELDS)
    assert done.json()["paso_codigo"] == "ok"
    runs = replays_identical(h, db_url)
    requests = [r for r in runs if r.id != fork and r.parent_id is None]
    assert len(requests) == 7
    journeys = {r.journey for r in requests}
    assert len(journeys) == 1 and None not in journeys, "one wizard, one journey"
    [journey] = journeys
    assert journey == requests[-1].id, "named after the wizard's first request"
    forked = [r for r in runs if r.parent_id is not None]
    assert fork in {r.id for r in forked}
    assert all(r.journey == journey for r in forked)
    # The journey never reaches the payload or the page.
    assert "nflow_journey" not in done.text
    assert "nflow_journey" not in json.dumps(get_run(h, requests[0].id).steps[-1].payload_after)
    # A new wizard in the same browser is a new journey.
    b.get("/pepe11")
    b.submit({"nombre": "Bob"})
    latest = summaries(h, limit=2)
    assert latest[0].journey == latest[1].journey == latest[1].id != journey


def test_login_wizard_and_twilio_flows_replay_identical(make: MakeHarness, db_url: str) -> None:
    from nflow.passwords import hash_password

    h = make(
        COMPAT / "home_home_auth_multistep_form_wizard.json",
        COMPAT / "login_nflow_login_form.json",
        COMPAT / "login_logout.json",
        support=SQLITE_SUPPORT,
    )
    h.store("put_user", "ana", hash_password("ana"))
    b = Browser(h)
    assert b.get("/home").status == 307
    form = parse_form(b.get("/nflow_login").text)
    b.post("/nflow_login", form={**form.hidden, "username": "mallory", "password": "x"})
    b.post("/nflow_login", form={**form.hidden, "username": "ana", "password": "ana"})
    assert b.get("/home").status == 200
    assert "Paso 2" in b.submit({"nombre": "Ana"}).text
    assert b.get("/logout").status == 200
    runs = replays_identical(h, db_url)
    assert any(get_run(h, r.id).steps[0].node_type == "auth" for r in runs)

    h = make(
        COMPAT / "examples_twilio_otp_initsql.json",
        support=(SUPPORT / "modules_initsql.json", SUPPORT / "templates_initsql.json"),
        extra="[twilio]\nenable = false\n",
    )
    b = Browser(h)
    b.get("/twilio")
    b.submit({"phone": "+5491100000000"})
    assert b.submit({"code": "123456"}).json()["code"] == "123456"
    assert len(replays_identical(h, db_url, app="examples_twilio_otp_initsql")) == 3


# --- determinism ---------------------------------------------------------------------------

SOURCES = """function main(){
  var t0 = Date.now();
  while (Date.now() < t0 + 5) {}
  var d = new Date();
  payload.random = [Math.random(), Math.random()];
  payload.id = uuid();
  payload.waited = d.getTime() - t0;
  payload.perf = performance.now() > 0;
  payload.nano = String(time_now_unix_nano());
  payload.string_date = typeof Date() === "string";
  console.log("drew", payload.random[0]);
}"""


def test_random_clock_and_uuid_replay_from_the_record(make: MakeHarness, db_url: str) -> None:
    doc = app_doc(
        s=starter("s", "/det", "a"),
        a=js("a", SOURCES, output_1="b"),
        b=js("b", "function main(){ c.JSON(200, payload) }"),
    )
    h = make(doc)
    first = h.request("GET", "/det").json()
    second = h.request("GET", "/det").json()
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["random"] != second["random"], "each run has its own seed"
    assert first["waited"] >= 5 and first["perf"] and first["string_date"]
    runs = replays_identical(h, db_url)
    record = get_run(h, runs[0].id)
    calls = [c.function for c in record.steps[0].host_calls]
    assert calls == ["uuid", "time_now_unix_nano", "Date.now"]
    tape = record.steps[0].host_calls[-1].result
    # Run-length encoded: the spin loop's thousands of reads are a few pairs.
    assert sum(tape[1::2]) > 10 and len(tape) < 100
    assert record.steps[0].console == (f"drew {record.steps[0].payload_after['random'][0]}",)
    assert record.seed > 0


def test_a_source_the_record_does_not_tape_is_a_divergence_at_its_step(
    make: MakeHarness, db_url: str
) -> None:
    @nflow.step("t_untaped")
    def untaped(ctx: Any, data: Any) -> dict[str, Any]:
        # Python's own generator: not seeded per run, not taped.
        return {"lucky": random.random()}

    try:
        doc = app_doc(
            s=starter("s", "/u", "a"),
            a=js("a", "function main(){ payload.n = Math.random() }", output_1="u"),
            u=node("u", "t_untaped", output_1="b"),
            b=js("b", "function main(){ c.JSON(200, payload) }"),
        )
        h = make(doc)
        h.request("GET", "/u")
        [run] = summaries(h)
        result = replay(h.runtime.config, run.id, database_url=db_url)
        assert result is not None and not result.identical
        divergence = result.divergence
        assert divergence is not None
        assert (divergence.step, divergence.node) == (1, "u")
        assert "payload key 'lucky'" in divergence.what
    finally:
        nflow.steps.unregister_step("t_untaped")


class _Peer:
    """A local HTTP server answering ``/quote`` with a JSON body; counts what it served."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                peer.hits.append(self.path)
                body = json.dumps({"quote": f"q{len(peer.hits)}", "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def test_http_get_random_clock_and_uuid_replay_with_the_server_stopped(
    make: MakeHarness, db_url: str
) -> None:
    peer = _Peer()
    try:
        doc = app_doc(
            s=starter("s", "/peer", "a"),
            a=js(
                "a",
                "function main(){ payload.n = Math.random(); payload.t = Date.now(); "
                "payload.id = uuid(); "
                f'var page = http_get("{peer.url}/quote?n=" + payload.n); '
                "payload.quote = JSON.parse(page.body).quote }",
                output_1="b",
            ),
            b=js("b", "function main(){ c.JSON(200, payload) }"),
        )
        h = make(doc, extra='[http]\nallowed_hosts = ["127.0.0.1"]\n')
        answer = h.request("GET", "/peer").json()
        assert isinstance(answer, dict) and answer["quote"] == "q1"
        [run] = summaries(h)
    finally:
        peer.close()
    assert peer.hits == [f"/quote?n={answer['n']}"]
    # The server is gone: a live run now fails, a replay is answered from the record.
    assert h.request("GET", "/peer").status == 500
    result = replay(h.runtime.config, run.id, database_url=db_url)
    assert result is not None and result.identical, result.divergence
    assert len(peer.hits) == 1, "the replay made no HTTP call"
    record = get_run(h, run.id)
    calls = record.steps[0].host_calls
    assert [c.function for c in calls] == ["uuid", "http_get", "Date.now"]
    assert calls[1].args == [f"{peer.url}/quote?n={answer['n']}"]
    assert record.steps[1].payload_before["id"] == calls[0].result == answer["id"]


def test_a_clock_read_through_a_computed_name_is_a_divergence_at_its_step(
    make: MakeHarness, db_url: str
) -> None:
    # The source never names the clock, so the step is not taped: its read is live on replay.
    doc = app_doc(
        s=starter("s", "/hidden", "a"),
        a=js("a", "function main(){ payload.n = Math.random() }", output_1="h"),
        h=js(
            "h",
            'function main(){ var D = globalThis["Da" + "te"]; var t0 = D.now(); '
            "while (D.now() === t0) {} payload.t = D.now() }",
            output_1="b",
        ),
        b=js("b", "function main(){ c.JSON(200, payload) }"),
    )
    h = make(doc)
    h.request("GET", "/hidden")
    [run] = summaries(h)
    result = replay(h.runtime.config, run.id, database_url=db_url)
    assert result is not None and not result.identical
    divergence = result.divergence
    assert divergence is not None
    assert (divergence.step, divergence.node) == (1, "h")
    assert "payload key 't'" in divergence.what


def test_a_changed_host_call_is_named(make: MakeHarness, db_url: str, tmp_path: Path) -> None:
    # The record says what the script asked for; a replay that asks otherwise diverges there.
    doc = app_doc(
        s=starter("s", "/e", "a"),
        a=js("a", "function main(){ payload.v = get_env('color') }", output_1="b"),
        b=js("b", "function main(){ c.JSON(200, payload) }"),
    )
    h = make(doc, extra='[env]\ncolor = "blue"\n')
    h.request("GET", "/e")
    [run] = summaries(h)
    record = get_run(h, run.id)
    assert record.steps[0].host_calls[0].args == ["color"]
    # Tamper with the stored record: the replay must name the host call and its arguments.
    h.store(
        "run_sql",
        "UPDATE nflow_run_steps SET host_calls = replace(host_calls, '\"color\"', '\"shade\"') "
        f"WHERE run_id = '{run.id}'",
    )
    result = replay(h.runtime.config, run.id, database_url=db_url)
    assert result is not None and result.divergence is not None
    assert result.divergence.step == 0 and result.divergence.node == "a"
    assert "get_env" in result.divergence.what and "shade" in result.divergence.what


# --- re-runs -------------------------------------------------------------------------------


def test_rerun_from_a_step_on_the_current_version(make: MakeHarness, db_url: str) -> None:
    doc = app_doc(
        s=starter("s", "/r", "a"),
        a=js("a", "function main(){ payload.id = uuid(); payload.n = 1 }", output_1="b"),
        b=js(
            "b",
            "function main(){ payload.again = uuid(); payload.env = get_env('color'); "
            "c.JSON(200, payload) }",
        ),
    )
    h = make(doc, extra='[env]\ncolor = "blue"\n')
    original = h.request("GET", "/r").json()
    assert isinstance(original, dict)
    [run] = summaries(h)
    config = h.runtime.config

    again = rerun(config, run.id, 1, database_url=db_url)
    assert again is not None and again.status == "ok"
    body = json.loads(again.response.body)
    assert body == original, "both host calls of step 1 answered from the record"
    assert (again.served, again.live) == (2, 0)

    live = rerun(config, run.id, 1, live=True, database_url=db_url)
    assert live is not None and (live.served, live.live) == (0, 2)
    body = json.loads(live.response.body)
    assert body["id"] == original["id"] and body["again"] != original["again"]

    # A new version of step b: the matching call comes from the record, the new one is live.
    changed = app_doc(
        s=starter("s", "/r", "a"),
        a=js("a", "function main(){ payload.id = uuid(); payload.n = 1 }", output_1="b"),
        b=js(
            "b",
            "function main(){ payload.env = get_env('color'); payload.other = get_env('x'); "
            "c.JSON(200, payload) }",
        ),
    )
    h.serve(changed, "app0")
    newer = rerun(config, run.id, 1, database_url=db_url)
    assert newer is not None and (newer.served, newer.live) == (1, 1)
    assert json.loads(newer.response.body)["other"] == ""

    reruns = [r for r in summaries(h) if r.parent_id == run.id]
    assert len(reruns) == 3
    recorded = get_run(h, again.run_id)
    assert recorded.starter == "rerun:b" and recorded.parent_id == run.id
    assert rerun(config, "no-such-run", 1, database_url=db_url) is None


# --- the CLI and the policy ----------------------------------------------------------------


def test_runs_replay_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cli.db"
    url = f"sqlite+aiosqlite:///{db}"
    doc = app_doc(
        s=starter("s", "/c", "a"),
        a=js("a", "function main(){ c.JSON(200, {n: Math.random(), t: Date.now()}) }"),
    )
    h = Harness(url, tmp_path, apps=[doc], toml=SECRET + RECORD_ALL)
    try:
        h.request("GET", "/c")
        [run] = summaries(h)
    finally:
        h.close()
    config = tmp_path / "cli.toml"
    config.write_text(f'[database_nflow]\ndsn = "{db}"\n')
    c = ["--config", str(config)]
    assert main(["runs", "replay", run.id, *c]) == 0
    assert "identical" in capsys.readouterr().out
    assert main(["runs", "replay", run.id[:8], "--json", *c]) == 0
    assert json.loads(capsys.readouterr().out)["identical"] is True
    assert main(["runs", "replay", "nope-nope", *c]) == 2
    assert main(["runs", "rerun", run.id, "--from-step", "0", "--json", *c]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rerun_of"] == run.id and out["response"]["status"] == 200


def test_modes_decide_what_is_recorded(db_url: str, tmp_path: Path) -> None:
    doc = app_doc(
        s1=starter("s1", "/ok", "a"),
        s2=starter("s2", "/bad", "b"),
        a=js("a", "function main(){ c.JSON(200, {}) }"),
        b=js("b", "function main(){ throw new Error('no') }"),
    )
    off = Harness(db_url, tmp_path, apps=[doc], toml=SECRET + '[history]\nmode = "off"\n')
    try:
        assert off.runtime.history is None and off.runtime.engine.history is None
        off.request("GET", "/ok")
    finally:
        off.close()
    errors = Harness(
        db_url,
        tmp_path,
        apps=[doc],
        toml=SECRET + '[history]\nmode = "all"\n[history.apps.app0]\nmode = "errors"\n',
    )
    try:
        errors.request("GET", "/ok")
        errors.request("GET", "/bad")
        [run] = summaries(errors)
        assert run.status == "error" and run.path == "/bad"
        record = get_run(errors, run.id)
        assert record.steps[0].error is not None
        assert "Error: no" in record.steps[0].error.stack or record.steps[0].error.line == 1
    finally:
        errors.close()


def test_a_failed_run_outside_the_sample_is_kept_in_full_and_replays(
    db_url: str, tmp_path: Path
) -> None:
    doc = app_doc(
        s1=starter("s1", "/ok", "a"),
        s2=starter("s2", "/bad", "b"),
        a=js("a", "function main(){ c.JSON(200, {}) }"),
        b=js("b", "function main(){ payload.x = uuid(); payload.t = Date.now() }", output_1="c"),
        c=js("c", "function main(){ console.log('got', payload.x); throw new Error('no') }"),
    )
    toml = SECRET + '[history]\nmode = "sampled"\nsample_rate = 0.0\nflush_interval_ms = 20\n'
    h = Harness(db_url, tmp_path, apps=[doc], toml=toml)
    try:
        for _ in range(5):
            h.request("GET", "/ok")
        h.request("GET", "/bad")
        [run] = summaries(h)
        assert run.status == "error" and run.path == "/bad"
        record = get_run(h, run.id)
        assert [(s.node_id, s.next) for s in record.steps] == [("b", "output_1"), ("c", None)]
        first, failing = record.steps
        # In full, like a run drawn for the sample: payloads, host calls, clock, console.
        assert [c.function for c in first.host_calls] == ["uuid", "Date.now"]
        assert first.payload_after["x"] == first.host_calls[0].result
        assert failing.payload_before["x"] == first.payload_after["x"]
        assert failing.console == (f"got {first.payload_after['x']}",)
        assert failing.error is not None and "no" in failing.error.message
        assert record.response_status == 500

        async def failed_step() -> StepView | None:
            return await HistoryReader(h.runtime.store).get_step(run.id, 1)

        view = h.run(h.runtime.store_call(failed_step()))
        assert view is not None and view.diff == (), "a failed step changed nothing"
        result = replay(h.runtime.config, run.id, database_url=db_url)
        assert result is not None and result.identical, result.divergence
    finally:
        h.close()


# --- runs outside the sample go through compiled chains ------------------------------------
OUTSIDE = SECRET + '[history]\nmode = "sampled"\nsample_rate = 0.0\nflush_interval_ms = 20\n'
# Four js nodes in a line: the third fails (line 3), after host calls, a response write,
# console lines, seeded random numbers and clock reads in the nodes before it.
CHAIN = app_doc(
    s=starter("s", "/chain", "n1"),
    s2=starter("s2", "/late", "m1"),
    n1=js(
        "n1",
        "function main(){ payload.id = uuid(); payload.r = Math.random();"
        " payload.t = Date.now(); console.log('one', payload.id) }",
        output_1="n2",
    ),
    n2=js(
        "n2",
        "function main(){ c.SetHeader('X-Step', 'two'); payload.r2 = Math.random();"
        " payload.n = (payload.n || 0) + 1; payload.agent = header['User-Agent'] || null }",
        output_1="n3",
    ),
    n3=js(
        "n3",
        "function main(){\n  console.log('three', payload.n);\n"
        "  throw new RangeError('too far ' + payload.r2)\n}",
        output_1="n4",
    ),
    n4=js("n4", "function main(){ c.JSON(200, payload) }"),
    # A chain that succeeds, then a node that runs on its own (it awaits) and fails.
    m1=js("m1", "function main(){ payload.a = uuid(); payload.t = Date.now() }", output_1="m2"),
    m2=js("m2", "function main(){ payload.b = Math.random() }", output_1="m3"),
    m3=js("m3", "async function main(){ await null; throw new Error('late ' + payload.b) }"),
)


def test_a_run_outside_the_sample_failing_inside_a_chain_is_recorded_per_node_and_replays(
    db_url: str, tmp_path: Path
) -> None:
    h = Harness(db_url, tmp_path, apps=[CHAIN], toml=OUTSIDE)
    try:
        vms = h.runtime.engine.vms
        before = vms.entries()
        response = h.request("GET", "/chain")
        assert response.status == 500
        assert vms.entries() - before == 1, "the three nodes ran in one entry into the sandbox"
        [run] = summaries(h)
        record = get_run(h, run.id)
        assert [(s.node_id, s.node_type, s.next) for s in record.steps] == [
            ("n1", "js", "output_1"),
            ("n2", "js", "output_1"),
            ("n3", "js", None),
        ]
        one, two, three = record.steps
        assert [c.function for c in one.host_calls] == ["uuid", "Date.now"]
        assert one.payload_before == {}
        assert one.payload_after["id"] == one.host_calls[0].result
        assert one.payload_after["t"] == one.host_calls[1].result[0]
        assert one.console == (f"one {one.payload_after['id']}",)
        # the request's values read by the second node are its own host calls
        assert [c.function for c in two.host_calls] == ["request.value"]
        assert two.console == ()
        assert two.payload_before == one.payload_after
        assert two.payload_after == {
            **one.payload_after,
            "r2": two.payload_after["r2"],
            "n": 1,
            "agent": two.payload_after["agent"],
        }
        assert [w["function"] for w in two.writes] == ["c.set_header"]
        assert three.payload_before == two.payload_after
        assert three.console == ("three 1",)
        assert three.payload_after is None and three.error is not None
        assert three.error.line == 3
        assert f"too far {two.payload_after['r2']}" in three.error.message
        assert "n3" in three.error.message and three.error.stack
        assert all(s.duration_ms >= 0 for s in record.steps)
        result = replay(h.runtime.config, run.id, database_url=db_url)
        assert result is not None and result.identical, result.divergence
        assert result.steps == 3
    finally:
        h.close()


def test_a_chain_that_succeeded_is_recorded_when_the_run_fails_later(
    db_url: str, tmp_path: Path
) -> None:
    h = Harness(db_url, tmp_path, apps=[CHAIN], toml=OUTSIDE)
    try:
        vms = h.runtime.engine.vms
        before = vms.entries()
        assert h.request("GET", "/late").status == 500
        assert vms.entries() - before == 2, "m1 and m2 in one entry, m3 on its own"
        [run] = summaries(h)
        record = get_run(h, run.id)
        assert [(s.node_id, s.next) for s in record.steps] == [
            ("m1", "output_1"),
            ("m2", "output_1"),
            ("m3", None),
        ]
        first, second, third = record.steps
        assert [c.function for c in first.host_calls] == ["uuid", "Date.now"]
        assert second.payload_before == first.payload_after
        assert third.payload_before == second.payload_after
        assert f"late {second.payload_after['b']}" in (third.error.message if third.error else "")
        result = replay(h.runtime.config, run.id, database_url=db_url)
        assert result is not None and result.identical, result.divergence
    finally:
        h.close()
