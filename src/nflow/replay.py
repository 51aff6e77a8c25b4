"""Replaying a recorded run, and re-running one from a step.

:func:`replay` runs a recorded run again on the app version it ran (its stored content),
with its seed and its clock tape, answering every host call from the record: no mail is sent
and no HTTP call is made. Only the response writers (``c.JSON`` ...) run, into a response
that is thrown away. Each step is compared with the record as it ends; the first difference
(the node taken, a host call's name or arguments, ``next``, a payload key, the clock reads,
the response) is the result.

What the record hid (redaction) is given back as its mask: a mask in a replayed value
matches whatever the record holds there, so a run that only passes a hidden value along
still replays identical, while one that branches on it may not.

:func:`rerun` starts a new run of the app's current version from the payload a recorded
step started with: host calls are answered from the record where they match one it made
from that step on, and made live otherwise (or all live). The new run is recorded, with the
recorded run as its parent.
"""

from __future__ import annotations

__all__ = ["Divergence", "ReplayError", "ReplayResult", "RerunResult", "replay", "rerun"]

import asyncio
import base64
import collections
import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from nflow._http import Request, Response
from nflow._ids import new_wid
from nflow.catalog import Catalog
from nflow.config import Config
from nflow.engine import Execution
from nflow.engine._record import CLOCK_CALL, UNRECORDED, WRITERS, RunRecording, write_json
from nflow.errors import ExecutionError, NflowError
from nflow.history import Codec, HistoryReader, HistoryWriter, HostCall, RunRecord, StepRecord
from nflow.jsapi import SETTLED_CALL, HostError, RunContext, RunKilled, Sessions
from nflow.playbook import Playbook, parse_playbook
from nflow.runtime import Runtime
from nflow.security import KeyRing
from nflow.store import Store

_FORM = "nflow_form"
_MASK = "[REDACTED"
# Per-run values nflow puts in every response: never the same twice.
_RUN_HEADERS = frozenset({"nflow-wid-1", "dromedary-wid-2"})


