"""What the engine uses of the runtime that runs it, as protocols the runtime implements.

The engine sits below the runtime: it names what it needs here (the loaded version's sources,
the auth trigger, the tracker, a way to start a background fork ...) and the runtime hands in
a value that has it.
"""

from __future__ import annotations

__all__ = ["EngineServices", "ForkFunction", "RunMetrics"]

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from nflow._http import Request
from nflow.applimits import RunLimits
from nflow.engine._results import TraceEntry
from nflow.jsapi import HostServices, SecurityMetrics, Sessions
from nflow.playbook import Playbook
from nflow.security import KeyRing
from nflow.tracker import Tracker

if TYPE_CHECKING:
    from nflow.catalog import Catalog


class RunMetrics(SecurityMetrics, Protocol):
    """The counters a finished run feeds."""

    def run_finished(self, app: str, ok: bool, nodes: Sequence[TraceEntry]) -> None: ...

    def step_cache(self, app: str, hit: bool) -> None:
        """A node of ``app`` with ``cache_ttl_seconds`` was looked up in the step cache."""
        ...


class ForkFunction(Protocol):
    """Starts a fork node's background branch: a run of its own from ``start``."""

    def __call__(
        self,
        *,
        playbook: Playbook,
        start: str,
        request: Request,
        endpoint: str,
        vars: Mapping[str, str],
        sessions: Sessions,
        payload: dict[str, Any],
        wid: str,
        catalog: Catalog | None = None,
        parent_run: str | None = None,
    ) -> None: ...


class EngineServices(HostServices, Protocol):
    """What the engine reads of its runtime, on top of what host functions may use."""

    @property
    def modules(self) -> Mapping[str, str | None]:
        """Module sources of the version served now (runs read their own catalog's)."""
        ...

    @property
    def templates(self) -> dict[str, str]: ...

    @property
    def queries(self) -> Mapping[str, str]: ...

    @property
    def auth_trigger(self) -> str: ...

    @property
    def login_path(self) -> str: ...

    @property
    def tracker(self) -> Tracker | None: ...

    @property
    def keyring(self) -> KeyRing | None: ...

    @property
    def metrics(self) -> RunMetrics | None: ...

    @property
    def fork(self) -> ForkFunction: ...

    def limits_for(self, playbook: Playbook) -> RunLimits: ...
