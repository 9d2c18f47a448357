"""Dashboard operators' second factor (docs/adr/0018-sign-in-abuse.md): an RFC 6238 secret for those who enrolled
one (``ipdn hub operator totp``), and the last time step a code was used at, so that no code is used twice.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("operators", sa.Column("totp_secret", sa.String(64), nullable=True))  # base32; None: not enrolled
    op.add_column("operators", sa.Column("totp_last_step", sa.BigInteger, nullable=True))  # unix time // 30


def downgrade() -> None:
    with op.batch_alter_table("operators") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_secret")
