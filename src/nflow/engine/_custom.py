"""The engine side of custom Python steps: input validation, limits, errors, output merge.

Steps get the same treatment as js nodes: the per-step and per-run time limits (408 naming
the node), a killed run stops waiting, and whatever the function raises becomes a 500 naming
the node and the error while the traceback stays in the server log.
"""

from __future__ import annotations

__all__ = ["run_custom_step"]

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from nflow.engine._results import StepResult, UnknownNodeType, step_timeout
from nflow.errors import ExecutionError, ProcessKilled, ScriptTimeout
from nflow.jsapi import RunContext
from nflow.playbook import Node
from nflow.steps import (
    RequestInfo,
    StepContext,
    StepDefinition,
    StepError,
    StepInputError,
    registered_steps,
)

log = logging.getLogger("nflow.steps")

# Keys the designer puts in every node's data; they are not step parameters.
_DESIGNER_KEYS = frozenset({"type", "name_box"})
# How often a waiting run looks at its kill flag.
_KILL_POLL_SECONDS = 0.05


def run_custom_step(ctx: RunContext, node: Node, payload: dict[str, Any]) -> StepResult:
    """Run the ``@nflow.step`` function registered for ``node.type`` within the step's limits."""
    definition = registered_steps().get(node.type)
    if definition is None:
        raise UnknownNodeType(node)
    timeout = step_timeout(ctx, node)
    # The designer leaves untouched fields as "": those do not hide a payload value.
    params = {k: v for k, v in node.data.items() if k not in _DESIGNER_KEYS and v != ""}
    merged = {**payload, **params}
    arg: Any = merged
    if definition.input is not None:
        try:
            arg = definition.input.model_validate(merged)
        except ValidationError as exc:
            raise _input_error(definition, node, exc) from None
    step_ctx = StepContext(
        type=node.type,
        wid=ctx.wid,
        app=ctx.app,
        node_id=node.id,
        node_name=node.name,
        data=node.data,
        payload=MappingProxyType(payload),
        request=RequestInfo(ctx.request, ctx.vars),
        env=MappingProxyType(ctx.services.env),
        log=logging.LoggerAdapter(
            logging.getLogger(f"nflow.steps.{node.type}"),
            {"wid": ctx.wid, "app": ctx.app, "node": node.id},
        ),
        deadline=time.monotonic() + timeout,
    )
    if definition.is_async:
        future: concurrent.futures.Future[Any] = ctx.services.io.submit(
            definition.func(step_ctx, arg)
        )
    else:
        future = _threads.submit(definition.func, step_ctx, arg)
    result = _wait(definition, node, future, timeout=timeout, ctx=ctx)
    out, next_out = _output(definition, node, result)
    return StepResult(next_out, {**payload, **out})


def _wait(
    definition: StepDefinition,
    node: Node,
    future: concurrent.futures.Future[Any],
    *,
    timeout: float,
    ctx: RunContext,
) -> Any:
    deadline = time.monotonic() + timeout
    process = ctx.process
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            future.cancel()  # an async step is cancelled; a sync one runs on, unheard
            log.warning(
                "step %r passed its time limit of %.3gs",
                definition.name,
                timeout,
                extra={"wid": ctx.wid, "app": ctx.app, "node": node.id},
            )
            raise ScriptTimeout(
                f"step {definition.name!r} of node {node.label} ran longer than its time "
                f"limit of {timeout:.3g}s",
                node=node.id,
            )
        done, _ = concurrent.futures.wait([future], timeout=min(left, _KILL_POLL_SECONDS))
        if done:
            break
        if process is not None and process.killed:
            future.cancel()
            raise ProcessKilled(f"run {ctx.wid} was killed", node=node.id)
    try:
        return future.result()
    except ExecutionError as exc:
        # A step may raise nflow's own errors on purpose (e.g. ScriptTimeout): keep them.
        if not exc.node:
            exc.node = node.id
        raise
    except BaseException as exc:
        log.error(
            "step %r failed in node %s: %s: %s",
            definition.name,
            node.label,
            type(exc).__name__,
            exc,
            exc_info=exc,
            extra={"wid": ctx.wid, "app": ctx.app, "node": node.id},
        )
        name = type(exc).__name__
        raise StepError(
            f"{name}: {exc} in step {definition.name!r} of node {node.label}",
            node=node.id,
            name=name,
        ) from None


