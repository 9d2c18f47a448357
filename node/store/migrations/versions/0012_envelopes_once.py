"""Each envelope stored once (docs/adr/0030): ``records`` no longer copies its current version's envelope, body
and searched text; it names the envelope's row by (origin, seq) (a foreign key) and gets an integer ``id``
(SQLite: INTEGER PRIMARY KEY, the rowid) that keys the full-text index, so an update replaces its index row by
probes instead of a scan of the whole index.

- ``records`` is rebuilt as ``id`` + every column it had but ``body``, ``envelope`` and ``search`` (whatever
  revisions before this one added: read from the database), ids given in listing order, ``record_id`` unique,
  its indexes made again;
- the full-text index ``records_fts`` is made again from each record's envelope with the live function
  (node.store.records.stored_search_text, as the store derives it): on SQLite a contentless FTS5 table
  (rowid = records.id, ``columnsize=0``: no ranking is asked of it; merged into one segment at the end), on
  PostgreSQL a table (rowid, search tsvector stripped of positions: queries are plainto_tsquery conjunctions)
  with a GIN index.

The space the old copies took is free for reuse inside the database file; ``VACUUM`` (SQLite) or
``VACUUM FULL records`` (PostgreSQL) gives it back to the file system (docs/operating-node.md).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-13
"""

import json
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Indexes with the live function: the store deletes an index row by deriving its text again, so both must agree.
from node.store.records import envelope_body, stored_search_text

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_COPIES = ("body", "envelope", "search")  # what records held twice (the envelope, its body, its text)
_TOKENIZE = "tokenize = 'unicode61 remove_diacritics 2'"
_BATCH = 1000
_envelopes = sa.table("envelopes", sa.column("origin"), sa.column("seq"), sa.column("envelope", sa.LargeBinary))


def _id_type() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _kept_columns(conn: sa.Connection, drop: tuple[str, ...]) -> list[sa.Column[Any]]:
    """The columns of ``records`` but ``drop`` and ``id``, as the database has them (types, nullability, defaults)."""
    out: list[sa.Column[Any]] = []
    for c in sa.inspect(conn).get_columns("records"):
        if c["name"] in (*drop, "id"):
            continue
        default = c.get("default")
        out.append(sa.Column(c["name"], c["type"], nullable=c["nullable"] and c["name"] != "record_id",
                             server_default=sa.text(default) if default is not None else None))
    return out


def _kept_indexes(conn: sa.Connection, columns: set[str]) -> list[dict[str, Any]]:
    """The plain indexes of ``records`` over the kept columns (not an expression index, not the primary key)."""
    return [dict(ix) for ix in sa.inspect(conn).get_indexes("records")
            if ix["column_names"] and all(n in columns for n in ix["column_names"])
            and not (ix["name"] or "").startswith("sqlite_autoindex")]


def _rebuild(first: list[sa.Column[Any]], columns: list[sa.Column[Any]], indexes: list[dict[str, Any]],
             constraints: list[Any], copied: list[str]) -> None:
    """Make ``records`` again as ``first`` + ``columns`` with ``constraints``, copying ``copied`` + ``columns`` of
    each row in listing order (so a new id follows it), then make its indexes again."""
    quote = op.get_bind().dialect.identifier_preparer.quote
    names = ", ".join(quote(n) for n in [*copied, *(c.name for c in columns)])
    op.create_table("records_new", *first, *columns, *constraints)
    op.execute(f"INSERT INTO records_new ({names}) SELECT {names} FROM records "  # noqa: S608 (names: the schema's)
               "ORDER BY updated_at, record_id")
    op.drop_table("records")
    op.rename_table("records_new", "records")
    if op.get_bind().dialect.name == "postgresql":  # a constraint keeps the name it was made with
        op.execute("ALTER TABLE records RENAME CONSTRAINT records_new_pkey TO records_pkey")
    for ix in indexes:
        op.create_index(ix["name"], "records", ix["column_names"], unique=bool(ix.get("unique")))


def _by_id(conn: sa.Connection, derive: Any) -> Any:
    """Batches of (id, derive(its envelope)) over every record, in id order."""
    records = sa.table("records", sa.column("id"), sa.column("origin"), sa.column("seq"))
    query = sa.select(records.c.id, _envelopes.c.envelope).select_from(records.join(_envelopes, sa.and_(
        _envelopes.c.origin == records.c.origin, _envelopes.c.seq == records.c.seq))).order_by(records.c.id)
    last = None
    while True:
        page = query.where(records.c.id > last) if last is not None else query
        rows = conn.execute(page.limit(_BATCH)).all()
        if not rows:
            return
        yield [(r.id, derive(bytes(r.envelope))) for r in rows]
        last = rows[-1].id


