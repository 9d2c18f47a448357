"""The node's store: the only node module that speaks SQL. This module opens it and keeps the records.

:class:`NodeStore` opens the engine (and migrates it) and holds one store per table group as attributes:
``outbox`` (node/store/outbox.py), ``trust`` (the pull cursor, the node's Merkle frontier, the last checkpoint
accepted and the evidence of log misbehaviour: node/store/evidence.py), ``staff`` (accounts, drafts,
authorship: node/store/staff.py), ``partners`` (partner keys: node/store/partners.py) and ``webhooks``
(node/webhooks/store.py). The tables are node/store/tables.py's.

Here are the records: every envelope the node holds (its own and those pulled from the hub, byte for byte),
the chains they form, the current version of each record with its search columns and full-text index, and the
quarantine of envelopes refused or kept as evidence. Each envelope is stored once, in ``envelopes``: a record
names its current version's row by (origin, seq), and its body is read from that envelope (docs/adr/0030).
The two writes that span groups are here too, each in one transaction whose connection goes to the other groups'
functions: :meth:`NodeStore.author` (envelope, record, outbox entry, authorship) and :meth:`NodeStore.apply` (a
page of the hub's log with the new cursor). Decisions (which version wins, what is a fork) are the service's;
this module writes what it is told.

Webhooks follow the outbox pattern: the transaction that makes a record version current also queues its event
for every subscription that wants it.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from federation.protocol import merkle
from federation.protocol.envelope import Envelope
from federation.protocol.verify import ChainHead
from federation.server.broadcast import Broadcast
from federation.server.db import direct
from federation.server.db import engine as db
from federation.server.db.checkpoint import Checkpointer
from node.records.occurrences import last_day
from node.records.text import normalise
from node.store import evidence, outbox, staff
from node.store.evidence import LogView, TrustStore
from node.store.outbox import OutboxStore
from node.store.partners import PartnerStore
from node.store.staff import Authorship, StaffStore
from node.store.tables import envelopes, quarantine, records, records_fts, utc
from node.webhooks import events as webhooks
from node.webhooks import store as webhook_store
from node.webhooks.store import WebhookStore

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "node_alembic_version"

_UNREAD: Any = object()
_B64URL = bytes.maketrans(b"-_", b"+/")
WARNINGS = {"key-revoked-after-the-fact": "signed by a key whose end, published after the hub logged this version, "
                                         "lies before it: kept in its chain, not verified (PROTOCOL.md §10)"}


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
    # The body's JSON text (decoded on the first use of ``body``); from_row leaves it to be read from the envelope
    # on first use (:func:`envelope_body`): a page answered 304 never reads it.
    body_json: str | None
    hash: str
    seq: int
    issued_at: str
    updated_at: datetime
    envelope: bytes
    key_warning: str | None = None  # key-revoked-after-the-fact: kept, but not verified (docs/adr/0019)
    _body: Any = field(default=_UNREAD, repr=False, compare=False)

    @classmethod
    def from_row(cls, r: Any) -> StoredRecord:
        """A row of records joined to its envelope (or anything with those attributes)."""
        return cls(r.record_id, r.origin, r.kind, r.version, r.op, r.status, r.title, _UNREAD, r.hash, r.seq,
                   r.issued_at, utc(r.updated_at), bytes(r.envelope), r.key_warning)

    def _body_text(self) -> str | None:
        if self.body_json is _UNREAD:
            object.__setattr__(self, "body_json", envelope_body(self.envelope))
        return self.body_json

    @property
    def body(self) -> dict[str, Any] | None:
        if self._body is _UNREAD:  # a page of records for the record API never needs it decoded
            text = self._body_text()
            object.__setattr__(self, "_body", None if text is None else json.loads(text))
        return cast("dict[str, Any] | None", self._body)

    def _facts(self) -> dict[str, Any]:
        facts = {"record_id": self.record_id, "origin": self.origin, "kind": self.kind, "version": self.version,
                 "op": self.op, "status": self.status, "seq": self.seq, "hash": self.hash, "issued_at": self.issued_at}
        if self.key_warning is not None:  # PROTOCOL.md §9: present only for a version that is not verified
            facts["warnings"] = [{"reason": self.key_warning, "detail": WARNINGS.get(self.key_warning, "")}]
        return facts

    def item(self) -> dict[str, Any]:
        """The record as partners get it (the record API, webhook events): its facts, body and envelope."""
        return {**self._facts(), "body": self.body, "envelope": json.loads(self.envelope)}

    def item_json(self) -> bytes:
        """:meth:`item` as JSON, with the stored body and envelope spliced in as they are: decoding them to encode
        them again was about half of a record page's cost. Tests hold it to :meth:`item`."""
        facts = json.dumps(self._facts(), ensure_ascii=False, separators=(",", ":"))
        return f'{facts[:-1]},"body":{self._body_text() or "null"},"envelope":'.encode() + self.envelope + b"}"


