"""The node's first schema: envelopes held, current records, the outbox, sync state, quarantine.

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
        "envelopes",
        sa.Column("origin", sa.String(2), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(80), nullable=False, index=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
        sa.Column("issued_at", sa.String(32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        # Not unique: a position the hub claims in a push answer is overwritten by the one its log shows.
        sa.Column("position", sa.BigInteger, nullable=True, index=True),
    )
    op.create_table(
        "records",
        sa.Column("record_id", sa.String(80), primary_key=True),
        sa.Column("origin", sa.String(2), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("body", sa.Text, nullable=True),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("issued_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
    )
    # Listing pages by (updated_at, record_id), optionally filtered by origin or kind.
    op.create_index("ix_records_updated", "records", ["updated_at", "record_id"])
    op.create_index("ix_records_origin_updated", "records", ["origin", "updated_at", "record_id"])
    op.create_index("ix_records_kind_updated", "records", ["kind", "updated_at", "record_id"])
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("position", sa.BigInteger, nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "sync_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("origin", sa.String(2), nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=True),
        sa.Column("hash", sa.String(64), nullable=True),
        sa.Column("position", sa.BigInteger, nullable=True),
        sa.Column("reason", sa.String(64), nullable=False, index=True),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quarantine")
    op.drop_table("sync_state")
    op.drop_table("outbox")
    op.drop_table("records")
    op.drop_table("envelopes")
