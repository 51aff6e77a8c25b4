"""The tables nflow had before it used migrations: the Go runtime's and nflow's first own ones.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

Declared here once and never changed: a database made by ``create_all`` before migrations (or
by the Go runtime) is brought to exactly these tables and stamped at this revision, and later
revisions change the schema from there. The column types are plain SQLAlchemy types that render
the DDL of the store's tables (``nflow.store._tables``); a test keeps the two in step.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The Go runtime's char(n) widths of the tracker table.
_TRACKER_CHARS = {"ip": 128, "real_ip": 128, "user_agent": 800, "hostname": 500, "host": 500}


def baseline() -> sa.MetaData:
    """A fresh MetaData holding the tables of this revision."""
    metadata = sa.MetaData()
    sa.Table(
        "nflow",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("json", sa.Text, nullable=False),
        sa.Column("default_js", sa.Text, server_default=sa.text("''")),
        sa.Column("tag", sa.String(200)),
    )
    sa.Table(
        "modules",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("form", sa.Text, nullable=False),
        sa.Column("mod", sa.Text, nullable=False),
        sa.Column("code", sa.Text),
    )
    sa.Table(
        "template",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
    )
    sa.Table(
        "queries",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("query", sa.Text, nullable=False),
    )
    sa.Table(
        "users",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(200), nullable=False),
        sa.Column("password", sa.String(200), nullable=False),
        sa.Column("rol", sa.String(200), nullable=False, server_default=sa.text("'ROL_USER'")),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "api_tokens",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.CHAR(200), nullable=False, server_default=sa.text("''")),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("start", sa.TIMESTAMP, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.Column("expired", sa.Integer),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column(
            "header", sa.CHAR(150), nullable=False, server_default=sa.text("'Authorization'")
        ),
        sa.Column("token_type", sa.CHAR(150), nullable=False, server_default=sa.text("'Bearer'")),
    )
    sa.Table(
        "tracker",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("log_id", sa.Text),
        sa.Column("box_id", sa.Text),
        sa.Column("box_name", sa.Text),
        sa.Column("box_type", sa.Text),
        sa.Column("url", sa.Text),
        sa.Column("username", sa.Text),
        sa.Column("connection_next", sa.Text),
        sa.Column("duration", sa.Text),
        sa.Column("created", sa.TIMESTAMP, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.Column("order_box", sa.Integer),
        sa.Column("payload", sa.Text),
        sa.Column("ip", sa.CHAR(_TRACKER_CHARS["ip"])),
        sa.Column("real_ip", sa.CHAR(_TRACKER_CHARS["real_ip"])),
        sa.Column("user_agent", sa.CHAR(_TRACKER_CHARS["user_agent"])),
        sa.Column("query_param", sa.Text),
        sa.Column("hostname", sa.CHAR(_TRACKER_CHARS["hostname"])),
        sa.Column("host", sa.CHAR(_TRACKER_CHARS["host"])),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "nflow_session_revocations",
        metadata,
        sa.Column("sid", sa.String(64), primary_key=True),
        sa.Column("expires", sa.Integer, nullable=False),
    )
    sa.Table(
        "nflow_revision",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
    )
    sa.Table(
        "nflow_secrets",
        metadata,
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("updated", sa.TIMESTAMP, server_default=sa.text("CURRENT_TIMESTAMP")),
    )
    return metadata


def upgrade() -> None:
    baseline().create_all(op.get_bind(), checkfirst=False)


def downgrade() -> None:
    baseline().drop_all(op.get_bind(), checkfirst=True)
