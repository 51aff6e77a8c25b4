"""wasm nodes next to js nodes, in one run (in process, no HTTP).

    .venv/bin/python bench/wasm.py [N]

Two comparisons, each printed side by side:

1. Per-call overhead: a trivial wasm node (a WAT module that copies stdin to stdout, so the
   payload goes through unchanged) against a trivial js node (``function main(){}``), each
   between a starter and the same js reply node; a flow with the reply node alone is the
   baseline. The node's own time comes from the run's trace (median), the request's from the
   wall clock (mean of N, default 2000).
2. Compute: examples/wasm's loop (the /bench loop, n times) as the committed loop.wasm built
   from C against its JavaScript twin from examples/wasm/app.json, for several n.

With the Extism Python SDK installed (it is no dependency of nflow), also the raw per-call
cost of a trivial module in wasmtime-py (what nflow uses) and in Extism. Not a test.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

import nflow
from nflow.engine import Execution

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "wasm"

# Copies stdin to stdout: the payload goes through unchanged, as through function main(){}.
ECHO = """(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (func (export "_start") (local $len i32) (local $n i32)
    (block $done
      (loop $more
        (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $len)))
        (i32.store (i32.const 4) (i32.sub (i32.const 200000) (local.get $len)))
        (br_if $done (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $len (i32.add (local.get $len) (local.get $n)))
        (br $more)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""

LOOP_SIZES = (1_000, 100_000, 1_000_000)


def _app() -> dict[str, Any]:
    example = orjson.loads((EXAMPLE / "app.json").read_bytes())
    js_loop = example["drawflow"]["Loop"]["data"]["js-loop"]["data"]["code"]
    loop_b64 = base64.b64encode((EXAMPLE / "loop.wasm").read_bytes()).decode()

    def link(target: str | None) -> dict[str, Any]:
        return {
            "output_1": {"connections": [{"node": target, "output": "input_1"}] if target else []}
        }

    steps = {
        "js": {"type": "js", "code": "function main(){}"},
        "wasm": {"type": "wasm", "wat": ECHO},
        "js_loop": {"type": "js", "code": js_loop},
        "wasm_loop": {"type": "wasm", "wasm_b64": loop_b64},
    }
    nodes: dict[str, Any] = {
        "reply": {
            "id": "reply",
            "data": {"type": "js", "code": "function main(){ c.JSON(200, payload) }"},
            "outputs": link(None),
        },
        "s_base": {
            "id": "s_base",
            "data": {"type": "starter", "method": "GET", "urlpattern": "/base"},
            "outputs": link("reply"),
        },
    }
    for name, data in steps.items():
        nodes[name] = {"id": name, "data": data, "outputs": link("reply")}
        nodes[f"s_{name}"] = {
            "id": f"s_{name}",
            "data": {"type": "starter", "method": "GET", "urlpattern": f"/{name}"},
            "outputs": link(name),
        }
    return {"drawflow": {"Home": {"data": nodes}}}


def _measure(runtime: nflow.Runtime, url: str, n: int, node: str) -> tuple[float, float, bytes]:
    """Mean µs per request, median µs of ``node``'s step, and the last body."""
    request = nflow.Request.from_url("GET", url)
    for _ in range(min(200, n)):  # warm-up: compiled code, warm runtimes
        runtime.handle_sync(request)
    steps: list[float] = []
    body = b""
    started = time.perf_counter()
    for _ in range(n):
        execution = runtime.handle_sync(request)
        assert isinstance(execution, Execution), execution
        assert execution.response.status == 200, execution.response.body
        for entry in execution.trace:
            if entry.node == node:
                steps.append(entry.duration_ms * 1000.0)
        body = execution.response.body
    total = (time.perf_counter() - started) / n * 1e6
    return total, statistics.median(steps) if steps else 0.0, body


def _overhead(runtime: nflow.Runtime, n: int) -> None:
    print(f"\n1. Per-call overhead of a trivial node ({n} requests each)")
    base, _, _ = _measure(runtime, "/base?n=1", n, "reply")
    print(f"{'flow':<34}{'request µs':>12}{'node µs (median)':>19}{'vs baseline':>13}")
    print(f"{'starter → reply (baseline)':<34}{base:>12.1f}{'':>19}{'':>13}")
    for name, label in (("js", "js: function main(){}"), ("wasm", "wasm: WAT copying stdin")):
        total, step, _ = _measure(runtime, f"/{name}?n=1", n, name)
        print(f"{label:<34}{total:>12.1f}{step:>19.1f}{total - base:>+13.1f}")


def _compute(runtime: nflow.Runtime, n: int) -> None:
    print("\n2. Compute: the /bench loop n times, loop.wasm (C) vs its JavaScript twin")
    print(f"{'n':>10}{'wasm ms':>11}{'js ms':>11}{'js / wasm':>11}   result (same in both)")
    for size in LOOP_SIZES:
        runs = max(3, min(n, 2_000_000 // size))
        wasm_us, _, wasm_body = _measure(runtime, f"/wasm_loop?n={size}", runs, "wasm_loop")
        js_us, _, js_body = _measure(runtime, f"/js_loop?n={size}", runs, "js_loop")
        same = "" if wasm_body == js_body else f"   DIFFERENT: {js_body!r}"
        result = orjson.loads(wasm_body)["result"]
        print(
            f"{size:>10}{wasm_us / 1000:>11.3f}{js_us / 1000:>11.3f}{js_us / wasm_us:>10.1f}×"
            f"   {result}{same}"
        )


def _runtimes(n: int) -> None:
    try:
        import extism
        from extism.extism import CompiledPlugin
    except ImportError:
        print("\n3. Runtimes: the Extism SDK is not installed (pip install extism); skipped")
        return
    import wasmtime

    from nflow.wasm import compile_module

    print(f"\n3. Runtimes: one call of a trivial module, fresh instance each time ({n} calls)")
    module = compile_module(bytes(wasmtime.wat2wasm(ECHO)))
    noop = '(module (memory (export "memory") 1) (func (export "run") (result i32) i32.const 0))'
    compiled = CompiledPlugin(bytes(wasmtime.wat2wasm(noop)), wasi=True, functions=[])
    reused = extism.Plugin(compiled, functions=[])
    payload = b'{"n":"1"}'
    cases = {
        "wasmtime-py (nflow): WASI store + instance, stdin/stdout": lambda: module.run(
            payload, timeout=5.0, memory_bytes=128 << 20
        ),
        "extism: Plugin from a CompiledPlugin, call": lambda: extism.Plugin(
            compiled, functions=[]
        ).call("run", payload),
        "extism: one Plugin reused (state kept across calls)": lambda: reused.call("run", payload),
    }
    for label, call in cases.items():
        for _ in range(200):
            call()
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(n):
                call()
            best = min(best, (time.perf_counter() - started) / n * 1e6)
        print(f"{label:<60}{best:>8.1f} µs")


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "wasm.json"
        app.write_bytes(orjson.dumps(_app()))
        config = nflow.Config.model_validate(
            {"logging": {"access": False}, "session": {"secret": "b" * 32}}
        )
        runtime = nflow.Runtime(
            config, app_files=[app], database_url=f"sqlite+aiosqlite:///{tmp}/b.db"
        )
        loop = asyncio.new_event_loop()
        loop.run_until_complete(runtime.open())
        try:
            _overhead(runtime, n)
            _compute(runtime, n)
        finally:
            loop.run_until_complete(runtime.close())
            loop.close()
    _runtimes(n)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
