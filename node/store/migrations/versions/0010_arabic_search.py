"""Arabic search: the searched text of every record re-derived, folded by node/records/text.py ``normalise``
(marks and tatweel removed, alef forms, ى and ة folded, the joined article removed) as queries now are, and
the full-text index rebuilt from it: on SQLite the FTS5 table refilled, on PostgreSQL the GIN index over
to_tsvector('simple', search) follows the updated column.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

# Rebuilds with the live function: a later change to the folding comes with its own rebuilding revision.
from node.store.records import search_values

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_records = sa.table("records", sa.column("record_id", sa.String), sa.column("body", sa.Text),
                    sa.column("search", sa.Text))


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, str)]
    return [value] if isinstance(value, str) else []


def _unfolded(body: dict[str, Any] | None) -> str:
    """The searched text as revision 0003 derived it (titles and descriptions, not folded)."""
    return "\n".join(_strings(body.get("title")) + _strings(body.get("description"))) if body else ""


def _rebuild(text: Any) -> None:
    conn = op.get_bind()
    rows = [{"rid": rid, "text": text(json.loads(body) if body is not None else None)}
            for rid, body in conn.execute(sa.select(_records.c.record_id, _records.c.body)).all()]
    if rows:
        conn.execute(_records.update().where(_records.c.record_id == sa.bindparam("rid")).values(
            search=sa.bindparam("text")), rows)
    if conn.dialect.name == "sqlite":
        conn.execute(sa.text("DELETE FROM records_fts"))
        if rows:
            conn.execute(sa.text("INSERT INTO records_fts (record_id, search) VALUES (:rid, :text)"), rows)


def upgrade() -> None:
    _rebuild(lambda body: search_values(body)["search"])


def downgrade() -> None:
    _rebuild(_unfolded)
