"""The js step: a node's script run in this thread's warm JavaScript runtime.

:class:`VMProvider` keeps one runtime per thread (and per heap limit) and replaces a runtime
a run left unusable. :func:`step_js` compiles the node's source once per app version, runs it
with the step's time limit, and turns what JavaScript raised into nflow's errors, each
carrying the limit it hit when it hit one.
"""

from __future__ import annotations

__all__ = ["JsRun", "VMProvider", "js_limit", "step_failure", "step_js"]

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from nflow.engine._results import StepResult, step_timeout
from nflow.errors import (
    ExecutionError,
    LimitKind,
    ModuleNotFound,
    ProcessKilled,
    ScriptError,
    ScriptTimeout,
)
from nflow.errors import RunParked as Parked
from nflow.jsapi import HostLimitExceeded, HostTable, NflowVM, RunContext, RunKilled, RunParked
from nflow.jsapi import user_line as js_user_line
from nflow.jsapi._vm import DirtyRuntime
from nflow.playbook import Node, Playbook
from nflow.sandbox import EngineLimits, JsError, JsMemoryError, JsTimeout
from nflow.watchdog import Watchdog

DEFAULT_SOURCE = "function main(){}"

# Limits enforced inside JavaScript reach Python only as a JS error: the engine's own stack
# limit, the prelude's guards on costly string operations, and host functions' limits that
# a script did not catch. Their texts are fixed by the engine and by nflow's own messages.
_JS_LIMITS: tuple[tuple[str, LimitKind], ...] = (
    ("max_memory_mb", "memory"),
    ("max_host_calls", "host_calls"),
    ("max_response_bytes", "response_bytes"),
    ("Maximum call stack", "stack"),
    ("string search too large", "native_operation"),
    ("limit for this operation", "native_operation"),
)


class VMProvider:
    """One warm NflowVM per thread, replaced when a run leaves it unusable."""

    def __init__(
        self, *, host: HostTable, limits: EngineLimits, watchdog: Watchdog | None = None
    ) -> None:
        self._host = host
        self._limits = limits
        self._watchdog = watchdog
        self._local = threading.local()
        self.created = 0
        # Every live runtime of every thread, for counts(); changed only when one is made
        # or closed.
        self._live: set[NflowVM] = set()
        self._live_lock = threading.Lock()

    @property
    def host(self) -> HostTable:
        """The host functions every runtime binds."""
        return self._host

    def get(self, memory_mb: int | None = None) -> NflowVM:
        """This thread's runtime for ``memory_mb`` (the server's heap limit when None).

        Apps with a lower ``max_memory_mb`` get runtimes of their own: the heap limit is fixed
        when a runtime is created.
        """
        memory = self._limits.memory_bytes if memory_mb is None else memory_mb * 1024 * 1024
        local = self._local
        vms: dict[int, NflowVM] | None = getattr(local, "vms", None)
        if vms is None:
            vms = local.vms = {}
        vm = vms.get(memory)
        if vm is None or vm.broken:
            if vm is not None:
                self._close(vm)
            limits = self._limits
            if memory != limits.memory_bytes:
                limits = dataclasses.replace(limits, memory_bytes=memory)
            vm = NflowVM(host=self._host, limits=limits)
            if self._watchdog is not None:
                self._watchdog.watch(vm)
            vms[memory] = vm
            self.created += 1
            with self._live_lock:
                self._live.add(vm)
        return vm

    def discard(self) -> None:
        """Close this thread's runtimes."""
        vms: dict[int, NflowVM] | None = getattr(self._local, "vms", None)
        if vms:
            for vm in vms.values():
                self._close(vm)
            vms.clear()

    def counts(self) -> dict[str, int]:
        """Live runtimes by state: ``busy`` (serving a run now) and ``idle``."""
        with self._live_lock:
            live = list(self._live)
        busy = sum(1 for vm in live if vm.ctx is not None)
        return {"idle": len(live) - busy, "busy": busy}

    def entries(self) -> int:
        """Evaluations that ran steps, over every live runtime: one per node run on its own,
        one per compiled chain of nodes."""
        with self._live_lock:
            live = list(self._live)
        return sum(vm.entries for vm in live)

    def _close(self, vm: NflowVM) -> None:
        with self._live_lock:
            self._live.discard(vm)
        vm.close()


class JsRun(Protocol):
    """What the js step uses of the run it belongs to."""

    ctx: RunContext
    vm: NflowVM
    prev: str
    playbook: Playbook
    modules: Mapping[str, str | None]
    plans: dict[tuple[str, str], tuple[str, str]]

    def replace_vm(self) -> None: ...


