"""Breakpoints: a run that pauses before chosen nodes, for someone to look at it and go on.

A :class:`DebugSession` is the :class:`~nflow.engine.StepObserver` of one run, and only of that
run: normal traffic has no observer, so it never pauses. The run has a thread of its own and
waits on a ``threading.Event`` while paused, so it holds neither the server's event loop nor
a request thread; :class:`DebugSessions` starts those threads, bounds how many are live and
ends each session ``timeout`` seconds after it started (a run still paused then is aborted).

A breakpoint names a node and may carry a :class:`Condition` on the payload the node is about
to get. Conditions are data, never code: a path into the payload (``user.id``,
``items[0].sku``, or a top-level ``key`` taken literally) and one test (``equals``,
``not_equals``, ``in``, ``exists``, ``gt``, ``lt``), with JSON's notion of equality (``1`` is
not ``true``).
"""

from __future__ import annotations

__all__ = [
    "Breakpoint",
    "BreakpointError",
    "Condition",
    "DebugSession",
    "DebugSessions",
    "SessionLimitReached",
]

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from nflow.engine._results import Execution, TraceEntry
from nflow.errors import ExecutionError, NflowError
from nflow.jsapi import RunContext
from nflow.playbook import Node

log = logging.getLogger("nflow.debug")

SessionState = Literal["running", "paused", "finished", "aborted", "timed_out"]
_OPS = ("equals", "not_equals", "in", "exists", "gt", "lt")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_MAX_LOGS = 1000
_MAX_BODY = 65_536
# An ended session stays readable until its time is up, and at least this long after it
# ended (a session that timed out can still be read); past _MAX_KEPT, the oldest go first.
_KEEP_ENDED_SECONDS = 60.0
_MAX_KEPT = 64


class BreakpointError(NflowError):
    """A breakpoint or condition that cannot be used; the message names the field."""


class SessionLimitReached(NflowError):
    """As many debug sessions are live as ``debug.max_sessions`` allows."""


