"""The run loop: one place where every node starts and ends.

:class:`Engine` runs a playbook from a node: it seeds the form session, runs the auth trigger
when the entry asks for it, then steps from node to node (js, wasm, fork, custom Python steps),
tracing each, until a step ends the flow, suspends it, or fails; a failure replaces the
response with an error body naming the node.
"""

from __future__ import annotations

__all__ = ["Engine", "StepFunction"]

import functools
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from nflow._http import Request, Response, ResponseTooLarge, ResponseWriter
from nflow._ids import new_wid
from nflow.engine._cache import TTL_KEY, StepCache, cached_step
from nflow.engine._chains import RECORDED_CHARS, FlowPlan, define, flow_plan, run_chain
from nflow.engine._custom import run_custom_step
from nflow.engine._js import VMProvider, js_limit, step_js
from nflow.engine._parallel import JOIN_TYPE, BranchPool, step_join, step_parallel
from nflow.engine._record import AUTH_NODE, HistorySink, RunRecording
from nflow.engine._results import (
    Checkpointer,
    Execution,
    NodeInterceptor,
    StepObserver,
    StepResult,
    UnknownNodeType,
    trace_entry,
)
from nflow.engine._services import EngineServices
from nflow.engine._wasm import step_wasm
from nflow.errors import (
    ExecutionError,
    ModuleNotFound,
    ProcessKilled,
    RunParked,
    ScriptError,
    ScriptTimeout,
    StepLimitExceeded,
)
from nflow.golang.json import dumps as go_json
from nflow.jsapi import HostCallInterceptor, NflowVM, RunContext, Sessions, security_event
from nflow.jsapi._vm import DirtyRuntime
from nflow.playbook import Node, Playbook, flag
from nflow.processes import Process
from nflow.sandbox import JsError, JsTimeout
from nflow.steps import registered_steps
from nflow.store import TrackerRow

if TYPE_CHECKING:
    from nflow.catalog import Catalog

log = logging.getLogger("nflow.engine")

FORM_SESSION = "nflow_form"
# The journey (the execution history's id for the requests of one form wizard) lives in the
# form session beside the fields, and never reaches the payload.
JOURNEY_KEY = "nflow_journey"


# A node type's implementation: the engine, the run, the node and the payload it gets.
StepFunction = Callable[["Engine", "_Run", Node, dict[str, Any]], StepResult]


