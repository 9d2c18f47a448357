"""Operator accounts for the dashboard, their audit trail, each member's last signed pull, and the indexes
the dashboard's per-member and per-day figures read through (federation/hub/monitor.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.String(200), nullable=False),  # scrypt, federation/server/ui/passwords.py
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "operator_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("operator", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "member_pulls",
        sa.Column("member", sa.String(2), primary_key=True),
        sa.Column("last_pull_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cursor", sa.BigInteger, nullable=False),  # the `after` of its latest signed pull
    )
    # Envelopes accepted today, and each member's last envelope (quarantine.received_at has one since 0001).
    op.create_index("ix_log_received_at", "log", ["received_at"])
    op.create_index("ix_log_origin_received_at", "log", ["origin", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_log_origin_received_at", "log")
    op.drop_index("ix_log_received_at", "log")
    op.drop_table("member_pulls")
    op.drop_table("operator_events")
    op.drop_table("operators")
