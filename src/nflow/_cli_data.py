"""The ``nflow db`` and ``nflow runs`` commands; kept apart from ``cli`` to keep it small.

Heavy imports happen inside the commands, so building the parser stays cheap.
"""

from __future__ import annotations

__all__ = ["add_data_commands"]

import argparse
import asyncio
from typing import Any


def _store(args: argparse.Namespace, *, migrate: bool) -> Any:
    from nflow.cli import _config
    from nflow.config import Config
    from nflow.store import Store

    config, _ = _config(args.config)
    assert isinstance(config, Config)
    return Store(config.database_url, migrate=migrate)


def cmd_db(args: argparse.Namespace) -> int:
    store = _store(args, migrate=False)

    async def run() -> tuple[str | None, str]:
        await store.open()
        try:
            if args.action == "upgrade":
                result: tuple[str | None, str] = await store.upgrade_schema()
            else:
                result = await store.schema_status()
            return result
        finally:
            await store.close()

    first, second = asyncio.run(run())
    if args.action == "upgrade":
        if first == second:
            print(f"{store.url}: already at revision {second}", flush=True)
        else:
            print(f"{store.url}: upgraded from {first or 'none'} to {second}", flush=True)
        return 0
    state = "up to date" if first == second else f"behind: run `nflow db upgrade` for {second}"
    print(f"{first or 'none'} ({state})", flush=True)
    # Scripts can wait for a database to be upgraded by checking the exit status.
    return 0 if first == second else 3


def add_data_commands(sub: Any) -> None:
    """Register ``nflow db …`` and ``nflow runs …`` on the CLI's subparsers."""
    p = sub.add_parser("db", help="the database's schema revision (migrations)")
    p.add_argument(
        "action",
        choices=["upgrade", "current"],
        help="upgrade: apply every newer revision; current: show the revision (exit 3 if behind)",
    )
    p.add_argument("--config")
    p.set_defaults(func=cmd_db)
