"""Alembic's environment for nflow: migrations run on a connection nflow hands over.

nflow calls Alembic programmatically (``nflow.store._migrate``) inside its own transaction,
passing the connection as ``config.attributes["connection"]``; no ``alembic.ini`` is needed.
A developer may still run the ``alembic`` command against a database with
``-x url=sqlite+aiosqlite:///nflow.db`` (or set ``sqlalchemy.url``).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_url(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


given = config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("no database: pass -x url=<async URL>, or use `nflow db upgrade`")
    asyncio.run(_run_on_url(url))
