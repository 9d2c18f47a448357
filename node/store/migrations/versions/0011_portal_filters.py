"""The portal's filters and views (issue 19): three derived columns on ``records``, backfilled from each stored body.

- ``type``: the event_type or programme_type (indexed: the list's type filter is an equality);
- ``audiences``: the audience or target_audience, ``|``-delimited as countries and tags are;
- ``last_day``: the last local day of the last occurrence (a recurring event's whole series; FOREVER, 9999-12-31,
  for one without end), so a date filter, the month calendar and the agenda find a recurring event by any of its
  occurrences; indexed with ``start_day``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-12
"""

import json

import sqlalchemy as sa
from alembic import op

# Backfills with the live function (a later change to what it derives comes with its own revision).
from node.store.records import search_values

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_COLUMNS = ("type", "audiences", "last_day")
_records = sa.table("records", sa.column("record_id", sa.String), sa.column("body", sa.Text),
                    *(sa.column(c) for c in _COLUMNS))


def upgrade() -> None:
    op.add_column("records", sa.Column("type", sa.String(64), nullable=True))
    op.add_column("records", sa.Column("audiences", sa.Text, nullable=False, server_default=""))
    op.add_column("records", sa.Column("last_day", sa.String(10), nullable=True))
    conn = op.get_bind()
    rows = []
    for rid, body in conn.execute(sa.select(_records.c.record_id, _records.c.body)).all():
        values = search_values(json.loads(body) if body is not None else None)
        rows.append({"rid": rid, **{f"v_{c}": values[c] for c in _COLUMNS}})
    if rows:
        conn.execute(_records.update().where(_records.c.record_id == sa.bindparam("rid")).values(
            {c: sa.bindparam(f"v_{c}") for c in _COLUMNS}), rows)
    op.create_index("ix_records_type", "records", ["type"])
    op.create_index("ix_records_series", "records", ["start_day", "last_day"])


def downgrade() -> None:
    op.drop_index("ix_records_series", "records")
    op.drop_index("ix_records_type", "records")
    with op.batch_alter_table("records") as batch:
        for name in _COLUMNS:
            batch.drop_column(name)