def _output(definition: StepDefinition, node: Node, result: Any) -> tuple[dict[str, Any], str]:
    where = f"step {definition.name!r} of node {node.label}"
    next_out = "output_1"
    if isinstance(result, tuple):
        if len(result) != 2 or not isinstance(result[1], str):
            raise StepError(
                f"{where} returned a tuple; expected (output, 'output_N')", node=node.id
            )
        result, next_out = result
    model = definition.output
    out: Any
    if model is not None:
        if result is None:
            raise StepError(f"{where} returned None; expected {model.__name__}", node=node.id)
        try:
            if isinstance(result, model):
                checked = result
            elif isinstance(result, BaseModel):
                checked = model.model_validate(result.model_dump())
            else:
                checked = model.model_validate(result)
        except ValidationError as exc:
            raise StepError(
                f"{where} returned invalid output: {_describe(exc, model)}",
                node=node.id,
                name="ValidationError",
            ) from None
        out = checked.model_dump(mode="json")
    elif result is None:
        out = {}
    elif isinstance(result, BaseModel):
        out = result.model_dump(mode="json")
    elif isinstance(result, Mapping):
        out = dict(result)
    else:
        raise StepError(
            f"{where} returned {type(result).__name__}; expected a dict, a pydantic model or None",
            node=node.id,
            name="TypeError",
        )
    try:
        # Later js nodes, the form session and the tracker all need plain JSON values.
        out = orjson.loads(orjson.dumps(out))
    except TypeError as exc:
        raise StepError(
            f"{where} returned a value that is not JSON: {exc}", node=node.id, name="TypeError"
        ) from None
    return out, next_out


def _input_error(definition: StepDefinition, node: Node, exc: ValidationError) -> StepInputError:
    model = definition.input
    assert model is not None
    fields = tuple(".".join(str(p) for p in e["loc"]) for e in exc.errors())
    return StepInputError(
        f"invalid input for step {definition.name!r} in node {node.label}: {_describe(exc, model)}",
        node=node.id,
        fields=fields,
    )


def _describe(exc: ValidationError, model: type[BaseModel]) -> str:
    """pydantic's findings as one line: field, expected type, what was wrong, what came."""
    parts: list[str] = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        name = ".".join(str(p) for p in loc) or "(whole input)"
        expected = ""
        if loc and isinstance(loc[0], str) and loc[0] in model.model_fields:
            expected = f" (expected {_type_name(model.model_fields[loc[0]].annotation)})"
        text = f"field {name!r}{expected}: {error['msg']}"
        if error["type"] != "missing":
            got = repr(error.get("input"))
            text += f", got {got if len(got) <= 60 else got[:57] + '...'}"
        parts.append(text)
    return "; ".join(parts)


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


class _DaemonThreads:
    """Threads for synchronous steps.

    Daemon threads, unlike ThreadPoolExecutor's: a step stuck past its limit cannot be
    stopped, and must not also keep the process from exiting.
    """

    def __init__(self, max_threads: int = 64) -> None:
        self._queue: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]
        ] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0
        self._max = max_threads

    def submit(self, func: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, func, args))
        if self._idle.acquire(blocking=False):
            return future
        with self._lock:
            if self._threads < self._max:
                self._threads += 1
                threading.Thread(
                    target=self._work, name=f"nflow-step-{self._threads}", daemon=True
                ).start()
        return future

    def _work(self) -> None:
        while True:
            future, func, args = self._queue.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            del future, func, args
            self._idle.release()


_threads = _DaemonThreads()