def js_limit(exc: JsError) -> LimitKind | None:
    """The limit a JavaScript error reports, or None for a script's own error."""
    text = exc.message
    for needle, kind in _JS_LIMITS:
        if needle in text:
            return kind
    return None


def plan(run: JsRun, node: Node) -> tuple[str, str]:
    """Source and runtime key of a js node, resolved once per app version."""
    found = (source_for(run, node), f"{run.playbook.digest[:16]}:{node.id}")
    plans = run.plans
    if len(plans) > 100_000:
        plans.clear()
    plans[(run.playbook.digest, node.id)] = found
    return found


def source_for(run: JsRun, node: Node) -> str:
    return node_source(node, run.modules)


def node_source(node: Node, modules: Mapping[str, str | None]) -> str:
    """The script a js node runs: its own code, or the module it names."""
    data = node.data
    code = data.get("code")
    if isinstance(code, str) and code.strip():
        return code
    script = data.get("script")
    if isinstance(script, str) and script:
        if script not in modules:
            raise ModuleNotFound(
                f"node {node.label} uses module {script!r}, which is not in the modules "
                "table (import it with `nflow import`)",
                node=node.id,
            )
        return modules[script] or DEFAULT_SOURCE
    return DEFAULT_SOURCE


def register_node(run: JsRun, node: Node, key: str) -> None:
    """Register the node's static values in the runtime on first use."""
    vm = run.vm
    if key not in vm._nodes:
        vm.ensure_node(
            key,
            data_json=orjson.dumps(dict(node.data)).decode(),
            outputs_json=orjson.dumps({k: v for k, v in node.outputs.items() if v}).decode(),
            flow=node.tab,
            app=run.playbook.name,
            box=node.id,
        )


def step_failure(run: JsRun, node: Node, exc: Exception, timeout: float) -> ExecutionError:
    """What ``node`` failing with ``exc`` (raised by its runtime) is to the engine: the error
    naming the node (and its line), carrying the limit it hit when it hit one."""
    ctx = run.ctx
    if isinstance(exc, JsMemoryError):
        run.vm.broken = True
        return ExecutionError(
            f"memory limit of the JS runtime reached in node {node.label} (vm_pool.max_memory_mb)",
            node=node.id,
            limit="memory",
        )
    if isinstance(exc, JsError):
        line = js_user_line(exc)
        where = f" (line {line})" if line else ""
        return ScriptError(
            f"{exc.name}: {exc.message} in node {node.label}{where}",
            node=node.id,
            name=exc.name,
            line=line,
            limit=js_limit(exc),
            stack=exc.stack,
        )
    if isinstance(exc, JsTimeout):
        return ScriptTimeout(
            f"node {node.label} ran longer than its time limit of {timeout:.3g}s",
            node=node.id,
        )
    if isinstance(exc, RunKilled):
        return ProcessKilled(f"run {ctx.wid} was killed", node=node.id)
    if isinstance(exc, HostLimitExceeded):
        return ExecutionError(str(exc), node=node.id, limit="host_calls")
    # jsbox could not convert a value crossing the boundary (e.g. a huge or cyclic one).
    return ScriptError(f"{exc} in node {node.label}", node=node.id, name="TypeError")


def step_js(engine: object, run: JsRun, node: Node, payload: dict[str, Any]) -> StepResult:
    ctx = run.ctx
    vm = run.vm
    found = run.plans.get((run.playbook.digest, node.id))
    if found is None:
        found = plan(run, node)
    timeout = step_timeout(ctx, node)
    source, node_key = found
    payload_json = orjson.dumps(payload).decode() if payload else ""
    try:
        try:
            key = vm.compile(source, timeout=timeout)
            register_node(run, node, node_key)
            next_out, out_json = vm.run_step(
                key, node_key, payload_json=payload_json, prev=run.prev, timeout=timeout
            )
        except DirtyRuntime:
            run.replace_vm()
            vm = run.vm
            key = vm.compile(source, timeout=timeout)
            register_node(run, node, node_key)
            next_out, out_json = vm.run_step(
                key, node_key, payload_json=payload_json, prev=run.prev, timeout=timeout
            )
    except RunParked as exc:  # a durable run waits: the durable queue wakes it
        raise Parked(str(exc), node=node.id) from None
    except (JsError, JsTimeout, RunKilled, HostLimitExceeded, TypeError, ValueError) as exc:
        raise step_failure(run, node, exc, timeout) from None
    try:
        new_payload = orjson.loads(out_json)
    except orjson.JSONDecodeError:
        new_payload = {}
    return StepResult(next_out, new_payload if isinstance(new_payload, dict) else {})