def upgrade() -> None:
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    columns = _kept_columns(conn, _COPIES)
    indexes = _kept_indexes(conn, {c.name for c in columns})
    # A record names its envelope's row from now on: one whose row is missing (none is, in a node's life) keeps
    # the copy it held.
    op.execute("INSERT INTO envelopes (origin, seq, hash, record_id, version, kind, op, envelope, issued_at, "
               "received_at, key_warning) SELECT origin, seq, hash, record_id, version, kind, op, envelope, "
               "issued_at, updated_at, key_warning FROM records WHERE NOT EXISTS "
               "(SELECT 1 FROM envelopes WHERE envelopes.origin = records.origin AND envelopes.seq = records.seq)")
    if sqlite:
        op.execute("DROP TABLE records_fts")
    _rebuild([sa.Column("id", _id_type(), *([] if sqlite else [sa.Identity()]), primary_key=True)], columns, indexes,
             [sa.UniqueConstraint("record_id", name="uq_records_record_id"),
              sa.ForeignKeyConstraint(["origin", "seq"], ["envelopes.origin", "envelopes.seq"],
                                      name="fk_records_envelope")], [])
    if sqlite:
        op.execute(f"CREATE VIRTUAL TABLE records_fts USING fts5(search, content = '', columnsize = 0, {_TOKENIZE})")
        insert = sa.text("INSERT INTO records_fts (rowid, search) VALUES (:id, :search)")
    else:
        op.execute("ALTER SEQUENCE records_new_id_seq RENAME TO records_id_seq")
        op.create_table("records_fts", sa.Column("rowid", sa.BigInteger, primary_key=True),
                        sa.Column("search", postgresql.TSVECTOR, nullable=False))
        op.create_index("ix_records_fts", "records_fts", ["search"], postgresql_using="gin")
        insert = sa.text("INSERT INTO records_fts (rowid, search) VALUES (:id, strip(to_tsvector('simple', :search)))")
    for batch in _by_id(conn, stored_search_text):
        rows = [{"id": i, "search": t} for i, t in batch if t or not sqlite]  # SQLite: a tombstone has no row
        if rows:
            conn.execute(insert, rows)
    if sqlite:  # one segment: the updates that follow merge among their own small segments, not into a large one
        op.execute("INSERT INTO records_fts (records_fts) VALUES ('optimize')")


def _copies(envelope: bytes) -> dict[str, Any]:
    """A record's copies as revisions 0001-0011 kept them: the envelope, its body as JSON text, its searched text."""
    body = envelope_body(envelope)
    return {"envelope": envelope, "body": None if body is None else json.dumps(json.loads(body), ensure_ascii=False),
            "search": stored_search_text(envelope)}


def downgrade() -> None:
    """``records`` with its copies again, keyed by record_id; the full-text index as revisions 0003-0011 made it."""
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    columns = [c for c in _kept_columns(conn, ()) if c.name != "record_id"]
    indexes = [ix for ix in _kept_indexes(conn, {c.name for c in columns} | {"record_id"})
               if ix["column_names"] != ["record_id"]]
    op.execute("DROP TABLE records_fts")
    _rebuild([sa.Column("record_id", sa.String(80), primary_key=True), sa.Column("id", sa.BigInteger, index=True),
              sa.Column("body", sa.Text), sa.Column("envelope", sa.LargeBinary),
              sa.Column("search", sa.Text, nullable=False, server_default="")], columns, indexes, [],
             ["record_id", "id"])
    update = sa.text("UPDATE records SET body = :body, envelope = :envelope, search = :search WHERE id = :id")
    for batch in _by_id(conn, _copies):
        conn.execute(update, [{"id": i, **values} for i, values in batch])
    with op.batch_alter_table("records") as batch_op:
        batch_op.drop_index("ix_records_new_id")
        batch_op.drop_column("id")
    if sqlite:
        op.execute(f"CREATE VIRTUAL TABLE records_fts USING fts5(record_id UNINDEXED, search, {_TOKENIZE})")
        op.execute("INSERT INTO records_fts (record_id, search) SELECT record_id, search FROM records")
    else:
        op.execute("CREATE INDEX ix_records_search ON records USING gin (to_tsvector('simple'::regconfig, search))")