class DebugAborted(ExecutionError):
    """The run's debug session was aborted, or timed out."""


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    """JSON equality: types must agree (``1`` is not ``true``), numbers compare by value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Condition:
    """A test on one value of the payload; see the module docstring."""

    path: tuple[str | int, ...]
    op: str
    value: Any = None
    text: str = ""  # the path as given, for display

    @classmethod
    def parse(cls, spec: object, where: str = "condition") -> Condition:
        """A condition from its JSON form; BreakpointError names what is wrong."""
        if not isinstance(spec, Mapping):
            raise BreakpointError(
                f"{where}: expected an object such as {{'key': 'x', 'equals': 1}}"
            )
        unknown = sorted(set(spec) - {"key", "path", *_OPS})
        if unknown:
            raise BreakpointError(
                f"{where}: unknown field {unknown[0]!r}; a condition has key or path and one of "
                + ", ".join(_OPS)
            )
        ops = [op for op in _OPS if op in spec]
        if len(ops) != 1:
            raise BreakpointError(f"{where}: give exactly one of {', '.join(_OPS)}")
        op = ops[0]
        value = spec[op]
        if "key" in spec and "path" in spec:
            raise BreakpointError(f"{where}: give key or path, not both")
        if "key" in spec:
            key = spec["key"]
            if not isinstance(key, str) or not key:
                raise BreakpointError(f"{where}.key: expected a non-empty string")
            path: tuple[str | int, ...] = (key,)
            text = key
        elif "path" in spec:
            text = spec["path"]
            if not isinstance(text, str) or not text:
                raise BreakpointError(f"{where}.path: expected a string such as 'user.id'")
            path = _parse_path(text, f"{where}.path")
        else:
            raise BreakpointError(f"{where}: give key (a top-level payload key) or path")
        if op == "exists" and not isinstance(value, bool):
            raise BreakpointError(f"{where}.exists: expected true or false")
        if op in ("gt", "lt") and not _number(value):
            raise BreakpointError(f"{where}.{op}: expected a number")
        if op == "in" and not isinstance(value, list):
            raise BreakpointError(f"{where}.in: expected an array of values")
        return cls(path=path, op=op, value=value, text=text)

    def holds(self, payload: Any) -> bool:
        found = _lookup(payload, self.path)
        op = self.op
        if op == "exists":
            return (found is not _MISSING) is self.value
        if found is _MISSING:
            return op == "not_equals"
        if op == "equals":
            return _same(found, self.value)
        if op == "not_equals":
            return not _same(found, self.value)
        if op == "in":
            return any(_same(found, v) for v in self.value)
        if not _number(found):
            return False
        return bool(found > self.value) if op == "gt" else bool(found < self.value)

    def as_json(self) -> dict[str, Any]:
        return {"path": self.text, self.op: self.value}


def _parse_path(text: str, where: str) -> tuple[str | int, ...]:
    body = text[2:] if text.startswith("$.") else text.removeprefix("$")
    parts: list[str | int] = []
    position = 0
    while position < len(body):
        if body[position] == "." and parts:
            position += 1
        match = _SEGMENT.match(body, position)
        if match is None:
            raise BreakpointError(
                f"{where}: {text!r} is not a path; write keys with dots and indexes in brackets "
                "(user.id, items[0].sku)"
            )
        parts.append(match[1] if match[1] is not None else int(match[2]))
        position = match.end()
    if not parts:
        raise BreakpointError(f"{where}: {text!r} names no key")
    return tuple(parts)


def _lookup(value: Any, path: Sequence[str | int]) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(value, list) or part >= len(value):
                return _MISSING
            value = value[part]
        else:
            if not isinstance(value, Mapping) or part not in value:
                return _MISSING
            value = value[part]
    return value


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """Pause before ``node`` runs, when ``condition`` (if any) holds on its payload."""

    node: str
    condition: Condition | None = None

    @classmethod
    def parse(cls, spec: object, where: str = "breakpoint") -> Breakpoint:
        if not isinstance(spec, Mapping):
            raise BreakpointError(f"{where}: expected an object with node (and condition)")
        unknown = sorted(set(spec) - {"node", "condition"})
        if unknown:
            raise BreakpointError(f"{where}: unknown field {unknown[0]!r}")
        node = spec.get("node")
        if not isinstance(node, str) or not node:
            raise BreakpointError(f"{where}.node: expected a node id")
        raw = spec.get("condition")
        condition = None if raw is None else Condition.parse(raw, f"{where}.condition")
        return cls(node=node, condition=condition)

    def hit(self, node: Node, payload: Mapping[str, Any]) -> bool:
        return node.id == self.node and (self.condition is None or self.condition.holds(payload))

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node}
        if self.condition is not None:
            out["condition"] = self.condition.as_json()
        return out


def _plain(value: Any) -> Any:
    """A JSON copy: the run goes on changing its own objects after a pause."""
    return orjson.loads(orjson.dumps(value, default=str))


class DebugSession:
    """One run under a debugger: paused before breakpoints, stepped, continued or aborted.

    The run's thread calls :meth:`before_step` and :meth:`finish`; API handlers call the
    others from any thread.
    """

    def __init__(
        self,
        *,
        breakpoints: Sequence[Breakpoint],
        timeout: float,
        request: Mapping[str, Any],
        kill: Callable[[str], object] | None = None,
        id_prefix: str = "",
    ) -> None:
        self.id = id_prefix + secrets.token_hex(8)
        self.wid = f"dbg-{self.id}"
        self.breakpoints = tuple(breakpoints)
        self.request = dict(request)
        self.created = time.time()
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self._kill = kill
        self._lock = threading.Lock()
        self._resume = threading.Event()
        self._command: Literal["continue", "step", "abort"] = "continue"
        self._stop_reason = ""
        self.state: SessionState = "running"
        self.paused_at: Node | None = None
        self.payload: Any = None
        self.trace: list[TraceEntry] = []
        self.logs: list[dict[str, str]] = []
        self.response: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.pauses = 0
        self.ended_at: float | None = None  # monotonic

    # the run's side ----------------------------------------------------------------------
    def before_step(
        self,
        ctx: RunContext,
        node: Node,
        payload: Mapping[str, Any],
        trace: Sequence[TraceEntry],
    ) -> None:
        with self._lock:
            self.trace = list(trace)
            command = self._command
            if command == "abort":
                raise DebugAborted(self._stop_message(), node=node.id)
            if command != "step" and not any(b.hit(node, payload) for b in self.breakpoints):
                return
            self.state = "paused"
            self.paused_at = node
            self.payload = _plain(payload)
            self.pauses += 1
            self._resume.clear()
        process = ctx.process
        if process is not None:
            process.state = "paused"
            process.current = node.id
            process.current_type = node.type
        paused = time.monotonic()
        resumed = self._resume.wait(max(0.0, self.deadline - paused))
        # Time spent paused does not count against the run's own time limit.
        ctx.deadline += time.monotonic() - paused
        with self._lock:
            if not resumed:
                self._command = "abort"
                self._stop_reason = "timed_out"
            self.paused_at = None
            self.payload = None
            if self._command == "abort":
                raise DebugAborted(self._stop_message(), node=node.id)
            self.state = "running"

    def _stop_message(self) -> str:
        if self._stop_reason == "timed_out":
            return (
                f"the debug session timed out after {self.timeout:g}s "
                "(debug.session_timeout_seconds)"
            )
        return "the run was aborted by its debug session"

    def finish(self, outcome: Execution | Any) -> None:
        """The run ended: an Execution, or the Response given before any step (a 404…)."""
        execution = outcome if isinstance(outcome, Execution) else None
        response = execution.response if execution is not None else outcome
        with self._lock:
            if execution is not None:
                self.trace = list(execution.trace)
                if execution.error is not None:
                    self.error = {"message": execution.error.message, "node": execution.error.node}
            body: bytes = getattr(response, "body", b"")
            self.response = {
                "status": getattr(response, "status", 500),
                "headers": [list(p) for p in getattr(response, "headers", [])],
                "body": body[:_MAX_BODY].decode("utf-8", "replace"),
                "body_bytes": len(body),
            }
            if self._command == "abort" and (execution is None or execution.error is not None):
                self.state = "timed_out" if self._stop_reason == "timed_out" else "aborted"
            else:
                self.state = "finished"
            self.ended_at = time.monotonic()
        self._resume.set()

    def crashed(self, exc: BaseException) -> None:
        with self._lock:
            self.error = {"message": f"{type(exc).__name__}: {exc}", "node": ""}
            self.state = "finished"
            self.ended_at = time.monotonic()

    def log_line(self, record: logging.LogRecord) -> None:
        with self._lock:
            if len(self.logs) < _MAX_LOGS:
                self.logs.append(
                    {
                        "level": record.levelname.lower(),
                        "node": str(getattr(record, "node", "") or ""),
                        "message": record.getMessage()[:10_000],
                    }
                )

    # the debugger's side -----------------------------------------------------------------
    @property
    def live(self) -> bool:
        return self.state in ("running", "paused")

    def resume(self, command: Literal["continue", "step", "abort"]) -> bool:
        """Go on from a pause (``abort`` also stops a running run at its next step); False
        when the session is in no state to do that."""
        with self._lock:
            if command == "abort":
                if not self.live:
                    return False
            elif self.state != "paused":
                return False
            self._command = command
            if command == "abort" and not self._stop_reason:
                self._stop_reason = "aborted"
            # Running again from now on, so nobody reads the old pause as the new one.
            self.state = "running"
            self.paused_at = None
            self.payload = None
        if command == "abort" and self._kill is not None:
            # A step that is running stops at its next host call.
            self._kill(self.wid)
        self._resume.set()
        return True

    def expire(self) -> None:
        """The session's time is up: a live run is stopped."""
        with self._lock:
            if not self.live:
                return
            self._command = "abort"
            self._stop_reason = "timed_out"
            self.state = "running"
        if self._kill is not None:
            self._kill(self.wid)
        self._resume.set()

    def settled(self) -> bool:
        """Paused or ended: worth showing to whoever asked it to go on."""
        return self.state != "running"

    def snapshot(self) -> dict[str, Any]:
        """The session as the API shows it."""
        with self._lock:
            node = self.paused_at
            return {
                "id": self.id,
                "state": self.state,
                "wid": self.wid,
                "created_at": self.created,
                "expires_in_seconds": round(max(0.0, self.deadline - time.monotonic()), 3),
                "request": self.request,
                "breakpoints": [b.as_json() for b in self.breakpoints],
                "paused_at": (
                    {"node": node.id, "type": node.type, "name": node.name}
                    if node is not None
                    else None
                ),
                "payload": self.payload,
                "steps": [
                    {
                        "node": t.node,
                        "type": t.type,
                        "next": t.next or None,
                        "duration_ms": round(t.duration_ms, 3),
                        "error": t.error or None,
                    }
                    for t in self.trace
                ],
                "logs": list(self.logs),
                "response": self.response,
                "error": self.error,
            }


