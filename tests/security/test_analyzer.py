"""The static analyzer: each rule fires on what it names and stays quiet on look-alikes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nflow.config import SecurityConfig
from nflow.playbook import parse_playbook
from nflow.security import (
    RULES,
    AnalyzerRules,
    Finding,
    ScriptAnalyzer,
    analyze,
    blocks,
    check_app,
    playbook_sources,
)

COMPAT = Path(__file__).resolve().parents[2].parent / "shared" / "compat" / "playbooks"


def rules_of(source: str, **kw: object) -> set[tuple[str, str]]:
    return {(f.rule, f.severity) for f in analyze(source, rules=AnalyzerRules(**kw))}  # type: ignore[arg-type]


def names(source: str) -> set[str]:
    return {f.rule for f in analyze(source)}


# --- one positive and one negative case per rule ---------------------------------------------

POSITIVE: list[tuple[str, str, str]] = [
    ("eval_usage", "high", 'function main(){ eval("1+1") }'),
    ("eval_usage", "high", "const e = (0, eval); e('x')"),
    ("eval_usage", "high", 'globalThis["ev" + "al"]("x")'),
    ("eval_usage", "high", 'setTimeout("payload.x = 1", 10)'),
    ("eval_usage", "high", "const vm = require('vm')"),
    ("function_constructor", "high", 'new Function("return this")()'),
    ("function_constructor", "high", 'Function("return 1")()'),
    ("function_constructor", "high", 'Reflect.construct(Function, ["return this"])'),
    ("function_constructor", "high", "const F = globalThis.Function; F('x')"),
    ("file_system_access", "high", 'const fs = require("fs")'),
    ("file_system_access", "high", "require('node:fs/promises')"),
    ("child_process", "high", 'require("child_process").exec("ls")'),
    ("child_process", "high", 'const { spawn } = x; spawn("sh")'),
    ("child_process", "high", "process.binding('spawn_sync')"),
    ("network_access", "medium", "const http = require('https')"),
    ("network_access", "medium", "require('net')"),
    ("infinite_loop", "medium", "while (true) { x++ }"),
    ("infinite_loop", "medium", "for (;;) { arr.forEach(v => { return v }) }"),
    ("infinite_loop", "medium", "do { y() } while (1)"),
    ("infinite_loop", "medium", "while (!0) { for (;;) { break } }"),
    ("global_assignment", "medium", "globalThis.leak = payload"),
    ("global_assignment", "medium", 'window["x"] = 1'),
    ("global_assignment", "medium", "process.foo = 1"),
    ("global_assignment", "medium", "Object.defineProperty(globalThis, 'x', {value: 1})"),
    ("dynamic_require", "medium", "require(name)"),
    ("dynamic_require", "medium", "require(`mod_${n}`)"),
    ("dangerous_regex", "low", "const r = /^(a+)+$/"),
    ("dangerous_regex", "low", 'new RegExp("(\\\\w+\\\\s?)*$")'),
    ("dangerous_regex", "low", "const r = /(?:x*y)*z/"),
    ("dangerous_regex", "low", "new RegExp(userInput)"),
    ("buffer_constructor", "low", "new Buffer(10)"),
    ("constructor_chain", "high", 'x.constructor.constructor("return this")()'),
    ("constructor_chain", "high", '""["constructor"]["constructor"]("return 1")()'),
    ("constructor_chain", "high", "Function.prototype.constructor"),
    ("constructor_chain", "high", "(async () => {}).constructor('return 1')"),
    ("constructor_chain", "high", "Object.getPrototypeOf(async function(){}).constructor"),
    ("constructor_chain", "high", "[].fill.constructor('return this')()"),
    ("constructor_chain", "medium", 'obj["const" + "ructor"]'),
    ("proto_access", "medium", "payload.__proto__.polluted = true"),
    ("proto_access", "medium", "const o = { __proto__: evil }"),
    ("proto_access", "medium", "Object.prototype.polluted = 1"),
    ("proto_access", "high", "Object.setPrototypeOf(globalThis, null)"),
    ("dynamic_import", "high", 'import("fs").then(m => m)'),
    ("with_statement", "medium", "with (payload) { x = 1 }"),
]

NEGATIVE: list[tuple[str, str]] = [
    ("eval_usage", 'calc.eval(x); const s = "eval(1)"; // eval(2)\nsetTimeout(fn, 10)'),
    ("function_constructor", 'if (f instanceof Function || typeof Function === "function") {}'),
    ("function_constructor", "const t = Function.prototype.toString; x.constructor === Function"),
    ("file_system_access", 'const s = "require(\'fs\')"; const fsx = require("fsx")'),
    ("child_process", "const m = /a(b)/.exec(s); re.exec(str); function spawn(x){}; spawn(1)"),
    ("network_access", "const u = http_get(url); require('url')"),
    ("infinite_loop", "while (true) { if (done) break }"),
    ("infinite_loop", "for (;;) { if (x) return 1 }"),
    ("infinite_loop", "while (i < 10) { i++ }"),
    ("infinite_loop", "outer: for (;;) { for (;;) { break outer } }"),
    ("infinite_loop", "function* g(){ while (true) { yield 1 } }"),
    ("infinite_loop", "while (true) { throw new Error('x') }"),
    ("global_assignment", 'payload.x = 1; myglobal.y = 2; const w = "window.x = 1"'),
    ("dynamic_require", 'require("crypto"); require(`querystring`)'),
    ("dangerous_regex", "const r = /^(\\d+)-(\\w+)$/; const c = /[(a+)+]/; new RegExp('a+b')"),
    ("buffer_constructor", 'Buffer.from("abc")'),
    ("constructor_chain", "this.constructor.name; new this.constructor(1); x.constructor === Y"),
    ("proto_access", "const p = Object.getPrototypeOf(x); class A extends B {}"),
    ("dynamic_import", "const important = 1; importFn()"),
    ("with_statement", "const withX = 1; withdraw(x)"),
]


@pytest.mark.parametrize(("rule", "severity", "source"), POSITIVE)
def test_rule_fires(rule: str, severity: str, source: str) -> None:
    assert (rule, severity) in rules_of(source), analyze(source)


@pytest.mark.parametrize(("rule", "source"), NEGATIVE)
def test_rule_quiet(rule: str, source: str) -> None:
    assert rule not in names(source), analyze(source)


def test_every_rule_has_a_positive_case() -> None:
    covered = {r for r, _, _ in POSITIVE} | {"script_too_large", "parse_error", "blocked_global"}
    assert covered == set(RULES)


def test_script_too_large() -> None:
    found = analyze("x = 1;\n" * 100, rules=AnalyzerRules(max_script_bytes=50))
    assert [(f.rule, f.severity) for f in found] == [("script_too_large", "high")]
    assert "700 bytes" in found[0].message
    assert analyze("x = 1;", rules=AnalyzerRules(max_script_bytes=50)) == []


def test_blocked_globals_are_configurable() -> None:
    assert ("blocked_global", "high") in rules_of(
        "Atomics.wait(a, 0, 0)", blocked_globals=frozenset({"Atomics"})
    )
    assert "blocked_global" not in names("Atomics.wait(a, 0, 0)")


# --- modern syntax, parse failures -----------------------------------------------------------

MODERN = """\
class Cart extends Base {
  #items = [];
  static count = 0;
  get total() { return this.#items.reduce((a, b) => a + (b?.price ?? 0), 0); }
  async *stream() { for await (const x of this.#items) yield x; }
  static { Cart.count++; }
}
const f = async (...args) => {
  const { a, b: [c, ...d] = [], ...rest } = args[0] ?? {};
  const r = await fetchLike?.(`/u/${a}?q=${encodeURIComponent(c)}`);
  return { ...rest, r, big: 10n ** 3n, n: 1_000_000 };
};
let x = null;
x ??= 1; x ||= 2; x &&= 3;
label: { if (x) break label; }
const re = /(?<year>\\d{4})-(?<m>\\d{2})/u;
function main() { payload.total = new Cart().total; next = "output_1"; }
"""


def test_modern_syntax_parses_cleanly() -> None:
    assert analyze(MODERN) == []


def test_unparsable_script_warns_and_never_blocks() -> None:
    source = "function main() {\n  var x = ;\n}\neval(payload.code)"
    found = analyze(source)
    parse = [f for f in found if f.rule == "parse_error"]
    assert parse and parse[0].severity == "low" and "could not parse" in parse[0].message
    assert parse[0].line == 2
    evals = [f for f in found if f.rule == "eval_usage"]
    assert evals and evals[0].severity == "medium"
    assert not blocks(found, AnalyzerRules())


def test_analyzer_never_raises_on_garbage() -> None:
    for source in ["\x00\xff\ud800", "(" * 5000, "`${" * 2000, "/(/", ""]:
        for finding in analyze(source):
            assert finding.severity != "high"


# --- positions -------------------------------------------------------------------------------


def test_line_and_column_and_snippet() -> None:
    source = "// header\nfunction main() {\n  const é = 1;\n  é + eval(payload.x)\n}\n"
    [finding] = analyze(source)
    assert (finding.rule, finding.line, finding.column) == ("eval_usage", 4, 7)
    assert finding.snippet == "é + eval(payload.x)"
    assert "line 4:7" in str(finding)


def test_findings_are_in_source_order() -> None:
    found = analyze("with (o) {}\nwhile (true) {}\nnew Buffer(1)\n")
    assert [(f.line, f.rule) for f in found] == [
        (1, "with_statement"),
        (2, "infinite_loop"),
        (3, "buffer_constructor"),
    ]


# --- configuration ---------------------------------------------------------------------------


def test_from_config() -> None:
    config = SecurityConfig(
        enable_static_analysis=True,
        block_on_high_severity=False,
        allowed_patterns=("with_statement", r"legacyEval\("),
        cache_ttl_minutes=2,
    )
    rules = AnalyzerRules.from_config(config, max_script_bytes=1000)
    assert rules.mode == "warn" and rules.max_script_bytes == 1000
    assert rules.cache_ttl_seconds == 120
    assert analyze("with (o) {}", rules=rules) == []
    assert analyze("eval(1); legacyEval(2)", rules=rules) == []  # the snippet matches
    found = analyze("eval(1)", rules=rules)
    assert found and not rules.blocks(found)
    off = AnalyzerRules.from_config(SecurityConfig(enable_static_analysis=False))
    assert analyze("eval(1)", rules=off) == []
    assert AnalyzerRules.from_config(SecurityConfig()).mode == "block"


def test_disabled_rules_and_bad_rule_names() -> None:
    assert (
        analyze("with (o) {}", rules=AnalyzerRules(disabled_rules=frozenset({"with_statement"})))
        == []
    )
    with pytest.raises(ValueError, match="unknown analyzer rule"):
        AnalyzerRules(disabled_rules=frozenset({"nope"}))


def test_blocks_only_on_high_in_block_mode() -> None:
    high = analyze("eval(1)")
    medium = analyze("with (o) {}")
    assert blocks(high, AnalyzerRules())
    assert not blocks(medium, AnalyzerRules())
    assert not blocks(high, AnalyzerRules(block_on_high=False))


def test_script_analyzer_caches() -> None:
    analyzer = ScriptAnalyzer(AnalyzerRules(cache_ttl_seconds=60))
    first = analyzer.analyze("eval(1)")
    assert analyzer.analyze("eval(1)") == first
    assert len(analyzer._cache) == 1
    analyzer.clear()
    assert not analyzer._cache
    uncached = ScriptAnalyzer(AnalyzerRules(cache_ttl_seconds=0))
    assert uncached.analyze("eval(1)") == first and not uncached._cache


# --- whole apps ------------------------------------------------------------------------------


def test_check_app_names_the_node_and_makes_problems() -> None:
    found = check_app(
        [
            ("n1", "code", "function main(){}"),
            ("n2", "script", "eval(x)"),
            ("n3", "script", "eval(x)"),
        ]
    )
    assert [(f.node, f.field, f.rule, f.line) for f in found] == [
        ("n2", "script", "eval_usage", 1),
        ("n3", "script", "eval_usage", 1),
    ]
    problem = found[0].to_problem(block=True, tab="Home")
    assert problem.severity == "error" and problem.node == "n2" and problem.line == 1
    assert "eval_usage" in str(problem)
    assert found[0].to_problem(block=False).severity == "warning"


def test_playbook_sources_follow_the_runtime_choice() -> None:
    doc = {
        "drawflow": {
            "Home": {
                "data": {
                    "1": {
                        "id": 1,
                        "name": "starter",
                        "data": {"type": "starter", "urlpattern": "/a", "method": "GET"},
                        "outputs": {"output_1": {"connections": [{"node": "2"}]}},
                    },
                    "2": {
                        "id": 2,
                        "name": "js",
                        "data": {"type": "js", "code": "eval(1)", "script": "m"},
                        "outputs": {"output_1": {"connections": [{"node": "3"}]}},
                    },
                    "3": {
                        "id": 3,
                        "name": "js",
                        "data": {"type": "js", "code": "  ", "script": "m"},
                        "outputs": {},
                    },
                    "4": {
                        "id": 4,
                        "name": "js",
                        "data": {"type": "js", "script": "missing"},
                        "outputs": {},
                    },
                }
            }
        }
    }
    playbook = parse_playbook(doc)
    sources = list(playbook_sources(playbook, {"m": "with (o) {}"}))
    assert sources == [("2", "code", "eval(1)"), ("3", "script", "with (o) {}")]
    rules = {(f.node, f.rule) for f in check_app(sources)}
    assert rules == {("2", "eval_usage"), ("3", "with_statement")}


# --- the compat apps: no false block ---------------------------------------------------------


def _compat_scripts() -> Iterator[tuple[str, str]]:
    for path in sorted(COMPAT.rglob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        name = str(path.relative_to(COMPAT))
        for tab in (doc.get("drawflow") or {}).values():
            for node_id, node in (tab.get("data") or {}).items():
                code = (node.get("data") or {}).get("code")
                if isinstance(code, str):
                    yield f"{name}#{node_id}", code
        if path.name.startswith("modules_"):
            for module in doc["modules"]:
                if isinstance(module.get("code"), str):
                    yield f"{name}#{module['name']}", module["code"]
        if isinstance(doc.get("default_js"), str):
            yield f"{name}#default_js", doc["default_js"]


def test_compat_fixtures_are_there() -> None:
    scripts = list(_compat_scripts())
    assert len(scripts) >= 80
    assert any("#" in n and "modules_" in n for n, _ in scripts)


def test_no_compat_script_is_blocked() -> None:
    rules = AnalyzerRules()
    high: list[tuple[str, Finding]] = []
    for name, source in _compat_scripts():
        found = analyze(source, rules=rules)
        assert not any(f.rule == "parse_error" for f in found), (name, found)
        high.extend((name, f) for f in found if f.severity == "high")
    assert high == []


def test_hostile_shapes_are_analyzed_not_fatal() -> None:
    # Deep nesting and huge repetition must neither crash the analyzer (recursion) nor flood
    # the findings; a quadratic walk here would show as a suite that never finishes.
    nested_loops = analyze("while (true) {" * 2000 + "}" * 2000)
    assert {(f.rule, f.severity) for f in nested_loops} == {("infinite_loop", "medium")}
    assert len(nested_loops) <= 100
    assert analyze("(" * 20_000 + "1" + ")" * 20_000) == []
    assert len(analyze("eval(1);" * 50_000)) == 100  # capped per rule


def test_feature_detection_is_not_a_finding() -> None:
    assert analyze('if (typeof eval === "function" && typeof Function !== "undefined") {}') == []
    assert ("child_process", "high") in rules_of('const cp = require("x"); cp.fork("w.js")')
    assert "child_process" not in names("fork(task)")
