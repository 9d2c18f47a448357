"""Partner API keys: who may read a node that is not public, and manage webhooks.

Only a SHA-256 digest of each key is stored (keys are 256-bit random, so a fast digest is enough: there is
nothing to guess); ``key_id`` is the key's public part, for lookup and for naming it in lists.

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
        "partner_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(200), nullable=False),  # space-separated, e.g. "read webhooks"
        sa.Column("rate_per_minute", sa.Integer, nullable=True),  # None: the node's default for partners
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("partner_keys_name", "partner_keys", ["name"])


def downgrade() -> None:
    op.drop_table("partner_keys")
