"""Governance documents received by the hub (the audit trail of applications, proposals and votes).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "governance",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("base", sa.Integer, nullable=False, index=True),
        sa.Column("subject", sa.String(64), nullable=True, index=True),
        sa.Column("document", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_in", sa.Integer, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("governance")
