"""Recording a run for the execution history, as it happens.

A :class:`RunRecording` is two things to one run: the run's host-call interceptor (every
call a script makes, in order, with its arguments and result or error) and the engine's step
hooks (:meth:`~RunRecording.begin` and :meth:`~RunRecording.end` around each node). At the
end, :meth:`~RunRecording.record` turns it into a :class:`~nflow.history.RunRecord`.

The clock is not a host call (scripts spin on ``Date.now()``): the JavaScript side tapes
each step's clock reads and the VM hands the tape over once when the step ends; it is kept
as one host call named :data:`CLOCK_CALL` at the end of the step's calls. Response writes
(``c.JSON``, ``c.SetHeader`` ...) are kept apart from the other calls, in ``writes``.

Every collected run is recorded in full, in or outside the history's sample: a run outside
it is kept if it fails, and a failed run must replay like any other. What a run costs while
it runs is therefore kept to references: each step's payloads (the objects the step got and
produced, which nothing changes afterwards), and each host call as a tuple. Records and
:class:`~nflow.history.HostCall` s are built only for a run that is kept.

A run outside the sample runs its chains of js nodes in one entry into the sandbox (see
``engine._chains``): :meth:`~RunRecording.chained` keeps such a chain as one entry, with the
host calls, response writes and console lines of the whole chain and where each node's own
begin (the chain tells the host before a node's first one). The JavaScript side keeps each
node's payloads and clock tape; they are read from it, and the chain's entry split into one
step per node, only if the run is built into a record.

Replays and re-runs subclass it: they answer host calls from a record instead of calling.
"""

from __future__ import annotations

__all__ = [
    "AUTH_NODE",
    "CLOCK_CALL",
    "UNRECORDED",
    "WRITERS",
    "HistorySink",
    "RunRecording",
    "write_json",
]

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from nflow._http import Request, Response
from nflow.errors import ExecutionError, ScriptError
from nflow.history import HistoryPolicy, HostCall, RunRecord, StepError, StepRecord
from nflow.jsapi import HostCallInterceptor, HostError, RunContext

# The host functions that write the response: run again on replay, never answered from it.
WRITERS = frozenset(
    {"c.write_json", "c.write_jsonp", "c.write", "c.redirect", "c.error", "c.set_header"}
    | {"c.set_cookie"}
)
CLOCK_CALL = "Date.now"
_perf = time.perf_counter
# The node id of the auth trigger's step (it runs before the first node).
AUTH_NODE = "nflow_auth"
# The host calls of a step recorded by an older nflow from the run's node trace alone (a
# failed run outside the sample): they were not recorded, and such a run cannot be replayed.
UNRECORDED = "nflow.unrecorded"


class HistorySink(Protocol):
    """Where recorded runs go (a :class:`~nflow.history.HistoryWriter`)."""

    @property
    def policy(self) -> HistoryPolicy: ...

    def submit(self, run: RunRecord) -> bool: ...


