"""Compiled flows: chains of js nodes run in one entry into the sandbox.

Entering the JavaScript runtime costs more than a small step itself (the call is parsed, the
payload crosses as JSON both ways, the engine's loop runs around it). When an app version is
first run, :func:`flow_plan` gathers its js nodes that can run one after another inside one
evaluation, and each runtime defines them once as a table (``__nf.chain`` in the prelude).
From a node of that table, :func:`run_chain` enters the runtime once; the JavaScript side runs
the node, follows its output while it leads to another node of the table, and hands each
node the payload the engine's loop would have given it (its payload, plus what the form
session holds beyond it). It marks when each node started and which output led to it, so the
host rebuilds the node trace (one entry per node, with its own duration) when the chain
returns, and tells the host which node runs before that node's first host call or console
line (for logs, the process list and host calls), so nothing crosses between nodes that make
none. A break, an output leading elsewhere, the step limit, a node past its own time limit
or the run out of time end the chain; the loop then goes on as after any node (a killed run
is stopped there, or at its next host call). A node's error, timeout or memory limit names
that node, as when it runs alone.

What a chain never holds, so those nodes run one by one in the loop: a node whose source
could leave a promise job behind (``async``, ``await``, ``import``) or that is cached
(``cache_ttl_seconds``); and no run uses chains that has a debug observer, a history
recording of a run in the sample (or a replay's), node interceptors (tracing spans), the
tracker, or asked for per-node execution (``Engine.run(per_node=True)``,
``Engine.compiled_flows = False``).

A run outside the history's sample (a light recording) does use chains, and is recorded as
if its nodes ran one by one, in case it fails: the JavaScript side keeps each node's payload
JSON and clock tape (taped as the same node alone would be) and the host notes where each
node's host calls, writes and console lines begin (:meth:`RunRecording.chain_node`, from
the hook that tells it which node runs). Only a run that is kept reads them back
(:meth:`RunRecording.chained`).

A node of a chain runs without its own interrupt: the evaluation's time limit is the sum of
the limits of the nodes it may run (within what is left of the run's), and a node found
past its own limit when it ends fails with the time limit error naming it. A node that never
ends is stopped at the evaluation's limit, and the error names it.
"""

from __future__ import annotations

__all__ = ["RECORDED_CHARS", "FlowPlan", "define", "flow_plan", "run_chain"]

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from nflow.engine._js import JsRun, node_source, step_failure
from nflow.engine._record import RunRecording
from nflow.engine._results import StepResult, TraceEntry, trace_entry
from nflow.errors import ExecutionError, ModuleNotFound, ScriptTimeout
from nflow.jsapi import HostLimitExceeded, NflowVM, RunContext, RunKilled
from nflow.jsapi._vm import DirtyRuntime, FlowResult
from nflow.playbook import Node, Playbook
from nflow.sandbox import JsError, JsTimeout

# At most this many nodes in one evaluation: a node that never ends is stopped within the
# limits of the nodes it could have been, so this bounds how long it can run.
MAX_CHAIN = 16
# The words of a source that can leave a promise job behind (see jsapi's NflowVM.compile).
_ASYNC_WORDS = ("async", "await", "import")
FORM_SESSION = "nflow_form"
# A recorded run whose chains keep more payload JSON than this in the JavaScript heap (a long
# loop of large payloads) runs its remaining nodes one by one, recorded on the host as before.
RECORDED_CHARS = 4_000_000


@dataclass(frozen=True, slots=True)
class FlowPlan:
    """The js nodes of one app version that chains hold, and how they connect."""

    key: str  # the flow's name in a runtime: the version's digest and its steps' hash
    nodes: tuple[Node, ...]  # table order
    sources: tuple[str, ...]
    node_keys: tuple[str, ...]
    index: Mapping[str, int]
    spec_json: str
    # Per node id: the most nodes one entry from there may run (MAX_CHAIN on a cycle).
    reach: Mapping[str, int]
    # The nodes a chain starts from: those leading straight to another node of the table.
    entries: frozenset[str]


def _chainable(node: Node, source: str) -> bool:
    if node.type != "js" or "cache_ttl_seconds" in node.data:
        return False
    return not any(word in source for word in _ASYNC_WORDS)


