"""Execution history: recorded runs and their steps.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nflow_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("app", sa.Text, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("starter", sa.Text, nullable=False),
        sa.Column("wid", sa.String(64), nullable=False),
        sa.Column("parent_id", sa.String(64)),
        sa.Column("journey", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("ended_at", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("query", sa.Text),
        sa.Column("request_headers", sa.Text),
        sa.Column("request_body", sa.Text),
        sa.Column("response_status", sa.Integer),
        sa.Column("response_headers", sa.Text),
        sa.Column("response_body", sa.Text),
        sa.Column("limit_hit", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("step_count", sa.Integer, nullable=False),
        sa.Column("key_id", sa.String(64)),
    )
    op.create_index("ix_nflow_runs_started", "nflow_runs", ["started_at"])
    op.create_index("ix_nflow_runs_app", "nflow_runs", ["app", "started_at"])
    op.create_index("ix_nflow_runs_status", "nflow_runs", ["status", "started_at"])
    op.create_index("ix_nflow_runs_journey", "nflow_runs", ["journey", "started_at"])
    op.create_index("ix_nflow_runs_parent", "nflow_runs", ["parent_id"])
    op.create_table(
        "nflow_run_steps",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("node_id", sa.Text, nullable=False),
        sa.Column("node_type", sa.Text, nullable=False),
        sa.Column("node_name", sa.Text, nullable=False),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("before_full", sa.Boolean, nullable=False),
        sa.Column("payload_before", sa.Text),
        sa.Column("payload_after", sa.Text),
        sa.Column("next_node", sa.Text),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("host_calls", sa.Text),
        sa.Column("console", sa.Text),
        sa.Column("writes", sa.Text),
        sa.Column("error", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("nflow_run_steps")
    op.drop_table("nflow_runs")
