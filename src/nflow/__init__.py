"""nflow: serve nFlow designer playbooks (Drawflow JSON with JavaScript steps) over HTTP."""

from __future__ import annotations

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