class Engine:
    """Runs playbooks with what ``services`` (the runtime) provides; see EngineServices."""

    def __init__(self, *, services: EngineServices, vms: VMProvider) -> None:
        self.services = services
        self.vms = vms
        self.steps: dict[str, StepFunction] = dict(BUILTIN_STEPS)
        self.steps.update(dict.fromkeys(_custom_step_types(), _step_custom))
        self.plans: dict[tuple[str, str], tuple[str, str]] = {}
        # Outermost first. Empty by default, and then the loop pays one truth test per node.
        self.interceptors: list[NodeInterceptor] = []
        # Makes each run's host-call interceptor (None: that run has none), for runs not
        # given one by ``run(host_interceptor=...)``.
        self.host_interceptors: Callable[[RunContext], HostCallInterceptor | None] | None = None
        # The execution history's writer; a run is recorded when its policy collects the app.
        self.history: HistorySink | None = None
        # Results of nodes with cache_ttl_seconds (engine/_cache.py).
        self.step_cache = StepCache()
        # The threads parallel nodes run their branches on (engine/_parallel.py).
        self.branches = BranchPool()
        # Chains of js nodes run in one entry into the sandbox (see engine._chains); False
        # runs every node on its own. Compiled plans by app digest, for runs without a catalog.
        self.compiled_flows = True
        self.flows: dict[str, FlowPlan] = {}

    def flow_plan(self, run: _Run, playbook: Playbook) -> FlowPlan:
        """The compiled flow of ``playbook`` as ``run`` sees it, made once per version."""
        return self._flow_plan(run.catalog, playbook, run.modules, run.vm)

    def _flow_plan(
        self,
        catalog: Catalog | None,
        playbook: Playbook,
        modules: Mapping[str, str | None],
        vm: NflowVM,
    ) -> FlowPlan:
        flows: dict[str, Any] = catalog.flows if catalog is not None else self.flows
        found = flows.get(playbook.digest)
        if found is None:
            if len(flows) > 10_000:
                flows.clear()
            found = flows[playbook.digest] = flow_plan(playbook, modules, vm)
        return found

    def warm(self, catalog: Catalog) -> int:
        """Make this thread's runtimes ready for ``catalog``'s apps before a request needs
        them: one per heap limit the apps use, each with every app's compiled flow defined
        (its js nodes' steps compiled). Returns how many runtimes it prepared."""
        warmed: set[int] = set()
        for playbook in catalog.playbooks:
            memory = self.services.limits_for(playbook).max_memory_mb
            vm = self.vms.get(memory)
            if vm.ctx is not None:
                continue  # serving a run on this thread (a nested call): leave it alone
            warmed.add(id(vm))
            plan = self._flow_plan(catalog, playbook, catalog.modules, vm)
            try:
                define(vm, plan, playbook.name)
            except (JsError, JsTimeout):
                # A step that fails to compile in the runtime fails when it runs, naming its
                # node; the rest is ready.
                log.warning("app %r: its compiled flow could not be prepared", playbook.name)
        return len(warmed)

    # public -----------------------------------------------------------------------------
    def run(
        self,
        *,
        playbook: Playbook,
        start: str,
        request: Request,
        endpoint: str,
        vars: Mapping[str, str] | None = None,
        sessions: Sessions | None = None,
        resume: bool = False,
        auth: bool = False,
        wid: str | None = None,
        payload: dict[str, Any] | None = None,
        isolated: bool = False,
        catalog: Catalog | None = None,
        host_interceptor: HostCallInterceptor | None = None,
        observer: StepObserver | None = None,
        recording: RunRecording | None = None,
        parent_run: str | None = None,
        branch: bool = False,
        deadline: float | None = None,
        per_node: bool = False,
        checkpoint: Checkpointer | None = None,
    ) -> Execution:
        """Run ``playbook`` from ``start``. ``catalog`` is the loaded version the request was
        routed with: module sources, templates and named queries come from it for the whole
        run, even if a hot reload swaps in a new version meanwhile.

        ``host_interceptor`` sees every host call of this run (else the one
        ``host_interceptors`` makes for it, if set); ``observer`` sees each of its steps
        before it runs (a debug session).

        ``recording`` records the run (replays and re-runs give their own); else the run is
        recorded when ``history``'s policy collects its app, and written if the policy keeps
        it. ``parent_run``: the run that forked this one. ``checkpoint`` makes the run
        durable (see Checkpointer): its nodes then run one by one.

        ``branch``: a branch of a parallel node (isolated), which stops at the first join
        node and leaves its payload in the execution; ``deadline`` (monotonic) caps its time.

        ``per_node`` runs every node on its own (a checkpoint after each, say): chains of js
        nodes otherwise run in one entry into the sandbox (see ``compiled_flows``)."""
        services = self.services
        limits = services.limits_for(playbook)
        wid = wid or new_wid()
        sessions = sessions if sessions is not None else Sessions()
        writer = ResponseWriter(max_bytes=limits.max_response_bytes)
        process = services.processes.start(
            Process(wid=wid, app=playbook.name, endpoint=endpoint, fork=isolated)
        )
        ctx = RunContext(
            wid=wid,
            request=request,
            writer=writer,
            app=playbook.name,
            endpoint=endpoint,
            vars=dict(vars or {}),
            sessions=sessions,
            services=services,
            version=playbook.version,
            process=process,
            deadline=min(
                time.monotonic() + limits.request_timeout_seconds,
                deadline if deadline is not None else float("inf"),
            ),
            isolated=isolated,
            max_host_calls=limits.max_host_calls,
            templates=catalog.templates if catalog is not None else services.templates,
            queries=catalog.queries if catalog is not None else services.queries,
            limits=limits,
            host_interceptor=host_interceptor,
        )
        if host_interceptor is None and self.host_interceptors is not None:
            ctx.host_interceptor = self.host_interceptors(ctx)
        ctx.seed = random.getrandbits(53)
        history = self.history
        given = recording is not None
        if recording is None and history is not None:
            # Whether a successful run is kept is drawn now, from its journey (a fresh
            # request starts its own) or its id: a run outside the sample is recorded all
            # the same, in case it fails, but never built into a record otherwise.
            form = sessions.values.get(FORM_SESSION) if resume or isolated else None
            key = str(form.get(JOURNEY_KEY) or wid) if form else wid
            sampled = history.policy.sampling(playbook.name, key)
            if sampled is not None:
                recording = RunRecording(
                    kind="fork" if isolated else "request", parent=parent_run, light=not sampled
                )
        if recording is not None:
            recording.attach(ctx)
        execution = Execution(wid=wid, app=playbook.name, response=Response())
        run = _Run(self, playbook, ctx, execution, catalog)
        run.branch = branch
        run.observer = observer
        run.recording = recording
        run.checkpoint = checkpoint
        vm = self.vms.get(limits.max_memory_mb)
        run.vm = vm
        vm.start(ctx)
        if (
            self.compiled_flows
            and not per_node
            and checkpoint is None
            and observer is None
            and _chains_record(recording, ctx.clock)
            and not self.interceptors
            and services.tracker is None
            and self.steps.get("js") is step_js
        ):
            plan = self.flow_plan(run, playbook)
            # No chain in this version: its runs pay nothing per node.
            run.flow = plan if plan.entries else None
        try:
            if not isolated:
                _seed_form(sessions, request, fresh=not resume)
            if checkpoint is not None:
                checkpoint.begin(ctx)
            if recording is not None:
                form = sessions.values.get(FORM_SESSION)
                journey = form.get(JOURNEY_KEY) if form else None
                recording.journey = str(journey) if journey is not None else None
            first = start
            if auth:
                first = run.auth(start)
            if first:
                run.loop(first, payload)
            process.state = "end"
        except ExecutionError as exc:
            process.state = "error"
            execution.error = exc
            run.fail(exc)
        finally:
            run.vm.finish()
            services.processes.finish(wid)
        metrics = services.metrics
        if metrics is not None:
            metrics.run_finished(playbook.name, execution.error is None, execution.trace)
        headers: dict[str, str] = {"Nflow-Wid-1": wid}
        headers.update(ctx.extra_headers)
        response = ctx.writer.finish(headers)
        for cookie in ctx.cookies_out:
            response.headers.append(("set-cookie", cookie))
        execution.response = response
        if recording is not None and not (
            # Most runs: outside the sample, succeeded, no wizard page to start a journey.
            recording.light
            and execution.error is None
            and response.status < 500
            and not execution.suspended
        ):
            self._recorded(
                recording, execution, playbook, start, request, sessions, isolated, given
            )
        if recording is not None:
            recording.detach()
        return execution

    def _recorded(
        self,
        recording: RunRecording,
        execution: Execution,
        playbook: Playbook,
        start: str,
        request: Request,
        sessions: Sessions,
        isolated: bool,
        given: bool,
    ) -> None:
        journey = recording.journey
        if journey is None and execution.suspended and not isolated:
            # The first page of a form wizard: the next requests of the session carry it on.
            journey = execution.wid
            sessions.get(FORM_SESSION)[JOURNEY_KEY] = journey
            sessions.mark(FORM_SESSION)
        failed = recording.status(execution.error, execution.response) != "ok"
        if recording.light and not failed:
            return  # outside the sample, and it succeeded: let go
        history = self.history
        keep = (
            not given
            and history is not None
            and history.policy.keeps(playbook.name, failed=failed, journey=journey or execution.wid)
        )
        if not keep and not given:
            return  # outside the sample: no record is built
        record = recording.record(
            app=playbook.name,
            version=playbook.version or playbook.digest,
            start=start,
            request=request,
            response=execution.response,
            error=execution.error,
            journey=journey,
            isolated=isolated,
        )
        execution.record = record
        if keep and history is not None:
            history.submit(record)


