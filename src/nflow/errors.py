"""One hierarchy of exceptions, so users can catch ``NflowError`` or something narrower."""

from __future__ import annotations

__all__ = [
    "LIMIT_KINDS",
    "AppNotFound",
    "ConfigError",
    "ExecutionError",
    "LimitKind",
    "ModuleNotFound",
    "NflowError",
    "PlaybookError",
    "Problem",
    "ProcessKilled",
    "RunParked",
    "ScriptError",
    "ScriptTimeout",
    "StepLimitExceeded",
    "StoreError",
]

from dataclasses import dataclass
from typing import Literal, get_args

# The resource limits a run can hit: quarantine, isolation and metrics act on these names.
LimitKind = Literal[
    "time", "memory", "steps", "host_calls", "response_bytes", "stack", "native_operation"
]
LIMIT_KINDS: tuple[LimitKind, ...] = get_args(LimitKind)


class NflowError(Exception):
    """Base class of every error nflow raises on purpose."""


class ConfigError(NflowError):
    """A config.toml key or an environment override is unknown or has the wrong type.

    ``key`` is the dotted path of the offending key (``vm_pool.max_size``).
    """

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of playbook validation, pointing at a node and a field."""

    severity: str  # "error" or "warning"
    message: str
    node: str = ""
    field: str = ""
    tab: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = []
        if self.tab:
            where.append(f"tab {self.tab!r}")
        if self.node:
            where.append(f"node {self.node}")
        if self.field:
            where.append(f"field {self.field!r}")
        if self.line is not None:
            where.append(f"line {self.line}")
        prefix = ", ".join(where)
        return f"{self.severity}: {prefix + ': ' if prefix else ''}{self.message}"


class PlaybookError(NflowError):
    """An app document cannot be used; ``problems`` lists every reason found."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        self.problems = list(problems or [])
        detail = "; ".join(str(p) for p in self.problems[:5])
        super().__init__(f"{message}: {detail}" if detail else message)


class StoreError(NflowError):
    """The database could not be reached, or a table or row is missing."""


class AppNotFound(StoreError):
    """No app of that name is stored."""


class ExecutionError(NflowError):
    """A run of a playbook failed at a node.

    ``limit`` names the resource limit the run hit, or is None when it failed otherwise.
    """

    status = 500
    limit: LimitKind | None = None

    def __init__(self, message: str, *, node: str = "", limit: LimitKind | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.message = message
        if limit is not None:
            self.limit = limit


class ScriptError(ExecutionError):
    """A JS step threw, or could not be compiled. ``line`` is the line in the node's script."""

    def __init__(
        self,
        message: str,
        *,
        node: str = "",
        name: str = "Error",
        line: int | None = None,
        limit: LimitKind | None = None,
        stack: str = "",
    ) -> None:
        super().__init__(message, node=node, limit=limit)
        self.name = name
        self.line = line
        self.stack = stack  # the JavaScript stack, for the execution history


class ScriptTimeout(ExecutionError):
    """A JS step ran past its time limit."""

    status = 408
    limit: LimitKind | None = "time"


class StepLimitExceeded(ExecutionError):
    """A run executed more steps than ``limits.max_steps`` (usually a cycle of nodes)."""

    status = 508
    limit: LimitKind | None = "steps"


class ModuleNotFound(ExecutionError):
    """A node's ``data.script`` names a module that is not in the ``modules`` table."""


class ProcessKilled(ExecutionError):
    """The run was stopped with ``wkill`` or the debug API."""

    status = 499


class RunParked(ProcessKilled):
    """A durable run stopped to wait (a long ``sleep``, ``wait_for_signal``); the durable
    queue resumes it. Not a failure."""
