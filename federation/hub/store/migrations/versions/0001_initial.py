"""The hub's first schema: the log, the quarantine, registry versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("origin", sa.String(2), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(80), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("origin", "seq", name="uq_log_origin_seq"),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("member", sa.String(2), nullable=True, index=True),
        sa.Column("origin", sa.String(2), nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=True),
        sa.Column("hash", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(64), nullable=False, index=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("conflicts_with", sa.BigInteger, nullable=True),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "registry_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("document", sa.LargeBinary, nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registry_versions")
    op.drop_table("quarantine")
    op.drop_table("log")
