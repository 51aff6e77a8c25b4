"""The durable queue's tables: one row per durable run, its checkpoints, waits and signals.

Times are microseconds since the Unix epoch in BIGINT columns, as in the execution history.
``run_at`` is when a worker should next look at a run: when a queued or waiting run is due,
or when a running run's lease lapses (renewed with the lease). Ended runs have none; claims
walk the (status, run_at) index over due work only.
"""

from __future__ import annotations

__all__ = ["metadata", "runs", "signals", "steps", "waits"]

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

runs = Table(
    "nflow_durable_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("app", Text, nullable=False),
    Column("version", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("parent_id", String(64)),
    Column("status", String(16), nullable=False),
    Column("request", Text, nullable=False),
    Column("vars", Text, nullable=False),
    Column("sessions", Text, nullable=False),
    Column("next_node", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("writer", Text),
    Column("steps", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("node_attempts", Integer, nullable=False),
    Column("run_at", BigInteger),
    Column("owner", String(64)),
    Column("wait_signal", Text),
    Column("response", Text),
    Column("error", Text),
    Column("error_node", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger),
    Index("ix_nflow_durable_runs_due", "status", "run_at"),
    Index("ix_nflow_durable_runs_ended", "ended_at"),
)

steps = Table(
    "nflow_durable_steps",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("node", Text, nullable=False),
    Column("next_node", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("owner", String(64), nullable=False),
    Column("at", BigInteger, nullable=False),
)

waits = Table(
    "nflow_durable_waits",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("key", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("name", Text),
    Column("until", BigInteger, nullable=False),
    Column("outcome", Text),
)

signals = Table(
    "nflow_durable_signals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("taken_by", String(32)),
    Index("ix_nflow_durable_signals_run", "run_id", "name", "id"),
    sqlite_autoincrement=True,
)