class ReplayError(NflowError):
    """A run that cannot be replayed or re-run (its app version is not stored ...)."""


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where a replay first differed from the record: the step (None: the response),
    its node, and what differed."""

    step: int | None
    node: str
    what: str

    def __str__(self) -> str:
        where = "the response" if self.step is None else f"step {self.step} (node {self.node})"
        return f"{where}: {self.what}"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    run_id: str
    steps: int
    divergence: Divergence | None

    @property
    def identical(self) -> bool:
        return self.divergence is None


@dataclass(frozen=True, slots=True)
class RerunResult:
    run_id: str  # the new run
    parent_id: str
    from_step: int
    node: str
    status: str
    response: Response
    served: int  # host calls answered from the record
    live: int  # host calls made live


class _Stop(RunKilled):
    """Raised into a replayed script at its first divergence: the run ends as a killed one."""


def _matches(replayed: Any, recorded: Any) -> bool:
    """Equal as the record keeps values; a mask in ``replayed`` matches anything."""
    if isinstance(replayed, str) and _MASK in replayed:
        return True
    if type(replayed) is not type(recorded):
        # JSON numbers: 1 and 1.0 are one value.
        return (
            isinstance(replayed, int | float)
            and isinstance(recorded, int | float)
            and not isinstance(replayed, bool)
            and not isinstance(recorded, bool)
            and replayed == recorded
        )
    if isinstance(replayed, dict):
        return replayed.keys() == recorded.keys() and all(
            _matches(v, recorded[k]) for k, v in replayed.items()
        )
    if isinstance(replayed, list):
        return len(replayed) == len(recorded) and all(
            _matches(a, b) for a, b in zip(replayed, recorded, strict=True)
        )
    return bool(replayed == recorded)


def _payload_difference(replayed: Any, recorded: Any) -> str | None:
    """The first payload key that differs, described; None when they match."""
    if _matches(replayed, recorded):
        return None
    if not isinstance(replayed, dict) or not isinstance(recorded, dict):
        return f"the payload is {_short(replayed)}, the record has {_short(recorded)}"
    for key, value in replayed.items():
        if key not in recorded:
            return f"payload key {key!r} is new ({_short(value)})"
        if not _matches(value, recorded[key]):
            return f"payload key {key!r} is {_short(value)}, the record has {_short(recorded[key])}"
    for key in recorded:
        if key not in replayed:
            return f"payload key {key!r} is missing (the record has {_short(recorded[key])})"
    return "the payload differs"


def _short(value: Any, width: int = 80) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def _call_text(name: str, args: Any) -> str:
    inner = _short(list(args) if isinstance(args, tuple) else args, 60)
    return f"{name}({inner[1:-1] if inner.startswith('[') and inner.endswith(']') else inner})"


def _answer(call: HostCall) -> object:
    if call.error is not None:
        raise HostError(call.error)
    return call.result


def _body_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, dict) and isinstance(value.get("base64"), str):
        return base64.b64decode(value["base64"])
    if isinstance(value, str):
        return value.encode("utf-8")
    return orjson.dumps(value)


def _request(run: RunRecord) -> Request:
    return Request(
        run.method or "GET",
        run.path or "/",
        query_string=run.query,
        headers=run.request_headers,
        body=_body_bytes(run.request_body),
    )


def _start(run: RunRecord) -> tuple[str, str]:
    kind, _, node = run.starter.partition(":")
    return kind, node


def _first_node_step(run: RunRecord) -> StepRecord | None:
    return next((s for s in run.steps if s.node_type != "auth"), None)


def _sessions(run: RunRecord, form: Any) -> Sessions:
    """The sessions a replayed run starts with: the form it merged into its first payload,
    and the profile its auth trigger saw."""
    sessions = Sessions()
    if isinstance(form, dict):
        sessions.values[_FORM] = dict(form)
    auth = run.steps[0] if run.steps and run.steps[0].node_type == "auth" else None
    if auth is not None and isinstance(auth.payload_before, dict):
        profile = auth.payload_before.get("profile")
        if profile is not None:
            sessions.values["auth-session"] = {"profile": profile}
    return sessions


class _Replaying(RunRecording):
    """Answers a run's host calls from its record and compares each step as it ends."""

    def __init__(self, run: RunRecord, codec: Codec) -> None:
        super().__init__(kind="replay")
        self.run = run
        self.codec = codec
        self.divergence: Divergence | None = None
        self.index = -1
        self.node_id = ""
        self._expected: collections.deque[HostCall] = collections.deque()
        self._tape: Any = None

    def attach(self, ctx: RunContext) -> None:
        super().attach(ctx)
        ctx.seed = self.run.seed

    def _diverged(self, what: str, *, step: int | None = None, node: str = "") -> None:
        if self.divergence is None:
            index = self.index if step is None else step
            self.divergence = Divergence(index, node or self.node_id, what)
        ctx = self.ctx
        if ctx is not None and ctx.process is not None:
            ctx.process.killed = True  # the run stops at its next host call or step

    def _recorded(self) -> StepRecord | None:
        steps = self.run.steps
        return steps[self.index] if 0 <= self.index < len(steps) else None

    def begin(self, node_id: str, node_type: str, node_name: str, payload: Any) -> None:
        super().begin(node_id, node_type, node_name, payload)
        self.node_id = node_id
        self.index += 1
        step = self._recorded()
        ctx = self.ctx
        assert ctx is not None
        if step is None:
            self._diverged(
                f"ran node {node_id}; the recorded run ended after {len(self.run.steps)} step(s)"
            )
            self._expected = collections.deque()
            ctx.clock = "r"
            return
        if step.node_id != node_id:
            self._diverged(f"ran node {node_id}; the record ran node {step.node_id}")
        calls = [c for c in step.host_calls if c.function != CLOCK_CALL]
        self._expected = collections.deque(calls)
        tapes = [c.result for c in step.host_calls if c.function == CLOCK_CALL]
        self._tape = tapes[0] if tapes else None
        # An empty tape still tapes: clock reads the record lacks are seen and compared.
        ctx.clock = orjson.dumps(self._tape or []).decode()
        if node_type != "auth" and self.divergence is None:
            difference = _payload_difference(
                self.codec.comparable_payload(payload), step.payload_before
            )
            if difference is not None:
                self._diverged(f"before the step, {difference}")

    def around(self, name: str, args: tuple[Any, ...], call: Callable[[], object]) -> object:
        if name in WRITERS:
            return super().around(name, args, call)
        shown = _call_text(name, args)
        if self.divergence is not None:
            raise _Stop(f"replay stopped at {self.divergence}")
        if not self._expected:
            self._diverged(f"host call {shown} is not in the record")
            raise _Stop(str(self.divergence))
        expected = self._expected.popleft()
        if expected.function != name:
            self._diverged(
                f"host call {shown}; the record has {_call_text(expected.function, expected.args)}"
            )
            raise _Stop(str(self.divergence))
        if not _matches(self.codec.comparable(list(args)), expected.args):
            self._diverged(
                f"host call {name} has other arguments: {shown}; the record has "
                f"{_call_text(expected.function, expected.args)}"
            )
            raise _Stop(str(self.divergence))
        return super().around(name, args, functools.partial(_answer, expected))

    def end(self, next_out: str | None, payload: Any, error: ExecutionError | None) -> None:
        ctx = self.ctx
        tape = ctx.tape if ctx is not None else None
        super().end(next_out, payload, error)
        step = self._recorded()
        if step is None or self.divergence is not None:
            return
        if step.error is not None and error is None:
            self._diverged(f"the step succeeded; in the record it failed: {step.error.message}")
        elif step.error is None and error is not None:
            self._diverged(f"the step failed: {error.message}")
        elif error is None and (next_out or None) != (step.next or None):
            self._diverged(f"next is {next_out!r}; the record has {step.next!r}")
        elif error is None and step.node_type != "auth":
            difference = _payload_difference(
                self.codec.comparable_payload(payload), step.payload_after
            )
            if difference is not None:
                self._diverged(f"after the step, {difference}")
        if self.divergence is None and self._expected:
            left = self._expected[0]
            self._diverged(
                f"the record has host call {_call_text(left.function, left.args)} that the "
                "replay did not make"
            )
        if self.divergence is None and (tape or None) != (self._tape or None):
            self._diverged(
                f"the clock was read {_reads(tape)} time(s); the record has {_reads(self._tape)}"
            )
        if self.divergence is None:
            replayed = [write_json(write) for write in self.last_writes]
            if len(replayed) != len(step.writes) or not _matches(
                self.codec.comparable(list(replayed)), list(step.writes)
            ):
                self._diverged(
                    f"response writes {_short(list(replayed))}; the record has "
                    f"{_short(list(step.writes))}"
                )


