"""The cluster's table: one row per ``nflow serve`` instance (revision 0006)."""

from __future__ import annotations

__all__ = ["instances", "metadata"]

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text

metadata = MetaData()

# Times are microseconds since the Unix epoch, as in the execution history's tables.
instances = Table(
    "nflow_instances",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("address", Text, nullable=False),
    Column("version", String(64), nullable=False),
    Column("workers", Integer, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("heartbeat_at", BigInteger, nullable=False),
    Column("stopped_at", BigInteger),
)
