"""Compiled flows: chains of js nodes run in one entry into the sandbox and behave exactly as
the same nodes run one by one (``[vm_pool] compiled_flows = false``): responses, routing,
payloads, form session, errors and limits naming the node, the node trace and the history."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from harness import COMPAT, SUPPORT, Browser, Harness, app_doc, js, parse_form, starter
from nflow import Request
from nflow.engine import Execution

MakeHarness = Callable[..., Harness]
PER_NODE = "[vm_pool]\ncompiled_flows = false\n"
# A run the history records in full runs node by node: entry counts need it off.
NO_HISTORY = "[history]\nmode = 'off'\n"


@pytest.fixture
def make(tmp_path: Path) -> Iterator[MakeHarness]:
    made: list[Harness] = []

    def factory(
        *apps: Path | dict[str, Any],
        support: tuple[Path, ...] = (),
        toml: str = "",
        compiled: bool = True,
    ) -> Harness:
        where = tmp_path / f"h{len(made)}"
        where.mkdir()
        harness = Harness(
            f"sqlite+aiosqlite:///{where}/db.sqlite",
            where,
            apps=apps,
            support=support,
            toml=toml + ("" if compiled else PER_NODE),
        )
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        harness.close()


def traced(h: Harness) -> list[Execution]:
    """Keep every execution the harness's engine runs for a request (the engine's own return
    value); a forked branch runs in the background, whenever its thread gets to it."""
    runs: list[Execution] = []
    engine = h.runtime.engine
    real = engine.run

    def run(**kwargs: Any) -> Execution:
        execution = real(**kwargs)
        if not kwargs.get("isolated"):
            runs.append(execution)
        return execution

    engine.run = run  # type: ignore[method-assign]
    return runs


def steps(execution: Execution) -> list[tuple[str, str, str, str]]:
    return [(t.node, t.type, t.next, t.error) for t in execution.trace]


def entries(h: Harness) -> int:
    return h.runtime.engine.vms.entries()


def chain(*codes: str, **extra: dict[str, Any]) -> dict[str, Any]:
    """Starter /t, then js nodes n1..nN in a line, each running its code."""
    nodes: dict[str, Any] = {"s": starter("s", "/t", "n1")}
    for i, code in enumerate(codes, 1):
        nxt = f"n{i + 1}" if i < len(codes) else None
        nodes[f"n{i}"] = js(f"n{i}", code, output_1=nxt)
    nodes.update(extra)
    return app_doc(**nodes)


# the benchmark chain ---------------------------------------------------------------------
TEN_LAST = "function main(){ payload.n = (payload.n || 0) + 1; c.JSON(200, {n: payload.n}); }"


def test_ten_nodes_run_in_one_entry_with_a_trace_entry_each(make: MakeHarness) -> None:
    doc = chain(*(["function main(){ payload.n = (payload.n || 0) + 1; }"] * 9), TEN_LAST)
    compiled = make(doc, toml=NO_HISTORY)
    per_node = make(doc, toml=NO_HISTORY, compiled=False)
    runs_c, runs_p = traced(compiled), traced(per_node)
    before = entries(compiled), entries(per_node)
    rc, rp = compiled.request("GET", "/t"), per_node.request("GET", "/t")
    assert (rc.status, rc.body) == (rp.status, rp.body) == (200, b'{"n":10}\n')
    assert entries(compiled) - before[0] == 1
    assert entries(per_node) - before[1] == 10
    assert steps(runs_c[0]) == steps(runs_p[0])
    assert [t.node for t in runs_c[0].trace] == [f"n{i}" for i in range(1, 11)]
    assert all(t.duration_ms >= 0 for t in runs_c[0].trace)


@pytest.mark.parametrize("history", ["", NO_HISTORY])
def test_each_node_gets_a_payload_of_its_own(make: MakeHarness, history: str) -> None:
    # A node changing an object it was handed changes neither the form session's copy
    # (which the next node gets back) nor the one the node before it left there: an
    # object made by a node (o), and one the session held from the start (k, a repeated
    # query field), beside strings and numbers handed from node to node.
    doc = chain(
        "function main(){ payload.o = {a: 1}; payload.s = 'x'; payload.n = 1; }",
        "function main(){ payload.o.a = 2; delete payload.o; payload.k.push('3');"
        " payload.n += 1; payload.s += 'y'; }",
        "function main(){ payload.k.push('4'); delete payload.k; payload.n += 1; }",
        "function main(){ c.JSON(200, payload); }",
    )
    compiled = make(doc, toml=history)
    per_node = make(doc, toml=history, compiled=False)
    rc, rp = compiled.request("GET", "/t?k=1&k=2"), per_node.request("GET", "/t?k=1&k=2")
    assert (rc.status, rc.body) == (rp.status, rp.body)
    assert rc.status == 200
    assert orjson.loads(rc.body) == {"o": {"a": 1}, "s": "xy", "n": 3, "k": ["1", "2", "3"]}


def test_runs_outside_the_history_sample_go_through_chains(make: MakeHarness) -> None:
    doc = chain(*(["function main(){ payload.n = (payload.n || 0) + 1; }"] * 9), TEN_LAST)
    outside = make(doc, toml="[history]\nmode = 'sampled'\nsample_rate = 0.0\n")
    every = make(doc, toml="[history]\nmode = 'all'\n")
    runs_o, runs_e = traced(outside), traced(every)
    before = entries(outside), entries(every)
    ro, re_ = outside.request("GET", "/t"), every.request("GET", "/t")
    assert (ro.status, ro.body) == (re_.status, re_.body) == (200, b'{"n":10}\n')
    # Outside the sample: one entry, and nothing built for a run that succeeded.
    assert entries(outside) - before[0] == 1
    assert runs_o[0].record is None
    # A run in the sample is recorded node by node, as before.
    assert entries(every) - before[1] == 10
    record = runs_e[0].record
    assert record is not None and len(record.steps) == 10
    assert steps(runs_o[0]) == steps(runs_e[0])


# routing, payload and the form session ---------------------------------------------------
BRANCHING = chain(
    # the form's fields are in the payload; a node that drops a key gets it back from the form
    "function main(){ payload.seen = [payload.a || null]; delete payload.a; }",
    "function main(){ payload.seen.push(payload.a || null);"
    " next = payload.a === 'x' ? 'output_2' : 'output_1'; }",
    "function main(){ c.JSON(200, {branch: 'one', p: payload, prev: prev_box, box: current_box}); }",
    n4=js(
        "n4",
        "function main(){ payload.n4 = true; if (payload.stop) { payload.break = true;"
        " c.String(200, 'paused'); } }",
        output_1="n5",
    ),
    n5=js("n5", "function main(){ c.JSON(200, {branch: 'two', p: payload, prev: prev_box}); }"),
)
BRANCHING["drawflow"]["Home"]["data"]["n2"]["outputs"]["output_2"] = {
    "connections": [{"node": "n4", "output": "input_1"}]
}


@pytest.mark.parametrize(
    "url",
    [
        "/t",
        "/t?a=x",
        "/t?a=y&b=2",
        "/t?a=x&stop=1",
        "/t?a=x&break=false",
        "/t?1=one&a=x",
        # names of Object.prototype's properties are plain payload keys
        "/t?a=x&__proto__=p&constructor=c&propertyIsEnumerable=e&__defineGetter__=g",
    ],
)
def test_routing_payload_and_form_match_per_node_execution(make: MakeHarness, url: str) -> None:
    compiled, per_node = make(BRANCHING), make(BRANCHING, compiled=False)
    runs_c, runs_p = traced(compiled), traced(per_node)
    rc, rp = compiled.request("GET", url), per_node.request("GET", url)
    assert (rc.status, rc.body) == (rp.status, rp.body)
    assert rc.status == 200
    assert steps(runs_c[0]) == steps(runs_p[0])
    assert runs_c[0].suspended == runs_p[0].suspended


def test_a_suspended_wizard_resumes_alike(make: MakeHarness) -> None:
    compiled, per_node = make(BRANCHING), make(BRANCHING, compiled=False)
    bc, bp = Browser(compiled), Browser(per_node)
    for method, url, form in (("GET", "/t?a=x&stop=1", None), ("POST", "/t", {"stop": ""})):
        if method == "GET":
            rc, rp = bc.get(url), bp.get(url)
        else:
            rc, rp = bc.post(url, form=form), bp.post(url, form=form)
        assert (rc.status, rc.body) == (rp.status, rp.body)


# errors and limits name the node ---------------------------------------------------------
FAILING = {
    "error": "function main(){\n  let x = 1;\n  throw new Error('boom ' + payload.n);\n}",
    "timeout": "function main(){\n  while (true) {}\n}",
    "memory": "function main(){\n  let a = []; while (true) a.push(new Array(1e6).fill(1));\n}",
    "host": "function main(){\n  for (let i = 0; i < 100; i++) c.SetHeader('x-' + i, 'v');\n}",
}
LIMITS = (
    "[limits]\nstep_timeout_seconds = 0.3\nmax_host_calls = 20\n[vm_pool]\nmax_memory_mb = 48\n"
)


@pytest.mark.parametrize("kind", sorted(FAILING))
def test_a_failing_middle_node_is_named_as_when_run_alone(make: MakeHarness, kind: str) -> None:
    doc = chain(
        "function main(){ payload.n = 1; console.log('first'); }",
        "function main(){ payload.n += 1; }",
        FAILING[kind],
        "function main(){ c.JSON(200, {never: true}); }",
    )
    compiled = make(doc, toml=LIMITS)
    per_node = make(doc, toml=LIMITS.replace("[vm_pool]\n", PER_NODE))
    runs_c, runs_p = traced(compiled), traced(per_node)
    rc, rp = compiled.request("GET", "/t"), per_node.request("GET", "/t")
    assert rc.status == rp.status
    assert rc.status in (408, 500)
    assert rc.json() == rp.json()
    body = rc.json()
    assert isinstance(body, dict)
    assert body["node"] == "n3"
    if kind == "error":
        assert body["line"] == 3
        assert "boom 2" in body["message"]
    assert steps(runs_c[0]) == steps(runs_p[0])
    assert [t.node for t in runs_c[0].trace] == ["n1", "n2", "n3"]
    assert runs_c[0].trace[-1].error
    # the runtime serves the next request as the first
    again = compiled.request("GET", "/t")
    assert (again.status, again.json()) == (rc.status, body)


def test_console_lines_and_host_calls_name_the_node_that_made_them(
    make: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    doc = chain(
        "function main(){ payload.a = 1; }",
        "function main(){ console.log('from two'); }",
        "function main(){ console.warn('from three'); c.JSON(200, {}); }",
    )
    h = make(doc)
    with caplog.at_level(logging.INFO, logger="nflow.js"):
        assert h.request("GET", "/t").status == 200
    nodes = {
        r.getMessage(): getattr(r, "node", None) for r in caplog.records if r.name == "nflow.js"
    }
    assert nodes == {"console.log: from two": "n2", "console.warn: from three": "n3"}


# what makes nodes run one by one ---------------------------------------------------------
def test_async_nodes_and_debug_sessions_run_node_by_node(make: MakeHarness) -> None:
    doc = chain(
        "function main(){ payload.a = 1; }",
        "async function main(){ payload.b = await Promise.resolve(2); }",
        "function main(){ payload.c = 3; }",
        "function main(){ c.JSON(200, payload); }",
    )
    h = make(doc, toml=NO_HISTORY)
    before = entries(h)
    r = h.request("GET", "/t")
    assert (r.status, r.json()) == (200, {"a": 1, "b": 2, "c": 3})
    # n1 alone (its successor is async), n2 alone, then n3 and n4 together
    assert entries(h) - before == 3


def test_a_run_can_ask_for_per_node_execution(make: MakeHarness) -> None:
    doc = chain("function main(){ payload.a = 1; }", "function main(){ c.JSON(200, payload); }")
    h = make(doc, toml=NO_HISTORY)
    engine = h.runtime.engine
    playbook = h.runtime.router.playbooks[0]
    before = entries(h)
    execution = engine.run(
        playbook=playbook,
        start="n1",
        request=Request.from_url("GET", "/t"),
        endpoint="/t",
        per_node=True,
    )
    assert execution.response.status == 200
    assert entries(h) - before == 2


# history: a failed run kept from its trace -----------------------------------------------
def test_history_of_a_failed_chain_matches_per_node(make: MakeHarness) -> None:
    doc = chain(
        "function main(){ payload.a = uuid(); payload.t = Date.now(); console.log('a'); }",
        "function main(){ payload.b = 2; c.SetHeader('X-B', 'b'); }",
        "function main(){ payload.c = Math.random() < 2; payload.h = typeof header; }",
        "function main(){\n  console.warn('c', payload.c);\n  throw new TypeError('bad ' + payload.b);\n}",
        "function main(){ c.JSON(200, payload); }",
    )
    toml = "[history]\nmode = 'sampled'\nsample_rate = 0.0\n"
    records = []
    for compiled in (True, False):
        h = make(doc, toml=toml, compiled=compiled)
        runs = traced(h)
        before = entries(h)
        assert h.request("GET", "/t").status == 500
        assert entries(h) - before == (1 if compiled else 4)
        record = runs[0].record
        assert record is not None
        records.append(
            [
                (
                    s.node_id,
                    s.node_type,
                    s.next,
                    s.error.message if s.error else None,
                    s.error.line if s.error else None,
                    [c.function for c in s.host_calls],
                    s.console,
                    [w["function"] for w in s.writes],
                    sorted(s.payload_before or {}),
                    None if s.payload_after is None else sorted(s.payload_after),
                )
                for s in record.steps
            ]
        )
    assert records[0] == records[1]
    assert [r[0] for r in records[0]] == ["n1", "n2", "n3", "n4"]
    assert records[0][0][5] == ["uuid", "Date.now"]
    assert records[0][2][5] == ["request.value"]
    assert records[0][3][4] == 3


# every compat playbook -------------------------------------------------------------------
# Numbers, ids and hex tokens differ between any two runs (clock, random, uuids).
_NOISE = re.compile(
    rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-fA-F]{16,}"
    rb"|-?\d+(?:\.\d+)?(?:e[+-]?\d+)?"
)
SQLITE = ("modules_app_sqlite.json", "templates_app_sqlite.json")
INITSQL = ("modules_initsql.json", "templates_initsql.json")
COMPAT_APPS: list[tuple[str, tuple[str, ...]]] = [
    ("app_nflow_sqlite_full.json", SQLITE),
    ("app_nflow_runtime_repo_full.json", SQLITE),
    ("app_nflow_initsql_postgres_full.json", INITSQL),
    ("examples_twilio_otp_initsql.json", INITSQL),
    ("examples_login_flow1_validate_token.json", SQLITE),
    ("examples_login_flow21_static_json.json", ()),
    ("examples_login_flow21_static_json_initsql_variant.json", ()),
    ("home_home_auth_multistep_form_wizard.json", SQLITE),
    ("home_pepe11_multistep_form_wizard.json", SQLITE),
    ("legacy/legacy_app1_pepe_hello_2023-06-14.json", ()),
    ("legacy/legacy_app_earliest_2023-03.json", ()),
    ("legacy/legacy_app_file_based_modules_2023-07.json", SQLITE),
    ("legacy/legacy_hopbox_scim_login_2023-03-11.json", SQLITE),
    ("login_logout.json", SQLITE),
    ("login_nflow_login_form.json", SQLITE),
    ("reconstructed/benchmark_httpstart_js_jsonrender_RECONSTRUCTED.json", ()),
]
FORM = {"username": "ana", "password": "ana", "phone": "+5491100000000", "code": "123456"}
WIZARD = {"nombre": "Ana", "cantidad": "1000", "cuotas": "12", "interes": "5"}


def _seen(r: Any, runs: list[Execution]) -> tuple[Any, ...]:
    trace = [steps(e) for e in runs]
    runs.clear()
    location = _NOISE.sub(b"~", r.header("location").encode())
    return r.status, _NOISE.sub(b"~", r.body), location, trace


def _visit(h: Harness, runs: list[Execution]) -> list[tuple[Any, ...]]:
    """Each route: a GET, a form POST, a GET with a query, then three wizard pages."""
    from nflow.passwords import hash_password

    h.store("put_user", "ana", hash_password("ana"))
    browser = Browser(h)
    patterns = sorted({s.pattern for p in h.runtime.router.playbooks for s in p.starters})
    answers = []
    for pattern in patterns:
        url = re.sub(r":\w+|\*", "x", pattern) or "/"
        answers.append(_seen(browser.get(url), runs))
        answers.append(_seen(browser.post(url, form=FORM), runs))
        answers.append(_seen(browser.get(url + "?code=123456&nombre=Ana"), runs))
        for _ in range(3):
            answers.append(_seen(browser.post(url, form=WIZARD), runs))
    return answers


def test_every_compat_playbook_answers_alike_compiled_and_node_by_node(tmp_path: Path) -> None:
    playbooks = {str(p.relative_to(COMPAT)) for p in COMPAT.rglob("*.json")}
    assert {f for f, _ in COMPAT_APPS} == {p for p in playbooks if not p.startswith("support")}
    chained = 0
    for n, (file, support) in enumerate(COMPAT_APPS):
        seen = []
        for compiled in (True, False):
            where = tmp_path / f"{n}-{compiled}"
            where.mkdir()
            h = Harness(
                f"sqlite+aiosqlite:///{where}/db.sqlite",
                where,
                support=(*(SUPPORT / s for s in support), COMPAT / file),
                toml=NO_HISTORY + "[twilio]\nenable = false\n" + ("" if compiled else PER_NODE),
            )
            try:
                runs = traced(h)
                before = entries(h)
                answers = _visit(h, runs)
                seen.append(answers)
                if compiled:
                    nodes = sum(len(t) for a in answers for t in a[3])
                    chained += nodes - (entries(h) - before)
            finally:
                h.close()
        assert seen[0] == seen[1], file
    # nodes did run inside chains: fewer entries into the sandbox than nodes run
    assert chained > 0


WIZARD_FIELDS = {
    "cantidad": "1000",
    "cuotas": "12",
    "interes": "5",
    "valorCuota": "87.5",
    "valorTotal": "1050",
}


def _wizards(h: Harness, runs: list[Execution]) -> list[tuple[Any, ...]]:
    """The form wizard (break, resume, form session, a fork) and the login wizard."""
    from nflow.passwords import hash_password

    h.store("put_user", "ana", hash_password("ana"))
    b = Browser(h)
    seen = [_seen(b.get("/pepe11"), runs)]
    for values in (
        {"nombre": "Ana"},
        {"tipo": "celular", "celular": "555-1234", "mail": ""},
        {"codigo": "0000"},
        {"tipo": "celular", "celular": "555-1234", "mail": ""},
        {"codigo": "1111"},
        WIZARD_FIELDS,
    ):
        seen.append(_seen(b.submit(values), runs))
    b = Browser(h)
    seen.append(_seen(b.get("/home"), runs))
    form = parse_form(b.get("/nflow_login").text)
    runs.clear()
    for user, password in (("mallory", "x"), ("ana", "ana")):
        page = b.post("/nflow_login", form={**form.hidden, "username": user, "password": password})
        seen.append(_seen(page, runs))
    seen.append(_seen(b.get("/home"), runs))
    seen.append(_seen(b.submit({"nombre": "Ana"}), runs))
    seen.append(_seen(b.get("/logout"), runs))
    return seen


def test_form_and_login_wizards_go_alike_compiled_and_node_by_node(tmp_path: Path) -> None:
    seen = []
    for compiled in (True, False):
        where = tmp_path / str(compiled)
        where.mkdir()
        h = Harness(
            f"sqlite+aiosqlite:///{where}/db.sqlite",
            where,
            apps=(
                COMPAT / "home_pepe11_multistep_form_wizard.json",
                COMPAT / "home_home_auth_multistep_form_wizard.json",
                COMPAT / "login_nflow_login_form.json",
                COMPAT / "login_logout.json",
            ),
            support=tuple(SUPPORT / s for s in SQLITE),
            toml=NO_HISTORY + ("" if compiled else PER_NODE),
        )
        try:
            runs = traced(h)
            before = entries(h)
            seen.append(_wizards(h, runs))
            if compiled:
                nodes = sum(len(t) for a in seen[0] for t in a[3])
                assert entries(h) - before < nodes
        finally:
            h.close()
    assert seen[0] == seen[1]
    # the wizard reached its end: its last page is JSON with the fields
    assert seen[0][6][0] == 200 and b"paso_codigo" in seen[0][6][1]


# warm runtimes -----------------------------------------------------------------------------
def _two_apps(tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    small = chain(
        f"function main(){{ payload.tag = '{tag}'; }}",
        "function main(){ c.JSON(200, payload); }",
    )
    small["nflow_limits"] = {"max_memory_mb": 32}
    big = app_doc(
        s=starter("s", "/big", "b1"),
        b1=js("b1", f"function main(){{ payload.tag = '{tag}'; }}", output_1="b2"),
        b2=js("b2", "function main(){ c.JSON(200, payload); }"),
    )
    return small, big


def test_runtimes_are_warm_per_heap_limit_at_start_and_after_a_reload(
    make: MakeHarness, tmp_path: Path
) -> None:
    import asyncio

    import orjson

    small, big = _two_apps("v1")
    h = make(small, big, toml=NO_HISTORY)
    engine = h.runtime.engine
    for version in ("v1", "v2"):
        catalog = h.runtime.catalog
        assert h.runtime.warmed == 2, "one runtime per heap limit: 32 MB and the server's"
        for playbook in catalog.playbooks:
            memory = engine.services.limits_for(playbook).max_memory_mb
            vm = engine.vms.get(memory)
            assert vm.has_flow(catalog.flows[playbook.digest].key), (version, playbook.name)
        created = engine.vms.created
        before = entries(h)
        assert h.request("GET", "/t").json() == {"tag": version}
        assert h.request("GET", "/big").json() == {"tag": version}
        assert engine.vms.created == created, "no runtime was made on the request path"
        assert entries(h) - before == 2
        # a reload with new versions of both apps
        small, big = _two_apps("v2")
        for i, doc in enumerate((small, big)):
            (h.tmp_path / f"app{i}.json").write_bytes(orjson.dumps(doc))
        h.run(h.runtime.reload())
        h.run(asyncio.sleep(0.05))  # the warm-up runs on the loop, after the swap


def test_a_recorded_run_keeping_much_payload_goes_on_node_by_node(make: MakeHarness) -> None:
    # a and b loop twelve times with a 600,000-character payload, then c fails: past what
    # a chain may keep in the JS heap for the recording, the rest runs node by node.
    doc = app_doc(
        s=starter("s", "/t", "a"),
        a=js(
            "a",
            "function main(){ payload.big = payload.big || 'x'.repeat(600000);"
            " payload.n = (payload.n || 0) + 1 }",
            output_1="b",
        ),
        b=js("b", "function main(){ if (payload.n >= 12) next = 'output_2' }", output_2="c"),
        c=js("c", "function main(){ throw new Error('stop at ' + payload.n) }"),
    )
    doc["drawflow"]["Home"]["data"]["b"]["outputs"]["output_1"] = {
        "connections": [{"node": "a", "output": "input_1"}]
    }
    h = make(doc, toml="[history]\nmode = 'sampled'\nsample_rate = 0.0\n")
    runs = traced(h)
    before = entries(h)
    assert h.request("GET", "/t").status == 500
    # the first chain of sixteen nodes, then the other nine one by one
    assert entries(h) - before == 10
    record = runs[0].record
    assert record is not None
    assert [s.node_id for s in record.steps] == ["a", "b"] * 12 + ["c"]
    assert [s.payload_before.get("n") for s in record.steps] == [
        None,
        *[n for n in range(1, 12) for _ in (0, 1)],
        12,
        12,
    ]
    assert all(len(s.payload_after["big"]) == 600_000 for s in record.steps[:-1])
    assert record.steps[-1].error is not None
    assert "stop at 12" in record.steps[-1].error.message
