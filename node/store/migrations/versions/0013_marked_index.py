"""The envelopes held that are marked (a key revoked after the fact, ADR 19), found by a partial index.

The status document, page and metrics count them by mark at every call; without an index that read every envelope
(600 ms at 1,000,000 held, the file in the page cache). The index holds the marked rows only: almost none.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_MARKED = sa.text("key_warning IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_envelopes_marked", "envelopes", ["key_warning"], sqlite_where=_MARKED,
                    postgresql_where=_MARKED)


def downgrade() -> None:
    op.drop_index("ix_envelopes_marked", "envelopes")
