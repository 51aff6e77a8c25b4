"""The execution loop: one place where every node starts and ends.

The engine is synchronous and knows no HTTP server: it takes a Request value and returns an
Execution holding the Response. Host I/O inside steps goes through the I/O loop, so the same
code runs on the server's event loop, in a worker thread, under ``nflow run`` and in tests.

``_results`` holds what runs produce, ``_run`` the loop, ``_js`` the js step and the runtimes
it runs in, ``_wasm`` the wasm step, ``_custom`` the custom Python steps, ``_debug``
breakpoints (debug sessions).
"""

from __future__ import annotations

from nflow.engine._custom import run_custom_step
from nflow.engine._debug import (
    Breakpoint,
    BreakpointError,
    Condition,
    DebugSession,
    DebugSessions,
    SessionLimitReached,
)
from nflow.engine._js import VMProvider, js_limit
from nflow.engine._results import (
    Checkpointer,
    Execution,
    NodeInterceptor,
    StepObserver,
    StepResult,
    TraceEntry,
    UnknownNodeType,
    limit_of,
    step_timeout,
)
from nflow.engine._run import Engine, StepFunction, is_auth_entry
from nflow.engine._services import EngineServices, ForkFunction, RunMetrics

__all__ = [
    "Breakpoint",
    "BreakpointError",
    "Checkpointer",
    "Condition",
    "DebugSession",
    "DebugSessions",
    "Engine",
    "EngineServices",
    "Execution",
    "ForkFunction",
    "NodeInterceptor",
    "RunMetrics",
    "SessionLimitReached",
    "StepFunction",
    "StepObserver",
    "StepResult",
    "TraceEntry",
    "UnknownNodeType",
    "VMProvider",
    "is_auth_entry",
    "js_limit",
    "limit_of",
    "run_custom_step",
    "step_timeout",
]