def flow_plan(playbook: Playbook, modules: Mapping[str, str | None], vm: NflowVM) -> FlowPlan:
    """The plan of ``playbook`` with ``modules`` (``vm`` checks the sources' syntax)."""
    chosen: list[tuple[Node, str]] = []
    for node in playbook.nodes.values():
        if node.type != "js":
            continue
        try:
            source = node_source(node, modules)
        except ModuleNotFound:
            continue  # the node fails as it always does, in the loop
        if not _chainable(node, source):
            continue
        try:
            vm.check_syntax(source)
        except JsError:
            continue  # it fails when it is reached, alone, naming itself
        chosen.append((node, source))
    index = {node.id: i for i, (node, _) in enumerate(chosen)}
    digest = playbook.digest[:16]
    step_keys = [NflowVM.step_key(source) for _, source in chosen]
    node_keys = [f"{digest}:{node.id}" for node, _ in chosen]
    spec = [
        [
            step_keys[i],
            node_keys[i],
            node.id,
            {out: index[target] for out, target in node.outputs.items() if target in index},
        ]
        for i, (node, _) in enumerate(chosen)
    ]
    spec_json = orjson.dumps(spec).decode()
    key = f"{digest}:{hashlib.sha1(spec_json.encode()).hexdigest()[:16]}"
    successors = {
        node.id: [t for t in node.outputs.values() if t in index and t] for node, _ in chosen
    }
    reach: dict[str, int] = {}

    def longest(node_id: str, path: frozenset[str]) -> int:
        if node_id in path:
            return MAX_CHAIN  # a cycle: as many as one entry may run
        known = reach.get(node_id)
        if known is not None:
            return known
        inner = path | {node_id}
        best = 1 + max((longest(t, inner) for t in successors[node_id]), default=0)
        best = min(best, MAX_CHAIN)
        if not path & set(successors[node_id]):
            reach[node_id] = best
        return best

    for node, _ in chosen:
        reach[node.id] = longest(node.id, frozenset())
    return FlowPlan(
        key=key,
        nodes=tuple(node for node, _ in chosen),
        sources=tuple(source for _, source in chosen),
        node_keys=tuple(node_keys),
        index=index,
        spec_json=spec_json,
        reach=reach,
        entries=frozenset(node.id for node, _ in chosen if successors[node.id]),
    )


def define(vm: NflowVM, plan: FlowPlan, app: str) -> None:
    """Compile the plan's steps in ``vm`` and define the flow (once per runtime)."""
    if vm.has_flow(plan.key):
        return
    for node, source, node_key in zip(plan.nodes, plan.sources, plan.node_keys, strict=True):
        vm.compile(source)
        vm.ensure_node(
            node_key,
            data_json=orjson.dumps(dict(node.data)).decode(),
            outputs_json=orjson.dumps({k: v for k, v in node.outputs.items() if v}).decode(),
            flow=node.tab,
            app=app,
            box=node.id,
        )
    vm.define_flow(plan.key, plan.spec_json)