class _Run:
    """State of one execution while the loop runs."""

    def __init__(
        self,
        engine: Engine,
        playbook: Playbook,
        ctx: RunContext,
        ex: Execution,
        catalog: Catalog | None = None,
    ) -> None:
        self.engine = engine
        self.playbook = playbook
        self.ctx = ctx
        self.execution = ex
        self.vm: NflowVM
        self.prev = ""
        # Captured once: a reload during the run cannot switch module code under it.
        self.catalog = catalog
        self.modules: Mapping[str, str | None] = (
            catalog.modules if catalog is not None else engine.services.modules
        )
        self.plans = catalog.plans if catalog is not None else engine.plans
        self.observer: StepObserver | None = None
        self.recording: RunRecording | None = None
        self.branch = False
        # The compiled flow of this version, when this run may use chains (see _chains).
        self.flow: FlowPlan | None = None
        self.checkpoint: Checkpointer | None = None

    def loop(self, first: str, initial: dict[str, Any] | None) -> None:
        ctx = self.ctx
        limits = ctx.limits
        form = ctx.sessions.get(FORM_SESSION)
        payload: dict[str, Any] = dict(initial or {})
        next_id = first
        steps = 0
        process = ctx.process
        assert process is not None
        while next_id:
            if process.killed:
                raise ProcessKilled(f"run {ctx.wid} was killed", node=next_id)
            steps += 1
            if steps > limits.max_steps:
                raise StepLimitExceeded(
                    f"more than {limits.max_steps} steps in one run (limits.max_steps); "
                    f"the flow loops through node {next_id}",
                    node=next_id,
                )
            node = self.playbook.nodes.get(next_id)
            if node is None:
                raise ExecutionError(
                    f"node {self.prev or '?'} routes to node {next_id!r}, "
                    f"which is not in app {self.playbook.name!r}",
                    node=self.prev,
                )
            if self.branch and node.type == JOIN_TYPE:
                self.execution.joined_at = node.id
                break
            merged = dict(payload)
            for key, value in form.items():
                if key != "break" and key != JOURNEY_KEY:
                    merged[key] = value
            if self.observer is not None:
                self.observer.before_step(ctx, node, merged, self.execution.trace)
            process.state = "run"
            process.current = node.id
            process.current_type = node.type
            ctx.node_id = node.id
            started = time.perf_counter()
            step = self.engine.steps.get(node.type, _step_unknown)
            if TTL_KEY in node.data:
                step = cached_step(step)
            interceptors = self.engine.interceptors
            recording = self.recording
            if recording is not None:
                recording.begin(node.id, node.type, node.name, merged)
            flow = self.flow
            if flow is not None and node.id in flow.entries:
                # A chain of js nodes in one entry into the sandbox; it traces each node.
                # A recording's steps for the chain's nodes are kept by run_chain.
                node, result, ran = run_chain(
                    self,
                    flow,
                    node,
                    merged,
                    limits.max_steps - steps + 1,
                    self.execution.trace,
                    recording,
                )
                steps += ran - 1
                started = time.perf_counter()
                if recording is not None and recording.js_chars > RECORDED_CHARS:
                    self.flow = None  # see RECORDED_CHARS
                recording = None
            else:
                try:
                    if interceptors:
                        result = _intercepted(
                            interceptors,
                            ctx,
                            node,
                            functools.partial(step, self.engine, self, node, merged),
                        )
                    else:
                        result = step(self.engine, self, node, merged)
                except ExecutionError as exc:
                    self._trace(node, "", started, str(exc))
                    if recording is not None:
                        recording.end(None, None, exc)
                    raise
                self._trace(node, result.next, started)
            if recording is not None:
                recording.end(result.next, result.payload, None)
            payload = result.payload
            tracker = self.engine.services.tracker
            if tracker is not None:
                target = (node.outputs.get(result.next) or "") if result.next else ""
                tracker.record(self._tracker_row(node, target, started, payload))
            if payload:
                form.update(payload)
                ctx.sessions.mark(FORM_SESSION)
            if self.checkpoint is not None:
                self.checkpoint.node_done(ctx, node, result.next, payload)
            if _truthy_break(payload.get("break")):
                self.execution.suspended = True
                return
            self.prev = node.id
            next_id = result.goto or ((node.outputs.get(result.next) or "") if result.next else "")
        self.execution.payload = payload
        if not ctx.isolated:
            ctx.sessions.clear(FORM_SESSION)

    def auth(self, start: str) -> str:
        """The auth trigger; returns the node to start at, or "" to stop."""
        services = self.engine.services
        ctx = self.ctx
        auth_session = ctx.sessions.get("auth-session")
        auth_session["redirect_url"] = ctx.request.path
        ctx.sessions.mark("auth-session")
        source = services.auth_trigger
        preset = {
            "profile": _profile_of(auth_session),
            "auth_flag": "true",
            "url_access": ctx.request.path,
            "next": start,
        }
        recording = self.recording
        if recording is not None:
            recording.begin(AUTH_NODE, "auth", "auth trigger", preset)
        try:
            outcome = self._auth(source, preset)
        except ExecutionError as exc:
            if recording is not None:
                recording.end(None, None, exc)
            raise
        if recording is not None:
            recording.end(outcome, None, None)
        if outcome == "login":
            if not ctx.writer.committed:
                ctx.writer.set_header("Location", services.login_path)
                ctx.writer.write(307, "", b"")
            return ""
        if outcome in ("break", ""):
            return ""
        return outcome

    def _auth(self, source: str, preset: dict[str, Any]) -> str:
        ctx = self.ctx
        try:
            key = self.vm.compile(_auth_source(source))
            try:
                outcome = self.vm.run_auth(
                    key,
                    preset=orjson.dumps(preset).decode(),
                    timeout=max(0.01, min(ctx.remaining(), 5.0)),
                )
            except DirtyRuntime:
                self.replace_vm()
                key = self.vm.compile(_auth_source(source))
                outcome = self.vm.run_auth(
                    key,
                    preset=orjson.dumps(preset).decode(),
                    timeout=max(0.01, min(ctx.remaining(), 5.0)),
                )
        except JsError as exc:
            raise ExecutionError(f"auth trigger failed: {exc}", limit=js_limit(exc)) from None
        except JsTimeout:
            raise ScriptTimeout("auth trigger exceeded its time limit") from None
        return outcome

    def _tracker_row(
        self, node: Node, target: str, started: float, payload: dict[str, Any]
    ) -> TrackerRow:
        ctx = self.ctx
        request = ctx.request
        log_session = ctx.sessions.get("log-session")
        if not log_session.get("log_id") or ctx.isolated:
            log_session["log_id"] = str(uuid.uuid4())
        order = int(log_session.get("order_box") or 0) + 1
        log_session["order_box"] = order
        ctx.sessions.mark("log-session")
        profile = _profile_of(ctx.sessions.get("auth-session"))
        username = profile.get("username", "") if isinstance(profile, dict) else ""
        return TrackerRow(
            log_id=str(log_session["log_id"]),
            box_id=node.id,
            box_name=node.name,
            box_type=node.type,
            url=request.path,
            username=str(username),
            connection_next=target,
            duration=f"{int((time.perf_counter() - started) * 1000)}m",
            order_box=order,
            payload=self._sealed_payload(payload),
            ip=request.client,
            real_ip=request.real_ip,
            user_agent=request.header("user-agent"),
            query_param=request.query_string,
            hostname="",
            host=request.host,
        )

    def _sealed_payload(self, payload: dict[str, Any]) -> str:
        text = orjson.dumps(payload, default=str).decode()
        keyring = self.engine.services.keyring
        if keyring is None:
            return text
        from nflow.security import field_aad

        # [security] encrypt_sensitive_data: form fields in tracker rows are sealed at rest.
        return str(keyring.encrypt(text, aad=field_aad("tracker", "payload")))

    def replace_vm(self) -> None:
        """The runtime could not be cleaned from its previous run: take a fresh one."""
        log.warning("replacing a JS runtime a script left dirty", extra={"wid": self.ctx.wid})
        self.vm = self.engine.vms.get(self.ctx.limits.max_memory_mb)
        self.vm.start(self.ctx)

    def fail(self, exc: ExecutionError) -> None:
        """Replace whatever was written with a clear error response."""
        ctx = self.ctx
        node = self.playbook.nodes.get(exc.node) if exc.node else None
        # A missing module is the script's failure too: the same documented body.
        if isinstance(exc, ScriptError | ScriptTimeout | ModuleNotFound):
            body: dict[str, Any] = {
                "message": (
                    "Script execution exceeded resource limits: " + exc.message
                    if isinstance(exc, ScriptTimeout)
                    else exc.message
                ),
                "node": exc.node,
                "type": node.type if node else "",
            }
            if isinstance(exc, ScriptError) and exc.line is not None:
                body["line"] = exc.line
            # The Go body echoed the node, script source included, to any client: only
            # on request ([compat] error_body_source).
            if ctx.services.config.compat.error_body_source:
                body["actor"] = _actor(node) if node else {}
        else:
            body = {"error": exc.message, "node": exc.node}
            if isinstance(exc, UnknownNodeType):
                body = {"error": "Type node not found", "type": exc.node_type, "node": exc.node}
        log.log(
            logging.INFO if isinstance(exc, RunParked) else logging.WARNING,
            "run parked: %s" if isinstance(exc, RunParked) else "run failed: %s",
            exc.message,
            extra={"wid": ctx.wid, "app": ctx.app, "node": exc.node, "status": exc.status},
        )
        if exc.limit is not None:
            security_event(ctx, f"limit:{exc.limit}", exc.message)
        if ctx.isolated:
            return
        # Whatever a script wrote before failing is replaced: appending the error JSON to a
        # half-written page, as Echo did, helps nobody.
        writer = ResponseWriter(max_bytes=ctx.writer.max_bytes)
        writer.headers = ctx.writer.headers
        try:
            writer.write(exc.status, "application/json", go_json(body))
        except ResponseTooLarge:
            # limits.max_response_bytes is smaller than the error itself: the status alone.
            writer.write(exc.status, "", b"")
        ctx.writer = writer

    def _trace(self, node: Node, next_out: str, started: float, error: str = "") -> None:
        self.execution.trace.append(
            trace_entry(
                node.id, node.type, next_out, (time.perf_counter() - started) * 1000.0, error
            )
        )


