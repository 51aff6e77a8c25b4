"""The script API: the ``c`` object, nFlow globals, and the host functions behind them."""

from __future__ import annotations

from nflow.jsapi._async import SETTLED_CALL
from nflow.jsapi._context import (
    DurableContext,
    HostCallInterceptor,
    HostError,
    HostServices,
    Policies,
    RunContext,
    SecurityMetrics,
    Sessions,
    security_event,
)
from nflow.jsapi._host import HostLimitExceeded, HostTable, RunKilled, RunParked
from nflow.jsapi._vm import NflowVM, quote, user_line

__all__ = [
    "SETTLED_CALL",
    "DurableContext",
    "HostCallInterceptor",
    "HostError",
    "HostLimitExceeded",
    "HostServices",
    "HostTable",
    "NflowVM",
    "Policies",
    "RunContext",
    "RunKilled",
    "RunParked",
    "SecurityMetrics",
    "Sessions",
    "quote",
    "security_event",
    "user_line",
]
