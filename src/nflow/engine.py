"""The execution loop (spec §2.2–2.4): one place where every node starts and ends.

The engine is synchronous and knows no HTTP server: it takes a Request value and returns an
Execution holding the Response. Host I/O inside steps goes through the I/O loop, so the same
code runs on the server's event loop, in a worker thread, under ``nflow run`` and in tests.
"""

from __future__ import annotations

__all__ = [
    "Engine",
    "Execution",
    "NodeInterceptor",
    "StepResult",
    "TraceEntry",
    "VMProvider",
    "limit_of",
]

import dataclasses
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from nflow._http import Request, Response, ResponseWriter
from nflow._ids import new_wid
from nflow.errors import (
    ExecutionError,
    ModuleNotFound,
    ProcessKilled,
    ScriptError,
    ScriptTimeout,
    StepLimitExceeded,
)
from nflow.jsapi import HostLimitExceeded, HostTable, NflowVM, RunContext, RunKilled, Sessions
from nflow.jsapi import user_line as js_user_line
from nflow.jsapi._gojson import dumps as go_json
from nflow.jsapi._vm import DirtyRuntime
from nflow.playbook import Node, Playbook, flag
from nflow.processes import Process
from nflow.sandbox import EngineLimits, JsError, JsMemoryError, JsTimeout
from nflow.store import TrackerRow
from nflow.watchdog import Watchdog

if TYPE_CHECKING:
    from nflow._catalog import Catalog

log = logging.getLogger("nflow.engine")
security_log = logging.getLogger("nflow.security")

DEFAULT_SOURCE = "function main(){}"
FORM_SESSION = "nflow_form"


@dataclass(frozen=True, slots=True)
class StepResult:
    """What a step decided: the output to follow ("" ends the flow) and the new payload."""

    next: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TraceEntry:
    node: str
    type: str
    next: str
    duration_ms: float
    error: str = ""


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
                vm.close()
            limits = self._limits
            if memory != limits.memory_bytes:
                limits = dataclasses.replace(limits, memory_bytes=memory)
            vm = NflowVM(host=self._host, limits=limits)
            if self._watchdog is not None:
                self._watchdog.watch(vm)
            vms[memory] = vm
            self.created += 1
        return vm

    def discard(self) -> None:
        vms: dict[int, NflowVM] | None = getattr(self._local, "vms", None)
        if vms:
            for vm in vms.values():
                vm.close()
            vms.clear()


StepFunction = Callable[["Engine", "_Run", Node, dict[str, Any]], StepResult]

# Cross-cutting work around each step (tracing spans, ``-v`` node lines): called with the
# run's context, the node and ``proceed``, which runs the rest of the chain and the step; it
# returns (or raises) what ``proceed`` did.
NodeInterceptor = Callable[[RunContext, Node, Callable[[], StepResult]], StepResult]


