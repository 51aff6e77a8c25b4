"""Cluster membership: one row per running ``nflow serve`` instance, kept fresh by heartbeats.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nflow_instances",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("workers", sa.Integer, nullable=False),
        # microseconds since the Unix epoch, as the execution history's times
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
        sa.Column("stopped_at", sa.BigInteger),
    )


def downgrade() -> None:
    op.drop_table("nflow_instances")