class RunRecording:
    """What one run did, step by step. Attach it to the run's context with :meth:`attach`.

    ``light``: the run is outside the history's sample, so it is recorded the same way but
    built into a record only if it fails (the engine decides; see ``Engine._recorded``).
    """

    # Slots: one of these is made for every collected run, most of them let go at once.
    __slots__ = (
        "_begun",
        "_calls",
        "_ended",
        "_perf0",
        "_starts",
        "_writes",
        "chains",
        "ctx",
        "inner",
        "journey",
        "js_chars",
        "kind",
        "last_writes",
        "light",
        "parent",
        "started",
    )

    def __init__(
        self, *, kind: str = "request", parent: str | None = None, light: bool = False
    ) -> None:
        self.kind = kind  # request | fork | rerun | replay (never written)
        self.parent = parent
        self.light = light
        self.journey: str | None = None
        self.ctx: RunContext | None = None
        self.inner: HostCallInterceptor | None = None
        self.started = 0.0
        self._perf0 = 0.0
        # Each step as it ended, turned into StepRecords only if the run is kept: most runs
        # outside the sample succeed and are let go.
        self._ended: list[Any] = []  # tuples, and _Chain entries
        # The current step's host calls: (name, args, result, error, duration in seconds).
        self._calls: list[tuple[Any, ...]] = []
        self._writes: list[Any] = []
        self._begun: tuple[Any, ...] = ()
        self.last_writes: Sequence[Any] = ()
        # The chain running now: where each node's host calls, writes and console lines
        # start, by the node's place in the chain (made when a chain tells the first one).
        self._starts: dict[int, tuple[int, int, int]] | None = None
        self.chains = 0  # chains this run ran with a recording (the JS side numbers them)
        self.js_chars = 0  # payload JSON the JS side keeps for them, in characters

    def attach(self, ctx: RunContext) -> None:
        """Start recording ``ctx``'s run: its host calls, clock and console."""
        self.ctx = ctx
        self.started = time.time()
        self._perf0 = time.perf_counter()
        ctx.console = []
        self.inner = ctx.host_interceptor
        ctx.host_interceptor = self
        ctx.clock = "r"

    def detach(self) -> None:
        """The run is over: let go of its context. The context holds this recording as its
        interceptor and the recording the context, a cycle that only the garbage collector
        would free, taking the whole run (request, payloads, response) with it; freeing it
        there made every recorded run cost a tenth more on small flows."""
        ctx = self.ctx
        if ctx is not None and ctx.host_interceptor is self:
            ctx.host_interceptor = self.inner
        self.ctx = None

    # --- host calls (the run's interceptor) ---------------------------------------------
    def around(self, name: str, args: tuple[Any, ...], call: Callable[[], object]) -> object:
        inner = self.inner
        if inner is not None:
            outer = call

            def call() -> object:
                return inner.around(name, args, outer)

        if name in WRITERS:
            self._writes.append((name, args))  # see write_json
            return call()
        # The call's place is taken when it starts: calls a script awaits return in any
        # order, and a replay makes them in the order they started.
        calls = self._calls
        slot = len(calls)
        calls.append((name, args, None, "cancelled", 0.0))
        t0 = _perf()
        try:
            result = call()
        except HostError as exc:
            calls[slot] = (name, args, None, str(exc), _perf() - t0)
            raise
        except Exception as exc:
            calls[slot] = (name, args, None, f"{type(exc).__name__}: {exc}", _perf() - t0)
            raise
        calls[slot] = (name, args, result, None, _perf() - t0)
        return result

    # --- steps --------------------------------------------------------------------------
    def begin(self, node_id: str, node_type: str, node_name: str, payload: Any) -> None:
        """A step starts with ``payload`` (which it must not change)."""
        self._begun = (node_id, node_type, node_name, payload, _perf())

    def end(self, next_out: str | None, payload: Any, error: ExecutionError | None) -> None:
        """The step that began last ended: its output and payload, or its error."""
        ended = _perf()
        console: tuple[str, ...] = ()
        tape = None
        ctx = self.ctx
        if ctx is not None:
            lines = ctx.console
            if lines:
                console = tuple(lines)
                lines.clear()
            tape = ctx.tape
            ctx.tape = None
        # The step's lists move into the record; the next step starts new ones (only when
        # these were used: most steps make no host call).
        calls: Sequence[Any] = self._calls
        if calls:
            self._calls = []
        else:
            calls = ()
        writes: Sequence[Any] = self._writes
        if writes:
            self._writes = []
        else:
            writes = ()
        self.last_writes = writes
        self._ended.append(
            (self._begun, ended, next_out, payload, error, calls, tape, console, writes)
        )
        self._begun = ()

    # --- chains of js nodes run in one entry ------------------------------------------
    def chain_node(self, place: int) -> None:
        """The node at ``place`` (0 first) of the running chain is about to make its first
        host call or console line."""
        ctx = self.ctx
        lines = ctx.console if ctx is not None else None
        starts = self._starts
        if starts is None:
            starts = self._starts = {}
        starts[place] = (len(self._calls), len(self._writes), len(lines or ()))

    def chained(
        self,
        nodes: Sequence[Any],
        outs: Sequence[str],
        durations_ms: Sequence[float],
        last: tuple[str | None, Any, ExecutionError | None],
        kept: Callable[[], list[Any] | None],
    ) -> None:
        """The chain that began with the step begun last ran ``nodes`` (playbook nodes),
        each leaving by its output in ``outs`` and taking its duration; ``last`` is the
        last node's (next, payload, error). ``kept`` reads what the JavaScript side kept
        per node (see ``NflowVM.chain_record``), called only if the run is kept."""
        ctx = self.ctx
        console: tuple[str, ...] = ()
        if ctx is not None and ctx.console:
            console = tuple(ctx.console)
            ctx.console.clear()
        if ctx is not None:
            ctx.tape = None
        calls: Sequence[Any] = self._calls
        if calls:
            self._calls = []
        writes: Sequence[Any] = self._writes
        if writes:
            self._writes = []
        self.last_writes = writes
        starts, self._starts = self._starts or {}, None
        self.chains += 1
        self._ended.append(
            _Chain(
                self._begun, tuple(nodes), tuple(outs), tuple(durations_ms), last,
                calls, writes, console, starts, kept,
            )
        )  # fmt: skip
        self._begun = ()

    @property
    def steps(self) -> list[StepRecord]:
        """The steps recorded so far."""
        out: list[StepRecord] = []
        ended_steps: list[tuple[Any, ...]] = []
        for entry in self._ended:
            if isinstance(entry, _Chain):
                ended_steps.extend(entry.steps())
            else:
                ended_steps.append(entry)
        for begun, ended, next_out, payload, error, calls, tape, console, writes in ended_steps:
            node_id, node_type, node_name, before, started = begun
            host_calls = [
                HostCall(
                    function=name,
                    args=args,
                    result=result,
                    error=failure,
                    duration_ms=seconds * 1000.0,
                )
                for name, args, result, failure, seconds in calls
            ]
            if tape:
                host_calls.append(HostCall(function=CLOCK_CALL, result=tape))
            out.append(
                StepRecord(
                    index=len(out),
                    node_id=node_id,
                    node_type=node_type,
                    node_name=node_name,
                    started_at=self.started + (started - self._perf0),
                    payload_before=before,
                    payload_after=payload if error is None else None,
                    next=next_out if error is None else None,
                    duration_ms=(ended - started) * 1000.0,
                    host_calls=tuple(host_calls),
                    console=console,
                    writes=tuple(write_json(write) for write in writes),
                    error=_step_error(error) if error is not None else None,
                )
            )
        return out

    # --- the whole run ------------------------------------------------------------------
    @staticmethod
    def status(error: ExecutionError | None, response: Response | None) -> str:
        """``ok``, ``error`` (a step failed, or the run answered 5xx) or ``limit``."""
        if error is not None:
            return "limit" if error.limit is not None else "error"
        if response is not None and response.status >= 500:
            return "error"
        return "ok"

    def record(
        self,
        *,
        app: str,
        version: str,
        start: str,
        request: Request,
        response: Response | None,
        error: ExecutionError | None,
        journey: str | None,
        isolated: bool,
    ) -> RunRecord:
        ctx = self.ctx
        assert ctx is not None
        status = self.status(error, response)
        return RunRecord(
            id=ctx.wid,
            app=app,
            started_at=self.started,
            ended_at=time.time(),
            status=status,  # type: ignore[arg-type]
            version=version,
            starter=f"{self.kind}:{start}",
            wid=ctx.wid,
            parent_id=self.parent,
            journey=journey,
            seed=ctx.seed,
            method=request.method,
            path=request.path,
            query=request.query_string,
            request_headers=tuple(request.header_items),
            request_body=request.body or None,
            response_status=None if isolated or response is None else response.status,
            response_headers=() if isolated or response is None else _headers(response.headers),
            response_body=None if isolated or response is None else response.body,
            limit_hit=error.limit if error is not None else None,
            error=error.message if error is not None else None,
            steps=tuple(self.steps),
        )


