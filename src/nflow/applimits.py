"""Per-app limit overrides: an app may lower the server's ``[limits]``, never raise them.

Two sources, both optional: ``[apps."<name>".limits]`` in config.toml (the operator's say) and a
top-level ``"nflow_limits": {...}`` object in the app document (the author's say; the designer
ignores keys it does not know). The effective value of a key is the lowest of the server's and
the overrides'; an override above the server's limit is an error for ``nflow check`` and
``nflow import`` and is clamped (with a warning) when a server loads the app, so a stricter
server never has to refuse an app written for a looser one.

``max_memory_mb`` lowers ``[vm_pool] max_memory_mb``: an app with its own heap limit runs on
JS runtimes of its own (one per worker thread and limit). The stack (``limits.max_stack_kb``)
is not a per-app key.

The keys and the check of one overrides table are in :mod:`nflow.config`, which validates
``[apps]`` tables with them; this module combines checked overrides with the server's limits.
"""

from __future__ import annotations

__all__ = [
    "APP_LIMIT_KEYS",
    "AppLimitIssue",
    "Raised",
    "RunLimits",
    "app_limit_problems",
    "effective_limits",
    "override_sources",
    "raised_limits",
    "server_limits",
    "validate_app_limits",
]

from collections.abc import Mapping
from dataclasses import dataclass

from nflow.config import APP_LIMIT_KEYS, AppLimitIssue, Config, validate_app_limits
from nflow.errors import Problem
from nflow.playbook import Playbook


@dataclass(frozen=True, slots=True)
class RunLimits:
    """The limits the engine enforces, resolved from config."""

    max_steps: int = 1000
    request_timeout_seconds: float = 30.0
    step_timeout_seconds: float = 30.0
    max_body_bytes: int = 10 * 1024 * 1024
    max_response_bytes: int = 10 * 1024 * 1024
    max_host_calls: int = 100_000
    max_concurrent_host_calls: int = 16
    parallel_branches: int = 4
    sleep_max_ms: int = 5000
    max_memory_mb: int = 128

    @classmethod
    def from_config(cls, config: Config) -> RunLimits:
        lim = config.limits
        return cls(
            max_steps=lim.max_steps,
            request_timeout_seconds=lim.request_timeout_seconds,
            step_timeout_seconds=config.effective_step_timeout_seconds,
            max_body_bytes=lim.max_body_bytes,
            max_response_bytes=lim.max_response_bytes,
            max_host_calls=lim.max_host_calls,
            max_concurrent_host_calls=lim.max_concurrent_host_calls,
            parallel_branches=lim.parallel_branches,
            sleep_max_ms=lim.sleep_max_ms,
            max_memory_mb=config.vm_pool.max_memory_mb,
        )


@dataclass(frozen=True, slots=True)
class Raised:
    """An override above the server's limit (refused by check, clamped at load)."""

    source: str  # "nflow_limits" or 'apps."name".limits'
    key: str
    given: float
    server: float

    def __str__(self) -> str:
        return (
            f"{self.source}.{self.key} = {_num(self.given)} is above the server's limit "
            f"{_num(self.server)} ({_server_key(self.key)}); an app may only lower limits"
        )


def _server_key(key: str) -> str:
    return "vm_pool.max_memory_mb" if key == "max_memory_mb" else f"limits.{key}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def raised_limits(
    server: Mapping[str, int | float], overrides: Mapping[str, int | float], *, source: str
) -> list[Raised]:
    """The overrides that try to go above the server's value of their key."""
    return [
        Raised(source, key, value, server[key])
        for key, value in overrides.items()
        if key in server and value > server[key]
    ]


def effective_limits(
    server: Mapping[str, int | float], *overrides: Mapping[str, int | float]
) -> dict[str, int | float]:
    """The lowest of the server's value and every override, per key (raises are ignored)."""
    result = {key: server[key] for key in APP_LIMIT_KEYS if key in server}
    for given in overrides:
        for key, value in given.items():
            if key in result and value < result[key]:
                result[key] = value
    return result


def server_limits(config: Config) -> dict[str, int | float]:
    """The server's value of every per-app key (the step timeout as the engine applies it)."""
    values: dict[str, int | float] = {
        key: getattr(config.limits, key) for key in APP_LIMIT_KEYS if key != "max_memory_mb"
    }
    values["max_memory_mb"] = config.vm_pool.max_memory_mb
    values["step_timeout_seconds"] = config.effective_step_timeout_seconds
    return values


def override_sources(
    name: str, document: Mapping[str, int | float], config: Config
) -> list[tuple[str, Mapping[str, int | float]]]:
    """The overrides that apply to app ``name``: config.toml's, then the document's."""
    sources: list[tuple[str, Mapping[str, int | float]]] = []
    app = config.apps.get(name)
    if app is not None and app.limits:
        sources.append((f'apps."{name}".limits', app.limits))
    if document:
        sources.append(("nflow_limits", document))
    return sources


def app_limit_problems(playbook: Playbook, config: Config) -> list[Problem]:
    """``nflow check`` / ``nflow import``: one error per override above the server's limit."""
    server = server_limits(config)
    problems: list[Problem] = []
    for source, values in override_sources(playbook.name, playbook.limits, config):
        for raised in raised_limits(server, values, source=source):
            problems.append(
                Problem(
                    "error",
                    f"app {playbook.name!r}: {raised}",
                    field=f"{source}.{raised.key}",
                )
            )
    return problems
