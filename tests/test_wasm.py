"""wasm nodes: WASI command modules run through the engine on real requests.

The modules are WebAssembly text written here (wasmtime compiles it), so nothing needs a C
toolchain; one test runs the committed example binary built from C.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

import nflow
from harness import REPO, Harness, app_doc, js, starter
from nflow.check import check_playbook
from nflow.cli import main
from nflow.engine import Execution
from nflow.playbook import parse_playbook
from nflow.wasm import compile_module, compile_stats

REPLY = "function main(){ c.JSON(200, payload) }"
WASI = '(import "wasi_snapshot_preview1" "{name}" (func ${name} (param {params}) (result i32)))'


def imports(*names: str) -> str:
    params = {
        "fd_read": "i32 i32 i32 i32",
        "fd_write": "i32 i32 i32 i32",
        "path_open": "i32 i32 i32 i32 i32 i64 i64 i32 i32",
        "fd_prestat_get": "i32 i32",
        "environ_sizes_get": "i32 i32",
        "args_sizes_get": "i32 i32",
    }
    return "\n".join(WASI.format(name=n, params=params[n]) for n in names)


def wat_bytes(text: bytes | str) -> str:
    """A WAT string literal of any bytes."""
    data = text.encode() if isinstance(text, str) else text
    return '"' + "".join(f"\\{b:02x}" for b in data) + '"'


# Reads all of stdin, writes it back: the payload goes through unchanged.
ECHO = f"""(module
  {imports("fd_read", "fd_write")}
  (memory (export "memory") 4)
  (func (export "_start") (local $len i32) (local $n i32)
    (block $done
      (loop $more
        (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $len)))
        (i32.store (i32.const 4) (i32.sub (i32.const 200000) (local.get $len)))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $len (i32.add (local.get $len) (local.get $n)))
        (br $more)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def writes(text: str, *, tag: str = "") -> str:
    """A module that writes ``text`` to stdout (``tag`` makes its bytes unique)."""
    data = text.encode()
    return f"""(module
  {imports("fd_write")}
  (memory (export "memory") 1)
  (data (i32.const 64) {wat_bytes(data)})
  (data (i32.const 8192) {wat_bytes(tag)})
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const {len(data)}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


LOOP = '(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))'

# Grows its memory a page at a time until refused, then aborts as C's abort() would.
GROW = """(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))"""

# Writes 64 KiB to stdout over and over until a write fails, then ends normally.
FLOOD = f"""(module
  {imports("fd_write")}
  (memory (export "memory") 2)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 0))
    (i32.store (i32.const 4) (i32.const 65536))
    (loop $l
      (br_if $l (i32.eqz (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))))"""

# Tries the file system and the environment; writes the WASI errno of each attempt and the
# counts of environment variables and arguments, as three-digit strings.
PROBE = f"""(module
  {imports("fd_write", "path_open", "fd_prestat_get", "environ_sizes_get", "args_sizes_get")}
  (memory (export "memory") 1)
  (data (i32.const 100) "/etc/passwd")
  (data (i32.const 200) "{{\\"open\\":\\"000\\",\\"prestat\\":\\"000\\",\\"env\\":\\"000\\",\\"args\\":\\"000\\"}}")
  (func $put3 (param $at i32) (param $v i32)
    (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.div_u (local.get $v) (i32.const 100))))
    (i32.store8 (i32.add (local.get $at) (i32.const 1))
      (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $v) (i32.const 10)) (i32.const 10))))
    (i32.store8 (i32.add (local.get $at) (i32.const 2))
      (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10)))))
  (func (export "_start")
    ;; path_open(dirfd 3, lookup 0, "/etc/passwd", oflags 0, no rights, fdflags 0, &fd)
    (call $put3 (i32.const 209)
      (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 11) (i32.const 0)
        (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 16)))
    (call $put3 (i32.const 225) (call $fd_prestat_get (i32.const 3) (i32.const 16)))
    (drop (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (call $put3 (i32.const 237) (i32.load (i32.const 16)))
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (call $put3 (i32.const 250) (i32.load (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 200))
    (i32.store (i32.const 4) (i32.const 55))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def b64(wat: str) -> str:
    return base64.b64encode(wasmtime.wat2wasm(wat)).decode()


def wasm_node(
    node_id: str, *, outputs: dict[str, str | None] | None = None, **data: Any
) -> dict[str, Any]:
    outs = outputs if outputs is not None else {"output_1": "reply"}
    return {
        "id": node_id,
        "data": {"type": "wasm", "name_box": node_id.upper(), **data},
        "inputs": {},
        "outputs": {
            name: {"connections": [{"node": target, "output": "input_1"}] if target else []}
            for name, target in outs.items()
        },
    }


def one_wasm_app(pattern: str = "/w", **data: Any) -> dict[str, Any]:
    return app_doc(
        s=starter("s", pattern, "w"),
        w=wasm_node("w", **data),
        reply=js("reply", REPLY),
    )


@pytest.fixture
def harness_for(db_url: str, tmp_path: Path) -> Iterator[Any]:
    made: list[Harness] = []

    def make(
        *apps: dict[str, Any], toml: str | None = None, support: tuple[Path, ...] = ()
    ) -> Harness:
        h = Harness(db_url, tmp_path, apps=apps, toml=toml, support=support)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def execute(h: Harness, url: str) -> Execution:
    execution = h.runtime.handle_sync(nflow.Request.from_url("GET", url))
    assert isinstance(execution, Execution)
    return execution


def modules_file(tmp_path: Path, **rows: str) -> Path:
    path = tmp_path / "modules.json"
    path.write_text(
        json.dumps(
            {
                "modules": [
                    {"name": name, "manifest": {"title": name}, "code": code}
                    for name, code in rows.items()
                ]
            }
        )
    )
    return path


# ------------------------------------------------------------------------------------------
# Running modules


def test_payload_goes_through_stdin_and_stdout_unchanged(harness_for: Any) -> None:
    doc = app_doc(
        s=starter("s", "/w", "prep"),
        prep=js(
            "prep",
            "function main(){ payload.nested = {x: [1, 2.5, 'é✓'], t: true, n: null}; }",
            output_1="w",
        ),
        w=wasm_node("w", wat=ECHO),
        reply=js("reply", REPLY),
    )
    h = harness_for(doc)
    response = h.request("GET", "/w?q=tea&many=1&many=2")
    assert response.status == 200, response.text
    assert response.json() == {
        "q": "tea",
        "many": ["1", "2"],
        "nested": {"x": [1, 2.5, "é✓"], "t": True, "n": None},
    }
    execution = execute(h, "/w?q=1")
    assert [(t.node, t.type, t.next) for t in execution.trace] == [
        ("prep", "js", "output_1"),
        ("w", "wasm", "output_1"),
        ("reply", "js", "output_1"),
    ]


def test_next_key_picks_the_output_and_leaves_the_payload(harness_for: Any) -> None:
    def routed(pattern: str, text: str) -> dict[str, Any]:
        return app_doc(
            s=starter("s", pattern, "w"),
            w=wasm_node("w", wat=writes(text), outputs={"output_1": "one", "output_2": "two"}),
            one=js("one", 'function main(){ c.JSON(200, {via: "output_1", p: payload}) }'),
            two=js("two", 'function main(){ c.JSON(202, {via: "output_2", p: payload}) }'),
        )

    h = harness_for(
        routed("/name", '{"next": "output_2", "v": 1}'),
        routed("/number", '{"next": 2, "v": 2}'),
        routed("/default", '{"v": 3}'),
        routed("/bad", '{"next": [2]}'),
        routed("/array", "[1, 2]"),
        routed("/text", "not json"),
    )
    assert h.request("GET", "/name").json() == {"via": "output_2", "p": {"v": 1}}
    assert h.request("GET", "/number").json() == {"via": "output_2", "p": {"v": 2}}
    assert h.request("GET", "/default").json() == {"via": "output_1", "p": {"v": 3}}
    bad = h.request("GET", "/bad")
    assert bad.status == 500
    assert bad.json()["node"] == "w"
    assert 'wrote "next": [2]; expected an output name' in bad.json()["message"]
    array = h.request("GET", "/array").json()
    assert array["message"] == (
        "wasm module of node w (W) wrote a JSON list to stdout; expected the new payload as a "
        "JSON object"
    )
    assert array["type"] == "wasm"
    assert "wrote invalid JSON to stdout" in h.request("GET", "/text").json()["message"]


def test_module_from_the_modules_table_and_base64(harness_for: Any, tmp_path: Path) -> None:
    support = modules_file(tmp_path, echo=b64(ECHO))
    h = harness_for(
        one_wasm_app("/table", module="echo"),
        one_wasm_app("/b64", wasm_b64=b64(writes('{"from": "b64"}'))),
        one_wasm_app("/missing", module="nope"),
        support=(support,),
    )
    assert h.request("GET", "/table?k=v").json() == {"k": "v"}
    assert h.request("GET", "/b64").json() == {"from": "b64"}
    missing = h.request("GET", "/missing")
    assert missing.status == 500
    assert missing.json()["node"] == "w"
    assert missing.json()["message"] == (
        "node w (W) uses module 'nope' is not in the modules table (import it with `nflow import`)"
    )


def test_time_limit_is_408_naming_the_node(harness_for: Any) -> None:
    h = harness_for(one_wasm_app(wat=LOOP), toml="[limits]\nstep_timeout_seconds = 0.2\n")
    response = h.request("GET", "/w")
    assert response.status == 408
    assert response.json() == {
        "message": "Script execution exceeded resource limits: node w (W) ran longer than its "
        "time limit of 0.2s",
        "node": "w",
        "type": "wasm",
    }
    execution = execute(h, "/w")
    assert execution.error is not None and execution.error.limit == "time"
    # The thread that ran it is free again and the module still works for the next request.
    assert h.request("GET", "/w").status == 408


def test_memory_cap_is_500_naming_the_node(harness_for: Any) -> None:
    doc = {**one_wasm_app(wat=GROW), "nflow_limits": {"max_memory_mb": 8}}
    big = {
        **one_wasm_app(
            "/big", wat='(module (memory (export "memory") 200) (func (export "_start")))'
        ),
        "nflow_limits": {"max_memory_mb": 8},
    }
    flood = {**one_wasm_app("/flood", wat=FLOOD), "nflow_limits": {"max_memory_mb": 8}}
    h = harness_for(doc, big, flood)
    response = h.request("GET", "/w")
    assert response.status == 500
    body = response.json()
    assert body["node"] == "w"
    assert body["error"].startswith(
        "memory limit of the wasm module reached in node w (W) (vm_pool.max_memory_mb): "
        "the module trapped: wasm `unreachable` instruction executed"
    )
    assert "linear memory at 8 MiB of its memory cap of 8 MiB" in body["error"]
    execution = execute(h, "/w")
    assert execution.error is not None and execution.error.limit == "memory"
    start = h.request("GET", "/big").json()
    assert start["node"] == "w"
    assert "needs more than its memory cap of 8 MiB to start" in start["error"]
    # What it writes counts too: stdout is refused past the cap, and the run fails.
    flooded = h.request("GET", "/flood")
    assert flooded.status == 500
    assert flooded.json() == {
        "error": "memory limit of the wasm module reached in node w (W) (vm_pool.max_memory_mb): "
        "the module wrote more than its memory cap of 8 MiB",
        "node": "w",
    }


def test_no_file_system_environment_or_arguments(harness_for: Any) -> None:
    h = harness_for(one_wasm_app(wat=PROBE))
    response = h.request("GET", "/w")
    assert response.status == 200, response.text
    # 8 is WASI's EBADF: there is no directory to open a path in, not even a preopened one.
    assert response.json() == {"open": "008", "prestat": "008", "env": "000", "args": "001"}


def test_trap_and_exit_code_are_500_naming_the_node(harness_for: Any) -> None:
    trap = '(module (memory (export "memory") 1) (func $explode (export "_start") unreachable))'
    exit3 = """(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 64) "no widgets in stock")
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 19))
        (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
        (call $exit (i32.const 3))))"""
    h = harness_for(one_wasm_app("/trap", wat=trap), one_wasm_app("/exit", wat=exit3))
    trapped = h.request("GET", "/trap")
    assert trapped.status == 500
    assert trapped.json() == {
        "message": "wasm module of node w (W) trapped: wasm `unreachable` instruction executed "
        "in function explode",
        "node": "w",
        "type": "wasm",
    }
    exited = h.request("GET", "/exit").json()
    assert exited["message"] == (
        "wasm module of node w (W) exited with code 3; stderr: no widgets in stock"
    )


def test_bad_modules_are_clear_errors_at_check_and_at_run(harness_for: Any) -> None:
    no_start = '(module (memory (export "memory") 1) (func (export "run")))'
    foreign = '(module (import "env" "peek" (func)) (func (export "_start")))'
    doc = app_doc(
        s=starter("s", "/w", "syntax"),
        syntax=wasm_node("syntax", wat="(module (func $f)", outputs={"output_1": "nostart"}),
        nostart=wasm_node("nostart", wat=no_start, outputs={"output_1": "b64"}),
        b64=wasm_node("b64", wasm_b64="bm90IHdhc20=", outputs={"output_1": "foreign"}),
        foreign=wasm_node("foreign", wat=foreign, outputs={"output_1": "table"}),
        table=wasm_node("table", module="gone", outputs={"output_1": "empty"}),
        empty=wasm_node("empty", outputs={}),
        orphan=wasm_node("orphan", wasm_b64="%%%", outputs={}),
    )
    problems = check_playbook(parse_playbook(doc, name="bad"), modules={})
    found = {(p.node, p.field, p.severity): p.message for p in problems}
    assert found[("syntax", "wat", "error")] == (
        "invalid WebAssembly text: expected `)` (line 1, column 18)"
    )
    assert found[("nostart", "wat", "error")].startswith("the module exports no _start function")
    assert found[("b64", "wasm_b64", "error")] == (
        "the wasm_b64 does not decode to a wasm binary (it does not start with \\0asm)"
    )
    assert found[("foreign", "wat", "error")] == (
        "the module imports env.peek; a wasm node offers only WASI preview 1 "
        "(wasi_snapshot_preview1)"
    )
    assert found[("table", "module", "error")] == "module 'gone' is not in the modules table"
    assert found[("empty", "wat", "error")].startswith("a wasm node needs its module in data.wat")
    assert found[("orphan", "wasm_b64", "warning")].startswith("the wasm_b64 is not valid base64")

    h = harness_for(
        one_wasm_app("/syntax", wat="(module (func $f)"), one_wasm_app("/nostart", wat=no_start)
    )
    syntax = h.request("GET", "/syntax")
    assert syntax.status == 500
    assert syntax.json() == {
        "message": "wasm module of node w (W) (data.wat): invalid WebAssembly text: expected `)` "
        "(line 1, column 18)",
        "node": "w",
        "type": "wasm",
    }
    assert "exports no _start function" in h.request("GET", "/nostart").json()["message"]


def test_check_command_names_node_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "app.json"
    app.write_text(json.dumps(one_wasm_app(wasm_b64="AGFzbQEAAAA=")))  # a valid, empty module
    assert main(["check", str(app), "--no-db"]) == 1
    out = capsys.readouterr().out
    assert "node w, field 'wasm_b64': the module exports no _start function" in out
    good = tmp_path / "good.json"
    good.write_text(json.dumps(one_wasm_app(module="echo")))
    modules = modules_file(tmp_path, echo=b64(ECHO))
    assert main(["check", str(good), str(modules), "--no-db"]) == 0


def test_compiled_once_per_module_and_shared_by_threads(harness_for: Any) -> None:
    # Bytes no other test compiled; the same binary given as WAT and as base64.
    wat = writes('{"ok": true}', tag=uuid.uuid4().hex)
    doc = app_doc(
        s=starter("s", "/w", "a"),
        a=wasm_node("a", wat=wat, outputs={"output_1": "b"}),
        b=wasm_node("b", wasm_b64=b64(wat)),
        reply=js("reply", REPLY),
    )
    before = compile_stats()
    h = harness_for(doc)
    results: list[int] = []

    def call() -> None:
        for _ in range(5):
            results.append(execute(h, "/w").response.status)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [200] * 20
    after = compile_stats()
    # One compilation for both nodes and every thread; node b found a's module by its hash.
    assert after["compiles"] - before["compiles"] == 1
    assert after["hits"] - before["hits"] >= 1
    # Each run has its own instance: a module's state does not survive its run.
    assert h.request("GET", "/w").json() == {"ok": True}


def test_without_wasmtime_check_and_run_name_the_extra(tmp_path: Path) -> None:
    app = tmp_path / "app.json"
    app.write_text(json.dumps(one_wasm_app(wat=ECHO)))
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    prelude = "import sys\nsys.modules['wasmtime'] = None\nfrom nflow.cli import main\n"
    check = subprocess.run(
        [sys.executable, "-c", prelude + f"sys.exit(main(['check', {str(app)!r}, '--no-db']))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 1, check.stderr
    assert "node w: wasm nodes need wasmtime, which is not installed" in check.stdout
    assert "pip install 'nflow[wasm]'" in check.stdout
    run = subprocess.run(
        [sys.executable, "-c", prelude + f"sys.exit(main(['run', {str(app)!r}, 'GET', '/w']))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    body = json.loads(run.stdout)
    assert body["node"] == "w"
    assert "pip install 'nflow[wasm]'" in body["error"]
    assert "Traceback" not in run.stderr


def test_examples_built_from_c_match_their_javascript_twins(harness_for: Any) -> None:
    example = REPO / "examples" / "wasm"
    modules = json.loads((example / "modules.json").read_text())["modules"]
    # modules.json is what build.sh made from the committed binaries.
    for row in modules:
        assert base64.b64decode(row["code"]) == (example / f"{row['name']}.wasm").read_bytes()
    h = harness_for(
        json.loads((example / "app.json").read_text()), support=(example / "modules.json",)
    )
    assert h.request("GET", "/wasm/loop").json() == {"result": 1972.2638254353353}
    assert h.request("GET", "/wasm/primes").json() == {"primes": 78498}
    for what, query in [
        ("loop", "n=0"),
        ("loop", "n=1000"),
        ("loop", "n=12345&tag=x"),
        ("loop", "n=%2099"),
        ("primes", "n=2"),
        ("primes", "n=3"),
        ("primes", "n=100000&tag=x"),
    ]:
        wasm = h.request("GET", f"/wasm/{what}?{query}")
        js_twin = h.request("GET", f"/js/{what}?{query}")
        assert wasm.status == js_twin.status == 200, (wasm.text, js_twin.text)
        assert wasm.json() == js_twin.json()
    refused = h.request("GET", "/wasm/loop?n=-1").json()
    assert refused["node"] == "wasm-loop"
    assert refused["message"].endswith(
        "exited with code 2; stderr: n must be between 0 and 100000000, got -1"
    )


def test_a_forked_child_compiles_and_runs_its_own_modules(harness_for: Any) -> None:
    # The parent's engine, ticker thread and compiled modules stay behind in a fork.
    from nflow.engine import _wasm as engine_wasm

    h = harness_for(one_wasm_app(wat=ECHO))
    assert h.request("GET", "/w?a=1").json() == {"a": "1"}
    assert engine_wasm._plans
    binary = bytes(wasmtime.wat2wasm(ECHO))
    module = compile_module(binary)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 1
        try:
            again = compile_module(binary)
            out = again.run(b'{"b":2}', timeout=5.0, memory_bytes=1 << 24)
            code = 0 if again is not module and out == b'{"b":2}' and not engine_wasm._plans else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_import_refuses_a_wasm_node_naming_a_missing_module_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[database_nflow]\ndriver = "sqlite3"\ndsn = "{tmp_path / "cli.db"}"\n')
    monkeypatch.chdir(tmp_path)
    app = tmp_path / "app.json"
    app.write_text(json.dumps(one_wasm_app(module="echo")))
    assert main(["import", "--config", str(config), str(app)]) == 1
    err = capsys.readouterr().err
    assert "node w, field 'module': module 'echo' is not in the modules table" in err
    # With the row in the same import, both go in.
    modules = modules_file(tmp_path, echo=b64(ECHO))
    assert main(["import", "--config", str(config), str(modules), str(app)]) == 0
