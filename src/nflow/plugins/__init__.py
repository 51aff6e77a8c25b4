"""Plugin host functions: HTTP client, mail, LLMs, Redis, databases, rules.

Each module exports a :class:`~nflow.jsapi.HostTable`; :data:`PLUGIN_TABLES` lists them for
``Runtime(hosts=...)``. Policies come from ``config.toml`` through :func:`plugin_policies`:
each runtime keeps its own, and plugins read them from the run's services.
:func:`close_plugins` releases per-worker resources and belongs in the runtime's shutdown.
"""

from __future__ import annotations

__all__ = [
    "PLUGIN_TABLES",
    "HttpPolicy",
    "LlmSettings",
    "MailPolicy",
    "close_plugins",
    "db",
    "http",
    "llm",
    "mail",
    "plugin_policies",
    "redis",
    "rules",
    "run_rules",
    "worker_redis",
]

import asyncio

from nflow._io import IoLoop
from nflow.jsapi._host import HostTable
from nflow.plugins._db import close_databases, db
from nflow.plugins._http import HttpPolicy, http
from nflow.plugins._llm import LlmSettings, llm
from nflow.plugins._mail import MailPolicy, mail, wait_background_mail
from nflow.plugins._policies import plugin_policies
from nflow.plugins._redis import close_redis, redis, worker_redis
from nflow.plugins._rules import rules, run_rules

PLUGIN_TABLES: list[HostTable] = [http, mail, llm, redis, db, rules]


async def close_plugins(io: IoLoop, *, timeout: float = 10.0) -> None:
    """Let background mail on ``io`` finish (up to ``timeout``), then close Redis and databases.

    Await it from the server's loop before ``io`` is closed.
    """
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, wait_background_mail, io, timeout)
    await close_redis(io)
    await close_databases(io)
