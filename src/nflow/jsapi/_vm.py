"""An nflow JS world on top of one sandbox runtime: prelude, compiled steps, per-request reset."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from nflow.jsapi._async import AwaitedCalls
from nflow.jsapi._context import HostError, RunContext
from nflow.jsapi._host import HostTable
from nflow.sandbox import EngineLimits, JsError, JsRuntime, JsTimeout, new_runtime

log = logging.getLogger("nflow.js")

_PRELUDE = resources.files("nflow.jsapi").joinpath("prelude.js").read_text("utf-8")
_FRAME = re.compile(r"at (\S+) \((?:eval_script|check):(\d+):\d+\)")
# Function names of the prelude: frames to skip when looking for the user's line.
_PRELUDE_FRAMES = frozenset(
    {
        "call",
        "lazy",
        "code",
        "toBytes",
        "<anonymous>",
        "run",
        "settle",
        "<eval>",
        "JSON",
        "JSONPretty",
        "JSONP",
        "JSONBlob",
        "String",
        "HTML",
        "HTMLBlob",
        "XMLBlob",
        "Blob",
        "NoContent",
        "Redirect",
        "Error",
        "QueryParam",
        "FormValue",
        "GetHeader",
        "SetHeader",
        "Cookie",
        "SetCookie",
        "find_element",
        "url_values_to_map",
        "clean_json",
        "require",
        "atob",
        "btoa",
    }
)
STEP_FUNCTION = "__nf_step"
# The host function behind the request's lazy values (header, form, env ...): the prelude's
# REQ(name). A dotted name, so it never becomes a global.
REQUEST_VALUE = "request.value"


# A step without these words cannot queue a promise job by syntax alone; see run() in
# prelude.js for the API side. Words inside strings or comments only cost the fast path.
_ASYNC_WORDS = re.compile(r"async|await|import")
# A step whose source never names the clock reads it live, untaped, even when its run is
# recorded: the tape's cost is paid only where it can be used. A step that reaches the clock
# another way (a computed global name) replays with clock reads the record lacks, and the
# replay says so.
_CLOCK_WORDS = re.compile(r"Date|performance")


@functools.lru_cache(maxsize=4096)
def _step_key(source: str) -> str:
    # Cached: hashing the same module source on every request is measurable on hello flows.
    return hashlib.sha1(source.encode("utf-8")).hexdigest()


def quote(text: str) -> str:
    """A JS string literal for ``text`` (JSON strings are valid JS string literals)."""
    return orjson.dumps(text).decode()


class NflowVM:
    """One runtime with nflow's globals. Owned by one thread; runs one execution at a time."""

    def __init__(self, *, host: HostTable, limits: EngineLimits | None = None) -> None:
        self._host = host
        self._token = secrets.token_hex(16)
        self._qtoken = quote(self._token)
        self.ctx: RunContext | None = None
        self._rt: JsRuntime = new_runtime(limits=limits, on_console=self._console)
        # The message of the HostError a host function raised last, for the script (ERR()).
        self.host_error: str | None = None
        for name in host.names():
            self._rt.bind("__h:" + name, host.entry(name, self))
        # The request's lazy values (the prelude's REQ): a host call like the others, so a
        # recorder sees what the script read (env, url_base ...).
        self._rt.bind("__h_req", host.entry(REQUEST_VALUE, self))
        self._rt.bind("__h_err", self._take_error)
        awaitable = host.awaitable_names()
        self._awaited = AwaitedCalls({name: host.entry(name, self) for name in awaitable}, self)
        self._settled: list[list[object]] = []
        self._rt.bind("__h_async", self._start_awaited)
        self._rt.bind("__h_settled", self._take_settled)
        # Told which node of a compiled flow runs (its table index and its place in the
        # flow's run), before its first host call or console line: the flow's runner, set
        # for one evaluation.
        self.on_node: Callable[[int, int], None] | None = None
        self._rt.bind("__h_at", self._at)
        prelude = (
            _PRELUDE.replace("__NF_TOKEN__", self._qtoken)
            .replace("__NF_NAMES__", orjson.dumps(host.names()).decode())
            .replace("__NF_AWAITABLE__", orjson.dumps(awaitable).decode())
        )
        self._rt.eval(prelude, timeout=10.0)
        self._steps: set[str] = set()
        self._sync_steps: set[str] = set()
        self._clock_steps: set[str] = set()
        self._nodes: set[str] = set()
        self._flows: set[str] = set()
        # Watched by nflow.watchdog: the monotonic deadline of the evaluation running now.
        self.deadline = 0.0
        self.label = "a JS runtime"
        self._fresh = True
        self.runs = 0
        # Evaluations that ran steps (one per node, or one per compiled chain of nodes).
        self.entries = 0
        self.broken = False

    # host entry points ------------------------------------------------------------------
    def _take_error(self) -> str | None:
        error, self.host_error = self.host_error, None
        return error

    def _start_awaited(self, name: str, args: list[Any]) -> int:
        try:
            return self._awaited.start(name, args)
        except HostError as exc:
            self.host_error = str(exc)
            raise

    def _take_settled(self) -> list[list[object]]:
        settled, self._settled = self._settled, []
        return settled

    def _settle_awaited(self, deadline: float) -> None:
        """Run the step on until none of its awaited host calls is left: each wait hands
        the calls that returned to their promises, whose jobs may start more."""
        awaited = self._awaited
        try:
            while awaited.pending:
                self._settled = awaited.next_batch(deadline)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JsTimeout("script exceeded its time limit")
                self._rt.drain(f"__nf.settle({self._qtoken})", timeout=remaining)
        finally:
            self._settled = []
            awaited.cancel()

    def _at(self, index: int, place: int) -> None:
        on_node = self.on_node
        if on_node is not None:
            on_node(index, place)

    def _console(self, level: str, args: list[object]) -> None:
        ctx = self.ctx
        text = " ".join(a if isinstance(a, str) else orjson.dumps(a).decode() for a in args)
        if ctx is not None and ctx.console is not None:
            ctx.console.append(text if level == "log" else f"{level}: {text}")
        pylevel = {"error": logging.ERROR, "warn": logging.WARNING, "debug": logging.DEBUG}.get(
            level, logging.INFO
        )
        log.log(
            pylevel,
            "console.%s: %s",
            level,
            text[:10_000],
            extra={
                "wid": ctx.wid if ctx else "",
                "node": ctx.node_id if ctx else "",
                "app": ctx.app if ctx else "",
            },
        )

    # steps ------------------------------------------------------------------------------
    @staticmethod
    def step_key(source: str) -> str:
        return _step_key(source)

    def compile(self, source: str, *, timeout: float = 5.0) -> str:
        """Define the step function for ``source`` (once per runtime) and return its key."""
        key = self.step_key(source)
        if key in self._steps:
            return key
        # A step must be a valid script on its own; this also stops source that closes the
        # wrapper function early from running at global level.
        self._rt.check_syntax(source)
        # The wrapper starts on the source's first line so error lines match the editor's.
        # Top-level declarations (including main) are local to one run of the step.
        code = (
            f"__nf.define({self._qtoken},{quote(key)},function {STEP_FUNCTION}(){{{source}"
            "\n;return main();});0"
        )
        self._rt.eval(code, timeout=timeout)
        self._steps.add(key)
        if _ASYNC_WORDS.search(source) is None:
            self._sync_steps.add(key)
        if _CLOCK_WORDS.search(source) is not None:
            self._clock_steps.add(key)
        return key

    def check_syntax(self, source: str) -> None:
        self._rt.check_syntax(source)

    def start(self, ctx: RunContext) -> None:
        """Attach a new run. Cleaning up after the previous one is folded into its first step."""
        self.ctx = ctx
        self.runs += 1
        self._fresh = True

    def ensure_node(
        self, key: str, *, data_json: str, outputs_json: str, flow: str, app: str, box: str
    ) -> None:
        """Register a node's static values once, so each step passes only its key."""
        if key in self._nodes:
            return
        self._rt.eval(
            f"__nf.node({self._qtoken},{quote(key)},{quote(data_json)},{quote(outputs_json)},"
            f"{quote(flow)},{quote(app)},{quote(box)});0",
            timeout=1.0,
        )
        self._nodes.add(key)

    def run_step(
        self,
        key: str,
        node_key: str,
        *,
        payload_json: str,
        prev: str,
        timeout: float,
        preset: str = "",
    ) -> tuple[str, str]:
        fresh = "1" if self._fresh else "0"
        payload = quote(payload_json) if payload_json else '""'
        extra = quote(preset) if preset else '""'
        sync = "1" if key in self._sync_steps else "0"
        ctx = self.ctx
        seed, clock = (ctx.seed, ctx.clock) if ctx is not None else (0, "")
        if clock == "r" and key not in self._clock_steps:
            clock = ""
        code = (
            f"__nf.run({self._qtoken},{fresh},{quote(key)},{quote(node_key)},"
            f"{payload},{quote(prev)},{extra},{sync},{seed >> 32},{seed & 0xFFFFFFFF},"
            f"{quote(clock) if clock else '0'})"
        )
        self.deadline = time.monotonic() + timeout
        self.entries += 1
        if ctx is not None:
            self.label = f"node {node_key.partition(':')[2]} of run {ctx.wid}"
        try:
            try:
                try:
                    result = self._rt.drain(code, timeout=timeout)
                except BaseException:
                    self._awaited.cancel()
                    raise
                if self._awaited.pending:
                    self._settle_awaited(self.deadline)
                self._fresh = False
                if result is None:  # run() refused: the previous run left the runtime dirty
                    self.broken = True
                    raise DirtyRuntime()
                if not isinstance(result, list):  # the job queue was drained: read the result
                    remaining = max(0.001, self.deadline - time.monotonic())
                    result = self._rt.eval(f"__nf.take({self._qtoken})", timeout=remaining)
            except (JsError, JsTimeout):
                if clock and ctx is not None:
                    ctx.tape = self._tape()
                raise
        finally:
            self.deadline = 0.0
        if not isinstance(result, list):
            raise JsError("Error", "the step did not finish: a promise it waited for never settled")
        if clock and ctx is not None:
            ctx.tape = result[2] if len(result) > 2 else self._tape()
        return str(result[0]), str(result[1])

    def has_flow(self, key: str) -> bool:
        return key in self._flows

    def define_flow(self, key: str, spec_json: str) -> None:
        """Define compiled flow ``key`` from steps and nodes this runtime already has."""
        # Each node says whether its source names the clock: a recorded run tapes those.
        spec = [
            [*entry[:4], 1 if entry[0] in self._clock_steps else 0]
            for entry in orjson.loads(spec_json)
        ]
        spec_json = orjson.dumps(spec).decode()
        self._rt.eval(f"__nf.chain({self._qtoken},{quote(key)},{quote(spec_json)});0", timeout=5.0)
        self._flows.add(key)

    def run_flow(
        self,
        key: str,
        entry: int,
        *,
        payload_json: str,
        prev: str,
        form_json: str,
        budget: int,
        step_seconds: float,
        timeout: float,
        label: str,
        on_node: Callable[[int, int], None],
        recorded: bool = False,
    ) -> FlowResult:
        """Run compiled flow ``key`` from its node ``entry``, at most ``budget`` nodes, in one
        evaluation of at most ``timeout`` seconds; a node that ran longer than
        ``step_seconds`` ends the flow (``overran``). ``on_node(index)`` is told which node
        runs before its first host call or console line. ``recorded``: the JS side keeps
        each node's payloads and clock tape for :meth:`chain_record`."""
        fresh = "1" if self._fresh else "0"
        ctx = self.ctx
        seed = ctx.seed if ctx is not None else 0
        payload = quote(payload_json) if payload_json else '""'
        form = quote(form_json) if form_json else '""'
        code = (
            f"__nf.flow({self._qtoken},{fresh},{quote(key)},{entry},{payload},{quote(prev)},"
            f"{form},{budget},{step_seconds * 1000.0!r},{timeout * 1000.0!r},"
            f"{seed >> 32},{seed & 0xFFFFFFFF},{1 if recorded else 0})"
        )
        self.deadline = time.monotonic() + timeout
        self.entries += 1
        if ctx is not None:
            self.label = f"{label} of run {ctx.wid}"
        self.on_node = on_node
        try:
            result = self._rt.drain(code, timeout=timeout)
            self._fresh = False
            if result is None:  # flow() refused: the previous run left the runtime dirty
                self.broken = True
                raise DirtyRuntime()
            if not isinstance(result, list):  # the job queue was drained: read the result
                result = self._rt.eval(f"__nf.take({self._qtoken})", timeout=timeout)
        finally:
            self.deadline = 0.0
            self.on_node = None
        if not isinstance(result, list):
            raise JsError("Error", "the step did not finish: a promise it waited for never settled")
        marks = result[4]
        return FlowResult(
            next=str(result[0]),
            payload_json=str(result[1]),
            delta_json=str(result[3]),
            marks=marks if isinstance(marks, list) else [],
            overran=bool(result[5]),
            kept_chars=int(result[6]) if len(result) > 6 and result[6] else 0,
        )

    def chain_record(self, number: int) -> list[Any] | None:
        """What the recorded chain ``number`` (0 first) of the current run kept per node:
        ``[payload JSON before (None for its first node), payload JSON after (None if it
        failed), clock tape or None]``; None when the runtime cannot say."""
        record = f"__nf.record({self._qtoken},{int(number)},"
        try:
            count = self._rt.eval(f"{record}-1)", timeout=1.0)
            if not isinstance(count, int):
                return None
            return [self._rt.eval(f"{record}{i})", timeout=1.0) for i in range(count)]
        except Exception:
            return None

    def flow_marks(self) -> list[Any]:
        """The marks of the flow that ran last (after it failed); [] when unknown."""
        try:
            marks = self._rt.eval(f"__nf.marks({self._qtoken})", timeout=1.0)
        except Exception:
            return []
        return marks if isinstance(marks, list) else []

    def _tape(self) -> list[Any] | None:
        """The clock tape of the step that ran last; None when the runtime cannot say."""
        try:
            tape = self._rt.eval(f"__nf.clock({self._qtoken})", timeout=1.0)
        except Exception:
            return None
        return tape if isinstance(tape, list) else None

    def run_auth(self, key: str, *, preset: str, timeout: float) -> str:
        ctx = self.ctx
        seed, clock = (ctx.seed, ctx.clock) if ctx is not None else (0, "")
        deadline = time.monotonic() + timeout
        try:
            try:
                drained = self._rt.drain(
                    f"__nf.auth({self._qtoken},{quote(key)},{quote(preset)},{seed >> 32},"
                    f"{seed & 0xFFFFFFFF},{quote(clock) if clock else '0'})",
                    timeout=timeout,
                )
            except BaseException:
                self._awaited.cancel()
                raise
            if self._awaited.pending:
                self._settle_awaited(deadline)
            self._fresh = False
            if drained is None:
                self.broken = True
                raise DirtyRuntime()
            remaining = max(0.001, deadline - time.monotonic())
            result = self._rt.eval(f"__nf.take({self._qtoken})", timeout=remaining)
        finally:
            if clock and ctx is not None:
                ctx.tape = self._tape()
        if not isinstance(result, str):
            raise JsError("Error", "the auth trigger did not finish")
        return result

    def finish(self) -> None:
        """Detach the run. Its globals are deleted when the next run's first step starts."""
        self.ctx = None

    def clean(self) -> bool:
        """Reset now (tests, shutdown); False when the runtime must be discarded."""
        try:
            ok = bool(self._rt.eval(f"__nf.end({self._qtoken})", timeout=1.0))
        except Exception:
            ok = False
        if not ok:
            self.broken = True
        return ok

    def close(self) -> None:
        self._rt.close()


@dataclass(frozen=True, slots=True)
class FlowResult:
    """What one evaluation of a compiled flow gives back; see ``__nf.flow`` in prelude.js."""

    next: str
    payload_json: str
    # The payloads of the nodes before the last, merged in order, as JSON ("" if none).
    delta_json: str
    # [start, then per node after the first: its table index, the output that led there,
    # its start], times in milliseconds on one clock.
    marks: list[Any]
    # The last node ran past its time limit and the flow stopped after it.
    overran: bool
    # The characters of payload JSON the JavaScript side keeps for this run's recording.
    kept_chars: int = 0


class DirtyRuntime(Exception):
    """The previous run left a global that cannot be removed; this runtime must be replaced."""


def user_line(exc: JsError) -> int | None:
    """The line in the step's own source where the error happened, if the stack shows it."""
    frames = _FRAME.findall(exc.stack)
    for name, line in frames:
        if name == STEP_FUNCTION:
            return int(line)
        if name not in _PRELUDE_FRAMES:
            return int(line)
    return exc.line