def _chains_record(recording: RunRecording | None, clock: str) -> bool:
    """Whether a run recorded so (and with that clock) may run chains: one not recorded,
    or recorded outside the history's sample (a light recording, which taping the clock
    "r" is), never a replay's or re-run's (their own recording kinds)."""
    if recording is None:
        return not clock
    return recording.light and clock == "r" and type(recording) is RunRecording


def _intercepted(
    chain: list[NodeInterceptor], ctx: RunContext, node: Node, call: Callable[[], StepResult]
) -> StepResult:
    for interceptor in reversed(chain):
        call = functools.partial(interceptor, ctx, node, call)
    return call()


def _step_fork(engine: Engine, run: _Run, node: Node, payload: dict[str, Any]) -> StepResult:
    target = node.outputs.get("output_2")
    if target:
        fork_wid = new_wid()
        ctx = run.ctx
        if not ctx.isolated:
            ctx.extra_headers["Dromedary-Wid-2"] = fork_wid
        run.execution.forks.append(fork_wid)
        clone = orjson.loads(orjson.dumps(payload))
        engine.services.fork(
            playbook=run.playbook,
            start=target,
            request=ctx.request,
            endpoint=ctx.endpoint,
            vars=dict(ctx.vars),
            sessions=ctx.sessions.copy(),
            payload=clone,
            wid=fork_wid,
            catalog=run.catalog,
            parent_run=ctx.wid,
        )
    return StepResult("output_1", orjson.loads(orjson.dumps(payload)))


