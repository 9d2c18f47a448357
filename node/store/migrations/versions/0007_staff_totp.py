"""Staff accounts' second factor (docs/adr/0018-sign-in-abuse.md): an RFC 6238 secret for those who enrolled one
(``ipdn node user totp``), and the last time step a code was used at, so that no code is used twice.

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
    op.add_column("staff_users", sa.Column("totp_secret", sa.Text, nullable=True))  # base32; None: not enrolled
    op.add_column("staff_users", sa.Column("totp_last_step", sa.BigInteger, nullable=True))  # unix time // 30


def downgrade() -> None:
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_secret")
