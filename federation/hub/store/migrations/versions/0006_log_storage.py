"""PostgreSQL: the log's envelopes stored as they are, in the row (ADR 16). By default PostgreSQL compresses
any row over about 2 KB with pglz before storing it; an envelope is a few KB of mostly base64, compresses
by under a tenth, and the compression was half of the database's CPU per appended envelope. EXTERNAL storage
never compresses; a toast_tuple_target of 8160 keeps rows up to a page in the row, larger ones move out of
line uncompressed. Rows already written keep their form (both read the same). Nothing to do on SQLite.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE log ALTER COLUMN envelope SET STORAGE EXTERNAL")
        op.execute("ALTER TABLE log SET (toast_tuple_target = 8160)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE log RESET (toast_tuple_target)")
        op.execute("ALTER TABLE log ALTER COLUMN envelope SET STORAGE EXTENDED")
