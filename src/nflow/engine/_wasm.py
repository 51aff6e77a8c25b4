"""The wasm step: a node's WASI command module run on the payload, within the step's limits.

The module reads the payload as JSON on stdin and writes the new payload as JSON on stdout;
a ``next`` key in what it writes picks the output to follow (``"output_2"``, or just ``2``).
Its compiled form is looked up once per app version and node, from the module's text, and
shared by every thread (see :mod:`nflow.wasm`); each run gets a fresh instance. Failures are
nflow's errors naming the node: the time limit 408, the memory cap and traps 500.
"""

from __future__ import annotations

__all__ = ["WasmRun", "step_wasm"]

import atexit
import os
import threading
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from nflow.engine._results import StepResult, step_timeout
from nflow.errors import (
    ExecutionError,
    ModuleNotFound,
    ProcessKilled,
    ScriptError,
    ScriptTimeout,
)
from nflow.jsapi import RunContext
from nflow.playbook import Node, Playbook
from nflow.wasm import (
    CompiledModule,
    WasmFailed,
    WasmMemoryLimit,
    WasmModuleError,
    WasmModuleMissing,
    WasmTimeout,
    WasmUnavailable,
    compile_module,
    module_bytes,
    node_source,
)

_MIB = 1024 * 1024


class WasmRun(Protocol):
    """What the wasm step uses of the run it belongs to."""

    ctx: RunContext
    playbook: Playbook
    modules: Mapping[str, str | None]


# (app version, node, module text) -> compiled module. The text is the catalog's own string,
# whose hash Python keeps, so a lookup costs no hashing of the module; a new version or a
# changed modules row is a new key.
_plans: dict[tuple[str, str, str], CompiledModule] = {}
_plans_lock = threading.Lock()
# Compiled modules belong to their process's engine: a forked child compiles its own. At
# exit they go before the interpreter empties wasmtime's modules (see nflow.wasm).
os.register_at_fork(after_in_child=_plans.clear)
atexit.register(_plans.clear)


def plan(run: WasmRun, node: Node) -> CompiledModule:
    """The node's compiled module, compiled on first use for its app version and text."""
    try:
        field, text = node_source(node.data, run.modules)
        key = (run.playbook.digest, node.id, text)
        found = _plans.get(key)
        if found is not None:
            return found
        compiled = compile_module(module_bytes(field, text), field=field)
    except WasmModuleMissing as exc:
        raise ModuleNotFound(f"node {node.label} uses {exc.message}", node=node.id) from None
    except WasmModuleError as exc:
        raise ScriptError(
            f"wasm module of node {node.label} (data.{exc.field}): {exc.message}",
            node=node.id,
            name="CompileError",
        ) from None
    except WasmUnavailable as exc:
        raise ExecutionError(f"node {node.label}: {exc.message}", node=node.id) from None
    with _plans_lock:
        if len(_plans) >= 4096:
            _plans.clear()  # old app versions' entries: a bound, not an LRU
        _plans[key] = compiled
    return compiled


def step_wasm(engine: object, run: WasmRun, node: Node, payload: dict[str, Any]) -> StepResult:
    ctx = run.ctx
    compiled = plan(run, node)
    timeout = step_timeout(ctx, node)
    module = node.data.get("module")
    name = f"{module}.wasm" if isinstance(module, str) and module else "main.wasm"
    try:
        out = compiled.run(
            orjson.dumps(payload),
            timeout=timeout,
            memory_bytes=ctx.limits.max_memory_mb * _MIB,
            name=name,
        )
    except WasmTimeout:
        raise ScriptTimeout(
            f"node {node.label} ran longer than its time limit of {timeout:.3g}s",
            node=node.id,
        ) from None
    except WasmMemoryLimit as exc:
        raise ExecutionError(
            f"memory limit of the wasm module reached in node {node.label} "
            f"(vm_pool.max_memory_mb): the module {exc.message}",
            node=node.id,
            limit="memory",
        ) from None
    except WasmFailed as exc:
        raise ScriptError(
            f"wasm module of node {node.label} {exc.message}", node=node.id, name="WasmError"
        ) from None
    process = ctx.process
    if process is not None and process.killed:
        raise ProcessKilled(f"run {ctx.wid} was killed", node=node.id)
    return _result(node, out)


def _result(node: Node, out: bytes) -> StepResult:
    where = f"wasm module of node {node.label}"
    if not out.strip():
        raise ScriptError(
            f"{where} wrote nothing to stdout; expected the new payload as a JSON object",
            node=node.id,
            name="WasmError",
        )
    try:
        value = orjson.loads(out)
    except orjson.JSONDecodeError as exc:
        raise ScriptError(
            f"{where} wrote invalid JSON to stdout ({exc}); expected the new payload as a "
            "JSON object",
            node=node.id,
            name="WasmError",
        ) from None
    if not isinstance(value, dict):
        raise ScriptError(
            f"{where} wrote a JSON {type(value).__name__} to stdout; expected the new payload "
            "as a JSON object",
            node=node.id,
            name="WasmError",
        )
    chosen = value.pop("next", None)
    if chosen is None:
        next_out = "output_1"
    elif isinstance(chosen, str):
        next_out = chosen
    elif isinstance(chosen, int) and not isinstance(chosen, bool) and chosen >= 1:
        next_out = f"output_{chosen}"
    else:
        raise ScriptError(
            f'{where} wrote "next": {orjson.dumps(chosen).decode()}; expected an output name '
            '("output_2") or its number (2)',
            node=node.id,
            name="WasmError",
        )
    return StepResult(next_out, value)
