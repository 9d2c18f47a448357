"""The hub's receipt time of each log entry the node quarantined, as it keeps it for the envelopes it applied (0008):
the node serves its copy of the log with the receipt times it got (PROTOCOL.md §9, §11.1), so that a hub
recovering its log from the members keeps them (docs/adr/0021-hub-recovers-its-log-from-the-members.md).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("quarantine", sa.Column("logged_at", sa.DateTime(timezone=True), nullable=True))  # None: not known


def downgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("logged_at")