@dataclass(frozen=True, slots=True)
class _Chain:
    """A chain of js nodes that ran in one entry, as :meth:`RunRecording.chained` got it."""

    begun: tuple[Any, ...]  # the first node's, as begin() took it
    nodes: tuple[Any, ...]
    outs: tuple[str, ...]
    durations_ms: tuple[float, ...]
    last: tuple[str | None, Any, ExecutionError | None]
    calls: Sequence[Any]
    writes: Sequence[Any]
    console: tuple[str, ...]
    starts: dict[int, tuple[int, int, int]]
    kept: Callable[[], list[Any] | None]

    def steps(self) -> list[tuple[Any, ...]]:
        """One ended step per node, in the shape ``RunRecording.end`` keeps."""
        count = len(self.nodes)
        kept = self.kept() or []
        # Where each node's calls, writes and lines start: a node the chain never told the
        # host about made none, so it starts where the next one does.
        bounds: list[tuple[int, int, int]] = [(0, 0, 0)] * (count + 1)
        bounds[count] = (len(self.calls), len(self.writes), len(self.console))
        for place in range(count - 1, 0, -1):
            bounds[place] = self.starts.get(place, bounds[place + 1])
        node_id, node_type, node_name, first_before, started = self.begun
        next_last, payload_last, error = self.last
        out: list[tuple[Any, ...]] = []
        for place, node in enumerate(self.nodes):
            own = kept[place] if place < len(kept) and isinstance(kept[place], list) else None
            if place == 0:
                begun = (node_id, node_type, node_name, first_before, started)
            else:
                before = _loads(own[0]) if own is not None else None
                begun = (node.id, node.type, node.name, before, started)
            ended = started + self.durations_ms[place] / 1000.0
            if place == count - 1:
                next_out, payload, failure = next_last, payload_last, error
            else:
                next_out = self.outs[place]
                payload = _loads(own[1]) if own is not None else None
                failure = None
            (c0, w0, l0), (c1, w1, l1) = bounds[place], bounds[place + 1]
            tape = own[2] if own is not None and len(own) > 2 else None
            out.append(
                (
                    begun, ended, next_out, payload, failure, tuple(self.calls[c0:c1]),
                    tape, self.console[l0:l1], tuple(self.writes[w0:w1]),
                )
            )  # fmt: skip
            started = ended
        return out


def write_json(write: tuple[str, Sequence[Any]]) -> dict[str, Any]:
    """A response write as a record keeps it. A run keeps its writes as ``(function, args)``
    while it runs: most runs are never built into a record."""
    name, args = write
    return {"function": name, "args": list(args)}


def _loads(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def _headers(pairs: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in pairs)


def _step_error(error: ExecutionError) -> StepError:
    if isinstance(error, ScriptError):
        return StepError(message=error.message, stack=error.stack, line=error.line)
    return StepError(message=error.message)
