"""jsbox (QuickJS through rquickjs) backend.

Chosen after measuring (see the project's research notes): synchronous host calls that keep
working under a wall-clock timeout, an interrupt that also covers promise jobs, and a heap
limit after which the runtime stays usable.
"""

from __future__ import annotations

import re

import jsbox

from nflow.sandbox._base import (
    ConsoleHook,
    EngineLimits,
    HostFunction,
    JsError,
    JsMemoryError,
    JsTimeout,
)

_DRAINED = object()
_LINE = re.compile(r"(?:eval_script|check):(\d+):\d+")


class JsboxRuntime:
    def __init__(self, *, limits: EngineLimits, on_console: ConsoleHook | None = None) -> None:
        self._rt = jsbox.Runtime(
            memory_limit=limits.memory_bytes,
            max_stack_size=min(limits.stack_bytes, 4 * 1024 * 1024),
            max_value_bytes=limits.max_value_bytes,
            on_console=on_console,
            lossy=True,
        )

    def bind(self, name: str, fn: HostFunction) -> None:
        self._rt.bind_function(name, fn)

    def eval(self, code: str, *, timeout: float | None = None) -> object:
        try:
            return self._rt.eval(code, timeout=timeout)
        except jsbox.JsTimeoutError:
            raise JsTimeout("script exceeded its time limit") from None
        except jsbox.JavaScriptError as exc:
            raise _convert(exc) from None

    def drain(self, code: str, *, timeout: float | None = None) -> object:
        try:
            return self._rt.eval(code, timeout=timeout)
        except jsbox.JsTimeoutError:
            raise JsTimeout("script exceeded its time limit") from None
        except jsbox.JavaScriptError as exc:
            # jsbox's own error (it has no JS name) once no job is left to run.
            if getattr(exc, "name", None) is None and "no pending jobs" in str(exc):
                return _DRAINED
            raise _convert(exc) from None

    def check_syntax(self, code: str) -> None:
        try:
            self._rt.check_syntax(code)
        except jsbox.JavaScriptError as exc:
            raise _convert(exc) from None

    def close(self) -> None:
        self._rt = None


def _convert(exc: jsbox.JavaScriptError) -> JsError:
    name = getattr(exc, "name", "") or "Error"
    message = getattr(exc, "message", "") or str(exc)
    stack = getattr(exc, "stack", "") or ""
    match = _LINE.search(stack) or _LINE.search(str(exc))
    line = int(match.group(1)) if match else None
    # QuickJS throws null when it cannot even allocate the error object of an out-of-memory.
    if "out of memory" in message or (message in ("null", "") and not stack):
        return JsMemoryError("InternalError", "out of memory", stack=stack, line=line)
    return JsError(name, message, stack=stack, line=line)
