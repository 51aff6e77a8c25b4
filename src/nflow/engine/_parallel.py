"""Fork/join inside a run: ``parallel`` runs the branches on its outputs at once, ``join``
is where they meet.

Each connected output of a ``parallel`` node starts a branch: a run of its own (its own
wid, limits, JS runtime and history record, with the run as its parent) from the node that
output connects to, on a copy of the payload, until it reaches a ``join`` node or its flow
ends. Branches run on a bounded thread pool (``limits.parallel_branches`` per worker; a
node's ``max_concurrency`` lowers it for that node), all within what is left of the run's
time. When every branch is done, their payloads are joined (see :func:`joined`) and the run
goes on at the ``join`` node they reached. A branch's response writes are dropped: the
response is written after the join.

The whole fork is one host call of the run (:data:`PARALLEL_CALL`), so a recorded run keeps
what its branches gave and a replay is answered from it without running them again.
"""

from __future__ import annotations

__all__ = [
    "JOIN_TYPE",
    "PARALLEL_CALL",
    "PARALLEL_TYPE",
    "BranchPool",
    "step_join",
    "step_parallel",
]

import concurrent.futures
import functools
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from nflow._http import Request
from nflow.engine._results import Execution, StepResult
from nflow.errors import ExecutionError, ScriptTimeout
from nflow.jsapi import RunContext, Sessions
from nflow.playbook import Node, Playbook

if TYPE_CHECKING:
    from nflow.catalog import Catalog

PARALLEL_TYPE = "parallel"
JOIN_TYPE = "join"
PARALLEL_CALL = "nflow.parallel"
_OUTPUT_NUMBER = re.compile(r"(\d+)$")


class BranchPool:
    """The threads branches run on, made on first use; one per engine."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.size = 0

    def get(self, size: int) -> concurrent.futures.ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                pool = self._pool
                if pool is None:
                    pool = self._pool = concurrent.futures.ThreadPoolExecutor(
                        max_workers=size, thread_name_prefix="nflow-branch"
                    )
                    self.size = size
        return pool


class _Runner(Protocol):
    """What a parallel step uses of the engine: its branch pool and Engine.run."""

    branches: BranchPool

    def run(
        self,
        *,
        playbook: Playbook,
        start: str,
        request: Request,
        endpoint: str,
        vars: Mapping[str, str] | None = None,
        sessions: Sessions | None = None,
        payload: dict[str, Any] | None = None,
        isolated: bool = False,
        catalog: Catalog | None = None,
        parent_run: str | None = None,
        branch: bool = False,
        deadline: float | None = None,
    ) -> Execution: ...


class _ForkingRun(Protocol):
    ctx: RunContext
    playbook: Playbook
    catalog: Catalog | None
    branch: bool


def _order(output: str) -> tuple[int, str]:
    match = _OUTPUT_NUMBER.search(output)
    return (int(match.group(1)) if match else 1 << 30, output)


def step_parallel(
    engine: _Runner, run: _ForkingRun, node: Node, payload: dict[str, Any]
) -> StepResult:
    ctx = run.ctx
    if run.branch:
        raise ExecutionError(
            f"parallel node {node.label} is inside a branch of another parallel node; "
            "nested parallel nodes are not supported",
            node=node.id,
        )
    branches = [(out, target) for out, target in node.outputs.items() if target]
    branches.sort(key=lambda pair: _order(pair[0]))
    if not branches:
        return StepResult("", payload)
    live = functools.partial(_run_branches, engine, run, node, payload, branches)
    interceptor = ctx.host_interceptor
    args = (node.id, [target for _, target in branches])
    outcome = interceptor.around(PARALLEL_CALL, args, live) if interceptor else live()
    if not isinstance(outcome, Mapping):
        raise ExecutionError(f"parallel node {node.label}: no outcome", node=node.id)
    failure = outcome.get("error")
    if isinstance(failure, Mapping):
        error = ExecutionError(str(failure.get("message")), node=node.id)
        error.status = int(failure.get("status") or 500)
        limit = failure.get("limit")
        if limit:
            error.limit = limit
        raise error
    join = str(outcome.get("join") or "")
    payloads = [p if isinstance(p, dict) else {} for p in outcome.get("payloads") or ()]
    join_node = run.playbook.nodes.get(join) if join else None
    merged = joined(payload, payloads, join_node.data if join_node is not None else {})
    return StepResult("", merged, goto=join)


def joined(
    before: dict[str, Any], payloads: list[dict[str, Any]], join_data: Mapping[str, Any]
) -> dict[str, Any]:
    """The payload after a fork: with ``into`` in the join node's data, the payload before
    it plus ``into`` holding each branch's payload (in output order); else the payload
    before it updated by each branch's payload in output order (later outputs win)."""
    into = join_data.get("into")
    out = dict(before)
    if isinstance(into, str) and into:
        out[into] = payloads
        return out
    for payload in payloads:
        out.update(payload)
    return out