def _reads(tape: Any) -> int:
    if not isinstance(tape, list):
        return 0
    return sum(int(n) for n in tape[1::2])


def _compare_response(replaying: _Replaying, run: RunRecord, execution: Execution) -> None:
    if replaying.divergence is not None:
        return
    if replaying.index + 1 < len(run.steps):
        step = run.steps[replaying.index + 1]
        replaying._diverged(
            f"the replay ended after {replaying.index + 1} step(s); the record goes on with "
            f"node {step.node_id}",
            step=replaying.index + 1,
            node=step.node_id,
        )
        return
    kind, _ = _start(run)
    if kind == "fork":
        return  # a background branch answers nobody
    response = execution.response
    codec = replaying.codec
    if response.status != run.response_status:
        replaying._diverged(
            f"status {response.status}; the record has {run.response_status}", step=None
        )
        return
    body = codec.comparable(response.body) if response.body else None
    if not _matches(body, run.response_body):
        replaying._diverged(
            f"body {_short(body)}; the record has {_short(run.response_body)}", step=None
        )
        return
    replayed = [[k, v] for k, v in codec.comparable(_headers(response.headers))]
    recorded = [list(p) for p in _headers(run.response_headers)]
    if not _matches(replayed, codec.comparable(recorded)):
        replaying._diverged(f"headers {_short(replayed)}; the record has {_short(recorded)}")


