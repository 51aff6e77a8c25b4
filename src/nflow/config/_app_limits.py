"""The per-app limit keys and the check of an overrides table.

Both the ``[apps."<name>".limits]`` tables of config.toml and an app document's
``"nflow_limits"`` object are checked here: known key, right type, within bounds. Combining
them with the server's limits is :mod:`nflow.applimits`.
"""

from __future__ import annotations

__all__ = ["APP_LIMIT_KEYS", "AppLimitIssue", "validate_app_limits"]

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

# key → (integer?, minimum, minimum allowed?) — the same bounds as LimitsConfig.
_SPECS: dict[str, tuple[bool, float, bool]] = {
    "max_steps": (True, 1, True),
    "request_timeout_seconds": (False, 0, False),
    "step_timeout_seconds": (False, 0, False),
    "max_body_bytes": (True, 1, True),
    "max_response_bytes": (True, 1, True),
    "max_host_calls": (True, 1, True),
    "sleep_max_ms": (True, 0, True),
    "max_memory_mb": (True, 1, True),
}
APP_LIMIT_KEYS: tuple[str, ...] = tuple(_SPECS)

_NOT_PER_APP = {
    "max_stack_kb": "the stack size is fixed when a JS runtime is created, and one runtime "
    "per worker thread serves every app; lower limits.max_stack_kb for the whole server",
}


@dataclass(frozen=True, slots=True)
class AppLimitIssue:
    """One bad entry: ``key`` is relative to the overrides object (``max_steps``)."""

    key: str
    message: str


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    text = json.dumps(value) if isinstance(value, str | list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_app_limits(raw: object) -> tuple[dict[str, int | float], list[AppLimitIssue]]:
    """The valid overrides of ``raw`` and one issue per bad entry (unknown key, wrong type).

    ``raw`` is the ``nflow_limits`` object of a document or an ``[apps.x.limits]`` table.
    """
    if not isinstance(raw, Mapping):
        return {}, [AppLimitIssue("", f"expected an object of limits, got {_show(raw)}")]
    values: dict[str, int | float] = {}
    issues: list[AppLimitIssue] = []
    for key, value in raw.items():
        key = str(key)
        spec = _SPECS.get(key)
        if spec is None:
            if key in _NOT_PER_APP:
                issues.append(AppLimitIssue(key, f"cannot be set per app: {_NOT_PER_APP[key]}"))
                continue
            close = difflib.get_close_matches(key, APP_LIMIT_KEYS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            known = ", ".join(APP_LIMIT_KEYS)
            issues.append(AppLimitIssue(key, f"unknown limit{hint}; per-app limits: {known}"))
            continue
        integer, minimum, inclusive = spec
        if isinstance(value, bool) or not isinstance(value, int | float):
            kind = "an integer" if integer else "a number"
            issues.append(AppLimitIssue(key, f"expected {kind}, got {_show(value)}"))
            continue
        if integer and not isinstance(value, int):
            issues.append(AppLimitIssue(key, f"expected an integer, got {_show(value)}"))
            continue
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            bound = f"at least {_num(minimum)}" if inclusive else f"greater than {_num(minimum)}"
            issues.append(AppLimitIssue(key, f"must be {bound}, got {_show(value)}"))
            continue
        values[key] = value
    return values, issues