def _run_branches(
    engine: _Runner,
    run: _ForkingRun,
    node: Node,
    payload: dict[str, Any],
    branches: list[tuple[str, str]],
) -> dict[str, Any]:
    ctx = run.ctx
    limits = ctx.limits
    size = limits.parallel_branches
    pool = engine.branches.get(size)
    wanted = node.data.get("max_concurrency")
    at_once = size
    if isinstance(wanted, int) and not isinstance(wanted, bool) and wanted > 0:
        at_once = min(size, wanted)
    text = orjson.dumps(payload)

    def branch(target: str) -> Execution:
        return engine.run(
            playbook=run.playbook,
            start=target,
            request=ctx.request,
            endpoint=ctx.endpoint,
            vars=dict(ctx.vars),
            sessions=ctx.sessions.copy(),
            payload=orjson.loads(text),
            isolated=True,
            catalog=run.catalog,
            parent_run=ctx.wid,
            branch=True,
            deadline=ctx.deadline,
        )

    results: dict[int, Execution] = {}
    running: dict[concurrent.futures.Future[Execution], int] = {}
    waiting = list(enumerate(branches))
    while waiting or running:
        while waiting and len(running) < at_once:
            index, (_, target) = waiting.pop(0)
            running[pool.submit(branch, target)] = index
        remaining = ctx.remaining()
        done, _ = concurrent.futures.wait(
            running, timeout=max(0.0, remaining), return_when=concurrent.futures.FIRST_COMPLETED
        )
        if not done:
            raise ScriptTimeout(
                f"parallel node {node.label}: its branches ran past the run's time limit of "
                f"{limits.request_timeout_seconds}s",
                node=node.id,
            )
        for future in done:
            results[running.pop(future)] = future.result()
    return _outcome(node, branches, [results[i] for i in range(len(branches))])


def _outcome(
    node: Node, branches: list[tuple[str, str]], executions: list[Execution]
) -> dict[str, Any]:
    joins: dict[str, list[str]] = {}
    for (out, target), execution in zip(branches, executions, strict=True):
        error = execution.error
        if error is not None:
            where = f" at node {error.node}" if error.node and error.node != target else ""
            return {
                "error": {
                    "message": f"branch {out} (node {target}) of parallel node {node.label} "
                    f"failed{where}: {error.message}",
                    "status": error.status,
                    "limit": error.limit,
                }
            }
        if execution.suspended:
            return {
                "error": {
                    "message": f"branch {out} (node {target}) of parallel node {node.label} "
                    "set payload.break: a branch cannot suspend the flow",
                    "status": 500,
                    "limit": None,
                }
            }
        if execution.joined_at:
            joins.setdefault(execution.joined_at, []).append(out)
    if len(joins) > 1:
        reached = "; ".join(f"{', '.join(outs)} reached join {j}" for j, outs in joins.items())
        return {
            "error": {
                "message": f"the branches of parallel node {node.label} reach different "
                f"join nodes ({reached})",
                "status": 500,
                "limit": None,
            }
        }
    return {
        "join": next(iter(joins), ""),
        "payloads": [execution.payload or {} for execution in executions],
    }


def step_join(engine: object, run: object, node: Node, payload: dict[str, Any]) -> StepResult:
    """Where branches meet: the joined payload goes on through ``output_1``."""
    return StepResult("output_1", payload)
