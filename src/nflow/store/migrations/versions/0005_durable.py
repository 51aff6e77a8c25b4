"""Durable runs: the queue with leases, the per-node checkpoint log, waits and signals.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nflow_durable_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("app", sa.Text, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("vars", sa.Text, nullable=False),
        sa.Column("sessions", sa.Text, nullable=False),
        sa.Column("next_node", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("writer", sa.Text),
        sa.Column("steps", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("node_attempts", sa.Integer, nullable=False),
        sa.Column("run_at", sa.BigInteger),
        sa.Column("owner", sa.String(64)),
        sa.Column("wait_signal", sa.Text),
        sa.Column("response", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("error_node", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("ended_at", sa.BigInteger),
    )
    op.create_index("ix_nflow_durable_runs_due", "nflow_durable_runs", ["status", "run_at"])
    op.create_index("ix_nflow_durable_runs_ended", "nflow_durable_runs", ["ended_at"])
    op.create_table(
        "nflow_durable_steps",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("node", sa.Text, nullable=False),
        sa.Column("next_node", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "nflow_durable_waits",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("until", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.Text),
    )
    op.create_table(
        "nflow_durable_signals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("taken_by", sa.String(32)),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_nflow_durable_signals_run", "nflow_durable_signals", ["run_id", "name", "id"]
    )


def downgrade() -> None:
    op.drop_table("nflow_durable_signals")
    op.drop_table("nflow_durable_waits")
    op.drop_table("nflow_durable_steps")
    op.drop_table("nflow_durable_runs")
