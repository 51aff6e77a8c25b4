"""Plugin host functions (spec §3.7, §3.1): HTTP client, mail, LLMs and Redis helpers.

Each module exports a :class:`~nflow.jsapi.HostTable`; :data:`PLUGIN_TABLES` lists them for
``Runtime(hosts=...)``. Policies that are not part of the config schema yet (HTTP address
allow-list, mail CA file, LLM endpoints) are set through the ``configure_*`` hooks.
:func:`close_plugins` releases per-worker resources and belongs in the runtime's shutdown.
"""

from __future__ import annotations

__all__ = [
    "PLUGIN_TABLES",
    "HttpPolicy",
    "LlmSettings",
    "MailPolicy",
    "close_plugins",
    "configure_http",
    "configure_llm",
    "configure_mail",
    "http",
    "llm",
    "mail",
    "redis",
]

import asyncio

from nflow._io import IoLoop
from nflow.jsapi._host import HostTable
from nflow.plugins._http import HttpPolicy, configure_http, http
from nflow.plugins._llm import LlmSettings, configure_llm, llm
from nflow.plugins._mail import MailPolicy, configure_mail, mail, wait_background_mail
from nflow.plugins._redis import close_redis, redis

PLUGIN_TABLES: list[HostTable] = [http, mail, llm, redis]


async def close_plugins(io: IoLoop, *, timeout: float = 10.0) -> None:
    """Let background mail on ``io`` finish (up to ``timeout``), then close the Redis client.

    Await it from the server's loop before ``io`` is closed.
    """
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, wait_background_mail, io, timeout)
    await close_redis(io)
