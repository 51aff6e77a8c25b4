"""Cluster mode: instances of ``nflow serve`` sharing one database know of each other.

Each instance registers in ``nflow_instances`` and keeps its row fresh with heartbeats
(:class:`Presence`, run by every worker); :func:`list_instances` tells the live from the dead
(``nflow cluster status``, ``/health/ready``). On PostgreSQL the same workers listen for
change notices, so that an app, release or configuration changed through any instance is
served by all of them at once (see ``nflow.store``'s change notices).
"""

from __future__ import annotations

from nflow.cluster._members import (
    Instance,
    Me,
    forget_instances,
    list_instances,
    mark_stopped,
    write_heartbeat,
)
from nflow.cluster._presence import Presence

__all__ = [
    "Instance",
    "Me",
    "Presence",
    "forget_instances",
    "list_instances",
    "mark_stopped",
    "write_heartbeat",
]
