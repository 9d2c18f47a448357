"""Partner feeds: searching records (filters and full text).

Derived columns on ``records`` (first and last local day, countries, tags, title languages, the
searched text of titles and descriptions), backfilled from each stored body. Full text: on SQLite an
FTS5 table ``records_fts`` (record_id, search) the store keeps in sync in each write's transaction; on
PostgreSQL a GIN index over ``to_tsvector('simple', search)`` ('simple': no stemming, so Arabic,
Korean and every other language match as words).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import json

import sqlalchemy as sa
from alembic import op

# Backfills with the live function (later changes to the searched text rebuild it in their own revision: 0010).
from node.store.records import search_values

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = ("start_day", "end_day", "countries", "tags", "langs", "search")


def upgrade() -> None:
    op.add_column("records", sa.Column("start_day", sa.String(10), nullable=True))
    op.add_column("records", sa.Column("end_day", sa.String(10), nullable=True))
    for name in ("countries", "tags", "langs", "search"):
        op.add_column("records", sa.Column(name, sa.Text, nullable=False, server_default=""))
    op.create_index("ix_records_days", "records", ["start_day", "end_day"])
    op.create_index("ix_records_status_updated", "records", ["status", "updated_at", "record_id"])
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        op.execute("CREATE VIRTUAL TABLE records_fts USING fts5(record_id UNINDEXED, search, "
                   "tokenize = 'unicode61 remove_diacritics 2')")
    else:
        op.execute("CREATE INDEX ix_records_search ON records USING gin (to_tsvector('simple'::regconfig, search))")
    records = sa.table("records", sa.column("record_id", sa.String), sa.column("body", sa.Text),
                       *(sa.column(c) for c in _COLUMNS))
    for rid, body in conn.execute(sa.select(records.c.record_id, records.c.body)).all():
        values = search_values(json.loads(body) if body is not None else None)
        conn.execute(records.update().where(records.c.record_id == rid).values({c: values[c] for c in _COLUMNS}))
        if sqlite:
            conn.execute(sa.text("INSERT INTO records_fts (record_id, search) VALUES (:rid, :text)"),
                         {"rid": rid, "text": values["search"]})


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE records_fts")
    else:
        op.execute("DROP INDEX ix_records_search")
    op.drop_index("ix_records_status_updated", "records")
    op.drop_index("ix_records_days", "records")
    with op.batch_alter_table("records") as batch:
        for name in _COLUMNS:
            batch.drop_column(name)
