"""What host functions see of the run that called them; the audit trail of security events."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nflow._http import Request, ResponseWriter

if TYPE_CHECKING:
    from nflow.processes import Process

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
    services: Any  # nflow.runtime.Services; typed loosely to keep jsapi below the runtime
    process: Process | None = None
    deadline: float = field(default_factory=lambda: time.monotonic() + 30.0)
    isolated: bool = False  # a background fork: writes are discarded, sessions not saved
    node_id: str = ""
    host_calls: int = 0
    max_host_calls: int = 100_000
    limits: Any = None  # the run's RunLimits (the app's, when it lowers the server's)
    extra_headers: dict[str, str] = field(default_factory=dict)
    cookies_out: list[str] = field(default_factory=list)
    on_fork: Callable[..., None] | None = None
    # The stored templates of the loaded version the run started with (hot reload).
    templates: dict[str, str] | None = None

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