def _headers(pairs: Sequence[tuple[str, str]]) -> list[list[str]]:
    return [[k, v] for k, v in pairs if k.lower() not in _RUN_HEADERS]


# --- running them --------------------------------------------------------------------------


def _quiet(config: Config) -> Config:
    """The config a replay runs with: nothing recorded, tracked or counted."""
    return config.model_copy(
        update={
            "history": config.history.model_copy(update={"mode": "off", "apps": {}}),
            "tracker": config.tracker.model_copy(update={"enabled": False}),
            # Cache lookups are answered from the record; a result stored after a recorded
            # miss stays in the replay's own memory.
            "cache": config.cache.model_copy(update={"backend": "memory"}),
        }
    )


async def _read(url: str, run_id: str, keyring: KeyRing | None) -> RunRecord | None:
    store = Store(url)
    await store.open()
    try:
        return await HistoryReader(store, keyring=keyring).get_run(run_id)
    finally:
        await store.close()


def _app(runtime: Runtime, run: RunRecord, version: str) -> tuple[Playbook, Catalog]:
    found = runtime.io.call(runtime.store.get_version(version, app=run.app)) if version else None
    if found is None:
        raise ReplayError(
            f"version {version[:12] or '?'} of app {run.app!r} is not stored, so run "
            f"{run.id} cannot run on it"
        )
    playbook = parse_playbook(found.playbook, name=run.app, source=f"version {found.id[:12]}")
    playbook = dataclasses.replace(playbook, version=found.id)
    catalog = Catalog(
        modules=dict(found.modules), templates=dict(found.templates), queries=dict(found.queries)
    )
    return playbook, catalog


def _keyring(config: Config) -> KeyRing | None:
    from nflow.security import KeyConfigError

    try:
        return KeyRing.load(config=config.security)
    except KeyConfigError:
        return None


def _codec(config: Config, keyring: KeyRing | None) -> Codec:
    # The writer's own codec: replayed values are redacted and capped as recorded ones were.
    return HistoryWriter.from_config(config, keyring=keyring).codec


async def _open_runtime(config: Config, url: str) -> Runtime:
    runtime = Runtime(
        _quiet(config),
        serve_stored_apps=False,
        observe=False,
        database_url=url,
        durable_worker=False,
    )
    await runtime.open()
    return runtime


def replay(config: Config, run_id: str, *, database_url: str | None = None) -> ReplayResult | None:
    """Replay run ``run_id`` (or a unique prefix of its id) from the history in the
    config's database (or ``database_url``); None when there is no such run."""
    url = database_url or config.database_url
    keyring = _keyring(config)
    run = asyncio.run(_read(url, run_id, keyring))
    if run is None:
        return None
    return asyncio.run(_replay(config, url, run, keyring))


async def _replay(
    config: Config, url: str, run: RunRecord, keyring: KeyRing | None
) -> ReplayResult:
    runtime = await _open_runtime(config, url)
    try:
        playbook, catalog = await asyncio.to_thread(_app, runtime, run, run.version)
        if any(c.function == UNRECORDED for s in run.steps for c in s.host_calls):
            raise ReplayError(
                f"run {run.id} was recorded without its host calls (it was outside the "
                "history's sample and kept because it failed); it cannot be replayed"
            )
        kind, start = _start(run)
        if start not in playbook.nodes:
            raise ReplayError(f"run {run.id} started at node {start!r}, which is not in its app")
        first = _first_node_step(run)
        replaying = _Replaying(run, _codec(config, keyring))
        auth = bool(run.steps) and run.steps[0].node_type == "auth"

        def go() -> Execution:
            return runtime.engine.run(
                playbook=playbook,
                start=start,
                request=_request(run),
                endpoint=run.path,
                sessions=_sessions(run, first.payload_before if first else None),
                resume=True,
                auth=auth,
                wid=run.wid or run.id,
                isolated=kind == "fork",
                catalog=catalog,
                recording=replaying,
            )

        execution = await asyncio.to_thread(go)
        _compare_response(replaying, run, execution)
        return ReplayResult(run.id, replaying.index + 1, replaying.divergence)
    finally:
        await runtime.close()