class Engine:
    """Runs playbooks. ``services`` carries config, store, caches and the process registry."""

    def __init__(self, *, services: Any, vms: VMProvider) -> None:
        self.services = services
        self.vms = vms
        self.steps: dict[str, StepFunction] = {
            "js": _step_js,
            "gorutine": _step_fork,
            "starter": _step_starter,
            "dromedary": _step_legacy_plugin,
            "dromedary_callback": _step_legacy_plugin,
        }
        self.steps.update(dict.fromkeys(_custom_step_types(), _step_custom))
        self.plans: dict[tuple[str, str], tuple[str, str]] = {}
        # Outermost first. Empty by default, and then the loop pays one truth test per node.
        self.interceptors: list[NodeInterceptor] = []

    def plan(self, run: _Run, node: Node) -> tuple[str, str]:
        """Source and runtime key of a js node, resolved once per app version."""
        plan = (run.source_for(node), f"{run.playbook.digest[:16]}:{node.id}")
        plans = run.plans
        if len(plans) > 100_000:
            plans.clear()
        plans[(run.playbook.digest, node.id)] = plan
        return plan

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
    ) -> Execution:
        """Run ``playbook`` from ``start``. ``catalog`` is the loaded version the request was
        routed with: module sources and templates come from it for the whole run, even if a
        hot reload swaps in a new version meanwhile."""
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
            process=process,
            deadline=time.monotonic() + limits.request_timeout_seconds,
            isolated=isolated,
            max_host_calls=limits.max_host_calls,
            templates=catalog.templates if catalog is not None else None,
            limits=limits,
        )
        execution = Execution(wid=wid, app=playbook.name, response=Response())
        run = _Run(self, playbook, ctx, execution, catalog)
        vm = self.vms.get(limits.max_memory_mb)
        run.vm = vm
        vm.start(ctx)
        try:
            if not isolated:
                _seed_form(sessions, request, fresh=not resume)
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
        return execution


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
            merged = dict(payload)
            for key, value in form.items():
                if key != "break":
                    merged[key] = value
            process.state = "run"
            process.current = node.id
            process.current_type = node.type
            ctx.node_id = node.id
            started = time.perf_counter()
            step = self.engine.steps.get(node.type, _step_unknown)
            interceptors = self.engine.interceptors
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
                raise
            self._trace(node, result.next, started)
            payload = result.payload
            tracker = self.engine.services.tracker
            if tracker is not None:
                target = (node.outputs.get(result.next) or "") if result.next else ""
                tracker.record(self._tracker_row(node, target, started, payload))
            if payload:
                form.update(payload)
                ctx.sessions.mark(FORM_SESSION)
            if _truthy_break(payload.get("break")):
                self.execution.suspended = True
                return
            self.prev = node.id
            next_id = (node.outputs.get(result.next) or "") if result.next else ""
        if not ctx.isolated:
            ctx.sessions.clear(FORM_SESSION)

    def auth(self, start: str) -> str:
        """The auth trigger (spec §4.3); returns the node to start at, or "" to stop."""
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
            raise ExecutionError(f"auth trigger failed: {exc}") from None
        except JsTimeout:
            raise ScriptTimeout("auth trigger exceeded its time limit") from None
        if outcome == "login":
            if not ctx.writer.committed:
                ctx.writer.set_header("Location", services.login_path)
                ctx.writer.write(307, "", b"")
            return ""
        if outcome in ("break", ""):
            return ""
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
            real_ip=_real_ip(request),
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
                "actor": _actor(node) if node else {},
                "message": (
                    "Script execution exceeded resource limits: " + exc.message
                    if isinstance(exc, ScriptTimeout)
                    else exc.message
                ),
                "node": exc.node,
            }
            if isinstance(exc, ScriptError) and exc.line is not None:
                body["line"] = exc.line
        else:
            body = {"error": exc.message, "node": exc.node}
            if isinstance(exc, UnknownNodeType):
                body = {"error": "Type node not found", "type": exc.node_type, "node": exc.node}
        log.warning(
            "run failed: %s",
            exc.message,
            extra={"wid": ctx.wid, "app": ctx.app, "node": exc.node, "status": exc.status},
        )
        limit = _limit_name(exc)
        if limit:
            security_event(ctx, f"limit:{limit}", exc.message)
        if ctx.isolated:
            return
        # Whatever a script wrote before failing is replaced: appending the error JSON to a
        # half-written page, as Echo did, helps nobody.
        writer = ResponseWriter(max_bytes=ctx.writer.max_bytes)
        writer.headers = ctx.writer.headers
        writer.write(exc.status, "application/json", go_json(body))
        ctx.writer = writer

    def _trace(self, node: Node, next_out: str, started: float, error: str = "") -> None:
        self.execution.trace.append(
            TraceEntry(
                node=node.id,
                type=node.type,
                next=next_out,
                duration_ms=(time.perf_counter() - started) * 1000.0,
                error=error,
            )
        )

    def source_for(self, node: Node) -> str:
        data = node.data
        code = data.get("code")
        if isinstance(code, str) and code.strip():
            return code
        script = data.get("script")
        if isinstance(script, str) and script:
            modules = self.modules
            if script not in modules:
                raise ModuleNotFound(
                    f"node {node.label} uses module {script!r}, which is not in the modules "
                    "table (import it with `nflow import`)",
                    node=node.id,
                )
            return modules[script] or DEFAULT_SOURCE
        return DEFAULT_SOURCE

    def register_node(self, node: Node, key: str) -> None:
        """Register the node's static values in the runtime on first use."""
        vm = self.vm
        if key not in vm._nodes:
            vm.ensure_node(
                key,
                data_json=orjson.dumps(dict(node.data)).decode(),
                outputs_json=orjson.dumps({k: v for k, v in node.outputs.items() if v}).decode(),
                flow=node.tab,
                app=self.playbook.name,
                box=node.id,
            )


class UnknownNodeType(ExecutionError):
    def __init__(self, node: Node) -> None:
        super().__init__(f"node {node.label} has unknown type {node.type!r}", node=node.id)
        self.node_type = node.type


def _intercepted(
    chain: list[NodeInterceptor], ctx: RunContext, node: Node, call: Callable[[], StepResult]
) -> StepResult:
    for interceptor in reversed(chain):
        call = functools.partial(interceptor, ctx, node, call)
    return call()


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


