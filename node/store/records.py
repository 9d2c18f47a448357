"""The node's store: the only node module that speaks SQL.

It keeps every envelope the node holds (its own and those pulled from the hub, byte for byte), the
current version of each record, the outbox of own envelopes not yet acknowledged by the hub, the
pull cursor with the node's Merkle frontier over every entry pulled, the last checkpoint accepted,
the quarantine of envelopes refused or kept as evidence, and the evidence of log misbehaviour. Decisions (which version
wins, what is a fork) are the service's; this module writes what it is told, each call in one
transaction.

Webhooks (node/webhooks/store.py, ``NodeStore.webhooks``) follow the outbox pattern: the transaction that
makes a record version current also queues its event for every subscription that wants it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from federation.protocol import merkle
from federation.protocol.envelope import Envelope
from federation.protocol.verify import ChainHead
from federation.server.db import engine as db
from node.webhooks import events as webhooks
from node.webhooks import store as webhook_store
from node.webhooks.store import WebhookStore

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "node_alembic_version"
CURSOR_KEY = "cursor"
FRONTIER_KEY = "frontier"  # JSON [[level, hex], ...] of merkle.Frontier.to_list(), written with the cursor
CHECKPOINT_KEY = "checkpoint"  # the last checkpoint accepted, as received

meta = sa.MetaData()
envelopes = sa.Table(
    "envelopes", meta,
    sa.Column("origin", sa.String(2), primary_key=True), sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("hash", sa.String(64)), sa.Column("record_id", sa.String(80)), sa.Column("version", sa.BigInteger),
    sa.Column("kind", sa.String(64)), sa.Column("op", sa.String(8)), sa.Column("envelope", sa.LargeBinary),
    sa.Column("issued_at", sa.String(32)), sa.Column("received_at", sa.DateTime(timezone=True)),
    sa.Column("position", sa.BigInteger),
)
records = sa.Table(
    "records", meta,
    sa.Column("record_id", sa.String(80), primary_key=True), sa.Column("origin", sa.String(2)),
    sa.Column("kind", sa.String(64)), sa.Column("version", sa.BigInteger), sa.Column("op", sa.String(8)),
    sa.Column("status", sa.String(32)), sa.Column("title", sa.Text), sa.Column("body", sa.Text),
    sa.Column("hash", sa.String(64)), sa.Column("seq", sa.BigInteger), sa.Column("issued_at", sa.String(32)),
    sa.Column("updated_at", sa.DateTime(timezone=True)), sa.Column("envelope", sa.LargeBinary),
    # Derived from the body for searching (0003): first and last local calendar day (YYYY-MM-DD), and
    # |-delimited lists of countries, lowercased tags and lowercased title languages; the searched text.
    sa.Column("start_day", sa.String(10)), sa.Column("end_day", sa.String(10)), sa.Column("countries", sa.Text),
    sa.Column("tags", sa.Text), sa.Column("langs", sa.Text), sa.Column("search", sa.Text),
)
# SQLite only: an FTS5 table over records.search (0003), kept in sync by _put_records.
records_fts = sa.table("records_fts", sa.column("record_id", sa.String), sa.column("search", sa.Text))
outbox = sa.Table(
    "outbox", meta,
    sa.Column("seq", sa.BigInteger, primary_key=True), sa.Column("state", sa.String(16)),
    sa.Column("position", sa.BigInteger), sa.Column("reason", sa.String(64)), sa.Column("detail", sa.Text),
    sa.Column("attempts", sa.Integer), sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
)
sync_state = sa.Table(
    "sync_state", meta, sa.Column("key", sa.String(64), primary_key=True), sa.Column("value", sa.Text),
)
quarantine = sa.Table(
    "quarantine", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True)), sa.Column("origin", sa.String(2)),
    sa.Column("seq", sa.BigInteger), sa.Column("hash", sa.String(64)), sa.Column("position", sa.BigInteger),
    sa.Column("reason", sa.String(64)), sa.Column("detail", sa.Text), sa.Column("envelope", sa.LargeBinary),
)
checkpoint_evidence = sa.Table(
    "checkpoint_evidence", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.DateTime(timezone=True)), sa.Column("reason", sa.String(64)),
    sa.Column("detail", sa.Text), sa.Column("accepted", sa.LargeBinary), sa.Column("offending", sa.LargeBinary),
)
partner_keys = sa.Table(
    "partner_keys", meta,
    sa.Column("key_id", sa.String(32), primary_key=True), sa.Column("name", sa.String(100)),
    sa.Column("key_hash", sa.String(64)), sa.Column("scopes", sa.String(200)),
    sa.Column("rate_per_minute", sa.Integer), sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)), sa.Column("last_used_at", sa.DateTime(timezone=True)),
)

# Authoring pages (0006): staff accounts, unsigned drafts, who published each own version, import source ids.
staff_users = sa.Table(
    "staff_users", meta,
    sa.Column("username", sa.String(64), primary_key=True), sa.Column("name", sa.Text),
    sa.Column("password_hash", sa.Text), sa.Column("disabled", sa.Boolean),
    sa.Column("created_at", sa.DateTime(timezone=True)),
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

PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"


def _utc(when: datetime) -> datetime:
    """Everything is stored and compared in UTC: SQLite keeps no offset (and hands back naive values)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


