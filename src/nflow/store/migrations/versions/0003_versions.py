"""App versions: every app content nflow served or imported, by its hash.

Revision ID: 0003
Revises: 0002
Create Date: 2026-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nflow_versions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("app", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
    )
    op.create_index("ix_nflow_versions_app", "nflow_versions", ["app", "created_at"])


def downgrade() -> None:
    op.drop_table("nflow_versions")
