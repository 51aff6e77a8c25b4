"""JS engines behind one small interface, so the engine can be swapped without touching the rest."""

from __future__ import annotations

from nflow.sandbox._base import (
    ConsoleHook,
    EngineLimits,
    HostFunction,
    JsError,
    JsMemoryError,
    JsRuntime,
    JsTimeout,
)

__all__ = [
    "ConsoleHook",
    "EngineLimits",
    "HostFunction",
    "JsError",
    "JsMemoryError",
    "JsRuntime",
    "JsTimeout",
    "new_runtime",
]


def new_runtime(
    *, limits: EngineLimits | None = None, on_console: ConsoleHook | None = None
) -> JsRuntime:
    """A fresh, empty JS runtime from the default backend."""
    from nflow.sandbox._jsbox import JsboxRuntime

    return JsboxRuntime(limits=limits or EngineLimits(), on_console=on_console)