@dataclass(frozen=True, slots=True)
class RecordVersion:
    """One version of a record as held: its envelope's hash and time, and its place in the hub's log."""

    version: int
    op: str
    hash: str
    issued_at: str
    position: int | None  # None: an own version the hub has not logged yet
    logged_at: datetime | None
    key_warning: str | None
    seq: int


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    reason: str
    detail: str
    envelope: bytes
    origin: str | None = None
    seq: int | None = None
    hash: str | None = None
    position: int | None = None



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
    logged_at: dict[int, datetime] = field(default_factory=dict)  # position -> the hub's receipt time (§8.3)
    marks: dict[str, str] = field(default_factory=dict)  # envelope hash -> its mark (key-revoked-after-the-fact)
    # envelope hash -> its record's search columns, when derived beforehand (node/sync/verifier.py, in a worker)
    derived: dict[str, dict[str, Any]] = field(default_factory=dict)



@dataclass(frozen=True, slots=True)
class ApplyBasis:
    """What a page of the hub's log is applied against: the log view, the hash held at each (origin, seq)
    of the page, the chain heads of its origins and the current (version, hash) of its records."""

    view: LogView
    held: dict[tuple[str, int], str]
    heads: dict[str, ChainHead]
    versions: dict[str, tuple[int, str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """How many records the node holds (its own, received), how many quarantine entries it keeps and its outbox
    entries by state; named at construction, never by position (three counts alike are easily swapped)."""

    own: int
    received: int
    quarantine: int
    outbox: dict[str, int]


def envelope_body(envelope: bytes) -> str | None:
    """The body's JSON text in a held envelope (None: a tombstone), sliced out of its payload, not re-encoded.

    Held envelopes are :meth:`Envelope.to_bytes` and their payloads RFC 8785 JSON (checked when received: §3.2),
    so ``body``, when present, is the payload's first member and ``issued_at`` the next: outside strings (where a
    quote is escaped) ``,"issued_at":`` occurs once more after the body, at the top level.
    """
    start = envelope.index(b'"payload":"') + 11
    b64 = envelope[start:envelope.index(b'"', start)]
    payload = binascii.a2b_base64(b64.translate(_B64URL) + b"==")
    if not payload.startswith(b'{"body":{'):
        return None
    return payload[8:payload.rindex(b',"issued_at":')].decode()


def stored_search_text(envelope: bytes) -> str:
    """The searched text indexed for a held envelope (:func:`searched_text` of its body), as it was indexed: the
    SQLite index is contentless, so deleting a row means giving its text again."""
    text = envelope_body(envelope)
    return searched_text(json.loads(text)) if text is not None else ""


def searched_text(body: dict[str, Any]) -> str:
    """Every language of a body's title and description, folded by :func:`node.records.text.normalise` as every
    query is (a change to it needs a migration rebuilding the index: 0010, 0012)."""
    return normalise("\n".join(_strings(body.get("title")) + _strings(body.get("description"))))


def _title(body: dict[str, Any] | None) -> str | None:
    title = body.get("title") if body else None
    if isinstance(title, dict):
        return next((t for t in title.values() if isinstance(t, str)), None)
    return title if isinstance(title, str) else None


def _strings(value: Any) -> list[str]:
    """The strings of a language map by language tag (the order a signed payload has them in, whatever order the
    author gave: the SQLite index is told a record's text again to delete it, from its envelope), or a lone string."""
    if isinstance(value, dict):
        return [v for _, v in sorted(value.items()) if isinstance(v, str)]
    return [value] if isinstance(value, str) else []


def _day(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value[:10]) else None


def _joined(values: Sequence[str]) -> str:
    """``|a|b|``: a value is matched as ``|a|`` (exactly, whatever it contains but |)."""
    return "|" + "|".join(v.replace("|", " ") for v in values) + "|" if values else ""


def search_values(body: dict[str, Any] | None) -> dict[str, Any]:
    """The derived search columns of a record body (None: a tombstone, found by no filter of its body).

    Dates are the local calendar days the body states (events' start/end, programmes'
    start_date/end_date), and the last day of a recurring event's last occurrence (``last_day``); countries the
    participating countries, the venue's country and a programme's eligible countries; the searched text
    :func:`searched_text`. ``type`` is the event_type or programme_type,
    ``audiences`` the audience or target_audience (0011).
    """
    if not body:
        return {"start_day": None, "end_day": None, "countries": "", "tags": "", "langs": "", "search": "",
                "type": None, "audiences": "", "last_day": None}
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
    text = searched_text(body)
    type_ = body.get("event_type") or body.get("programme_type")
    audiences = [a for a in body.get("audience") or body.get("target_audience") or [] if isinstance(a, str)]
    return {"start_day": start, "end_day": end, "countries": _joined(sorted(set(countries))),
            "tags": _joined(sorted(set(tags))), "langs": _joined(sorted(set(langs))), "search": text,
            "type": type_ if isinstance(type_, str) else None, "audiences": _joined(sorted(set(audiences))),
            "last_day": last_day(body) or end}


def fts_query(q: str) -> str | None:
    """An FTS5 query matching every word of ``q`` (normalised as the index is; each quoted: no FTS syntax);
    None: no word."""
    words = re.findall(r"\w+", normalise(q))
    return " ".join('"' + w + '"' for w in words) if words else None


def _logged(at: datetime | None) -> datetime | None:
    return utc(at) if at is not None else None


def _envelope_values(env: Envelope, now: datetime, position: int | None, logged_at: datetime | None = None,
                     warning: str | None = None) -> dict[str, Any]:
    p = env.payload
    return {"origin": p.origin, "seq": p.seq, "hash": env.hash, "record_id": p.record_id, "version": p.version,
            "kind": p.kind, "op": p.op, "envelope": env.to_bytes(), "issued_at": p.issued_at, "received_at": now,
            "position": position, "logged_at": _logged(logged_at),
            "key_warning": warning}


def record_values(env: Envelope, now: datetime, warning: str | None = None,
                  derived: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record's columns for its new current version, and its searched text (``search``, for the index);
    ``derived``: :func:`search_values` of its body, when already made."""
    p = env.payload
    deleted = p.op == "delete"
    status = "deleted" if deleted or p.body is None else str(p.body.get("status", ""))
    return {"record_id": p.record_id, "origin": p.origin, "kind": p.kind, "version": p.version, "op": p.op,
            "status": status, "title": _title(p.body), "hash": env.hash, "seq": p.seq, "issued_at": p.issued_at,
            "updated_at": now, "key_warning": warning, **(search_values(p.body) if derived is None else derived)}


# The statements on the path of every pull, built once: building and keying a statement costs SQLAlchemy more
# than SQLite takes to run it (ADR 15).
_HELD = sa.select(envelopes.c.origin, envelopes.c.seq, envelopes.c.hash).where(
    envelopes.c.origin.in_(sa.bindparam("origins", expanding=True)),
    envelopes.c.seq.in_(sa.bindparam("seqs", expanding=True)))  # the rows asked for (origin x seq, a superset)


@functools.lru_cache(maxsize=64)
def _chains_query(n: int) -> sa.CompoundSelect[Any]:
    """The rows asked for and the last row of each of ``n`` origins (bound as ``o0``...), one statement: each origin's
    last by ``ORDER BY seq DESC LIMIT 1``, one index probe. (``seq = (SELECT max(seq) ...)`` correlated over the origin
    read every row of it: 80 ms a pull at 100,000 envelopes of one origin, the node's catch-up quadratic.)"""
    lasts = [sa.select(envelopes.c.origin, envelopes.c.seq, envelopes.c.hash)
             .where(envelopes.c.origin == sa.bindparam(f"o{i}")).order_by(envelopes.c.seq.desc()).limit(1).subquery()
             for i in range(n)]
    return sa.union_all(_HELD, *(sa.select(*last.c) for last in lasts))


# Marked envelopes by mark: the status page's, on a partial index of the marked rows (0013), not a read of every one.
_MARKED_COUNTS = sa.select(envelopes.c.key_warning, sa.func.count()).where(
    envelopes.c.key_warning.is_not(None)).group_by(envelopes.c.key_warning)
# A StoredRecord's columns: the record's and its current version's envelope, the one copy of it (ADR 30).
_RECORD = [*(records.c[n] for n in ("record_id", "origin", "kind", "version", "op", "status", "title", "hash", "seq",
                                    "issued_at", "updated_at", "key_warning")), envelopes.c.envelope]
_WITH_ENVELOPE = records.join(envelopes, sa.and_(envelopes.c.origin == records.c.origin,
                                                 envelopes.c.seq == records.c.seq))
_SELECT_RECORDS = sa.select(*_RECORD).select_from(_WITH_ENVELOPE)
_ONE_RECORD = _SELECT_RECORDS.where(records.c.record_id == sa.bindparam("rid"))
# A page of records in (updated_at, record_id) order, first or after a key; list_records adds the filters.
_LIST = _SELECT_RECORDS.order_by(records.c.updated_at, records.c.record_id).limit(
    sa.bindparam("limit", type_=sa.Integer))
_AT = sa.bindparam("at", type_=records.c.updated_at.type)
_LIST_AFTER = _LIST.where(sa.or_(records.c.updated_at > _AT,
                                 sa.and_(records.c.updated_at == _AT, records.c.record_id > sa.bindparam("rid"))))
_VERSIONS = sa.select(records.c.record_id, records.c.version, records.c.hash).where(
    records.c.record_id.in_(sa.bindparam("ids", expanding=True)))
# The records held among those a write replaces, as they are (an update sets only the columns that change: setting
# one rewrites each index over it, at a random place of a large table), with the envelope their index row was made
# from (SQLite: the index holds no text).
_REPLACED = {dialect: sa.select(*records.c, *extra).select_from(_WITH_ENVELOPE).where(
    records.c.record_id.in_(sa.bindparam("ids", expanding=True)))
    for dialect, extra in (("sqlite", [envelopes.c.envelope]), ("postgresql", []))}
_INSERT_ENVELOPES = envelopes.insert()
_INSERT_RECORD = records.insert()
_UPDATE_RECORD = records.update().where(records.c.record_id == sa.bindparam("b_record_id"))
# The index row of a record, keyed by its id: each an index probe, never a scan (ADR 30).
_SQLITE_INDEX = sa.text("INSERT INTO records_fts (rowid, search) VALUES (:id, :search)")
_LAST_ID = sa.select(sa.func.max(records.c.id).label("last"))  # the rowid's b-tree's last entry: one probe
_SQLITE_UNINDEX = sa.text("INSERT INTO records_fts (records_fts, rowid, search) VALUES ('delete', :id, :search)")
_PG_INDEX = sa.text("INSERT INTO records_fts (rowid, search) SELECT id, strip(to_tsvector('simple', :search)) "
                    "FROM records WHERE record_id = :rid ON CONFLICT (rowid) DO UPDATE SET search = excluded.search")


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
    origins_ = sorted(every)
    rows = await direct.rows(conn, _chains_query(len(origins_)), {
        "origins": origins_, "seqs": sorted({s for _, s in wanted}), **{f"o{i}": o for i, o in enumerate(origins_)}})
    for r in rows:
        if (r.origin, r.seq) in wanted:
            held[(r.origin, r.seq)] = r.hash
        if r.origin not in heads or r.seq > heads[r.origin].seq:
            heads[r.origin] = ChainHead(r.seq, r.hash)
    return held, heads


async def _current_versions(conn: AsyncConnection, record_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    if not record_ids:
        return {}
    held = await direct.rows(conn, _VERSIONS, {"ids": sorted(set(record_ids))})
    return {r.record_id: (r.version, r.hash) for r in held}


class NodeStore:
    def __init__(self, engine: AsyncEngine, member: str, *, relaxed: AsyncEngine | None = None,
                 checkpoints: Checkpointer | None = None) -> None:
        self.engine = engine
        # Where applied pages are written: the same database, committing without waiting for the disk (a page
        # lost to a power cut is pulled again; docs/adr/0033). The engine itself when not given.
        self.relaxed = relaxed or engine
        self.member = member  # the node's own origin: its outbox holds only these envelopes
        self.checkpoints = checkpoints  # SQLite's log copied back in a thread of its own (ADR 36), stopped at close
        # One store per table group, on the one engine.
        self.outbox = OutboxStore(engine, member)
        self.trust = TrustStore(engine)
        self.staff = StaffStore(engine)
        self.partners = PartnerStore(engine)
        self.webhooks = WebhookStore(engine)
        # Notified after each commit that changes records (never before it is durable): wakes the record streams.
        # In this process only: another process writing the same database wakes nobody here (ADR 0026).
        self.changed = Broadcast()

    @classmethod
    async def open(cls, url: str, member: str) -> NodeStore:
        path = db.sqlite_path(url)
        # Updates of a large node write index pages at random: copying them back is done beside the apply (ADR 36).
        checkpoints = Checkpointer(path) if path is not None else None
        engine = db.make_engine(url, checkpoints=checkpoints)
        try:
            await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
        except BaseException:
            await cls(engine, member, checkpoints=checkpoints).close()
            raise
        return cls(engine, member, relaxed=db.make_engine(url, durable=False, checkpoints=checkpoints),
                   checkpoints=checkpoints)

    async def close(self) -> None:
        await self.engine.dispose()
        if self.relaxed is not self.engine:
            await self.relaxed.dispose()
        if self.checkpoints is not None:
            await asyncio.to_thread(self.checkpoints.stop)  # a checkpoint under way ends first, off the event loop

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
            return ApplyBasis(await evidence.read_view(conn), held, heads, await _current_versions(conn, record_ids))

    # -- records -------------------------------------------------------------------------------------

    async def get_records(self, record_ids: Sequence[str]) -> dict[str, StoredRecord]:
        """The current version of each record asked for that is held."""
        out: dict[str, StoredRecord] = {}
        ids = sorted(set(record_ids))
        async with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                q = _SELECT_RECORDS.where(records.c.record_id.in_(ids[i:i + 500]))
                out.update({r.record_id: StoredRecord.from_row(r) for r in await conn.execute(q)})
        return out

    async def get_record(self, record_id: str) -> StoredRecord | None:
        async with self.engine.connect() as conn:
            rows = await direct.rows(conn, _ONE_RECORD, {"rid": record_id})
        return StoredRecord.from_row(rows[0]) if rows else None

    async def list_records(self, *, kind: str | None = None, origin: str | None = None,
                           updated_since: datetime | None = None, after: tuple[datetime, str] | None = None,
                           country: str | None = None, date_from: str | None = None, date_to: str | None = None,
                           lang: str | None = None, status: str | None = None, tag: str | None = None,
                           q: str | None = None, type_: str | None = None, audience: str | None = None,
                           limit: int) -> list[StoredRecord]:
        """Records in (updated_at, record_id) order, starting after the key ``after``, filtered.

        ``date_from``/``date_to`` are calendar days (YYYY-MM-DD): records whose days overlap them (from the
        first occurrence's first day to the last occurrence's last day, for a recurring event);
        ``q`` matches records whose titles or descriptions hold every word of it (any language).
        """
        params: dict[str, Any] = {"limit": limit}
        q_ = _LIST
        if after is not None:
            q_, params["at"], params["rid"] = _LIST_AFTER, utc(after[0]), after[1]
        if kind is not None:
            q_ = q_.where(records.c.kind == kind)
        if origin is not None:
            q_ = q_.where(records.c.origin == origin)
        if updated_since is not None:
            q_ = q_.where(records.c.updated_at >= utc(updated_since))
        if country is not None:
            q_ = q_.where(records.c.countries.contains(f"|{country.upper()}|", autoescape=True))
        if tag is not None:
            q_ = q_.where(records.c.tags.contains(f"|{tag.lower()}|", autoescape=True))
        if lang is not None:
            q_ = q_.where(records.c.langs.contains(f"|{lang.lower()}|", autoescape=True))
        if status is not None:
            q_ = q_.where(records.c.status == status)
        if type_ is not None:
            q_ = q_.where(records.c.type == type_)
        if audience is not None:
            q_ = q_.where(records.c.audiences.contains(f"|{audience}|", autoescape=True))
        if date_from is not None:
            q_ = q_.where(records.c.last_day >= date_from)
        if date_to is not None:
            q_ = q_.where(records.c.start_day <= date_to)
        if q is not None:
            q_ = q_.where(self._matches(q))
        async with self.engine.connect() as conn:
            if q_ is _LIST or q_ is _LIST_AFTER:  # unfiltered (every stream reads after every commit): built once
                return [StoredRecord.from_row(r) for r in await direct.rows(conn, q_, params)]
            return [StoredRecord.from_row(r) for r in await conn.execute(q_, params)]

    async def last_key(self) -> tuple[datetime, str] | None:
        """The (updated_at, record_id) key of the record listed last (None: no record held)."""
        q = sa.select(records.c.updated_at, records.c.record_id).order_by(
            records.c.updated_at.desc(), records.c.record_id.desc()).limit(1)
        async with self.engine.connect() as conn:
            row = (await conn.execute(q)).first()
        return (utc(row.updated_at), row.record_id) if row is not None else None

    def _matches(self, q: str) -> sa.ColumnElement[bool]:
        """Full text: the ids records_fts finds, by FTS5 on SQLite, by its GIN-indexed tsvector ('simple': no
        stemming, every language matched as words) on PostgreSQL."""
        if self.engine.dialect.name == "postgresql":
            query = sa.func.plainto_tsquery(sa.literal_column("'simple'::regconfig"), normalise(q))
            return records.c.id.in_(sa.select(records_fts.c.rowid).where(records_fts.c.search.op("@@")(query)))
        match = fts_query(q)
        if match is None:
            return sa.false()
        hits = sa.text("SELECT rowid FROM records_fts WHERE records_fts MATCH :fts").bindparams(fts=match)
        return records.c.id.in_(hits.columns(records_fts.c.rowid))

    async def upcoming(self, *, kind: str, today: str, limit: int, origin: str | None = None) -> list[StoredRecord]:
        """Records of ``kind`` not over by ``today`` (YYYY-MM-DD: their last day is today or later), soonest first;
        neither tombstones nor versions kept unverified (the portal's home and member pages)."""
        q_ = _SELECT_RECORDS.where(records.c.kind == kind, records.c.op == "put", records.c.end_day >= today,
                                       records.c.key_warning.is_(None))
        if origin is not None:
            q_ = q_.where(records.c.origin == origin)
        q_ = q_.order_by(records.c.start_day, records.c.record_id).limit(limit)
        async with self.engine.connect() as conn:
            return [StoredRecord.from_row(r) for r in await conn.execute(q_)]

    async def versions(self, record_id: str) -> list[RecordVersion]:
        """Every version of a record held, oldest first, with where the hub's log holds it (None: not yet)."""
        q_ = sa.select(envelopes.c.version, envelopes.c.op, envelopes.c.hash, envelopes.c.issued_at,
                       envelopes.c.position, envelopes.c.logged_at, envelopes.c.key_warning, envelopes.c.seq).where(
            envelopes.c.record_id == record_id).order_by(envelopes.c.version, envelopes.c.seq)
        async with self.engine.connect() as conn:
            return [RecordVersion(r.version, r.op, r.hash, r.issued_at, r.position,
                                  utc(r.logged_at) if r.logged_at is not None else None, r.key_warning, r.seq)
                    for r in await conn.execute(q_)]

    @staticmethod
    async def _put_records(conn: AsyncConnection, envs: Sequence[Envelope], now: datetime,
                           marks: dict[str, str] | None = None, derived: dict[str, dict[str, Any]] | None = None,
                           ) -> None:
        """Write each record's new current version: one UPDATE (executemany) for those held, one INSERT for the
        others (statement by statement, a catch-up paid a round trip to the database thread per record and table),
        then its row of the full-text index, found by the record's id: an update costs index probes, O(log n)."""
        marks, derived = marks or {}, derived or {}
        rows = [record_values(env, now, marks.get(env.hash), derived.get(env.hash)) for env in envs]
        if not rows:
            return
        texts = [{"rid": r["record_id"], "search": r.pop("search")} for r in rows]
        ids = sorted({r["record_id"] for r in rows})
        replaced = {r.record_id: r for r in await direct.rows(conn, _REPLACED[conn.dialect.name], {"ids": ids})}
        if conn.dialect.name == "sqlite":
            # The index holds no text: a row is taken out by giving the text it was made from again, derived from
            # the envelope still current (a tombstone's empty text was never indexed).
            old = [{"id": r.id, "search": t} for r in replaced.values() if (t := stored_search_text(r.envelope))]
            await direct.run(conn, _SQLITE_UNINDEX, old)
            # A new record's id is given here, the next after the last (as SQLite would choose it; this transaction
            # wrote its envelopes already, so no other writer is between), so that its index row is written by
            # VALUES: FTS5 takes an INSERT ... SELECT five times slower (about 0.1 ms a row).
            fresh = [r for r in rows if r["record_id"] not in replaced]
            if fresh:
                last = (await direct.rows(conn, _LAST_ID))[0].last or 0
                for n, r in enumerate(fresh, last + 1):
                    r["id"] = n
            by_id = {**{rid: r.id for rid, r in replaced.items()}, **{r["record_id"]: r["id"] for r in fresh}}
            index, texts = _SQLITE_INDEX, [{"id": by_id[t["rid"]], "search": t["search"]} for t in texts if t["search"]]
        else:
            index = _PG_INDEX
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # by the columns they set: one executemany each
        for r in rows:
            if (held := replaced.get(r["record_id"])) is not None:
                changed = {c: v for c, v in r.items() if c != "record_id" and v != getattr(held, c)}
                updates.setdefault(tuple(changed), []).append({**changed, "b_record_id": r["record_id"]})
        for batch in updates.values():
            await direct.run(conn, _UPDATE_RECORD, batch)
        await direct.run(conn, _INSERT_RECORD, [r for r in rows if r["record_id"] not in replaced])
        await direct.run(conn, index, texts)

    async def logged_since(self, origin: str, since: datetime) -> list[tuple[str, bytes, datetime]]:
        """(hash, bytes, the hub's receipt time or else this node's) of the envelopes held from ``origin`` logged
        at or after ``since``, unmarked: those a key's end published later may concern."""
        at = sa.func.coalesce(envelopes.c.logged_at, envelopes.c.received_at)
        q = sa.select(envelopes.c.hash, envelopes.c.envelope, at.label("at")).where(
            envelopes.c.origin == origin, at >= utc(since), envelopes.c.key_warning.is_(None))
        async with self.engine.connect() as conn:
            return [(r.hash, bytes(r.envelope), utc(r.at)) for r in await conn.execute(q)]

    async def mark(self, hashes: Sequence[str], warning: str) -> int:
        """Mark these envelopes, and the records whose current version they are; how many envelopes."""
        if not hashes:
            return 0
        async with self.engine.begin() as conn:
            n = (await conn.execute(envelopes.update().where(envelopes.c.hash.in_(list(hashes))).values(
                key_warning=warning))).rowcount
            await conn.execute(records.update().where(records.c.hash.in_(list(hashes))).values(key_warning=warning))
        self.changed.notify()  # what the records show changed (the answers kept by node/partners/answers.py)
        return int(n)

    async def marked_counts(self) -> dict[str, int]:
        """Envelopes held that are marked, by mark (the status page)."""
        async with self.engine.connect() as conn:
            return {r: int(n) for r, n in await conn.execute(_MARKED_COUNTS)}

    # -- writes that span the table groups: one transaction, its connection passed to each group -----

    async def author(self, env: Envelope, now: datetime, by: Authorship | None = None) -> None:
        """Keep an envelope this node signed: the envelope, the record's new version, an outbox entry, and
        (``by``) who published it and the import source id it answers to, all in one transaction."""
        now = utc(now)
        async with self.engine.begin() as conn:
            await direct.run(conn, _INSERT_ENVELOPES, _envelope_values(env, now, None))
            queued = await self._queue_webhooks(conn, [env], now)
            await self._put_records(conn, [env], now)
            await outbox.enqueue(conn, env.payload.seq)
            if by is not None:
                await staff.add_authorship(conn, env, by, now)
        self.changed.notify()
        if queued:
            self.webhooks.queued.set()

    async def apply(self, changes: Changes, now: datetime) -> None:
        """Write one applied page of the log and move the cursor, all or nothing; committed without waiting for the
        disk (``relaxed``): the next durable commit of this database makes it durable too."""
        now = utc(now)
        async with self.relaxed.begin() as conn:
            await direct.run(conn, _INSERT_ENVELOPES, [
                _envelope_values(e, now, pos, changes.logged_at.get(pos), changes.marks.get(e.hash))
                for e, pos in changes.envelopes])
            queued = await self._queue_webhooks(conn, changes.events, now)
            await self._put_records(conn, list(changes.records.values()), now, changes.marks, changes.derived)
            await outbox.accept_own(conn, self.member, changes.own_positions, changes.logged_at)
            if changes.quarantine:
                await conn.execute(quarantine.insert(), [
                    {"received_at": now, "origin": q.origin, "seq": q.seq, "hash": q.hash, "position": q.position,
                     "reason": q.reason, "detail": q.detail, "envelope": q.envelope,
                     "logged_at": _logged(changes.logged_at.get(q.position or 0))} for q in changes.quarantine])
            await evidence.save_position(conn, changes.cursor, changes.frontier,
                                         changes.logged_at.get(changes.cursor))
        if changes.records or changes.own_positions:  # own positions: a record page's badge names them
            self.changed.notify()
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
            values = record_values(env, now)
            old = held.get(env.payload.record_id)
            type_ = webhooks.event_type(values["op"], values["status"], old)
            wanted = [s for s in subs if s.filters.wants(type_, values, old)]
            held[env.payload.record_id] = values
            if wanted:
                item = StoredRecord.from_row(SimpleNamespace(**values, envelope=env.to_bytes())).item()
                queued += await webhook_store.add_event(
                    conn, type_, record_id=env.payload.record_id, origin=env.payload.origin,
                    version=env.payload.version, body=webhooks.event_body(type_, now, item), subs=wanted, now=now)
        return queued

    # -- status --------------------------------------------------------------------------------------

    async def counts(self) -> Counts:
        async with self.engine.connect() as conn:
            by_origin = {o: int(n) for o, n in await conn.execute(
                sa.select(records.c.origin, sa.func.count()).group_by(records.c.origin))}
            held = int((await conn.execute(sa.select(sa.func.count()).select_from(quarantine))).scalar_one())
            states = await outbox.state_counts(conn)
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