_UNREAD: Any = object()


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """The current version of a record (a tombstone has op ``delete``, status ``deleted``, no body)."""

    record_id: str
    origin: str
    kind: str
    version: int
    op: str
    status: str
    title: str | None
    body_json: str | None  # the body as stored (JSON text): decoded on the first use of ``body``
    hash: str
    seq: int
    issued_at: str
    updated_at: datetime
    envelope: bytes
    _body: Any = field(default=_UNREAD, repr=False, compare=False)

    @classmethod
    def from_row(cls, r: Any) -> StoredRecord:
        return cls(r.record_id, r.origin, r.kind, r.version, r.op, r.status, r.title, r.body, r.hash, r.seq,
                   r.issued_at, _utc(r.updated_at), r.envelope)

    @property
    def body(self) -> dict[str, Any] | None:
        if self._body is _UNREAD:  # a page of records for the record API never needs it decoded
            object.__setattr__(self, "_body", None if self.body_json is None else json.loads(self.body_json))
        return cast("dict[str, Any] | None", self._body)

    def _facts(self) -> dict[str, Any]:
        return {"record_id": self.record_id, "origin": self.origin, "kind": self.kind, "version": self.version,
                "op": self.op, "status": self.status, "seq": self.seq, "hash": self.hash, "issued_at": self.issued_at}

    def item(self) -> dict[str, Any]:
        """The record as partners get it (the record API, webhook events): its facts, body and envelope."""
        return {**self._facts(), "body": self.body, "envelope": json.loads(self.envelope)}

    def item_json(self) -> bytes:
        """:meth:`item` as JSON, with the stored body and envelope spliced in as they are: decoding them to encode
        them again was about half of a record page's cost. Tests hold it to :meth:`item`."""
        facts = json.dumps(self._facts(), ensure_ascii=False, separators=(",", ":"))
        return f'{facts[:-1]},"body":{self.body_json or "null"},"envelope":'.encode() + self.envelope + b"}"


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    reason: str
    detail: str
    envelope: bytes
    origin: str | None = None
    seq: int | None = None
    hash: str | None = None
    position: int | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    state: str
    position: int | None
    reason: str | None
    detail: str | None
    attempts: int
    envelope: bytes


@dataclass(slots=True)
class Changes:
    """What applying one page of the hub's log writes, in one transaction with the new cursor."""

    cursor: int
    envelopes: list[tuple[Envelope, int]] = field(default_factory=list)  # new envelopes, with log position
    records: dict[str, Envelope] = field(default_factory=dict)  # record_id -> its new current version
    own_positions: list[tuple[int, int]] = field(default_factory=list)  # own (seq, position) seen in the log
    quarantine: list[QuarantineRow] = field(default_factory=list)
    frontier: merkle.Frontier | None = None  # the Merkle frontier over every entry up to the cursor
    events: list[Envelope] = field(default_factory=list)  # each envelope that became current, in order (webhooks)


@dataclass(frozen=True, slots=True)
class LogView:
    """What the node saw of the hub's log: the cursor, the frontier over those entries (None: a database
    from before the frontier was kept), and the last checkpoint it accepted, as received."""

    cursor: int
    frontier: merkle.Frontier | None
    checkpoint: bytes | None


@dataclass(frozen=True, slots=True)
class EvidenceRow:
    """Proof of the hub's misbehaviour: the last checkpoint accepted and the offending document, as received."""

    reason: str
    detail: str
    accepted: bytes | None
    offending: bytes | None
    id: int | None = None
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApplyBasis:
    """What a page of the hub's log is applied against: the log view, the hash held at each (origin, seq)
    of the page, the chain heads of its origins and the current (version, hash) of its records."""

    view: LogView
    held: dict[tuple[str, int], str]
    heads: dict[str, ChainHead]
    versions: dict[str, tuple[int, str]]


@dataclass(frozen=True, slots=True)
class PartnerKeyRow:
    key_id: str
    name: str
    key_hash: str = field(repr=False)
    scopes: frozenset[str]
    rate_per_minute: int | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def from_row(cls, r: Any) -> PartnerKeyRow:
        return cls(r.key_id, r.name, r.key_hash, frozenset(r.scopes.split()), r.rate_per_minute, _utc(r.created_at),
                   r.revoked_at and _utc(r.revoked_at), r.last_used_at and _utc(r.last_used_at))


@dataclass(frozen=True, slots=True)
class Authorship:
    """Who published an own version through the authoring pages or an import, and the import's source id."""

    username: str
    via: str  # "form" or "import"
    source_id: str | None = None
    note: str | None = None  # a cancellation's reason, kept here when the schema has no field for it


