"""The execution loop: one place where every node starts and ends.

The engine is synchronous and knows no HTTP server: it takes a Request value and returns an
Execution holding the Response. Host I/O inside steps goes through the I/O loop, so the same
code runs on the server's event loop, in a worker thread, under ``nflow run`` and in tests.
"""

from __future__ import annotations

from nflow.engine._run import (
    Engine,
    Execution,
    NodeInterceptor,
    StepResult,
    TraceEntry,
    UnknownNodeType,
    VMProvider,
    is_auth_entry,
    limit_of,
    security_event,
    step_timeout,
)

__all__ = [
    "Engine",
    "Execution",
    "NodeInterceptor",
    "StepResult",
    "TraceEntry",
    "UnknownNodeType",
    "VMProvider",
    "is_auth_entry",
    "limit_of",
    "security_event",
    "step_timeout",
]
