"""The one table of host functions scripts can call, and the one path every call takes.

A JS runtime binds each host function through :meth:`HostTable.entry` and nothing else, so
every call from JS to Python passes there: it counts the call against the run's limit, stops
a killed run, hands the call to the run's :class:`~nflow.jsapi.HostCallInterceptor` when it
has one, and turns wrong arguments into a :class:`HostError` the script can catch. A
recorder or a replay of a run sees every host call there, in order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from nflow.jsapi._context import HostError, RunContext

HostImpl = Callable[..., object]


class HostTable:
    """Named host functions; ``c.*`` names belong to the ``c`` object, others become globals.

    Names with a dot other than ``c.`` are reached only by the prelude, never as globals.
    """

    def __init__(self) -> None:
        self._functions: dict[str, HostImpl] = {}
        # Functions that also get a ``<name>_async`` twin returning a Promise: those whose
        # waiting happens in IoLoop.call, so several can wait at once (jsapi/_async.py).
        self._awaitable: set[str] = set()

    def register(self, name: str, fn: HostImpl, *, replace: bool = False) -> None:
        if name in self._functions and not replace:
            raise ValueError(f"host function {name!r} is already registered")
        self._functions[name] = fn

    def function(self, name: str) -> Callable[[HostImpl], HostImpl]:
        def decorate(fn: HostImpl) -> HostImpl:
            self.register(name, fn)
            return fn

        return decorate

    def allow_await(self, *names: str) -> None:
        """Give each of ``names`` (registered, waiting on the I/O loop) an awaitable twin."""
        for name in names:
            if name not in self._functions or "." in name:
                raise ValueError(f"{name!r} is not a registered global host function")
            self._awaitable.add(name)

    def names(self) -> list[str]:
        return sorted(self._functions)

    def awaitable_names(self) -> list[str]:
        return sorted(self._awaitable)

    def get(self, name: str) -> HostImpl | None:
        """The function registered as ``name`` (called directly: no counting, no interceptor)."""
        return self._functions.get(name)

    def items(self) -> list[tuple[str, HostImpl]]:
        return sorted(self._functions.items())

    def merged(self, others: Iterable[HostTable]) -> HostTable:
        table = HostTable()
        table._functions.update(self._functions)
        table._awaitable.update(self._awaitable)
        for other in others:
            for name, fn in other._functions.items():
                table.register(name, fn, replace=True)
            table._awaitable.update(other._awaitable)
        return table

    def entry(self, name: str, caller: HostCaller) -> Callable[..., object]:
        """The one way into host function ``name``: what the JS side calls, for ``caller``.

        Each call counts against the run's limit and stops a killed run (both raise to end
        the run), goes to the run's interceptor when it has one, and reports a
        :class:`HostError` (wrong arguments included) to ``caller`` so the script sees its
        message as a JS error it may catch.
        """
        fn = self._functions[name]

        def host(*args: Any) -> object:
            ctx = caller.ctx
            if ctx is None:
                caller.host_error = "no run is active"
                raise HostError(caller.host_error)
            ctx.host_calls += 1
            if ctx.host_calls > ctx.max_host_calls:
                raise HostLimitExceeded(ctx.max_host_calls)
            process = ctx.process
            if process is not None and process.killed:
                raise RunKilled(ctx.wid)
            interceptor = ctx.host_interceptor
            try:
                if interceptor is None:
                    return fn(ctx, *args)
                return interceptor.around(name, args, functools.partial(_invoke, fn, ctx, args))
            except HostError as exc:
                caller.host_error = str(exc)
                raise
            except TypeError as exc:
                # Wrong number or kind of arguments from JS: the script's fault, so it may
                # catch it.
                if not is_signature_error(exc):
                    raise
                caller.host_error = f"wrong arguments ({exc})"
                raise HostError(caller.host_error) from None

        return host


class HostCaller(Protocol):
    """The side that calls host functions (a JS runtime): the run it serves now, and where
    the message of a :class:`HostError` goes for the script to see."""

    ctx: RunContext | None
    host_error: str | None


def _invoke(fn: HostImpl, ctx: RunContext, args: tuple[Any, ...]) -> object:
    # An interceptor's ``call``: wrong arguments become the HostError the script would see.
    try:
        return fn(ctx, *args)
    except TypeError as exc:
        if is_signature_error(exc):
            raise HostError(f"wrong arguments ({exc})") from None
        raise


class HostLimitExceeded(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} host calls in one run (limits.max_host_calls)")


class RunKilled(Exception):
    def __init__(self, wid: str) -> None:
        super().__init__(f"run {wid} was killed")


class RunParked(RunKilled):
    """A durable run waits (a long ``sleep``, ``wait_for_signal``): the node stops here and
    runs again from its start when the run is woken."""

    def __init__(self, wid: str, reason: str) -> None:
        Exception.__init__(self, f"run {wid} parked: {reason}")


def is_signature_error(exc: TypeError) -> bool:
    text = str(exc)
    return "positional argument" in text or "required" in text or "takes" in text
