"""What host functions see of the run that called them; the audit trail of security events.

:class:`HostServices` is all that host functions and plugins may use of the runtime that runs
them; the runtime implements it. Plugins find their own policies in :class:`Policies`, by type.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from nflow._http import Request, ResponseWriter
from nflow.applimits import RunLimits

if TYPE_CHECKING:
    from nflow._io import IoLoop
    from nflow.config import Config
    from nflow.processes import Process, ProcessRegistry
    from nflow.store import Store

security_log = logging.getLogger("nflow.security")


class HostError(Exception):
    """An error a script may see and catch: its message becomes the JS Error's message."""


@dataclass(slots=True)
class Sessions:
    """The named sessions of one client for one request (``nflow_form``, ``auth-session``...).

    Values are string-keyed maps. ``dirty`` names what must be written back when the run ends.
    """

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    # The login that set the current profile; logout revokes it so a copied cookie is dead.
    profile_sid: str = ""
    revoked: list[str] = field(default_factory=list)

    def get(self, name: str) -> dict[str, Any]:
        return self.values.setdefault(_alias(name), {})

    def mark(self, name: str) -> None:
        self.dirty.add(_alias(name))

    def clear(self, name: str) -> None:
        name = _alias(name)
        if self.values.get(name):
            self.dirty.add(name)
        self.values[name] = {}

    def copy(self) -> Sessions:
        return Sessions({k: dict(v) for k, v in self.values.items()}, set(), self.profile_sid)


def _alias(name: str) -> str:
    # The original wrote the profile to "auth_session" but read it from "auth-session", so
    # the auth trigger never saw it. Both names refer to one session here.
    return "auth-session" if name == "auth_session" else name


P = TypeVar("P")


class Policies:
    """The plugins' policies of one runtime, one value per policy type.

    A plugin reads its own with ``get(HttpPolicy)``; a type not given gets its defaults, so a
    runtime opened without a config section still has a policy.
    """

    __slots__ = ("_by_type",)

    def __init__(self, values: Iterable[object] = ()) -> None:
        self._by_type: dict[type, object] = {type(value): value for value in values}

    def get(self, kind: type[P]) -> P:
        found = self._by_type.get(kind)
        if found is None:
            found = self._by_type[kind] = kind()
        assert isinstance(found, kind)  # keyed by its own type
        return found


class SecurityMetrics(Protocol):
    """The counters :func:`security_event` feeds."""

    def security_event(self, rule: str) -> None: ...

    def limit_hit(self, name: str) -> None: ...


class HostServices(Protocol):
    """What host functions and plugins may use of the runtime that runs them."""

    @property
    def config(self) -> Config: ...

    @property
    def database_url(self) -> str: ...

    @property
    def store(self) -> Store: ...

    @property
    def io(self) -> IoLoop: ...

    @property
    def processes(self) -> ProcessRegistry: ...

    @property
    def env(self) -> MutableMapping[str, str]:
        """The config's ``[env]`` table; ``set_env`` changes it for the runtime's later runs."""
        ...

    @property
    def policies(self) -> Policies: ...

    @property
    def metrics(self) -> SecurityMetrics | None: ...


class HostCallInterceptor(Protocol):
    """Sees every host call of one run, in order, around the function that answers it.

    ``around`` gets the host function's name, the arguments the script passed, and ``call``,
    which runs the function and returns its result or raises what it raised (a
    :class:`HostError` is what the script sees as an exception). It returns the script's
    result: ``call()``'s, or another (a replay answers from a record without calling).
    """

    def around(self, name: str, args: tuple[Any, ...], call: Callable[[], object]) -> object: ...


class DurableContext(Protocol):
    """What host functions see of a durable run (async start or durable background branch).

    Waits may end the node early: a wait that cannot be answered now parks the run (the
    durable queue wakes it on any instance) by raising, and the node runs again from its
    start when the run resumes; the same wait, reached again, is then over.
    """

    @property
    def run_id(self) -> str: ...

    @property
    def attempt(self) -> int:
        """1 for the node's first execution, 2 for its first retry ..."""
        ...

    @property
    def park_sleep_ms(self) -> int:
        """``sleep`` longer than this parks the run."""
        ...

    def step_key(self) -> str:
        """The idempotency key of the node running now: the same on every attempt."""
        ...

    def effect_key(self) -> str:
        """A key for the next outgoing effect of this node (HTTP call, mail): the n-th
        effect of a node gets the same key on every attempt."""
        ...

    def sleep(self, ms: int) -> None:
        """Return once ``ms`` have passed since the node first asked; else park the run."""
        ...

    def wait_for_signal(self, name: str, timeout_ms: int) -> tuple[bool, Any]:
        """``(True, body)`` once signal ``name`` came, ``(False, None)`` after the timeout;
        else park the run."""
        ...


@dataclass(slots=True)
class RunContext:
    """One execution (a request, or a background fork of one)."""

    wid: str
    request: Request
    writer: ResponseWriter
    app: str
    endpoint: str
    vars: Mapping[str, str]
    sessions: Sessions
    services: HostServices
    # The app version the run executes (the playbook's content hash).
    version: str = ""
    process: Process | None = None
    deadline: float = field(default_factory=lambda: time.monotonic() + 30.0)
    isolated: bool = False  # a background fork: writes are discarded, sessions not saved
    node_id: str = ""
    host_calls: int = 0
    max_host_calls: int = 100_000
    # The run's limits: the app's, when it lowers the server's.
    limits: RunLimits = field(default_factory=RunLimits)
    extra_headers: dict[str, str] = field(default_factory=dict)
    cookies_out: list[str] = field(default_factory=list)
    # The stored templates and named queries of the app version the run started with: a hot
    # reload during the run does not change them.
    templates: dict[str, str] = field(default_factory=dict)
    queries: Mapping[str, str] = field(default_factory=dict)
    # Sees every host call of this run (execution history); None costs one test per call.
    host_interceptor: HostCallInterceptor | None = None
    # Plugins' per-run values (e.g. mail_config's settings), by plugin; made on first use.
    plugin_state: dict[str, object] | None = None
    # Math.random's seed for this run (53 bits, so JavaScript holds it exactly).
    seed: int = 0
    # The clock of the next step: "" reads it live, "r" also tapes the reads, and a JSON
    # tape ([value, times, ...]) is read back first (replay). After a taped step, ``tape``
    # holds what it read.
    clock: str = ""
    tape: list[Any] | None = None
    # When a list, console.* lines of the run are appended to it (execution history).
    console: list[str] | None = None
    # Set in durable runs only: run id, attempt, idempotency keys and durable waits.
    durable: DurableContext | None = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


def security_event(ctx: RunContext, rule: str, detail: str) -> None:
    """The audit trail: one structured warning and one metric per blocked attempt or limit."""
    security_log.warning(
        "security event %s: %s",
        rule,
        detail[:300],
        extra={
            "rule": rule,
            "wid": ctx.wid,
            "app": ctx.app,
            "node": ctx.node_id,
            "ip": ctx.request.client_ip,
        },
    )
    metrics = ctx.services.metrics
    if metrics is not None:
        metrics.security_event(rule)
        if rule.startswith("limit:"):
            metrics.limit_hit(rule[6:])
