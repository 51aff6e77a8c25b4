"""nflow: serve nFlow designer playbooks (Drawflow JSON with JavaScript steps) over HTTP.

The public names are imported on first use: ``nflow serve``'s master process and the small
commands (``nflow check``, ``nflow user``…) import ``nflow.cli`` through this package and
must not pay for the runtime, the database layer and the JS engine they never touch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nflow._http import Request, Response
    from nflow.config import Config, load_config
    from nflow.engine import Execution, StepResult, TraceEntry
    from nflow.errors import (
        AppNotFound,
        ConfigError,
        ExecutionError,
        ModuleNotFound,
        NflowError,
        PlaybookError,
        Problem,
        ProcessKilled,
        ScriptError,
        ScriptTimeout,
        StepLimitExceeded,
        StoreError,
    )
    from nflow.playbook import Node, Playbook, Starter, load_playbook, parse_playbook
    from nflow.runtime import Runtime
    from nflow.server import AsgiApp
    from nflow.steps import (
        RequestInfo,
        StepContext,
        StepError,
        StepInputError,
        StepRegistrationError,
        discover_steps,
        registered_steps,
        step,
    )

# Where each public name lives; read by __getattr__ below.
_SOURCES = {
    **dict.fromkeys(("Request", "Response"), "nflow._http"),
    **dict.fromkeys(("Config", "load_config"), "nflow.config"),
    **dict.fromkeys(("Execution", "StepResult", "TraceEntry"), "nflow.engine"),
    **dict.fromkeys(
        (
            "AppNotFound",
            "ConfigError",
            "ExecutionError",
            "ModuleNotFound",
            "NflowError",
            "PlaybookError",
            "Problem",
            "ProcessKilled",
            "ScriptError",
            "ScriptTimeout",
            "StepLimitExceeded",
            "StoreError",
        ),
        "nflow.errors",
    ),
    **dict.fromkeys(
        ("Node", "Playbook", "Starter", "load_playbook", "parse_playbook"), "nflow.playbook"
    ),
    "Runtime": "nflow.runtime",
    "AsgiApp": "nflow.server",
    **dict.fromkeys(
        (
            "RequestInfo",
            "StepContext",
            "StepError",
            "StepInputError",
            "StepRegistrationError",
            "discover_steps",
            "registered_steps",
            "step",
        ),
        "nflow.steps",
    ),
}


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'nflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value  # once: later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "AppNotFound",
    "AsgiApp",
    "Config",
    "ConfigError",
    "Execution",
    "ExecutionError",
    "ModuleNotFound",
    "NflowError",
    "Node",
    "Playbook",
    "PlaybookError",
    "Problem",
    "ProcessKilled",
    "Request",
    "RequestInfo",
    "Response",
    "Runtime",
    "ScriptError",
    "ScriptTimeout",
    "Starter",
    "StepContext",
    "StepError",
    "StepInputError",
    "StepLimitExceeded",
    "StepRegistrationError",
    "StepResult",
    "StoreError",
    "TraceEntry",
    "discover_steps",
    "load_config",
    "load_playbook",
    "parse_playbook",
    "registered_steps",
    "step",
]
