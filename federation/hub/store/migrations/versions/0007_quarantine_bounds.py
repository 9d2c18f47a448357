"""The quarantine bounded (docs/operating-hub.md "Quarantine"): each refused input keeps its length and the SHA-256
of all of it, its bytes only up to the per-item cap and within its member's and the hub's byte bounds
(``bound`` says which one cut them); ``quarantine_usage`` holds, per member ('' for requests nobody
authenticated), what is kept and what was dropped, read and written in the writer's transaction.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("input_size", sa.BigInteger, nullable=True))  # NULL: kept whole (older rows)
        batch.add_column(sa.Column("input_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("bound", sa.String(8), nullable=True))  # item, member, total; NULL: kept whole
    op.create_table(
        "quarantine_usage",
        sa.Column("member", sa.String(2), primary_key=True),
        sa.Column("items", sa.BigInteger, nullable=False),  # rows kept
        sa.Column("kept_bytes", sa.BigInteger, nullable=False),
        sa.Column("truncated_items", sa.BigInteger, nullable=False),  # kept with a prefix of their bytes, or none
        sa.Column("dropped_items", sa.BigInteger, nullable=False),  # not kept at all (past the item bound)
        sa.Column("dropped_bytes", sa.BigInteger, nullable=False),  # bytes received and not kept
        sa.Column("last_dropped_at", sa.DateTime(timezone=True), nullable=True),  # a bound last cut something
    )
    op.execute("INSERT INTO quarantine_usage (member, items, kept_bytes, truncated_items, dropped_items, "
               "dropped_bytes) SELECT COALESCE(member, ''), COUNT(*), COALESCE(SUM(LENGTH(envelope)), 0), 0, 0, 0 "
               "FROM quarantine GROUP BY COALESCE(member, '')")


def downgrade() -> None:
    op.drop_table("quarantine_usage")
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("bound")
        batch.drop_column("input_sha256")
        batch.drop_column("input_size")
