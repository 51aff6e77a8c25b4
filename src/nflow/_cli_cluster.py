"""The ``nflow cluster`` commands: which instances share this database, and a configuration
reload for all of them; kept apart from ``cli`` to keep it small."""

from __future__ import annotations

__all__ = ["add_cluster_commands"]

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def cmd_cluster(args: argparse.Namespace) -> int:
    from nflow.cluster import list_instances
    from nflow.config import find_config
    from nflow.store import CHANGED_CONFIG, Store

    config, _ = find_config(args.config)
    store = Store(config.database_url)

    async def run() -> Any:
        await store.open()
        try:
            if args.action == "reload":
                await store.notify(CHANGED_CONFIG)
                return None
            return await list_instances(store, dead_after=config.cluster.dead_after_seconds)
        finally:
            await store.close()

    found = asyncio.run(run())
    if args.action == "reload":
        if store.dialect != "postgresql":
            print(
                "nflow: SQLite sends no change notices: send SIGHUP to the instance instead",
                file=sys.stderr,
                flush=True,
            )
            return 1
        print("asked every listening instance to re-read its configuration", flush=True)
        return 0
    if args.json:
        sys.stdout.buffer.write(orjson.dumps([i.as_dict() for i in found]) + b"\n")
        sys.stdout.flush()
        return 0
    if not found:
        print(f"no instance has registered in {store.url}", flush=True)
        return 0
    rows = [("STATUS", "ID", "ADDRESS", "PID", "WORKERS", "VERSION", "STARTED", "HEARTBEAT")]
    now = time.time()
    for i in found:
        rows.append(
            (
                i.status,
                i.id,
                i.address,
                str(i.pid),
                str(i.workers),
                i.version,
                _ago(now - i.started_at / 1e6),
                _ago(i.seconds_since_heartbeat),
            )
        )
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    live = sum(1 for i in found if i.status == "live")
    print(f"{live} live of {len(found)} known", flush=True)
    return 0


def add_cluster_commands(sub: Any) -> None:
    """Register ``nflow cluster …`` on the CLI's subparsers."""
    p = sub.add_parser("cluster", help="instances of nflow serve sharing this database")
    csub = p.add_subparsers(dest="action", required=True)
    c = csub.add_parser("status", help="live, dead and stopped instances, newest first")
    c.add_argument("--json", action="store_true", help="one JSON array")
    c.add_argument("--config")
    c = csub.add_parser(
        "reload",
        help="make every instance re-read its configuration file and secrets (PostgreSQL)",
    )
    c.add_argument("--config")
    p.set_defaults(func=cmd_cluster)
