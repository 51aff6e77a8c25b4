"""The script API: the ``c`` object, nFlow globals, and the host functions behind them."""

from __future__ import annotations

from nflow.jsapi._async import SETTLED_CALL
from nflow.jsapi._context import (
    HostCallInterceptor,
    HostError,
    HostServices,
    Policies,
    RunContext,
    SecurityMetrics,
    Sessions,
    security_event,
)
from nflow.jsapi._host import HostLimitExceeded, HostTable, RunKilled
from nflow.jsapi._vm import NflowVM, quote, user_line

__all__ = [
    "SETTLED_CALL",
    "HostCallInterceptor",
    "HostError",
    "HostLimitExceeded",
    "HostServices",
    "HostTable",
    "NflowVM",
    "Policies",
    "RunContext",
    "RunKilled",
    "SecurityMetrics",
    "Sessions",
    "quote",
    "security_event",
    "user_line",
]
