"""Authoring pages: staff accounts, unsigned drafts, who published each own version, import source ids.

- ``staff_users``: accounts the node operator manages (``ipdn node user add|list|disable``); the
  password only as an scrypt hash (federation/server/ui/passwords.py).
- ``drafts``: record bodies being written, unsigned, never sent anywhere; ``record_id`` and
  ``base_version`` are set when the draft edits a published record.
- ``record_authors``: for each own version published through the pages or an import, who did it and
  how (``form``, ``import``), and a cancellation's reason; versions published with the operator token have no row.
- ``import_sources``: the source id of a row of an imported file -> the record it created, so that
  importing the same file again changes nothing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_users",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "drafts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(80), nullable=True, unique=True),
        sa.Column("base_version", sa.BigInteger, nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("langs", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "record_authors",
        sa.Column("record_id", sa.String(80), primary_key=True),
        sa.Column("version", sa.BigInteger, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
    )
    op.create_table(
        "import_sources",
        sa.Column("source_id", sa.String(200), primary_key=True),
        sa.Column("record_id", sa.String(80), nullable=False, index=True),
    )


def downgrade() -> None:
    for table in ("import_sources", "record_authors", "drafts", "staff_users"):
        op.drop_table(table)
