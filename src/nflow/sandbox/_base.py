"""The small interface every JS engine backend implements.

Nothing here knows about HTTP, the store or the engine: a runtime evaluates code and calls
the host functions it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

HostFunction = Callable[..., object]
ConsoleHook = Callable[[str, list[object]], None]


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Per-runtime limits the backend enforces natively."""

    memory_bytes: int = 128 * 1024 * 1024
    stack_bytes: int = 1024 * 1024
    max_value_bytes: int = 16 * 1024 * 1024


class JsError(Exception):
    """A script threw (or failed to compile). ``line`` is 1-based in the evaluated source."""

    def __init__(self, name: str, message: str, *, stack: str = "", line: int | None = None):
        super().__init__(f"{name}: {message}" if name else message)
        self.name = name
        self.message = message
        self.stack = stack
        self.line = line


class JsTimeout(Exception):
    """The evaluation ran past its deadline and was interrupted."""


class JsMemoryError(JsError):
    """The runtime's heap limit was reached."""


class JsRuntime(Protocol):
    """One isolated JS heap. Not thread-safe: use it only on the thread that created it."""

    def bind(self, name: str, fn: HostFunction) -> None: ...

    def eval(self, code: str, *, timeout: float | None = None) -> object: ...

    def drain(self, code: str, *, timeout: float | None = None) -> object:
        """Evaluate ``code``, which returns a promise that never settles, and run every
        queued promise job until none is left. Returns normally when the queue is empty, or
        with the value of ``code`` when it did not return a pending promise."""
        ...

    def check_syntax(self, code: str) -> None: ...

    def close(self) -> None: ...
