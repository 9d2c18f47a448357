"""Push signatures seen within the replay window, shared by every hub worker (PostgreSQL deployments run
several): a signed request replayed to another worker is refused as it would be by the first.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replays",
        sa.Column("keyid", sa.String(64), primary_key=True),
        sa.Column("signature", sa.String(64), primary_key=True),  # SHA-256 hex of the signature bytes
        sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),  # unix seconds
    )


def downgrade() -> None:
    op.drop_table("replays")