@dataclass(frozen=True, slots=True)
class StaffUser:
    username: str
    name: str
    password_hash: str = field(repr=False)
    disabled: bool = False
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Draft:
    """A record body being written: unsigned, kept only here. ``body`` may be incomplete or invalid."""

    id: str
    kind: str
    body: dict[str, Any]
    langs: tuple[str, ...]
    created_by: str
    updated_by: str
    created_at: datetime
    updated_at: datetime
    record_id: str | None = None  # set when the draft edits a published record ...
    base_version: int | None = None  # ... starting from this version of it


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One version of a record as held: its envelope, and who published it here (own versions only)."""

    version: int
    seq: int
    envelope: bytes
    username: str | None
    via: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class Counts:
    own: int
    received: int
    quarantine: int
    outbox: dict[str, int]


def _title(body: dict[str, Any] | None) -> str | None:
    title = body.get("title") if body else None
    if isinstance(title, dict):
        return next((t for t in title.values() if isinstance(t, str)), None)
    return title if isinstance(title, str) else None


def _strings(value: Any) -> list[str]:
    """The strings of a language map (or a lone string)."""
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, str)]
    return [value] if isinstance(value, str) else []


def _day(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value[:10]) else None


def _joined(values: Sequence[str]) -> str:
    """``|a|b|``: a value is matched as ``|a|`` (exactly, whatever it contains but |)."""
    return "|" + "|".join(v.replace("|", " ") for v in values) + "|" if values else ""


def search_values(body: dict[str, Any] | None) -> dict[str, Any]:
    """The derived search columns of a record body (None: a tombstone, found by no filter of its body).

    Dates are the local calendar days the body states (events' start/end, programmes'
    start_date/end_date); countries the participating countries, the venue's country and a programme's
    eligible countries; the searched text every language of the title and the description.
    """
    if not body:
        return {"start_day": None, "end_day": None, "countries": "", "tags": "", "langs": "", "search": ""}
    start = _day(body.get("start")) or _day(body.get("start_date"))
    end = _day(body.get("end")) or _day(body.get("end_date")) or start
    countries: list[str] = []
    for key in ("participating_countries", "eligible_countries"):
        countries += [c.upper() for c in body.get(key) or [] if isinstance(c, str)]
    venue = body.get("venue")
    if isinstance(venue, dict) and isinstance(venue.get("country"), str):
        countries.append(venue["country"].upper())
    tags = [t.lower() for t in body.get("tags") or [] if isinstance(t, str)]
    title = body.get("title")
    langs = [k.lower() for k, v in title.items() if isinstance(v, str)] if isinstance(title, dict) else []
    text = "\n".join(_strings(title) + _strings(body.get("description")))
    return {"start_day": start, "end_day": end, "countries": _joined(sorted(set(countries))),
            "tags": _joined(sorted(set(tags))), "langs": _joined(sorted(set(langs))), "search": text}


def fts_query(q: str) -> str | None:
    """An FTS5 query matching every word of ``q`` (each quoted: no FTS syntax); None: no word."""
    words = re.findall(r"\w+", q)
    return " ".join('"' + w + '"' for w in words) if words else None


def _envelope_values(env: Envelope, now: datetime, position: int | None) -> dict[str, Any]:
    p = env.payload
    return {"origin": p.origin, "seq": p.seq, "hash": env.hash, "record_id": p.record_id, "version": p.version,
            "kind": p.kind, "op": p.op, "envelope": env.to_bytes(), "issued_at": p.issued_at, "received_at": now,
            "position": position}


def _record_values(env: Envelope, now: datetime) -> dict[str, Any]:
    p = env.payload
    deleted = p.op == "delete"
    status = "deleted" if deleted or p.body is None else str(p.body.get("status", ""))
    return {"record_id": p.record_id, "origin": p.origin, "kind": p.kind, "version": p.version, "op": p.op,
            "status": status, "title": _title(p.body),
            "body": None if p.body is None else json.dumps(p.body, ensure_ascii=False),
            "hash": env.hash, "seq": p.seq, "issued_at": p.issued_at, "updated_at": now,
            "envelope": env.to_bytes(), **search_values(p.body)}


def _frontier_json(frontier: merkle.Frontier) -> str:
    return json.dumps([[level, h.hex()] for level, h in frontier.to_list()])


# The statements on the path of every pull, built once: building and keying a statement costs SQLAlchemy more
# than SQLite takes to run it (ADR 15).
_latest = envelopes.alias("latest")
_CHAINS = sa.union_all(
    # the rows asked for (origin x seq, a superset: filtered below) ...
    sa.select(envelopes.c.origin, envelopes.c.seq, envelopes.c.hash).where(
        envelopes.c.origin.in_(sa.bindparam("origins", expanding=True)),
        envelopes.c.seq.in_(sa.bindparam("seqs", expanding=True))),
    # ... and each origin's last
    sa.select(_latest.c.origin, _latest.c.seq, _latest.c.hash).where(
        _latest.c.origin.in_(sa.bindparam("origins", expanding=True)),
        _latest.c.seq == sa.select(sa.func.max(envelopes.c.seq)).where(
            envelopes.c.origin == _latest.c.origin).scalar_subquery()))
# A StoredRecord's columns (not the search columns: a page's `search` text is as large as its body).
_RECORD = [records.c[n] for n in ("record_id", "origin", "kind", "version", "op", "status", "title", "body", "hash",
                                  "seq", "issued_at", "updated_at", "envelope")]
_VERSIONS = sa.select(records.c.record_id, records.c.version, records.c.hash).where(
    records.c.record_id.in_(sa.bindparam("ids", expanding=True)))
_LOG_VIEW = sa.select(sync_state).where(sync_state.c.key.in_([CURSOR_KEY, FRONTIER_KEY, CHECKPOINT_KEY]))
_CURSOR = sa.select(sync_state.c.value).where(sync_state.c.key == CURSOR_KEY)
_INSERT_ENVELOPES = envelopes.insert()
_INSERT_RECORD = records.insert()
_UPDATE_RECORD = records.update().where(records.c.record_id == sa.bindparam("b_record_id"))
_INSERT_FTS = records_fts.insert()
_DELETE_FTS = records_fts.delete().where(records_fts.c.record_id == sa.bindparam("b_record_id"))
_POSITION_OWN = envelopes.update().where(
    envelopes.c.origin == sa.bindparam("b_origin"), envelopes.c.seq == sa.bindparam("b_seq")).values(
    position=sa.bindparam("b_position"))
_ACCEPT_OWN = outbox.update().where(outbox.c.seq == sa.bindparam("b_seq")).values(
    state=ACCEPTED, position=sa.bindparam("b_position"), reason=None, detail=None)
_UPSERT_STATE: dict[str, Any] = {}  # dialect name -> INSERT .. ON CONFLICT (key) DO UPDATE (SQLite and PostgreSQL)


def _upsert_state(dialect: str) -> Any:
    stmt = _UPSERT_STATE.get(dialect)
    if stmt is None:
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(sync_state)
        stmt = _UPSERT_STATE[dialect] = insert.on_conflict_do_update(
            index_elements=[sync_state.c.key], set_={"value": insert.excluded.value})
    return stmt


async def _chains(conn: AsyncConnection, keys: Sequence[tuple[str, int]],
                  origins: Sequence[str] = ()) -> tuple[dict[tuple[str, int], str], dict[str, ChainHead]]:
    """The hash held at each (origin, seq) of ``keys``, and the chain head of each of their origins and of
    ``origins``: one query."""
    wanted = set(keys)
    every = {*origins, *(o for o, _ in wanted)}
    if not every:
        return {}, {}
    held: dict[tuple[str, int], str] = {}
    heads: dict[str, ChainHead] = {}
    rows = await conn.execute(_CHAINS, {"origins": sorted(every), "seqs": sorted({s for _, s in wanted})})
    for r in rows:
        if (r.origin, r.seq) in wanted:
            held[(r.origin, r.seq)] = r.hash
        if r.origin not in heads or r.seq > heads[r.origin].seq:
            heads[r.origin] = ChainHead(r.seq, r.hash)
    return held, heads


async def _current_versions(conn: AsyncConnection, record_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    if not record_ids:
        return {}
    return {r.record_id: (r.version, r.hash) for r in await conn.execute(_VERSIONS, {"ids": sorted(set(record_ids))})}


async def _log_view(conn: AsyncConnection) -> LogView:
    state = {r.key: r.value for r in await conn.execute(_LOG_VIEW)}
    frontier = state.get(FRONTIER_KEY)
    checkpoint = state.get(CHECKPOINT_KEY)
    return LogView(int(state.get(CURSOR_KEY, 0)),
                   merkle.Frontier.from_list((lv, bytes.fromhex(h)) for lv, h in json.loads(frontier))
                   if frontier is not None else None,
                   checkpoint.encode() if checkpoint is not None else None)


class NodeStore:
    def __init__(self, engine: AsyncEngine, member: str) -> None:
        self.engine = engine
        self.member = member  # the node's own origin: its outbox holds only these envelopes
        self.webhooks = WebhookStore(engine)

    @classmethod
    async def open(cls, url: str, member: str) -> NodeStore:
        engine = db.make_engine(url)
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
        return cls(engine, member)

    async def close(self) -> None:
        await self.engine.dispose()

    # -- chains --------------------------------------------------------------------------------------

    async def heads(self, origins: Sequence[str]) -> dict[str, ChainHead]:
        """The last envelope held from each origin asked for (absent: nothing held)."""
        async with self.engine.connect() as conn:
            return (await _chains(conn, (), origins))[1]

    async def held(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """The hash held at each (origin, seq) asked for (absent keys: nothing held)."""
        async with self.engine.connect() as conn:
            return (await _chains(conn, keys))[0]

    async def apply_basis(self, keys: Sequence[tuple[str, int]], record_ids: Sequence[str]) -> ApplyBasis:
        """Everything applying a page is judged against, read on one connection (each connection taken
        costs the event loop round trips to the database thread, and this is on the path of every pull)."""
        async with self.engine.connect() as conn:
            held, heads = await _chains(conn, keys)
            return ApplyBasis(await _log_view(conn), held, heads, await _current_versions(conn, record_ids))

    # -- records -------------------------------------------------------------------------------------

    async def get_records(self, record_ids: Sequence[str]) -> dict[str, StoredRecord]:
        """The current version of each record asked for that is held."""
        out: dict[str, StoredRecord] = {}
        ids = sorted(set(record_ids))
        async with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                q = sa.select(*_RECORD).where(records.c.record_id.in_(ids[i:i + 500]))
                out.update({r.record_id: StoredRecord.from_row(r) for r in await conn.execute(q)})
        return out

    async def get_record(self, record_id: str) -> StoredRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(*_RECORD).where(records.c.record_id == record_id))).first()
        return StoredRecord.from_row(row) if row is not None else None

    async def list_records(self, *, kind: str | None = None, origin: str | None = None,
                           updated_since: datetime | None = None, after: tuple[datetime, str] | None = None,
                           country: str | None = None, date_from: str | None = None, date_to: str | None = None,
                           lang: str | None = None, status: str | None = None, tag: str | None = None,
                           q: str | None = None, limit: int) -> list[StoredRecord]:
        """Records in (updated_at, record_id) order, starting after the key ``after``, filtered.

        ``date_from``/``date_to`` are calendar days (YYYY-MM-DD): records whose days overlap them;
        ``q`` matches records whose titles or descriptions hold every word of it (any language).
        """
        q_ = sa.select(*_RECORD).order_by(records.c.updated_at, records.c.record_id).limit(limit)
        if kind is not None:
            q_ = q_.where(records.c.kind == kind)
        if origin is not None:
            q_ = q_.where(records.c.origin == origin)
        if updated_since is not None:
            q_ = q_.where(records.c.updated_at >= _utc(updated_since))
        if country is not None:
            q_ = q_.where(records.c.countries.contains(f"|{country.upper()}|", autoescape=True))
        if tag is not None:
            q_ = q_.where(records.c.tags.contains(f"|{tag.lower()}|", autoescape=True))
        if lang is not None:
            q_ = q_.where(records.c.langs.contains(f"|{lang.lower()}|", autoescape=True))
        if status is not None:
            q_ = q_.where(records.c.status == status)
        if date_from is not None:
            q_ = q_.where(records.c.end_day >= date_from)
        if date_to is not None:
            q_ = q_.where(records.c.start_day <= date_to)
        if q is not None:
            q_ = q_.where(self._matches(q))
        if after is not None:
            at, rid = _utc(after[0]), after[1]
            q_ = q_.where(sa.or_(records.c.updated_at > at,
                                 sa.and_(records.c.updated_at == at, records.c.record_id > rid)))
        async with self.engine.connect() as conn:
            return [StoredRecord.from_row(r) for r in await conn.execute(q_)]

    def _matches(self, q: str) -> sa.ColumnElement[bool]:
        """Full text: FTS5 on SQLite, to_tsvector('simple', ...) (GIN-indexed) on PostgreSQL."""
        if self.engine.dialect.name == "postgresql":
            doc = sa.func.to_tsvector(sa.literal_column("'simple'::regconfig"), records.c.search)
            return doc.op("@@")(sa.func.plainto_tsquery(sa.literal_column("'simple'::regconfig"), q))
        match = fts_query(q)
        if match is None:
            return sa.false()
        hits = sa.text("SELECT record_id FROM records_fts WHERE records_fts MATCH :fts").bindparams(fts=match)
        return records.c.record_id.in_(hits.columns(sa.column("record_id")))

    @staticmethod
    async def _put_records(conn: AsyncConnection, envs: Sequence[Envelope], now: datetime) -> None:
        """Write each record's new current version: one UPDATE (executemany) for those held, one INSERT for the
        others. Statement by statement, a catch-up paid a round trip to the database thread per record and table."""
        rows = [_record_values(env, now) for env in envs]
        known = await _current_versions(conn, [r["record_id"] for r in rows])
        held = [r for r in rows if r["record_id"] in known]
        if held:
            await conn.execute(_UPDATE_RECORD, [{**r, "b_record_id": r["record_id"]} for r in held])
        if len(held) < len(rows):
            await conn.execute(_INSERT_RECORD, [r for r in rows if r["record_id"] not in known])
        if conn.dialect.name == "sqlite" and rows:  # the FTS5 table follows the records, in the same transaction
            if held:
                # Only a record held before has an FTS row. The delete scans the whole FTS table (record_id is
                # UNINDEXED), so new records skip it: a node catching up would otherwise be O(n²).
                await conn.execute(_DELETE_FTS, [{"b_record_id": r["record_id"]} for r in held])
            await conn.execute(_INSERT_FTS, [{"record_id": r["record_id"], "search": r["search"]} for r in rows])

    # -- writes --------------------------------------------------------------------------------------

    async def author(self, env: Envelope, now: datetime, by: Authorship | None = None) -> None:
        """Keep an envelope this node signed: the envelope, the record's new version, an outbox entry, and
        (``by``) who published it and the import source id it answers to, all in one transaction."""
        now = _utc(now)
        async with self.engine.begin() as conn:
            await conn.execute(_INSERT_ENVELOPES, _envelope_values(env, now, None))
            queued = await self._queue_webhooks(conn, [env], now)
            await self._put_records(conn, [env], now)
            await conn.execute(outbox.insert().values(seq=env.payload.seq, state=PENDING, attempts=0))
            if by is not None:
                p = env.payload
                await conn.execute(record_authors.insert().values(
                    record_id=p.record_id, version=p.version, username=by.username, via=by.via, at=now, note=by.note))
                if by.source_id is not None:
                    done = await conn.execute(import_sources.update().where(
                        import_sources.c.source_id == by.source_id).values(record_id=p.record_id))
                    if done.rowcount == 0:
                        await conn.execute(import_sources.insert().values(source_id=by.source_id,
                                                                          record_id=p.record_id))
        if queued:
            self.webhooks.queued.set()

    async def apply(self, changes: Changes, now: datetime) -> None:
        """Write one applied page of the log and move the cursor, all or nothing."""
        now = _utc(now)
        async with self.engine.begin() as conn:
            if changes.envelopes:
                await conn.execute(_INSERT_ENVELOPES, [_envelope_values(e, now, pos) for e, pos in changes.envelopes])
            queued = await self._queue_webhooks(conn, changes.events, now)
            await self._put_records(conn, list(changes.records.values()), now)
            await self._accept_own(conn, changes.own_positions)
            if changes.quarantine:
                await conn.execute(quarantine.insert(), [
                    {"received_at": now, "origin": q.origin, "seq": q.seq, "hash": q.hash, "position": q.position,
                     "reason": q.reason, "detail": q.detail, "envelope": q.envelope} for q in changes.quarantine])
            state = {CURSOR_KEY: str(changes.cursor)}
            if changes.frontier is not None:
                state[FRONTIER_KEY] = _frontier_json(changes.frontier)
            await self._set_states(conn, state)
        if queued:
            self.webhooks.queued.set()

    @staticmethod
    async def _queue_webhooks(conn: AsyncConnection, events: Sequence[Envelope], now: datetime) -> int:
        """Queue the event of each envelope becoming current, in order, for the subscriptions that want it
        (before the records are written: each is compared with the version it replaces). How many."""
        if not events:
            return 0
        subs = await webhook_store.active_subscriptions(conn)
        if not subs:
            return 0
        cols = [records.c[c] for c in ("record_id", "kind", "origin", "op", "status", "countries", "tags", "langs")]
        ids = list({e.payload.record_id for e in events})
        rows = await conn.execute(sa.select(*cols).where(records.c.record_id.in_(ids)))
        held: dict[str, dict[str, Any]] = {r.record_id: dict(r._mapping) for r in rows}
        queued = 0
        for env in events:
            values = _record_values(env, now)
            old = held.get(env.payload.record_id)
            type_ = webhooks.event_type(values["op"], values["status"], old)
            wanted = [s for s in subs if s.filters.wants(type_, values, old)]
            held[env.payload.record_id] = values
            if wanted:
                item = StoredRecord.from_row(SimpleNamespace(**values)).item()
                queued += await webhook_store.add_event(
                    conn, type_, record_id=env.payload.record_id, origin=env.payload.origin,
                    version=env.payload.version, body=webhooks.event_body(type_, now, item), subs=wanted, now=now)
        return queued

    async def _accept_own(self, conn: AsyncConnection, positions: Sequence[tuple[int, int]]) -> None:
        """The hub holds these own envelopes at these log positions: durably accepted."""
        if positions:
            await conn.execute(_POSITION_OWN, [{"b_origin": self.member, "b_seq": seq, "b_position": position}
                                               for seq, position in positions])
            await conn.execute(_ACCEPT_OWN, [{"b_seq": seq, "b_position": position} for seq, position in positions])

    @staticmethod
    async def _set_state(conn: AsyncConnection, key: str, value: str) -> None:
        await NodeStore._set_states(conn, {key: value})

    @staticmethod
    async def _set_states(conn: AsyncConnection, values: dict[str, str]) -> None:
        """Set these sync_state keys, in one statement."""
        await conn.execute(_upsert_state(conn.dialect.name), [{"key": k, "value": v} for k, v in values.items()])

    async def cursor(self) -> int:
        """The position of the last log entry applied (0: none yet)."""
        async with self.engine.connect() as conn:
            value = (await conn.execute(_CURSOR)).scalar_one_or_none()
        return int(value) if value is not None else 0

    async def log_view(self) -> LogView:
        """The cursor, the frontier and the last accepted checkpoint, read together."""
        async with self.engine.connect() as conn:
            return await _log_view(conn)

    async def save_frontier(self, cursor: int, frontier: merkle.Frontier) -> None:
        """Keep a frontier rebuilt for ``cursor`` (a database from before 0002), unless the cursor moved."""
        async with self.engine.begin() as conn:
            current = (await conn.execute(_CURSOR)).scalar_one_or_none()
            if int(current or 0) == cursor:
                await self._set_state(conn, FRONTIER_KEY, _frontier_json(frontier))

    async def logged_envelopes(self, upto: int) -> list[tuple[int, bytes]]:
        """(position, bytes) of every held or quarantined envelope at log positions 1..upto, in order."""
        held = sa.select(envelopes.c.position, envelopes.c.envelope).where(
            envelopes.c.position.is_not(None), envelopes.c.position <= upto)
        refused = sa.select(quarantine.c.position, quarantine.c.envelope).where(
            quarantine.c.position.is_not(None), quarantine.c.position <= upto)
        async with self.engine.connect() as conn:  # a version conflict is both held and quarantined: once
            rows = {int(r.position): bytes(r.envelope) for q in (held, refused) for r in await conn.execute(q)}
        return sorted(rows.items())

    async def accept_checkpoint(self, raw: bytes) -> None:
        """Keep ``raw`` (as received) as the last checkpoint this node verified."""
        async with self.engine.begin() as conn:
            await self._set_state(conn, CHECKPOINT_KEY, raw.decode())

    # -- evidence of log misbehaviour ----------------------------------------------------------------

    async def add_evidence(self, row: EvidenceRow, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(checkpoint_evidence.insert().values(
                created_at=_utc(now), reason=row.reason, detail=row.detail, accepted=row.accepted,
                offending=row.offending))

    async def evidence(self, limit: int = 100) -> list[EvidenceRow]:
        """Evidence held, newest first (any row means applying from the hub is halted)."""
        q = sa.select(checkpoint_evidence).order_by(checkpoint_evidence.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [EvidenceRow(r.reason, r.detail, r.accepted, r.offending, r.id, _utc(r.created_at))
                    for r in await conn.execute(q)]

    # -- outbox --------------------------------------------------------------------------------------

    async def outbox(self, state: str, limit: int) -> list[OutboxRow]:
        """Outbox entries in one state, in seq order, with the envelope bytes to push."""
        q = (sa.select(outbox, envelopes.c.envelope)
             .join(envelopes, sa.and_(envelopes.c.origin == self.member, envelopes.c.seq == outbox.c.seq))
             .where(outbox.c.state == state).order_by(outbox.c.seq).limit(limit))
        async with self.engine.connect() as conn:
            return [OutboxRow(r.seq, r.state, r.position, r.reason, r.detail, r.attempts, r.envelope)
                    for r in await conn.execute(q)]

    async def record_push(self, seqs: Sequence[int], *, accepted: Sequence[tuple[int, int]] = (),
                          rejected: tuple[int, str, str] | None = None, now: datetime) -> None:
        """One push attempt of ``seqs``: which the hub accepted (seq, position), which it rejected."""
        now = _utc(now)
        async with self.engine.begin() as conn:
            if seqs:
                await conn.execute(outbox.update().where(outbox.c.seq.in_(list(seqs)))
                                   .values(attempts=outbox.c.attempts + 1, last_attempt_at=now))
            await self._accept_own(conn, accepted)
            if rejected is not None:
                seq, reason, detail = rejected
                await conn.execute(outbox.update().where(outbox.c.seq == seq)
                                   .values(state=REJECTED, reason=reason, detail=detail))

    async def retry_rejected(self) -> int:
        """Put rejected outbox entries back in the queue (an operator's decision); how many."""
        async with self.engine.begin() as conn:
            done = await conn.execute(outbox.update().where(outbox.c.state == REJECTED).values(state=PENDING))
        return int(done.rowcount)

    # -- authoring pages: staff, drafts, history, import source ids -----------------------------------

    async def add_user(self, user: StaffUser, now: datetime) -> bool:
        """Add an account; False if the username is taken."""
        async with self.engine.begin() as conn:
            if (await conn.execute(sa.select(staff_users.c.username).where(
                    staff_users.c.username == user.username))).first() is not None:
                return False
            await conn.execute(staff_users.insert().values(
                username=user.username, name=user.name, password_hash=user.password_hash, disabled=user.disabled,
                created_at=_utc(now)))
        return True

    async def user(self, username: str) -> StaffUser | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(staff_users).where(staff_users.c.username == username))).first()
        return StaffUser(r.username, r.name, r.password_hash, bool(r.disabled), _utc(r.created_at)) if r else None

    async def users(self) -> list[StaffUser]:
        async with self.engine.connect() as conn:
            return [StaffUser(r.username, r.name, r.password_hash, bool(r.disabled), _utc(r.created_at))
                    for r in await conn.execute(sa.select(staff_users).order_by(staff_users.c.username))]

    async def set_user_disabled(self, username: str, disabled: bool) -> bool:
        """False if there is no such account."""
        async with self.engine.begin() as conn:
            done = await conn.execute(staff_users.update().where(staff_users.c.username == username)
                                      .values(disabled=disabled))
        return bool(done.rowcount)

    @staticmethod
    def _draft(r: Any) -> Draft:
        return Draft(r.id, r.kind, json.loads(r.body), tuple(json.loads(r.langs)), r.created_by, r.updated_by,
                     _utc(r.created_at), _utc(r.updated_at), r.record_id, r.base_version)

    async def save_draft(self, d: Draft) -> None:
        values = {"id": d.id, "kind": d.kind, "record_id": d.record_id, "base_version": d.base_version,
                  "body": json.dumps(d.body, ensure_ascii=False), "langs": json.dumps(list(d.langs)),
                  "created_by": d.created_by, "updated_by": d.updated_by, "created_at": _utc(d.created_at),
                  "updated_at": _utc(d.updated_at)}
        async with self.engine.begin() as conn:
            done = await conn.execute(drafts.update().where(drafts.c.id == d.id).values(values))
            if done.rowcount == 0:
                await conn.execute(drafts.insert().values(values))

    async def draft(self, draft_id: str) -> Draft | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(drafts).where(drafts.c.id == draft_id))).first()
        return self._draft(r) if r else None

    async def draft_of(self, record_id: str) -> Draft | None:
        """The draft editing a published record, if one is open."""
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(drafts).where(drafts.c.record_id == record_id))).first()
        return self._draft(r) if r else None

    async def drafts(self, limit: int = 500) -> list[Draft]:
        async with self.engine.connect() as conn:
            return [self._draft(r) for r in await conn.execute(
                sa.select(drafts).order_by(drafts.c.updated_at.desc()).limit(limit))]

    async def delete_draft(self, draft_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(drafts.delete().where(drafts.c.id == draft_id))

    async def versions(self, record_id: str) -> list[VersionRow]:
        """Every version of a record held, oldest first, with who published own versions here."""
        q = (sa.select(envelopes.c.version, envelopes.c.seq, envelopes.c.envelope, record_authors.c.username,
                       record_authors.c.via, record_authors.c.note)
             .outerjoin(record_authors, sa.and_(record_authors.c.record_id == envelopes.c.record_id,
                                                record_authors.c.version == envelopes.c.version))
             .where(envelopes.c.record_id == record_id).order_by(envelopes.c.version, envelopes.c.seq))
        async with self.engine.connect() as conn:
            return [VersionRow(r.version, r.seq, bytes(r.envelope), r.username, r.via, r.note)
                    for r in await conn.execute(q)]

    async def source_records(self, source_ids: Sequence[str]) -> dict[str, str]:
        """The record each imported source id created (absent: none yet)."""
        out: dict[str, str] = {}
        async with self.engine.connect() as conn:
            for i in range(0, len(source_ids), 500):
                q = sa.select(import_sources).where(import_sources.c.source_id.in_(list(source_ids[i:i + 500])))
                out.update({r.source_id: r.record_id for r in await conn.execute(q)})
        return out

    async def record_sources(self) -> dict[str, str]:
        """record id -> the source id it was imported under (the last one, if several)."""
        async with self.engine.connect() as conn:
            return {r.record_id: r.source_id for r in await conn.execute(
                sa.select(import_sources).order_by(import_sources.c.source_id))}

    # -- status --------------------------------------------------------------------------------------

    async def counts(self) -> Counts:
        async with self.engine.connect() as conn:
            by_origin = {o: int(n) for o, n in await conn.execute(
                sa.select(records.c.origin, sa.func.count()).group_by(records.c.origin))}
            held = int((await conn.execute(sa.select(sa.func.count()).select_from(quarantine))).scalar_one())
            states = {s: int(n) for s, n in await conn.execute(
                sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state))}
        own = by_origin.pop(self.member, 0)
        return Counts(own=own, received=sum(by_origin.values()), quarantine=held, outbox=states)

    async def quarantine_counts(self) -> dict[str, int]:
        q = sa.select(quarantine.c.reason, sa.func.count()).group_by(quarantine.c.reason)
        async with self.engine.connect() as conn:
            return {r: int(n) for r, n in await conn.execute(q)}

    async def quarantined(self, limit: int = 100) -> list[QuarantineRow]:
        q = sa.select(quarantine).order_by(quarantine.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [QuarantineRow(r.reason, r.detail, r.envelope, r.origin, r.seq, r.hash, r.position)
                    for r in await conn.execute(q)]

    # -- partner keys ----------------------------------------------------------------------------------

    async def add_partner_key(self, row: PartnerKeyRow) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(partner_keys.insert().values(
                key_id=row.key_id, name=row.name, key_hash=row.key_hash, scopes=" ".join(sorted(row.scopes)),
                rate_per_minute=row.rate_per_minute, created_at=_utc(row.created_at)))

    async def partner_key(self, key_id: str) -> PartnerKeyRow | None:
        async with self.engine.connect() as conn:
            r = (await conn.execute(sa.select(partner_keys).where(partner_keys.c.key_id == key_id))).first()
        return PartnerKeyRow.from_row(r) if r else None

    async def partner_keys(self) -> list[PartnerKeyRow]:
        q = sa.select(partner_keys).order_by(partner_keys.c.name, partner_keys.c.created_at)
        async with self.engine.connect() as conn:
            return [PartnerKeyRow.from_row(r) for r in await conn.execute(q)]

    async def revoke_partner_keys(self, name: str, now: datetime, key_id: str | None = None) -> int:
        """Revoke the partner's live keys (or the one named): the number revoked. Once the partner holds no
        live key, its webhook subscriptions are disabled too (``operator``): no more pushes either."""
        q = partner_keys.update().where(partner_keys.c.name == name, partner_keys.c.revoked_at.is_(None))
        if key_id is not None:
            q = q.where(partner_keys.c.key_id == key_id)
        async with self.engine.begin() as conn:
            n = int((await conn.execute(q.values(revoked_at=_utc(now)))).rowcount)
            live = (await conn.execute(sa.select(sa.func.count()).select_from(partner_keys).where(
                partner_keys.c.name == name, partner_keys.c.revoked_at.is_(None)))).scalar_one()
            if n and not live:
                await webhook_store.disable_partner(conn, name, "every key of the partner was revoked", _utc(now))
        return n

    async def touch_partner_key(self, key_id: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(partner_keys.update().where(partner_keys.c.key_id == key_id)
                               .values(last_used_at=_utc(now)))