def _step_js(engine: Engine, run: _Run, node: Node, payload: dict[str, Any]) -> StepResult:
    ctx = run.ctx
    vm = run.vm
    plan = run.plans.get((run.playbook.digest, node.id))
    if plan is None:
        plan = engine.plan(run, node)
    timeout = step_timeout(ctx, node)
    source, node_key = plan
    payload_json = orjson.dumps(payload).decode() if payload else ""
    try:
        try:
            key = vm.compile(source, timeout=timeout)
            run.register_node(node, node_key)
            next_out, out_json = vm.run_step(
                key, node_key, payload_json=payload_json, prev=run.prev, timeout=timeout
            )
        except DirtyRuntime:
            run.replace_vm()
            vm = run.vm
            key = vm.compile(source, timeout=timeout)
            run.register_node(node, node_key)
            next_out, out_json = vm.run_step(
                key, node_key, payload_json=payload_json, prev=run.prev, timeout=timeout
            )
    except JsMemoryError:
        run.vm.broken = True
        raise ExecutionError(
            f"memory limit of the JS runtime reached in node {node.label} (vm_pool.max_memory_mb)",
            node=node.id,
        ) from None
    except JsError as exc:
        line = js_user_line(exc)
        where = f" (line {line})" if line else ""
        raise ScriptError(
            f"{exc.name}: {exc.message} in node {node.label}{where}",
            node=node.id,
            name=exc.name,
            line=line,
        ) from None
    except JsTimeout:
        raise ScriptTimeout(
            f"node {node.label} ran longer than its time limit of {timeout:.3g}s",
            node=node.id,
        ) from None
    except RunKilled:
        raise ProcessKilled(f"run {ctx.wid} was killed", node=node.id) from None
    except HostLimitExceeded as exc:
        raise ExecutionError(str(exc), node=node.id) from None
    except (TypeError, ValueError) as exc:
        # jsbox could not convert a value crossing the boundary (e.g. a huge or cyclic one).
        raise ScriptError(f"{exc} in node {node.label}", node=node.id, name="TypeError") from None
    try:
        new_payload = orjson.loads(out_json)
    except orjson.JSONDecodeError:
        new_payload = {}
    return StepResult(next_out, new_payload if isinstance(new_payload, dict) else {})


def _step_fork(engine: Engine, run: _Run, node: Node, payload: dict[str, Any]) -> StepResult:
    target = node.outputs.get("output_2")
    if target:
        fork_wid = new_wid()
        ctx = run.ctx
        if not ctx.isolated:
            ctx.extra_headers["Dromedary-Wid-2"] = fork_wid
        run.execution.forks.append(fork_wid)
        clone = orjson.loads(orjson.dumps(payload))
        engine.services.spawn_fork(
            playbook=run.playbook,
            start=target,
            request=ctx.request,
            endpoint=ctx.endpoint,
            vars=dict(ctx.vars),
            sessions=ctx.sessions.copy(),
            payload=clone,
            wid=fork_wid,
            catalog=run.catalog,
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
    from nflow._step_runner import run_custom_step

    return run_custom_step(engine, run, node, payload)


def _custom_step_types() -> Mapping[str, object]:
    from nflow.steps import registered_steps

    return registered_steps()


def limit_of(exc: ExecutionError) -> str:
    """The limit a run failed on ("time", "memory", "steps" ...), or "" for other errors."""
    return _limit_name(exc)


def _limit_name(exc: ExecutionError) -> str:
    if isinstance(exc, ScriptTimeout):
        return "time"
    if isinstance(exc, StepLimitExceeded):
        return "steps"
    text = exc.message
    for needle, name in (
        ("max_memory_mb", "memory"),
        ("max_host_calls", "host_calls"),
        ("max_response_bytes", "response_bytes"),
        ("Maximum call stack", "stack"),
        ("string search too large", "native_operation"),
        ("limit for this operation", "native_operation"),
    ):
        if needle in text:
            return name
    return ""


def security_event(ctx: RunContext, rule: str, detail: str) -> None:
    """The audit trail: one structured warning and one metric per blocked attempt or limit."""
    security_log.warning(
        "security event %s: %s",
        rule,
        detail[:300],
        extra={
            "rule": rule,
            "wid": ctx.wid,
            "app": ctx.app,
            "node": ctx.node_id,
            "ip": ctx.request.client_ip,
        },
    )
    metrics = ctx.services.metrics
    if metrics is not None:
        metrics.security_event(rule)
        if rule.startswith("limit:"):
            metrics.limit_hit(rule[6:])


def _real_ip(request: Request) -> str:
    xff = request.header("x-forwarded-for")
    if xff:
        return xff.split(",")[0].strip()
    return request.header("x-real-ip").strip() or request.client_ip


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
