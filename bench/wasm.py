"""wasm nodes next to js nodes, in one run (in process, no HTTP).

    .venv/bin/python bench/wasm.py [N]

Two comparisons, each printed side by side:

1. Per-call overhead: a trivial wasm node (a WAT module that copies stdin to stdout, so the
   payload goes through unchanged) against a trivial js node (``function main(){}``), each
   between a starter and the same js reply node; a flow with the reply node alone is the
   baseline. The node's own time comes from the run's trace (median), the request's from the
   wall clock (mean of N, default 2000). The flows take turns, five rounds of N/5 requests,
   and the best round counts: the machine's other work only ever adds time.
2. Compute: examples/wasm's modules built from C (loop.wasm: the /bench loop, n times;
   primes.wasm: a sieve counting the primes below n) against their JavaScript twins from
   examples/wasm/app.json, for several n.

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

COMPUTE = (
    ("loop", "result", "the /bench loop n times", (1_000, 100_000, 1_000_000)),
    ("primes", "primes", "primes below n (sieve)", (10_000, 1_000_000, 10_000_000)),
)
ROUNDS = 5


def _app() -> dict[str, Any]:
    example = orjson.loads((EXAMPLE / "app.json").read_bytes())["drawflow"]["Compute"]["data"]

    def link(target: str | None) -> dict[str, Any]:
        return {
            "output_1": {"connections": [{"node": target, "output": "input_1"}] if target else []}
        }

    steps: dict[str, dict[str, Any]] = {
        "js": {"type": "js", "code": "function main(){}"},
        "wasm": {"type": "wasm", "wat": ECHO},
    }
    for name, _, _, _ in COMPUTE:
        binary = (EXAMPLE / f"{name}.wasm").read_bytes()
        steps[f"js_{name}"] = {"type": "js", "code": example[f"js-{name}"]["data"]["code"]}
        steps[f"wasm_{name}"] = {"type": "wasm", "wasm_b64": base64.b64encode(binary).decode()}
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


class _Flow:
    """One flow's measurements over the rounds."""

    def __init__(self, runtime: nflow.Runtime, url: str, node: str) -> None:
        self.runtime = runtime
        self.request = nflow.Request.from_url("GET", url)
        self.node = node
        self.rounds: list[float] = []  # mean µs per request of each round
        self.steps: list[float] = []  # µs of the node's step, every request
        self.replies: list[float] = []  # µs of the reply node after it, every request
        self.body = b""

    def round(self, n: int) -> None:
        handle = self.runtime.handle_sync
        started = time.perf_counter()
        for _ in range(n):
            execution = handle(self.request)
            assert isinstance(execution, Execution), execution
            assert execution.response.status == 200, execution.response.body
            for entry in execution.trace:
                if entry.node == self.node:
                    self.steps.append(entry.duration_ms * 1000.0)
                elif entry.node == "reply":
                    self.replies.append(entry.duration_ms * 1000.0)
            self.body = execution.response.body
        self.rounds.append((time.perf_counter() - started) / n * 1e6)

    @property
    def request_us(self) -> float:
        return min(self.rounds)

    @property
    def step_us(self) -> float:
        return statistics.median(self.steps)


def _take_turns(flows: list[_Flow], n: int) -> None:
    for flow in flows:  # warm-up: compiled code, warm runtimes, caches
        flow.round(max(1, min(100, n)))
        flow.rounds.clear()
        flow.steps.clear()
        flow.replies.clear()
    per_round = max(1, n // ROUNDS)
    for _ in range(ROUNDS):
        for flow in flows:
            flow.round(per_round)


def _overhead(runtime: nflow.Runtime, n: int) -> None:
    print(f"\n1. Per-call overhead of a trivial node ({n} requests each, best of {ROUNDS} rounds)")
    base = _Flow(runtime, "/base?n=1", "reply")
    js = _Flow(runtime, "/js?n=1", "js")
    wasm = _Flow(runtime, "/wasm?n=1", "wasm")
    _take_turns([base, js, wasm], n)
    print(
        f"{'flow':<30}{'request µs':>11}{'vs baseline':>13}{'node µs':>10}{'reply µs':>10}"
        "   (node and reply: medians)"
    )
    base_reply = statistics.median(base.steps)
    print(f"{'starter → reply (baseline)':<30}{base.request_us:>11.1f}{'':>23}{base_reply:>10.1f}")
    for flow, label in ((js, "js: function main(){}"), (wasm, "wasm: WAT copying stdin")):
        extra = flow.request_us - base.request_us
        reply = statistics.median(flow.replies)
        print(
            f"{label:<30}{flow.request_us:>11.1f}{extra:>+13.1f}{flow.step_us:>10.1f}{reply:>10.1f}"
        )


def _compute(runtime: nflow.Runtime, n: int) -> None:
    print("\n2. Compute: modules built from C vs their JavaScript twins (ms per request)")
    print(f"{'what':<26}{'n':>10}{'wasm ms':>10}{'js ms':>10}{'js / wasm':>11}   answer")
    for name, key, what, sizes in COMPUTE:
        for size in sizes:
            wasm = _Flow(runtime, f"/wasm_{name}?n={size}", f"wasm_{name}")
            js = _Flow(runtime, f"/js_{name}?n={size}", f"js_{name}")
            _take_turns([wasm, js], max(ROUNDS, min(n, 20_000_000 // (size * 10))))
            value = orjson.loads(wasm.body)[key]
            twin = orjson.loads(js.body)[key]
            # musl's sin (in the module) and the JS engine's can differ in the last digits.
            note = "" if twin == value else f" (js: {twin})"
            ratio = js.request_us / wasm.request_us
            print(
                f"{what:<26}{size:>10}{wasm.request_us / 1000:>10.3f}{js.request_us / 1000:>10.3f}"
                f"{ratio:>10.1f}×   {value}{note}"
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

    print(f"\n3. Runtimes: one call of a trivial module ({n} calls each, best of {ROUNDS} rounds)")
    start = '(module (memory (export "memory") 1) (func (export "_start")))'
    noop = compile_module(bytes(wasmtime.wat2wasm(start)))
    echo = compile_module(bytes(wasmtime.wat2wasm(ECHO)))
    run = '(module (memory (export "memory") 1) (func (export "run") (result i32) i32.const 0))'
    compiled = CompiledPlugin(bytes(wasmtime.wat2wasm(run)), wasi=True, functions=[])
    reused = extism.Plugin(compiled, functions=[])
    payload = b'{"n":"1"}'
    cases = {
        "wasmtime-py (nflow): fresh store + instance, empty _start": lambda: noop.run(
            payload, timeout=5.0, memory_bytes=128 << 20
        ),
        "wasmtime-py (nflow): the same, copying stdin to stdout": lambda: echo.run(
            payload, timeout=5.0, memory_bytes=128 << 20
        ),
        "extism: fresh Plugin from a CompiledPlugin, empty call": lambda: extism.Plugin(
            compiled, functions=[]
        ).call("run", payload),
        "extism: one Plugin reused (its memory kept across calls)": lambda: reused.call(
            "run", payload
        ),
    }
    best = dict.fromkeys(cases, float("inf"))
    for call in cases.values():
        for _ in range(100):
            call()
    for _ in range(ROUNDS):
        for label, call in cases.items():
            started = time.perf_counter()
            for _ in range(max(1, n // ROUNDS)):
                call()
            took = (time.perf_counter() - started) / max(1, n // ROUNDS) * 1e6
            best[label] = min(best[label], took)
    for label, us in best.items():
        print(f"{label:<60}{us:>8.1f} µs")


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
