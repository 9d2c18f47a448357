"""The node's tables, in one metadata: what migrations 0001-0004 and 0006-0012 made (the webhook tables of 0005 are
node/webhooks/store.py's). The store modules of node/store/ query them, each its own group; a transaction that
spans groups (applying a page, publishing) passes its connection from one group's functions to the next."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

meta = sa.MetaData()

# -- records and chains (node/store/records.py) ---------------------------------------------------------

envelopes = sa.Table(
    "envelopes", meta,
    sa.Column("origin", sa.String(2), primary_key=True), sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("hash", sa.String(64)), sa.Column("record_id", sa.String(80)), sa.Column("version", sa.BigInteger),
    sa.Column("kind", sa.String(64)), sa.Column("op", sa.String(8)), sa.Column("envelope", sa.LargeBinary),
    sa.Column("issued_at", sa.String(32)), sa.Column("received_at", sa.DateTime(timezone=True)),
    sa.Column("position", sa.BigInteger),
    # 0008: the hub's receipt time (the log entry's received_at; None for an own envelope not yet seen in the log)
    # and the mark of one signed by a key revoked after the fact (docs/adr/0019)
    sa.Column("logged_at", sa.DateTime(timezone=True)), sa.Column("key_warning", sa.String(64)),
)
# The current version of each record: the columns its filters and lists need. Its envelope (and so its body) is
# the row of `envelopes` at (origin, seq), never copied here (0012, docs/adr/0030); `id` keys the full-text index.
RECORD_ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid
records = sa.Table(
    "records", meta,
    sa.Column("id", RECORD_ID_TYPE, primary_key=True),
    sa.Column("record_id", sa.String(80)), sa.Column("origin", sa.String(2)),
    sa.Column("kind", sa.String(64)), sa.Column("version", sa.BigInteger), sa.Column("op", sa.String(8)),
    sa.Column("status", sa.String(32)), sa.Column("title", sa.Text),
    sa.Column("hash", sa.String(64)), sa.Column("seq", sa.BigInteger), sa.Column("issued_at", sa.String(32)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    # Derived from the body for searching (0003): first and last local calendar day (YYYY-MM-DD), and
    # |-delimited lists of countries, lowercased tags and lowercased title languages.
    sa.Column("start_day", sa.String(10)), sa.Column("end_day", sa.String(10)), sa.Column("countries", sa.Text),
    sa.Column("tags", sa.Text), sa.Column("langs", sa.Text),
    sa.Column("key_warning", sa.String(64)),  # 0008: its current version's envelope mark (docs/adr/0019)
    # 0011: the event_type or programme_type, the |-delimited audiences, and the last local day of the last
    # occurrence (a recurring event's series; node/records/occurrences.py), for the portal's filters and views.
    sa.Column("type", sa.String(64)), sa.Column("audiences", sa.Text), sa.Column("last_day", sa.String(10)),
)
# The full-text index of the records' searched text (node.store.records.search_values), one row per record keyed
# by records.id, kept in each write's transaction by NodeStore._put_records (0012): on SQLite a contentless FTS5
# table (rowid = records.id; the text is not stored, so a row is deleted by giving its text again, derived from
# the envelope it was indexed from), on PostgreSQL a table (rowid, search tsvector) with a GIN index.
records_fts = sa.table("records_fts", sa.column("rowid", RECORD_ID_TYPE), sa.column("search", sa.Text))
quarantine = sa.Table(
    "quarantine", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True)), sa.Column("origin", sa.String(2)),
    sa.Column("seq", sa.BigInteger), sa.Column("hash", sa.String(64)), sa.Column("position", sa.BigInteger),
    sa.Column("reason", sa.String(64)), sa.Column("detail", sa.Text), sa.Column("envelope", sa.LargeBinary),
    sa.Column("logged_at", sa.DateTime(timezone=True)),  # 0009: the hub's receipt time of the entry (None: not known)
)

# -- own envelopes on their way to the hub (node/store/outbox.py) -----------------------------------------

outbox = sa.Table(
    "outbox", meta,
    sa.Column("seq", sa.BigInteger, primary_key=True), sa.Column("state", sa.String(16)),
    sa.Column("position", sa.BigInteger), sa.Column("reason", sa.String(64)), sa.Column("detail", sa.Text),
    sa.Column("attempts", sa.Integer), sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
)

# -- what the node saw of the hub's log, and the evidence against it (node/store/evidence.py) ---------------

sync_state = sa.Table(
    "sync_state", meta, sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", sa.Text),
)
checkpoint_evidence = sa.Table(
    "checkpoint_evidence", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True)), sa.Column("reason", sa.String(64)),
    sa.Column("detail", sa.Text), sa.Column("accepted", sa.LargeBinary), sa.Column("offending", sa.LargeBinary),
)

# -- partner keys (node/store/partners.py) ----------------------------------------------------------------

partner_keys = sa.Table(
    "partner_keys", meta,
    sa.Column("key_id", sa.String(32), primary_key=True), sa.Column("name", sa.String(100)),
    sa.Column("key_hash", sa.String(64)), sa.Column("scopes", sa.String(200)),
    sa.Column("rate_per_minute", sa.Integer), sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)), sa.Column("last_used_at", sa.DateTime(timezone=True)),
)

# -- authoring pages (0006, node/store/staff.py): staff accounts, unsigned drafts, who published each own
# version, import source ids ---------------------------------------------------------------------------

staff_users = sa.Table(
    "staff_users", meta,
    sa.Column("username", sa.String(64), primary_key=True), sa.Column("name", sa.Text),
    sa.Column("password_hash", sa.Text), sa.Column("disabled", sa.Boolean),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("totp_secret", sa.Text), sa.Column("totp_last_step", sa.BigInteger),  # 0007: the second factor
)
drafts = sa.Table(
    "drafts", meta,
    sa.Column("id", sa.String(32), primary_key=True), sa.Column("kind", sa.String(64)),
    sa.Column("record_id", sa.String(80)), sa.Column("base_version", sa.BigInteger), sa.Column("body", sa.Text),
    sa.Column("langs", sa.Text), sa.Column("created_by", sa.String(64)), sa.Column("updated_by", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True)), sa.Column("updated_at", sa.DateTime(timezone=True)),
)
record_authors = sa.Table(
    "record_authors", meta,
    sa.Column("record_id", sa.String(80), primary_key=True), sa.Column("version", sa.BigInteger, primary_key=True),
    sa.Column("username", sa.String(64)), sa.Column("via", sa.String(16)), sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("note", sa.Text),
)
import_sources = sa.Table(
    "import_sources", meta,
    sa.Column("source_id", sa.String(200), primary_key=True), sa.Column("record_id", sa.String(80)),
)


def utc(when: datetime) -> datetime:
    """Everything is stored and compared in UTC: SQLite keeps no offset (and hands back naive values)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
