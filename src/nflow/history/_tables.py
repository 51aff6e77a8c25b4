"""The execution history's tables: one row per recorded run, one per step it executed.

Times are microseconds since the Unix epoch in BIGINT columns: exact, the same on SQLite and
PostgreSQL, and cheap to index and compare. Values that can hold user data (request, response,
payloads, host calls, logs, errors) are JSON text, sealed with the key ring when encryption is
on. Steps have no foreign key: SQLite would not enforce it without a pragma, so pruning deletes
the steps of a run itself.
"""

from __future__ import annotations

__all__ = ["metadata", "runs", "steps"]

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

runs = Table(
    "nflow_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("app", Text, nullable=False),
    Column("version", String(64), nullable=False),
    Column("starter", Text, nullable=False),
    Column("wid", String(64), nullable=False),
    Column("parent_id", String(64)),
    Column("journey", Text),
    Column("status", String(16), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("method", String(16), nullable=False),
    Column("path", Text, nullable=False),
    Column("query", Text),
    Column("request_headers", Text),
    Column("request_body", Text),
    Column("response_status", Integer),
    Column("response_headers", Text),
    Column("response_body", Text),
    Column("limit_hit", Text),
    Column("error", Text),
    Column("step_count", Integer, nullable=False),
    # The key that sealed the row's values, NULL when stored in clear.
    Column("key_id", String(64)),
    Index("ix_nflow_runs_started", "started_at"),
    Index("ix_nflow_runs_app", "app", "started_at"),
    Index("ix_nflow_runs_status", "status", "started_at"),
    Index("ix_nflow_runs_journey", "journey", "started_at"),
    Index("ix_nflow_runs_parent", "parent_id"),
)

steps = Table(
    "nflow_run_steps",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("idx", Integer, primary_key=True, autoincrement=False),
    Column("node_id", Text, nullable=False),
    Column("node_type", Text, nullable=False),
    Column("node_name", Text, nullable=False),
    Column("started_at", BigInteger),
    # True: payload_before is the whole payload; false: a delta from the previous step's after.
    Column("before_full", Boolean, nullable=False),
    Column("payload_before", Text),
    Column("payload_after", Text),  # a delta from payload_before; NULL when unchanged
    Column("next_node", Text),
    Column("duration_ms", Float, nullable=False),
    Column("host_calls", Text),
    Column("console", Text),
    Column("writes", Text),
    Column("error", Text),
)
