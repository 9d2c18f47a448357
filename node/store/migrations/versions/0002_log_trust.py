"""Trust the math, not the hub: evidence of log misbehaviour.

The node's Merkle frontier and the last checkpoint it accepted live in ``sync_state`` (keys
``frontier`` and ``checkpoint``, written with the cursor); a database from before this revision has
neither, and the node rebuilds its frontier from the envelopes and quarantine it holds.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoint_evidence",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("accepted", sa.LargeBinary, nullable=True),  # the last checkpoint accepted, as received
        sa.Column("offending", sa.LargeBinary, nullable=True),  # the checkpoint or entry that contradicts it
    )


def downgrade() -> None:
    op.drop_table("checkpoint_evidence")