class _LogTap(logging.Handler):
    """Hands each log record of a session's run (by its wid) to that session."""

    def __init__(self, sessions: dict[str, DebugSession]) -> None:
        super().__init__(logging.DEBUG)
        self._by_wid = sessions

    def emit(self, record: logging.LogRecord) -> None:
        wid = getattr(record, "wid", None)
        if wid:
            session = self._by_wid.get(wid)
            if session is not None:
                session.log_line(record)


class DebugSessions:
    """The debug sessions of one runtime: at most ``max_live`` running or paused at once."""

    def __init__(self) -> None:
        # Put before every new session's id: a server with several workers names the worker
        # that owns a session there, so that any worker can pass a call on to it.
        self.id_prefix = ""
        self._lock = threading.Lock()
        self._sessions: dict[str, DebugSession] = {}
        self._by_wid: dict[str, DebugSession] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._tap: _LogTap | None = None

    def start(
        self,
        *,
        run: Callable[[DebugSession], Execution | Any],
        breakpoints: Sequence[Breakpoint],
        timeout: float,
        max_live: int,
        request: Mapping[str, Any],
        kill: Callable[[str], object] | None = None,
    ) -> DebugSession:
        """Start ``run(session)`` on a thread of its own, observed by a new session."""
        session = DebugSession(
            breakpoints=breakpoints,
            timeout=timeout,
            request=request,
            kill=kill,
            id_prefix=self.id_prefix,
        )
        self.sweep()
        with self._lock:
            live = sum(1 for s in self._sessions.values() if s.live)
            if live >= max_live:
                raise SessionLimitReached(
                    f"{live} debug session(s) are live, the most debug.max_sessions allows; "
                    "abort one or wait for it to end"
                )
            self._sessions[session.id] = session
            self._by_wid[session.wid] = session
            if self._tap is None:
                self._tap = _LogTap(self._by_wid)
                logging.getLogger("nflow").addHandler(self._tap)

        def target() -> None:
            try:
                session.finish(run(session))
            except BaseException as exc:
                log.exception("debug session %s: the run crashed", session.id)
                session.crashed(exc)

        thread = threading.Thread(target=target, name=f"nflow-debug-{session.id}", daemon=True)
        with self._lock:
            self._threads[session.id] = thread
        thread.start()
        log.info(
            "debug session %s started: %s %s",
            session.id,
            request.get("method", ""),
            request.get("path", ""),
        )
        return session

    def get(self, session_id: str) -> DebugSession | None:
        self.sweep()
        with self._lock:
            return self._sessions.get(session_id)

    def sweep(self) -> None:
        """Stop sessions whose time is up; forget them once their run has ended."""
        now = time.monotonic()
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            if now >= session.deadline:
                session.expire()
        with self._lock:
            ended = [s for s in self._sessions.values() if not s.live]
            gone = {
                s.id
                for s in ended
                if now >= max(s.deadline, (s.ended_at or now) + _KEEP_ENDED_SECONDS)
            }
            extra = len(ended) - len(gone) - _MAX_KEPT
            if extra > 0:
                kept = sorted((s for s in ended if s.id not in gone), key=lambda s: s.created)
                gone.update(s.id for s in kept[:extra])
            for sid in gone:
                session = self._sessions.pop(sid)
                self._by_wid.pop(session.wid, None)
                self._threads.pop(sid, None)

    def close(self, timeout: float = 10.0) -> None:
        """Abort every live session and wait for their runs to end."""
        with self._lock:
            sessions = list(self._sessions.values())
            threads = list(self._threads.values())
        for session in sessions:
            session.resume("abort")
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._sessions.clear()
            self._by_wid.clear()
            self._threads.clear()
            if self._tap is not None:
                logging.getLogger("nflow").removeHandler(self._tap)
                self._tap = None