def _step_starter(engine: Engine, run: _Run, node: Node, payload: dict[str, Any]) -> StepResult:
    raise ExecutionError("Starter can not run with play button", node=node.id)


def _step_legacy_plugin(
    engine: Engine, run: _Run, node: Node, payload: dict[str, Any]
) -> StepResult:
    raise ExecutionError(
        f"node {node.label} is a legacy {node.type!r} Go-plugin node, which nflow does not run; "
        "replace it with a js node or a custom Python step",
        node=node.id,
    )


def _step_unknown(engine: Engine, run: _Run, node: Node, payload: dict[str, Any]) -> StepResult:
    if node.type in _custom_step_types():  # registered after this engine was built
        return _step_custom(engine, run, node, payload)
    raise UnknownNodeType(node)


def _step_custom(engine: Engine, run: _Run, node: Node, payload: dict[str, Any]) -> StepResult:
    """A node type registered with ``@nflow.step``: see nflow.steps."""
    return run_custom_step(run.ctx, node, payload)


def _custom_step_types() -> Mapping[str, object]:
    return registered_steps()


# The step function of each of steps.KNOWN_NODE_TYPES (the names custom steps may not take).
BUILTIN_STEPS: Mapping[str, StepFunction] = {
    "js": step_js,
    "wasm": step_wasm,
    "gorutine": _step_fork,
    "parallel": step_parallel,
    "join": step_join,
    "starter": _step_starter,
    "dromedary": _step_legacy_plugin,
    "dromedary_callback": _step_legacy_plugin,
}


