"""Releases: which versions of an app serve traffic, with what weight; their history; and the
per-version request counts that automatic rollback judges a canary by.

Revision ID: 0004
Revises: 0003
Create Date: 2026-01-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nflow_releases",
        sa.Column("app", sa.Text, primary_key=True),
        sa.Column("weights", sa.Text, nullable=False),
        sa.Column("head", sa.String(64)),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "nflow_release_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("app", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("weights", sa.Text, nullable=False),
        sa.Column("previous", sa.Text),
        sa.Column("head", sa.String(64)),
        sa.Column("detail", sa.Text),
        sa.Column("undone", sa.Boolean, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_nflow_release_events_app", "nflow_release_events", ["app", "id"])
    op.create_table(
        "nflow_version_counts",
        sa.Column("app", sa.Text, primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("nflow_version_counts")
    op.drop_table("nflow_release_events")
    op.drop_table("nflow_releases")