class _Rerunning(RunRecording):
    """Answers a host call from the record when the record made the same call (same name,
    same arguments) from the first step on, else lets it through."""

    def __init__(self, parent: str, calls: Sequence[HostCall], codec: Codec) -> None:
        super().__init__(kind="rerun", parent=parent)
        self.codec = codec
        # Which awaited calls returned together is the live run's own timing, never served.
        self.pool = [c for c in calls if c.function not in (CLOCK_CALL, SETTLED_CALL)]
        self.served = 0
        self.live = 0

    def around(self, name: str, args: tuple[Any, ...], call: Callable[[], object]) -> object:
        if name in WRITERS or name == SETTLED_CALL:
            return super().around(name, args, call)
        if self.pool:
            shown = self.codec.comparable(list(args))
            for i, recorded in enumerate(self.pool):
                if recorded.function == name and _matches(shown, recorded.args):
                    del self.pool[i]
                    self.served += 1
                    return super().around(name, args, functools.partial(_answer, recorded))
        self.live += 1
        return super().around(name, args, call)


def _indexes(run: RunRecord) -> str:
    return ", ".join(str(s.index) for s in run.steps if s.node_type != "auth") or "none"


def rerun(
    config: Config,
    run_id: str,
    from_step: int,
    *,
    live: bool = False,
    database_url: str | None = None,
) -> RerunResult | None:
    """Re-run ``run_id`` from step ``from_step`` on its app's current version; None when
    there is no such run. The new run is written to the history whatever its policy says."""
    url = database_url or config.database_url
    keyring = _keyring(config)
    run = asyncio.run(_read(url, run_id, keyring))
    if run is None:
        return None
    return asyncio.run(_rerun(config, url, run, from_step, live, keyring))


async def _rerun(
    config: Config,
    url: str,
    run: RunRecord,
    from_step: int,
    live: bool,
    keyring: KeyRing | None,
) -> RerunResult:
    steps = [s for s in run.steps if s.index >= from_step]
    if not steps or steps[0].index != from_step or steps[0].node_type == "auth":
        raise ReplayError(
            f"run {run.id} has no step {from_step} to start from (its node steps: {_indexes(run)})"
        )
    step = steps[0]
    runtime = await _open_runtime(config, url)
    writer = HistoryWriter.from_config(config, keyring=keyring, url=url)
    writer.start()
    try:
        newest = await runtime.io.run(runtime.store.list_versions(run.app))
        if not newest:
            raise ReplayError(f"app {run.app!r} has no stored version to re-run on")
        playbook, catalog = await asyncio.to_thread(_app, runtime, run, newest[0].id)
        if step.node_id not in playbook.nodes:
            raise ReplayError(
                f"node {step.node_id} of step {from_step} is not in the current version "
                f"{newest[0].id[:12]} of app {run.app!r}"
            )
        calls = [] if live else [c for s in steps for c in s.host_calls]
        rerunning = _Rerunning(run.id, calls, writer.codec)
        payload = step.payload_before if isinstance(step.payload_before, dict) else {}
        kind, _ = _start(run)

        def go() -> Execution:
            return runtime.engine.run(
                playbook=playbook,
                start=step.node_id,
                request=_request(run),
                endpoint=run.path,
                sessions=Sessions(),
                resume=True,
                wid=new_wid(),
                payload=dict(payload),
                isolated=kind == "fork",
                catalog=catalog,
                recording=rerunning,
            )

        execution = await asyncio.to_thread(go)
        record = execution.record
        assert record is not None
        writer.submit(record)
        await asyncio.to_thread(writer.flush, 10.0)
        return RerunResult(
            run_id=record.id,
            parent_id=run.id,
            from_step=from_step,
            node=step.node_id,
            status=record.status,
            response=execution.response,
            served=rerunning.served,
            live=rerunning.live,
        )
    finally:
        await asyncio.to_thread(writer.close, 10.0)
        await runtime.close()