def run_chain(
    run: JsRun,
    plan: FlowPlan,
    node: Node,
    payload: dict[str, Any],
    steps_left: int,
    trace: list[TraceEntry],
    recording: RunRecording | None = None,
) -> tuple[Node, StepResult, int]:
    """Run the chain from ``node`` (an entry of ``plan``) with ``payload``, at most
    ``steps_left`` nodes. Appends a trace entry for each node it ran; returns the last node,
    its result and how many nodes ran. A failure raises the error naming its node, after
    the trace entry for it. ``recording`` (whose step for ``node`` has begun) records each
    node as a step of its own (see ``RunRecording.chained``)."""
    ctx = run.ctx
    limit = ctx.limits.step_timeout_seconds
    remaining = ctx.remaining()
    if remaining <= 0:
        late = ScriptTimeout(
            f"time limit of {ctx.limits.request_timeout_seconds}s for the run exceeded "
            f"before node {node.label}",
            node=node.id,
        )
        _trace(trace, [node], [""], [0.0], late)
        if recording is not None:
            recording.end(None, None, late)
        raise late
    budget = max(1, min(steps_left, plan.reach[node.id]))
    timeout = min(limit * budget, remaining)
    payload_json = orjson.dumps(payload).decode() if payload else ""
    form = ctx.sessions.get(FORM_SESSION)
    form_json = orjson.dumps(form).decode() if form else ""
    nodes = plan.nodes
    process = ctx.process

    def on_node(index: int, place: int) -> None:
        current = nodes[index]
        ctx.node_id = current.id
        if process is not None:
            process.current = current.id
        if recording is not None:
            recording.chain_node(place)

    def once() -> FlowResult:
        define(run.vm, plan, run.playbook.name)
        return run.vm.run_flow(
            plan.key,
            plan.index[node.id],
            payload_json=payload_json,
            prev=run.prev,
            form_json=form_json,
            budget=budget,
            step_seconds=min(limit, remaining),
            timeout=timeout,
            label=f"node {node.id}",
            on_node=on_node,
            recorded=recording is not None,
        )

    def chained(
        ran: list[Node],
        outs: list[str],
        durations: list[float],
        last: tuple[str | None, Any, ExecutionError | None],
    ) -> None:
        assert recording is not None
        vm, number, runs = run.vm, recording.chains, run.vm.runs

        def kept() -> list[Any] | None:
            # Read back only while no other run has used the runtime since.
            return vm.chain_record(number) if vm.runs == runs else None

        recording.chained(ran, outs, durations, last, kept)

    started = time.perf_counter()
    try:
        try:
            result = once()
        except DirtyRuntime:
            run.replace_vm()
            started = time.perf_counter()
            result = once()
    except (JsError, JsTimeout, RunKilled, HostLimitExceeded, TypeError, ValueError) as exc:
        ran, outs, durations = _steps(plan, node, run.vm.flow_marks(), started)
        last = ran[-1]
        # The time this node had: its limit, within what was left of the run's (the flow's
        # evaluation stops at the sum of its nodes' limits).
        had = min(limit, timeout - sum(durations[:-1]) / 1000.0)
        error = step_failure(run, last, exc, had)
        _trace(trace, ran, outs, durations, error)
        _at_node(ctx, last)
        if recording is not None:
            chained(ran, outs, durations, (None, None, error))
        raise error from None
    ran, outs, durations = _steps(plan, node, result.marks, started)
    last = ran[-1]
    _at_node(ctx, last)
    if result.overran or durations[-1] > min(limit, remaining) * 1000.0:
        overran = ScriptTimeout(
            f"node {last.label} ran longer than its time limit of {min(limit, remaining):.3g}s",
            node=last.id,
        )
        _trace(trace, ran, outs, durations, overran)
        if recording is not None:
            chained(ran, outs, durations, (None, None, overran))
        raise overran
    outs[-1] = result.next
    _trace(trace, ran, outs, durations, None)
    if result.delta_json:
        # The payloads of the nodes before the last, as the loop would have merged them.
        form.update(orjson.loads(result.delta_json))
        ctx.sessions.mark(FORM_SESSION)
    try:
        new_payload = orjson.loads(result.payload_json)
    except orjson.JSONDecodeError:
        new_payload = {}
    step = StepResult(result.next, new_payload if isinstance(new_payload, dict) else {})
    if recording is not None:
        chained(ran, outs, durations, (step.next, step.payload, None))
        recording.js_chars = result.kept_chars
    return last, step, len(ran)


def _steps(
    plan: FlowPlan, entry: Node, marks: list[Any], started: float
) -> tuple[list[Node], list[str], list[float]]:
    """The nodes a flow ran, the output each followed ("" for the last) and each one's
    duration in ms, from its marks; the last one's ends now."""
    total = (time.perf_counter() - started) * 1000.0
    ran = [entry]
    outs: list[str] = []
    durations: list[float] = []
    if marks:
        nodes = plan.nodes
        first = before = float(marks[0])
        for i in range(1, len(marks) - 2, 3):
            ran.append(nodes[int(marks[i])])
            outs.append(str(marks[i + 1]))
            at = float(marks[i + 2])
            durations.append(at - before)
            before = at
        # The marks' times are increasing: the durations so far add up to before - first.
        durations.append(max(0.0, total - (before - first)))
    else:
        durations.append(max(0.0, total))
    outs.append("")
    return ran, outs, durations


def _trace(
    trace: list[TraceEntry],
    ran: list[Node],
    outs: list[str],
    durations: list[float],
    error: ExecutionError | None,
) -> None:
    last = len(ran) - 1
    append = trace.append
    for i in range(last):
        node = ran[i]
        append(trace_entry(node.id, node.type, outs[i], durations[i], ""))
    node = ran[last]
    if error is None:
        append(trace_entry(node.id, node.type, outs[last], durations[last], ""))
    else:
        append(trace_entry(node.id, node.type, "", durations[last], str(error)))


def _at_node(ctx: RunContext, node: Node) -> None:
    ctx.node_id = node.id
    process = ctx.process
    if process is not None:
        process.current = node.id
