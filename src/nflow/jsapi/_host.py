"""The one table of host functions scripts can call.

Every call from JS to Python passes through :meth:`HostTable.call`, which counts it, checks
that the run was not killed, and turns :class:`HostError` into a JS exception. That single
choke point is also where a future recorder can tape results for exact replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from nflow.jsapi._context import HostError, RunContext

HostImpl = Callable[..., object]


class HostTable:
    """Named host functions; ``c.*`` names belong to the ``c`` object, others become globals."""

    def __init__(self) -> None:
        self._functions: dict[str, HostImpl] = {}

    def register(self, name: str, fn: HostImpl, *, replace: bool = False) -> None:
        if name in self._functions and not replace:
            raise ValueError(f"host function {name!r} is already registered")
        self._functions[name] = fn

    def function(self, name: str) -> Callable[[HostImpl], HostImpl]:
        def decorate(fn: HostImpl) -> HostImpl:
            self.register(name, fn)
            return fn

        return decorate

    def names(self) -> list[str]:
        return sorted(self._functions)

    def items(self) -> list[tuple[str, HostImpl]]:
        return sorted(self._functions.items())

    def merged(self, others: Iterable[HostTable]) -> HostTable:
        table = HostTable()
        table._functions.update(self._functions)
        for other in others:
            for name, fn in other._functions.items():
                table.register(name, fn, replace=True)
        return table

    def call(self, ctx: RunContext, name: str, args: list[Any]) -> list[Any]:
        fn = self._functions.get(name)
        if fn is None:
            return [f"{name} is not available", None]
        ctx.host_calls += 1
        if ctx.host_calls > ctx.max_host_calls:
            raise HostLimitExceeded(ctx.max_host_calls)
        process = ctx.process
        if process is not None and process.killed:
            raise RunKilled(ctx.wid)
        try:
            return [None, fn(ctx, *args)]
        except HostError as exc:
            return [str(exc), None]
        except TypeError as exc:
            # Wrong number or kind of arguments from JS: the script's fault, so it may catch it.
            if is_signature_error(exc):
                return [f"{name}: wrong arguments ({exc})", None]
            raise


class HostLimitExceeded(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} host calls in one run (limits.max_host_calls)")


class RunKilled(Exception):
    def __init__(self, wid: str) -> None:
        super().__init__(f"run {wid} was killed")


def is_signature_error(exc: TypeError) -> bool:
    text = str(exc)
    return "positional argument" in text or "required" in text or "takes" in text


def now_ns() -> int:
    return time.time_ns()
