"""The hub's receipt time of each envelope pulled from its log, and the mark of an envelope signed by a key revoked
after the fact (docs/adr/0019-key-windows-at-receipt.md): kept and chained on, but not presented as verified.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("envelopes", sa.Column("logged_at", sa.DateTime(timezone=True), nullable=True))  # the log entry's
    op.add_column("envelopes", sa.Column("key_warning", sa.String(64), nullable=True))  # None: nothing to say
    op.add_column("records", sa.Column("key_warning", sa.String(64), nullable=True))  # its current version's


def downgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.drop_column("key_warning")
    with op.batch_alter_table("envelopes") as batch:
        batch.drop_column("key_warning")
        batch.drop_column("logged_at")