def _truthy_break(value: object) -> bool:
    return value is True or value == "true"


def _seed_form(sessions: Sessions, request: Request, *, fresh: bool) -> None:
    """Query and form fields go into the form session (single values as strings).

    A fresh request starts a new form; a resume adds the fields of the page just posted.
    """
    fields: dict[str, Any] = {}
    for key, values in request.form.items():
        if key == "nflow_next_node_run":
            continue
        fields[key] = values[0] if len(values) == 1 else list(values)
    if fresh:
        if fields or sessions.values.get(FORM_SESSION):
            sessions.mark(FORM_SESSION)
        sessions.values[FORM_SESSION] = fields
    elif fields:
        sessions.get(FORM_SESSION).update(fields)
        sessions.mark(FORM_SESSION)


def _actor(node: Node) -> dict[str, Any]:
    return {
        "data": dict(node.data),
        "outputs": {
            name: {"connections": [{"node": target, "output": "input_1"}] if target else []}
            for name, target in node.outputs.items()
        },
    }


def _profile_of(auth_session: Mapping[str, Any]) -> Any:
    raw = auth_session.get("profile")
    if isinstance(raw, str) and raw:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
    return raw


def _auth_source(source: str) -> str:
    # The trigger file defines auth(); the step wrapper calls main().
    return source + "\nfunction main(){ return auth(); }"


def is_auth_entry(node: Node) -> bool:
    return "nflow_auth" in node.data and flag(node.data.get("nflow_auth"))
