"""What runs and steps produce: step results, the node trace, the finished execution.

Also the few helpers every kind of step shares (its time limit, an unknown node type) and
:func:`limit_of`, the typed name of the limit a failed run hit.
"""

from __future__ import annotations

__all__ = [
    "Execution",
    "NodeInterceptor",
    "StepObserver",
    "StepResult",
    "TraceEntry",
    "UnknownNodeType",
    "limit_of",
    "step_timeout",
    "trace_entry",
]

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nflow._http import Response
from nflow.errors import ExecutionError, LimitKind, ScriptTimeout
from nflow.history import RunRecord
from nflow.jsapi import RunContext
from nflow.playbook import Node


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a step decided: the output to follow ("" ends the flow) and the new payload.

    ``goto``: a node to go on at instead of an output's (a parallel node's join)."""

    next: str
    payload: dict[str, Any]
    goto: str = ""


@dataclass(frozen=True, slots=True)
class TraceEntry:
    node: str
    type: str
    next: str
    duration_ms: float
    error: str = ""


_new = object.__new__
# The slots' descriptors set a field even on a frozen instance.
_fields: Mapping[str, Any] = vars(TraceEntry)
_set_node = _fields["node"].__set__
_set_type = _fields["type"].__set__
_set_next = _fields["next"].__set__
_set_duration = _fields["duration_ms"].__set__
_set_error = _fields["error"].__set__


def trace_entry(node: str, type: str, next: str, duration_ms: float, error: str) -> TraceEntry:
    """``TraceEntry(node, type, next, duration_ms, error)``, made several times faster: the
    frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, and the
    engine makes one per node of every run (ten for a chain of ten js nodes)."""
    entry: TraceEntry = _new(TraceEntry)
    _set_node(entry, node)
    _set_type(entry, type)
    _set_next(entry, next)
    _set_duration(entry, duration_ms)
    _set_error(entry, error)
    return entry


@dataclass(slots=True)
class Execution:
    """A finished run: its wid, the node trace and the response."""

    wid: str
    app: str
    response: Response
    trace: list[TraceEntry] = field(default_factory=list)
    suspended: bool = False
    error: ExecutionError | None = None
    forks: list[str] = field(default_factory=list)
    # What the execution history recorded of the run (None when it was not recorded).
    record: RunRecord | None = None
    # A branch of a parallel node: its payload at the end, and the join node it reached.
    payload: dict[str, Any] | None = None
    joined_at: str = ""


# Cross-cutting work around each step (tracing spans, ``-v`` node lines): called with the
# run's context, the node and ``proceed``, which runs the rest of the chain and the step; it
# returns (or raises) what ``proceed`` did.
NodeInterceptor = Callable[[RunContext, Node, Callable[[], StepResult]], StepResult]


class StepObserver(Protocol):
    """Sees each step of one run just before it runs: a debugger pauses the run here.

    Given to ``Engine.run(observer=...)`` for that run only; runs without one pay a single
    ``is None`` test per step. ``payload`` is what the step is about to get (do not change
    it); ``trace`` the steps done so far. It may block, and may raise an ExecutionError to
    end the run at this node.
    """

    def before_step(
        self,
        ctx: RunContext,
        node: Node,
        payload: Mapping[str, Any],
        trace: Sequence[TraceEntry],
    ) -> None: ...


class Checkpointer(Protocol):
    """Makes one run durable: given to ``Engine.run(checkpoint=...)`` for that run only.

    ``begin`` is called once the run's context is ready, before its first node (a resumed
    run takes back its sessions and what it had written); ``node_done`` after each node,
    before the next starts, with the output it took and the payload it left: the run's state
    is committed there. Either may raise an ExecutionError to end the run (its lease is lost).
    """

    def begin(self, ctx: RunContext) -> None: ...

    def node_done(
        self, ctx: RunContext, node: Node, next_out: str, payload: dict[str, Any]
    ) -> None: ...


class UnknownNodeType(ExecutionError):
    def __init__(self, node: Node) -> None:
        super().__init__(f"node {node.label} has unknown type {node.type!r}", node=node.id)
        self.node_type = node.type


def step_timeout(ctx: RunContext, node: Node) -> float:
    """The time a step may take: its app's step limit, within what is left of the run's."""
    limits = ctx.limits
    remaining = ctx.remaining()
    if remaining <= 0:
        raise ScriptTimeout(
            f"time limit of {limits.request_timeout_seconds}s for the run exceeded "
            f"before node {node.label}",
            node=node.id,
        )
    return float(min(limits.step_timeout_seconds, remaining))


def limit_of(exc: ExecutionError) -> LimitKind | None:
    """The limit a run failed on ("time", "memory", "steps" ...), or None for other errors."""
    return exc.limit
