"""Execution semantics: routing, next, break, forks, isolation between requests, errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import UUID, Harness, app_doc, js, node, starter

MakeHarness = Callable[..., Harness]


@pytest.fixture
def make(db_url: str, tmp_path: Path) -> Iterator[MakeHarness]:
    made: list[Harness] = []

    def factory(*apps: dict[str, Any], toml: str | None = None) -> Harness:
        harness = Harness(db_url, tmp_path, apps=apps, toml=toml)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        harness.close()


def one(code: str, pattern: str = "/t", method: str = "ANY") -> dict[str, Any]:
    return app_doc(s=starter("s", pattern, "a", method=method), a=js("a", code))


# routing -------------------------------------------------------------------------------
def test_path_captures_method_and_document_order(make: MakeHarness) -> None:
    doc = app_doc(
        s1=starter("s1", "/users/:id", "a", method="GET"),
        s2=starter("s2", "/users/:id", "b", method="POST"),
        s3=starter("s3", "/users/:id", "c"),
        a=js("a", "function main(){ c.JSON(200, {get: vars.id, also: path_vars.id}) }"),
        b=js("b", "function main(){ c.JSON(201, {post: vars.id}) }"),
        c=js("c", "function main(){ c.JSON(200, {any: vars.id}) }"),
    )
    h = make(doc)
    assert h.request("GET", "/users/42").json() == {"get": "42", "also": "42"}
    r = h.request("POST", "/users/7")
    assert (r.status, r.json()) == (201, {"post": "7"})
    assert h.request("PUT", "/users/9").json() == {"any": "9"}
    assert h.request("GET", "/users/9/x").status == 404
    assert h.request("GET", "/users").status == 404


def test_empty_segment_is_wildcard_and_trailing_slash_counts(make: MakeHarness) -> None:
    h = make(one("function main(){ c.String(200, nflow_endpoint) }", pattern="/a/"))
    r = h.request("GET", "/a/anything")
    assert (r.status, r.text) == (200, "/a/anything")
    assert r.header("content-type") == "text/plain; charset=UTF-8"
    assert h.request("GET", "/a").status == 404


def test_resume_markers_are_cut_before_matching(make: MakeHarness) -> None:
    h = make(one("function main(){ c.String(200, nflow_endpoint) }", pattern="/home"))
    r = h.request("GET", "/home/nftk/Paso%202")
    assert (r.status, r.text) == (200, "/home")


# next, break, outputs ----------------------------------------------------------------------
def test_next_chooses_output_and_unconnected_output_ends_flow(make: MakeHarness) -> None:
    doc = app_doc(
        s=starter("s", "/b", "a"),
        a=js(
            "a",
            "function main(){ payload.seen = ['a']; next = c.QueryParam('go') }",
            output_1="one",
            output_2="two",
            output_3=None,
        ),
        one=js("one", "function main(){ c.JSON(200, {out: 1, seen: payload.seen}) }"),
        two=js("two", "function main(){ c.JSON(200, {out: 2}) }"),
    )
    h = make(doc)
    assert h.request("GET", "/b?go=output_1").json() == {"out": 1, "seen": ["a"]}
    assert h.request("GET", "/b?go=output_2").json() == {"out": 2}
    # An unconnected output ends the flow: empty 200 (the original silently skipped the node).
    for go in ("output_3", "break", "nowhere"):
        r = h.request("GET", f"/b?go={go}")
        assert (r.status, r.body, r.header("content-type")) == (200, b"", "")


def test_payload_flows_between_nodes_and_starts_from_query(make: MakeHarness) -> None:
    doc = app_doc(
        s=starter("s", "/p", "a"),
        a=js(
            "a",
            "function main(){ payload.n = parseInt(payload.n) + 1; delete payload.q }",
            output_1="b",
        ),
        b=js("b", "function main(){ c.JSON(200, payload) }"),
    )
    h = make(doc)
    # Keys deleted from payload come back from the form session, as in the original.
    assert h.request("GET", "/p?n=1&q=x").json() == {"n": 2, "q": "x"}
    r = h.request("POST", "/p?n=5", form={"f": "v", "multi": "1"})
    assert r.json() == {"n": 6, "f": "v", "multi": "1"}


def test_break_suspends_flow(make: MakeHarness) -> None:
    doc = app_doc(
        s=starter("s", "/br", "a"),
        a=js(
            "a", "function main(){ c.HTML(200, '<p>page</p>'); payload.break = true }", output_1="b"
        ),
        b=js("b", "function main(){ c.JSON(200, {reached: true}) }"),
    )
    h = make(doc)
    r = h.request("GET", "/br")
    assert (r.status, r.body) == (200, b"<p>page</p>")
    assert r.header("content-type") == "text/html; charset=UTF-8"


def test_non_object_payload_becomes_empty_object(make: MakeHarness) -> None:
    doc = app_doc(
        s=starter("s", "/np", "a"),
        a=js("a", "function main(){ payload = [1, 2] }", output_1="b"),
        b=js("b", "function main(){ c.JSON(200, {payload: payload}) }"),
    )
    assert make(doc).request("GET", "/np").json() == {"payload": {}}


def test_module_script_and_inline_code_override(make: MakeHarness, tmp_path: Path) -> None:
    doc = app_doc(
        s=starter("s", "/m", "a"),
        a={**js("a", "function main(){ c.JSON(200, {from: 'inline'}) }", script="json"), "id": "a"},
    )
    h = make(doc)
    assert h.request("GET", "/m").json() == {"from": "inline"}


# forks -------------------------------------------------------------------------------------
def test_gorutine_runs_background_branch_without_delaying_response(
    make: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    doc = app_doc(
        s=starter("s", "/fork", "g"),
        g=node("g", "gorutine", output_1="main", output_2="bg"),
        main=js("main", "function main(){ c.JSON(200, {main: true}) }"),
        bg=js(
            "bg",
            "function main(){ sleep(300); console.log('bg done', payload.k); c.JSON(200, {ignored: true}) }",
        ),
    )
    h = make(doc)
    caplog.set_level(logging.INFO, logger="nflow.js")
    started = time.perf_counter()
    r = h.request("GET", "/fork?k=v")
    elapsed = time.perf_counter() - started
    assert r.json() == {"main": True}
    fork_wid = r.header("dromedary-wid-2")
    assert UUID.match(fork_wid) and fork_wid != r.header("nflow-wid-1")
    assert elapsed < 0.3, "the response does not wait for the background branch"
    assert h.runtime.wait_forks(5.0)
    logged = [rec for rec in caplog.records if "bg done" in rec.getMessage()]
    assert logged and logged[0].__dict__["wid"] == fork_wid
    assert logged[0].getMessage().endswith("bg done v")


def test_failing_background_branch_is_logged(
    make: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    doc = app_doc(
        s=starter("s", "/fork", "g"),
        g=node("g", "gorutine", output_1="main", output_2="bg"),
        main=js("main", "function main(){ c.JSON(200, {main: true}) }"),
        bg=js("bg", "function main(){ throw new Error('background boom') }"),
    )
    h = make(doc)
    caplog.set_level(logging.ERROR, logger="nflow")
    assert h.request("GET", "/fork").status == 200
    assert h.runtime.wait_forks(5.0)
    messages = [rec.getMessage() for rec in caplog.records]
    assert any("background branch" in m and "background boom" in m for m in messages)


# isolation -------------------------------------------------------------------------------
def test_globals_never_leak_between_requests(make: MakeHarness) -> None:
    code = """function main(){
  var before = typeof leaked === 'undefined' ? 'clean' : 'dirty:' + leaked
  leaked = c.QueryParam('v')
  globalThis.other = 1
  c.JSON(200, {before: before, other: typeof other})
}"""
    h = make(one(code))
    for i in range(5):
        assert h.request("GET", f"/t?v={i}").json() == {"before": "clean", "other": "number"}


def test_globals_are_shared_between_steps_of_one_request(make: MakeHarness) -> None:
    doc = app_doc(
        s=starter("s", "/sh", "a"),
        a=js("a", "function main(){ shared = 'from a'; for (key in {k: 1}) {} }", output_1="b"),
        b=js("b", "function main(){ c.JSON(200, {shared: shared, key: key}) }"),
    )
    h = make(doc)
    assert h.request("GET", "/sh").json() == {"shared": "from a", "key": "k"}
    assert h.request("GET", "/sh").json() == {"shared": "from a", "key": "k"}


def test_stale_main_from_earlier_request_never_runs(make: MakeHarness) -> None:
    doc = app_doc(
        s1=starter("s1", "/one", "a"),
        s2=starter("s2", "/two", "b"),
        a=js("a", "function main(){ c.JSON(200, {from: 'one'}) }"),
        b=js("b", "var x = 1"),
    )
    h = make(doc)
    assert h.request("GET", "/one").json() == {"from": "one"}
    r = h.request("GET", "/two")
    assert r.status == 500
    assert "main is not defined" in r.json()["message"]


def test_prototype_pollution_is_refused_and_does_not_leak(make: MakeHarness) -> None:
    code = """function main(){
  var before = ({}).polluted
  try { Object.prototype.polluted = 'yes' } catch (e) {}
  try { Array.prototype.push = function(){ return 'evil' } } catch (e) {}
  var a = []; a.push(1)
  c.JSON(200, {before: before === undefined ? null : before, after: ({}).polluted || null, len: a.length})
}"""
    h = make(one(code))
    for _ in range(2):
        assert h.request("GET", "/t").json() == {"before": None, "after": None, "len": 1}


def test_overriding_inherited_names_on_own_objects_still_works(make: MakeHarness) -> None:
    code = """function main(){
  var o = {}; o.toString = function(){ return 'mine' }
  function MyErr(m){ this.message = m; this.name = 'MyErr' }
  MyErr.prototype = Object.create(Error.prototype)
  var e = new MyErr('bad')
  class E2 extends Error { constructor(m){ super(m); this.name = 'E2' } }
  c.JSON(200, {o: String(o), e: e.name + ':' + e.message, e2: new E2('x').name})
}"""
    assert make(one(code)).request("GET", "/t").json() == {
        "o": "mine",
        "e": "MyErr:bad",
        "e2": "E2",
    }


def test_eval_and_function_constructor_are_disabled(make: MakeHarness) -> None:
    code = """function main(){
  var out = []
  var probes = [
    function(){ return eval('1+1') },
    function(){ return new Function('return 1')() },
    function(){ return (function(){}).constructor('return 1')() },
    function(){ return (async function(){}).constructor('return 1') },
    function(){ return (function*(){}).constructor('yield 1') },
    function(){ return Reflect.construct(Function, ['return 1']) },
  ]
  for (var i = 0; i < probes.length; i++) {
    try { probes[i](); out.push('ran') } catch (e) { out.push(e instanceof TypeError ? 'blocked' : String(e)) }
  }
  c.JSON(200, out)
}"""
    # With the static analyzer only warning, the runtime itself must still refuse them.
    h = make(one(code), toml="[security]\nblock_on_high_severity = false\n")
    assert h.request("GET", "/t").json() == ["blocked"] * 6


def test_block_mode_refuses_to_serve_an_app_with_high_findings(
    make: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="nflow")
    doc = app_doc(
        s1=starter("s1", "/bad", "a"),
        a=js("a", "function main(){\n  var f = eval('1')\n}"),
    )
    h = make(doc)
    assert h.request("GET", "/bad").status == 404
    problems = [p for p in h.runtime.problems if p.node == "a"]
    assert problems and problems[0].severity == "error" and problems[0].line == 2
    assert "eval" in problems[0].message
    assert any("is not served" in rec.getMessage() for rec in caplog.records)
    warn = make(doc, toml="[security]\nblock_on_high_severity = false\n")
    assert warn.request("GET", "/bad").status == 500  # served; the runtime blocks eval itself


# errors ----------------------------------------------------------------------------------
def test_script_error_names_node_and_line(make: MakeHarness) -> None:
    h = make(one("function main(){\n  var a = 1\n  missing.call()\n}"))
    r = h.request("GET", "/t")
    assert r.status == 500
    body = r.json()
    assert body["node"] == "a"
    assert body["line"] == 3
    assert body["message"].startswith("ReferenceError: missing is not defined")
    # Node id, type, message and line: never the script, which any client would see.
    assert set(body) == {"node", "type", "message", "line"}
    assert body["type"] == "js"
    assert b"missing.call" not in r.body


def test_compat_switch_restores_the_go_error_body(make: MakeHarness, tmp_path: Path) -> None:
    source = "function main(){\n  var secret = 'k-123'\n  missing.call()\n}"
    h = make(one(source), toml="[compat]\nerror_body_source = true\n")
    body = h.request("GET", "/t").json()
    assert body["actor"]["data"]["code"] == source
    assert body["actor"]["outputs"] == {}
    assert (body["node"], body["type"], body["line"]) == ("a", "js", 3)


def test_response_limit_smaller_than_the_error_itself(make: MakeHarness) -> None:
    # The error JSON does not fit in 10 bytes: the status alone, no traceback, no crash.
    h = make(
        one("function main(){ c.String(200, 'more than ten bytes') }"),
        toml="[limits]\nmax_response_bytes = 10\n",
    )
    r = h.request("GET", "/t")
    assert (r.status, r.body) == (500, b"")
    assert r.header("nflow-wid-1")


def test_error_after_write_replaces_partial_response(make: MakeHarness) -> None:
    h = make(one("function main(){ c.HTML(200, '<p>half'); throw new Error('late') }"))
    r = h.request("GET", "/t")
    assert r.status == 500 and b"<p>half" not in r.body
    assert "Error: late" in r.json()["message"]


def test_runaway_script_gets_408_and_server_keeps_serving(make: MakeHarness) -> None:
    h = make(
        app_doc(
            s1=starter("s1", "/loop", "a"),
            s2=starter("s2", "/ok", "b"),
            a=js("a", "function main(){ while (true) {} }"),
            b=js("b", "function main(){ c.JSON(200, {ok: true}) }"),
        ),
        toml="[limits]\nstep_timeout_seconds = 0.2\n",
    )
    started = time.perf_counter()
    r = h.request("GET", "/loop")
    assert time.perf_counter() - started < 2
    assert r.status == 408
    assert r.json()["message"].startswith("Script execution exceeded resource limits")
    assert r.json()["node"] == "a"
    assert h.request("GET", "/ok").json() == {"ok": True}


def test_cycle_of_nodes_stops_at_step_limit(make: MakeHarness) -> None:
    doc = app_doc(
        s=starter("s", "/cycle", "a"),
        a=js("a", "function main(){ payload.n = (payload.n || 0) + 1 }", output_1="b"),
        b=js("b", "function main(){}", output_1="a"),
    )
    h = make(doc, toml="[limits]\nmax_steps = 50\n")
    r = h.request("GET", "/cycle")
    assert r.status == 508
    assert "more than 50 steps" in r.json()["error"]
    assert h.request("GET", "/cycle").status == 508


def test_unknown_type_starter_and_legacy_nodes_give_clear_500(make: MakeHarness) -> None:
    doc = app_doc(
        s1=starter("s1", "/unknown", "u"),
        s2=starter("s2", "/starter", "s3"),
        s3=starter("s3", "/inner", "x"),
        s4=starter("s4", "/plugin", "p"),
        u=node("u", "websocket"),
        p=node("p", "dromedary"),
        x=js("x", "function main(){}"),
    )
    h = make(doc)
    assert h.request("GET", "/unknown").json() == {
        "error": "Type node not found",
        "type": "websocket",
        "node": "u",
    }
    assert h.request("GET", "/starter").json()["error"] == "Starter can not run with play button"
    r = h.request("GET", "/plugin")
    assert r.status == 500 and "Go-plugin" in r.json()["error"]


def test_route_to_missing_node_is_a_clear_error(make: MakeHarness) -> None:
    doc = app_doc(s=starter("s", "/gone", "a"), a=js("a", "function main(){}", output_1="ghost"))
    r = make(doc).request("GET", "/gone")
    assert r.status == 500
    assert "ghost" in r.json()["error"]


def test_resume_at_unreachable_node_is_refused(make: MakeHarness) -> None:
    doc = app_doc(
        s=starter("s", "/r", "a"),
        a=js("a", "function main(){ c.JSON(200, {at: 'a'}) }", output_1="b"),
        b=js("b", "function main(){ c.JSON(200, {at: 'b'}) }"),
        orphan=js("orphan", "function main(){ c.JSON(200, {at: 'orphan'}) }"),
    )
    h = make(doc)
    assert h.request("GET", "/r?nflow_next_node_run=b").json() == {"at": "b"}
    assert h.request("POST", "/r", form={"nflow_next_node_run": "b"}).json() == {"at": "b"}
    assert h.request("GET", "/r/nfnext/b/x").json() == {"at": "b"}
    for bad in ("orphan", "nope", "s"):
        r = h.request("GET", f"/r?nflow_next_node_run={bad}")
        assert r.status == 400, bad
        assert "cannot resume" in r.json()["message"]


@pytest.mark.parametrize(
    "attack",
    [
        "Object.defineProperty(globalThis, 'perm', {value: 'leak', configurable: false})",
        "Object.setPrototypeOf(globalThis, {perm: 'leak'})",
        "Object.preventExtensions(globalThis)",
        "globalThis[Symbol.for('perm')] = 'leak'",
    ],
)
def test_runtime_left_dirty_is_replaced(make: MakeHarness, attack: str) -> None:
    doc = app_doc(
        s1=starter("s1", "/attack", "a"),
        s2=starter("s2", "/check", "b"),
        # c is taken first: swapping the global prototype also hides nflow's own globals.
        a=js(
            "a", f"function main(){{ const reply = c; {attack}; reply.JSON(200, {{done: true}}) }}"
        ),
        b=js(
            "b",
            "function main(){ x = 1; c.JSON(200, {perm: typeof perm, sym: "
            "typeof globalThis[Symbol.for('perm')], x: x}) }",
        ),
    )
    h = make(doc, toml="[security]\nblock_on_high_severity = false\n")
    assert h.request("GET", "/attack").json() == {"done": True}
    assert h.request("GET", "/check").json() == {"perm": "undefined", "sym": "undefined", "x": 1}


# invalid JSON bodies ---------------------------------------------------------------------
ECHO = "function main(){ c.JSON(200, post_data) }"
BAD_JSON = [("Content-Type", "application/json")]


def test_invalid_json_body_is_logged_and_accepted_by_default(
    make: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    h = make(one(ECHO))
    with caplog.at_level(logging.WARNING, logger="nflow"):
        r = h.request("POST", "/t?x=1", headers=BAD_JSON, body=b'{"a": 1,,}')
    assert (r.status, r.json()) == (200, {"*": "t"})  # as the Go runtime: no body fields
    [record] = [rec for rec in caplog.records if "invalid JSON body" in rec.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("POST /t: invalid JSON body (application/json): ")
    assert record.__dict__["path"] == "/t"
    # Valid JSON, and a body that is not declared as JSON, log nothing.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nflow"):
        assert h.request("POST", "/t", json={"a": 1}).json() == {"*": "t", "a": 1}
        h.request("POST", "/t", headers=[("Content-Type", "text/plain")], body=b"{,")
    assert not [rec for rec in caplog.records if "invalid JSON" in rec.getMessage()]


def test_invalid_json_body_refused_when_configured(make: MakeHarness) -> None:
    h = make(one(ECHO), toml='[request]\ninvalid_json = "reject"\n')
    r = h.request(
        "POST", "/t", headers=[("Content-Type", "application/json; charset=utf-8")], body=b"{oops"
    )
    assert r.status == 400
    body = r.json()
    assert body["code"] == 400
    assert body["message"].startswith(
        "invalid JSON body (application/json; charset=utf-8): unexpected character"
    )
    assert h.request("POST", "/t", json={"ok": True}).json() == {"*": "t", "ok": True}


def test_invalid_json_setting_per_app(make: MakeHarness) -> None:
    strict = one(ECHO, pattern="/strict")
    lenient = one(ECHO, pattern="/lenient")
    h = make(
        strict,
        lenient,
        toml='[request]\ninvalid_json = "reject"\n[apps.app1]\ninvalid_json = "accept"\n',
    )
    assert h.request("POST", "/strict", headers=BAD_JSON, body=b"[1,").status == 400
    assert h.request("POST", "/lenient", headers=BAD_JSON, body=b"[1,").status == 200


def test_every_built_in_node_type_has_a_step_function() -> None:
    from nflow.engine._run import BUILTIN_STEPS
    from nflow.steps import KNOWN_NODE_TYPES

    # One list: the names the playbook accepts and custom steps may not take are the ones the
    # engine runs itself.
    assert set(BUILTIN_STEPS) == KNOWN_NODE_TYPES
