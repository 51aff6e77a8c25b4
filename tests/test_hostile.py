"""Hostile and broken scripts: none reaches the host, none outlives its limits, none leaves
anything behind for the next request, and the same runtime keeps serving good requests.

Every case runs on one runtime (module scope), one after the other, as a busy server would see
them; the last test sends a good request to it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import Harness, app_doc, js, starter
from nflow import Execution, Request
from nflow.engine import limit_of

# The analyzer would refuse most of these scripts at load: warn only, so that what is tested
# is the sandbox itself, the defence that remains when a script gets past the analyzer.
CONFIG = """
[security]
block_on_high_severity = false
[limits]
step_timeout_seconds = 0.5
request_timeout_seconds = 2
max_host_calls = 2000
max_response_bytes = 1000000
sleep_max_ms = 200
[vm_pool]
max_memory_mb = 64
"""


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("hostile")
    harness = Harness(f"sqlite+aiosqlite:///{tmp / 'h.db'}", tmp, toml=CONFIG)
    yield harness
    harness.close()


def run(h: Harness, code: str) -> tuple[int, Any, float]:
    h.serve(app_doc(s=starter("s", "/x", "a"), a=js("a", code)), "hostile")
    started = time.perf_counter()
    r = h.request("GET", "/x")
    elapsed = time.perf_counter() - started
    try:
        body: Any = r.json()
    except ValueError:
        body = r.text
    return r.status, body, elapsed


def blocked(h: Harness, code: str) -> str:
    """Run ``code`` inside try/catch; the script reports what happened."""
    wrapped = (
        "function main(){ var out; try { out = 'ran: ' + String((function(){ "
        + code
        + " })()) } catch (e) { out = 'blocked: ' + (e && e.name) + ': ' + (e && e.message) } c.JSON(200, {out: out}) }"
    )
    status, body, _ = run(h, wrapped)
    assert status == 200, body
    return str(body["out"])


# --- escapes: code generation, constructors, modules, host objects -----------------------
@pytest.mark.parametrize(
    "code",
    [
        "return eval('1+1')",
        "return (0, eval)('1+1')",
        "return new Function('return 1')()",
        "return Function('return 1')()",
        "return (function(){}).constructor('return 1')()",
        "return [].constructor.constructor('return 1')()",
        "return ''.constructor.constructor('return 1')()",
        "return Object.getPrototypeOf(async function(){}).constructor('return 1')",
        "return Object.getPrototypeOf(function*(){}).constructor('yield 1')",
        "return Object.getPrototypeOf(async function*(){}).constructor('yield 1')",
        "return Reflect.construct(Function, ['return 1'])",
        "return Reflect.apply(Function.prototype.constructor, null, ['return 1'])",
        "return c.JSON.constructor('return 1')()",
        "return uuid.constructor.constructor('return this')()",
    ],
)
def test_code_generation_is_impossible(h: Harness, code: str) -> None:
    assert blocked(h, code).startswith("blocked: TypeError")


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        ("return require('fs')", "not allowed"),
        ("return require('child_process')", "not allowed"),
        ("return c.File('/etc/passwd')", "disabled"),
        ("return c.Attachment('/etc/passwd', 'p')", "disabled"),
        ("return file_to_string('/etc/passwd')", "not defined"),
        ("return string_to_file('/tmp/x', 'y')", "not defined"),
        ("return process.env", "not defined"),
        ("return new SharedArrayBuffer(8)", "not defined"),
        ("return Atomics.wait(new Int32Array(4), 0, 0, 1000)", "not defined"),
        ("return new WeakRef({})", "not defined"),
        ("return __nf.run('x', 1, 'k', 'n', '', '', '')", "not allowed"),
        ("return __nf.define('guess', 'k', function(){})", "not allowed"),
    ],
)
def test_no_way_to_the_host(h: Harness, code: str, needle: str) -> None:
    out = blocked(h, code)
    assert out.startswith("blocked:") and needle in out, out


def test_promise_jobs_finish_inside_their_own_step(h: Harness) -> None:
    status, body, _ = run(
        h,
        """function main(){
  var order = []
  Promise.resolve().then(function(){ order.push('job') }).then(function(){ c.JSON(200, {order: order, p: payload.k || null}) })
  order.push('sync')
}""",
    )
    assert (status, body) == (200, {"order": ["sync", "job"], "p": None})
    # A later request sees none of it.
    assert blocked(h, "return typeof order") == "ran: undefined"


LATE = "function(){ c.JSON(200, {late: true}) }"


@pytest.mark.parametrize(
    "code",
    [
        # No async, await, import or Promise in the source: each still queues a promise job,
        # and the job must run inside this step, not in some later request's.
        "globalThis['Prom' + 'ise'].resolve().then(" + LATE + ")",
        # The global bindings live on the global object's prototype.
        "Object.getOwnPropertyDescriptor(Object.getPrototypeOf(globalThis), 'Prom' + 'ise')"
        ".get().resolve().then(" + LATE + ")",
        "var P = Reflect.get(globalThis, 'Prom' + 'ise'); new P(function(r){ r({then: "
        + LATE
        + "}) })",
        "Array['from' + 'Async']([{then: function(r){ c.JSON(200, {late: true}); r(1) }}])",
        "var S = globalThis['AsyncDisposable' + 'Stack']; var s = new S();"
        " s.defer(" + LATE + "); s.defer(function(){}); s['dispose' + 'Async']()",
        "return {then: function(r){ c.JSON(200, {late: true}); r() }}",
    ],
)
def test_promise_jobs_without_async_syntax_finish_in_their_step(h: Harness, code: str) -> None:
    status, body, _ = run(h, "function main(){ " + code + " }")
    assert (status, body) == (200, {"late": True})
    assert blocked(h, "return 'clean'") == "ran: clean"


def test_swapped_global_prototype_cannot_redirect_nflow_functions(h: Harness) -> None:
    # The global bindings live on the global object's prototype. A script may swap it for
    # the rest of its own run, but nflow's functions bound their builtins at start: a trap
    # on every lookup sees none of their names, and they keep working.
    status, body, _ = run(
        h,
        """function main(){
  const reply = c, year = time_now_year, S = String, seen = [];
  Object.setPrototypeOf(globalThis, new Proxy({}, {
    has(t, k) { seen.push(S(k)); return false; },
    get(t, k) { seen.push(S(k)); return undefined; },
  }));
  const y = year(), q = reply.QueryParam('a'), m = reply.Request().method();
  reply.JSON(200, {year: y, q: q, m: m, seen: seen});
}""",
    )
    assert status == 200
    assert body == {"year": time.localtime().tm_year, "q": "", "m": "GET", "seen": []}
    # The next request gets a clean runtime with every builtin back.
    assert blocked(h, "return typeof Math + typeof c") == "ran: objectobject"


def test_dynamic_import_is_refused(h: Harness) -> None:
    status, body, _ = run(
        h, "async function main(){ await import('fs'); c.JSON(200, {imported: true}) }"
    )
    assert status == 500 and "module not found: fs" in body["message"]


def test_global_enumeration_shows_no_host_internals(h: Harness) -> None:
    status, body, _ = run(
        h,
        "function main(){ c.JSON(200, {names: Object.getOwnPropertyNames(globalThis), "
        "src: String(c.JSON) + String(uuid) + String(get_session)}) }",
    )
    assert status == 200
    names = body["names"]
    assert not [n for n in names if n.startswith("__h") or "python" in n.lower()]
    assert "__nf" in names  # visible but guarded by a secret token (see test above)
    assert not re.search(r"[0-9a-f]{32}", body["src"]), "no token in any function's source"


def test_error_objects_carry_no_host_traces(h: Harness) -> None:
    status, body, _ = run(
        h,
        """function main(){
  var stacks = []
  var probes = [function(){ c.Redirect(200, '/x') }, function(){ uuid(1, 2, 3, 4) },
                function(){ get_template('no such template') }, function(){ null.x }]
  for (var i = 0; i < probes.length; i++) {
    try { probes[i]() } catch (e) { stacks.push(String(e.message) + ' ' + String(e.stack)) }
  }
  c.JSON(200, stacks)
}""",
    )
    assert status == 200 and len(body) == 4
    for text in body:
        assert ".py" not in text and "Traceback" not in text and "/work" not in text, text


# --- traps on values handed to host functions ----------------------------------------------
@pytest.mark.parametrize(
    "code",
    [
        "function main(){ c.JSON(200, {get x(){ while (true) {} }}) }",
        "function main(){ c.String(200, {toString(){ while (true) {} }}) }",
        "function main(){ c.SetHeader({toString(){ while (true) {} }}, 'v') }",
        "function main(){ c.JSON(200, new Proxy({}, {ownKeys(){ while (true) {} }})) }",
        "function main(){ set_session('s', 'k', {valueOf(){ while (true) {} }, toJSON(){ while (true) {} }}) }",
    ],
)
def test_traps_in_arguments_are_cut_at_the_time_limit(h: Harness, code: str) -> None:
    # Values are copied without calling user getters where possible (a Proxy becomes
    # "[Proxy]"); where a trap does run, the step's time limit cuts it.
    status, body, elapsed = run(h, code)
    assert status in (200, 408, 500), body
    assert elapsed < 1.8


def test_host_objects_cannot_be_rewired(h: Harness) -> None:
    out = blocked(
        h,
        """
  try { c.JSON = function(){} } catch (e) {}
  try { Object.defineProperty(c, 'JSON', {value: 1}) } catch (e) {}
  try { JSON.stringify = function(){ return 'evil' } } catch (e) {}
  try { Math.random = function(){ return 4 } } catch (e) {}
  try { Object.defineProperty(globalThis, 'payload', {value: 1}) } catch (e) {}
  return typeof c.JSON + ',' + JSON.stringify({a: 1}) + ',' + (Math.random() < 1)""",
    )
    assert out == 'ran: function,{"a":1},true'


def test_prototype_pollution_does_not_reach_next_request(h: Harness) -> None:
    blocked(
        h,
        "Object.prototype.polluted = 1; Array.prototype.evil = 1; String.prototype.x = 1; return 1",
    )
    assert blocked(h, "return [({}).polluted, [].evil, ''.x].join('|')") == "ran: ||"


# --- resource exhaustion ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "statuses"),
    [
        ("function main(){ while (true) {} }", {408}),
        ("function main(){ for (;;) { Math.sqrt(2) } }", {408}),
        ("async function main(){ await null; while (true) {} }", {408}),
        ("function main(){ for (;;) Promise.resolve().then(function(){}) }", {408, 500}),
        # One job at a time, but the engine may reach its heap limit before the time limit.
        ("function main(){ function f(){ Promise.resolve().then(f) } f() }", {408, 500}),
        ("async function main(){ for (;;) await null }", {408}),
        ("function main(){ (async function(){ for (;;) await null })() }", {408}),
        ("function main(){ function f(){ f() } f() }", {500}),
        (
            "function main(){ var o = {}; Object.defineProperty(o, 'x', {get: function(){ return this.x }}); o.x }",
            {500},
        ),
        (
            "function main(){ var a = []; while (true) a.push(new Array(100000).fill(1)) }",
            {500, 408},
        ),
        ("function main(){ var s = 'x'; while (true) s += s }", {500}),
        (
            "function main(){ var m = new Map(); for (var i = 0; ; i++) m.set(i, {i: i}) }",
            {500, 408},
        ),
        ("function main(){ var a = []; for (;;) a.push(new Float64Array(1000000)) }", {500}),
        ("function main(){ new Uint8Array(2 ** 31) }", {500}),
        ("function main(){ /^(a+)+$/.test('a'.repeat(40) + 'b') }", {408}),
        ("function main(){ /(x+x+)+y/.test('x'.repeat(5000)) }", {408}),
        ("function main(){ var x = 3n ** 50000000n }", {500}),
        ("function main(){ var x = 3n; for (;;) x = x * x }", {500}),
        ("function main(){ 'ab'.repeat(2 ** 29) }", {500}),
        ("function main(){ ('a'.repeat(2 ** 24) + 'b').indexOf('a'.repeat(4096) + 'b') }", {500}),
        ("function main(){ ('ab'.repeat(2 ** 23)).lastIndexOf('ba'.repeat(1024) + 'x') }", {500}),
        ("function main(){ 'ab'.repeat(2 ** 24).replaceAll('a', 'cc') }", {500}),
        ("function main(){ JSON.parse('['.repeat(100000) + ']'.repeat(100000)) }", {500}),
        (
            "function main(){ var o = {}; for (var i = 0; i < 100000; i++) o = {a: o}; JSON.stringify(o) }",
            {500},
        ),
        ("function main(){ sleep(1e9) }", {500}),
        ("function main(){ for (;;) { try { sleep(150) } catch (e) {} } }", {408}),
        ("function main(){ for (;;) uuid() }", {500}),
        ("function main(){ c.String(200, 'x'.repeat(2000000)) }", {500}),
    ],
)
def test_limits_end_the_run_in_time(h: Harness, code: str, statuses: set[int]) -> None:
    status, body, elapsed = run(h, code)
    assert status in statuses, (status, body)
    assert elapsed < 3.0, f"took {elapsed:.2f}s"
    if status == 408:
        assert body["message"].startswith("Script execution exceeded resource limits")
    elif statuses == {408, 500}:  # the other limit such a flood can meet first
        assert "memory limit" in body["error"], body
    assert body.get("node") == "a"


def test_memory_limit_is_named(h: Harness) -> None:
    status, body, _ = run(
        h, "function main(){ var a = []; for (;;) a.push(new Float64Array(1000000)) }"
    )
    assert status == 500 and "memory" in str(body).lower()


def test_limit_messages_name_the_limit(h: Harness) -> None:
    _, body, _ = run(h, "function main(){ for (;;) uuid() }")
    assert "limits.max_host_calls" in body["error"]
    _, body, _ = run(h, "function main(){ c.String(200, 'x'.repeat(2000000)) }")
    assert "limits.max_response_bytes" in body["message"]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("function main(){ for (;;) {} }", "time"),
        ("function main(){ var a = []; for (;;) a.push(new Float64Array(1000000)) }", "memory"),
        ("function main(){ for (;;) uuid() }", "host_calls"),
        ("function main(){ c.String(200, 'x'.repeat(2000000)) }", "response_bytes"),
        ("function main(){ (function f(){ f() })() }", "stack"),
        ("function main(){ 'ab'.repeat(2 ** 24).replaceAll('a', 'cc') }", "native_operation"),
        ("function main(){ throw new Error('the script gave up') }", None),
        # A limit the script caught is not the error the run ended on.
        (
            "function main(){ try { for (;;) uuid() } catch (e) {} throw new Error('own') }",
            None,
        ),
    ],
)
def test_the_limit_a_run_hit_is_a_typed_attribute_of_its_error(
    h: Harness, code: str, kind: str | None
) -> None:
    h.serve(app_doc(s=starter("s", "/x", "a"), a=js("a", code)), "hostile")
    execution = h.runtime.handle_sync(Request("GET", "/x"))
    assert isinstance(execution, Execution)
    assert execution.error is not None
    assert execution.error.limit == kind
    assert limit_of(execution.error) == kind
    assert h.request("GET", "/x").limit == (kind or "")


def test_the_step_limit_is_typed_too(h: Harness) -> None:
    doc = app_doc(
        s=starter("s", "/loop", "a"),
        a=js("a", "function main(){ next = 'output_1' }", output_1="a"),
    )
    h.serve(doc, "loop")
    execution = h.runtime.handle_sync(Request("GET", "/loop"))
    assert isinstance(execution, Execution)
    assert execution.error is not None
    assert execution.error.limit == "steps"


def test_same_runtime_still_answers_good_requests(h: Harness) -> None:
    code = "function main(){ var s = 0; for (var i = 0; i < 1000; i++) s += i; c.JSON(200, {s: s, clean: typeof leaked === 'undefined'}) }"
    for _ in range(3):
        status, body, _ = run(h, code)
        assert (status, body) == (200, {"s": 499500, "clean": True})


# --- the watchdog, for what no interrupt reaches -------------------------------------------
def test_watchdog_contains_a_step_stuck_in_native_code(tmp_path: Path) -> None:
    import threading

    from nflow.jsapi import HostTable

    blocking = HostTable()

    @blocking.function("stuck_native_call")
    def stuck(ctx: Any) -> None:
        time.sleep(1.5)  # stands in for native code the interrupt cannot stop

    fired: list[str] = []
    harness = Harness(
        f"sqlite+aiosqlite:///{tmp_path / 'w.db'}",
        tmp_path,
        toml="[limits]\nstep_timeout_seconds = 0.2\n",
    )
    harness.run(harness.runtime.close())
    from nflow import Runtime

    runtime = Runtime(
        harness.runtime.config,
        database_url=harness.runtime.database_url,
        hosts=[blocking],
        watchdog={"grace": 0.3, "interval": 0.05, "on_stuck": fired.append},
    )
    harness.runtime = runtime
    harness.run(runtime.open())
    try:
        harness.serve(
            app_doc(s=starter("s", "/x", "a"), a=js("a", "function main(){ stuck_native_call() }")),
            "stuck",
        )
        done = threading.Event()
        result: dict[str, Any] = {}

        def call() -> None:
            from nflow._http import Request

            result["execution"] = runtime.handle_sync(Request("GET", "/x"))
            done.set()

        threading.Thread(target=call).start()
        assert done.wait(5)
        assert fired and "past its time limit" in fired[0] and "node a" in fired[0]
    finally:
        harness.close()
