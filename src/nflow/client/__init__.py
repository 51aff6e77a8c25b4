"""A small typed client for nflow's management API (``/_nflow/api``), on httpx.

    from nflow.client import Client

    with Client("http://127.0.0.1:8080", token="...") as api:
        app = api.app("shop")
        api.save_app("shop", app["document"], version=app["version"])

:class:`Client` is synchronous, :class:`AsyncClient` the same calls awaited. Every call that
changes something sends JSON and the ``X-Nflow-Client`` header the API requires; errors
raise :class:`ApiError` (with ``status``, ``message`` and the whole error object), a save
from a stale version :class:`Conflict` (with ``current``). The client imports nothing of
nflow's server: it can be used from any Python with httpx.
"""

from __future__ import annotations

__all__ = ["ApiError", "AsyncClient", "Client", "Conflict"]

from nflow.client._client import ApiError, AsyncClient, Client, Conflict
