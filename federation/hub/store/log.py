"""The hub's store: the only hub module that speaks SQL.

The log is a total order of accepted envelopes; positions are assigned by the single writer as
``max + 1`` inside the committing transaction (never by a database sequence, whose values can be
skipped), so the log has no gaps and a full page of it never changes.

On PostgreSQL several hub workers share one database (``shared``): a writer's transaction
(:meth:`HubStore.appending`) takes a transaction-level advisory lock before it reads anything, so commits of
different workers are serialised, what a writer reads (the log's end, chain heads, held entries) stays true
until it commits, and positions stay gap-free; each commit announces the new log size on the ``ipdn_log``
channel (``NOTIFY``, delivered at commit) so every worker's waiting pulls wake.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from federation.server.db import engine as db

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "hub_alembic_version"
LOG_CHANNEL = "ipdn_log"
REGISTRY_CHANNEL = "ipdn_registry"
_LOG_LOCK = 0x1BD0_106  # the advisory lock key of the log's writer (any constant the database shares)

meta = sa.MetaData()
log = sa.Table(
    "log", meta,
    sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("origin", sa.String(2)), sa.Column("seq", sa.BigInteger), sa.Column("hash", sa.String(64)),
    sa.Column("record_id", sa.String(80)), sa.Column("version", sa.BigInteger), sa.Column("kind", sa.String(64)),
    sa.Column("op", sa.String(8)), sa.Column("kid", sa.String(64)), sa.Column("envelope", db.Blob),
    sa.Column("received_at", sa.DateTime(timezone=True)),
)
quarantine = sa.Table(
    "quarantine", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("received_at", sa.DateTime(timezone=True)), sa.Column("member", sa.String(2)),
    sa.Column("origin", sa.String(2)), sa.Column("seq", sa.BigInteger), sa.Column("hash", sa.String(64)),
    sa.Column("reason", sa.String(64)), sa.Column("detail", sa.Text), sa.Column("conflicts_with", sa.BigInteger),
    sa.Column("envelope", db.Blob),
    # The input's length and digest as received; ``envelope`` holds all of it, a prefix, or nothing (``bound``
    # names the bound that cut it: item, member, total). NULL on rows kept whole before 0007.
    sa.Column("input_size", sa.BigInteger), sa.Column("input_sha256", sa.String(64)), sa.Column("bound", sa.String(8)),
)
quarantine_usage = sa.Table(
    "quarantine_usage", meta,
    sa.Column("member", sa.String(2), primary_key=True),  # '' for requests nobody authenticated
    sa.Column("items", sa.BigInteger), sa.Column("kept_bytes", sa.BigInteger),
    sa.Column("truncated_items", sa.BigInteger), sa.Column("dropped_items", sa.BigInteger),
    sa.Column("dropped_bytes", sa.BigInteger), sa.Column("last_dropped_at", sa.DateTime(timezone=True)),
)
merkle_nodes = sa.Table(
    "merkle_nodes", meta,
    sa.Column("level", sa.Integer, primary_key=True), sa.Column("idx", sa.BigInteger, primary_key=True),
    sa.Column("hash", db.Blob(32)),
)
checkpoints = sa.Table(
    "checkpoints", meta,
    sa.Column("size", sa.BigInteger, primary_key=True), sa.Column("root", sa.String(64)),
    sa.Column("issued_at", sa.DateTime(timezone=True)), sa.Column("document", db.Blob),
)
cosignatures = sa.Table(
    "cosignatures", meta,
    sa.Column("size", sa.BigInteger, primary_key=True), sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("member", sa.String(2)), sa.Column("protected", sa.Text), sa.Column("signature", sa.Text),
    sa.Column("received_at", sa.DateTime(timezone=True)),
)
governance = sa.Table(
    "governance", meta,
    sa.Column("hash", sa.String(64), primary_key=True), sa.Column("type", sa.String(16)),
    sa.Column("base", sa.Integer), sa.Column("subject", sa.String(64)), sa.Column("document", db.Blob),
    sa.Column("received_at", sa.DateTime(timezone=True)), sa.Column("decided_in", sa.Integer),
)
replays = sa.Table(
    "replays", meta,
    sa.Column("keyid", sa.String(64), primary_key=True), sa.Column("signature", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.BigInteger),
)
registry_versions = sa.Table(
    "registry_versions", meta,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False), sa.Column("hash", sa.String(64)),
    sa.Column("document", db.Blob), sa.Column("stored_at", sa.DateTime(timezone=True)),
)
operators = sa.Table(
    "operators", meta,
    sa.Column("name", sa.String(64), primary_key=True), sa.Column("password_hash", sa.String(200)),
    sa.Column("disabled", sa.Boolean), sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("last_sign_in_at", sa.DateTime(timezone=True)),
    sa.Column("totp_secret", sa.String(64)), sa.Column("totp_last_step", sa.BigInteger),  # 0008: second factor
)
operator_events = sa.Table(
    "operator_events", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True), sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("operator", sa.String(64)), sa.Column("action", sa.String(32)), sa.Column("detail", sa.Text),
)
member_pulls = sa.Table(
    "member_pulls", meta,
    sa.Column("member", sa.String(2), primary_key=True), sa.Column("last_pull_at", sa.DateTime(timezone=True)),
    sa.Column("cursor", sa.BigInteger),
)


# Statements on the path of every pull and proof, built once (ADR 15).
_READ_LOG = sa.select(log.c.position, log.c.envelope, log.c.received_at).where(
    log.c.position > sa.bindparam("after")).order_by(log.c.position).limit(sa.bindparam("limit"))
_NODES = sa.select(merkle_nodes.c.level, merkle_nodes.c.idx, merkle_nodes.c.hash).where(
    sa.tuple_(merkle_nodes.c.level, merkle_nodes.c.idx).in_(sa.bindparam("keys", expanding=True)))
_CHECKPOINT = sa.select(checkpoints.c.size, checkpoints.c.document).where(checkpoints.c.size == sa.bindparam("size"))
_LATEST_CHECKPOINT = sa.select(checkpoints.c.size, checkpoints.c.document).order_by(checkpoints.c.size.desc()).limit(1)
_COSIGNATURES = sa.select(cosignatures.c.protected, cosignatures.c.signature).where(
    cosignatures.c.size == sa.bindparam("size")).order_by(cosignatures.c.member)
_LOG_END = sa.select(sa.func.coalesce(sa.func.max(log.c.position), 0))
_REGISTRY_END = sa.select(sa.func.coalesce(sa.func.max(registry_versions.c.version), 0))
_STATE = sa.select(_LOG_END.scalar_subquery(), _REGISTRY_END.scalar_subquery())
_LATEST_REGISTRY = sa.select(registry_versions.c.document).order_by(registry_versions.c.version.desc()).limit(1)
_HEAD = sa.select(log.c.seq, log.c.hash).where(log.c.origin == sa.bindparam("origin")).order_by(
    log.c.seq.desc()).limit(1)
_LOCK = sa.text("SELECT pg_advisory_xact_lock(:k)")
_NOTIFY = sa.text("SELECT pg_notify(:c, :s)")


def _made_against(base: int | range) -> sa.ColumnElement[bool]:
    """Governance documents made against one version, or any version of a range (renewals between)."""
    if isinstance(base, range):
        return governance.c.base.between(base.start, base.stop - 1)
    return governance.c.base == base


async def _checkpoint(conn: AsyncConnection, size: int | None) -> tuple[int, bytes] | None:
    """The size and document of the checkpoint for ``size`` (None: the latest)."""
    row = (await conn.execute(_CHECKPOINT, {"size": size}) if size is not None
           else await conn.execute(_LATEST_CHECKPOINT)).first()
    return (int(row.size), bytes(row.document)) if row is not None else None


class LogRow(NamedTuple):
    """An accepted envelope about to be appended (position assigned at commit). A tuple: one is made per
    envelope on the writer's path, where a frozen dataclass's __init__ costs several times more."""

    origin: str
    seq: int
    hash: str
    record_id: str
    version: int
    kind: str
    op: str
    kid: str
    envelope: bytes


class LogEntry(NamedTuple):
    """A log entry as pulled (PROTOCOL.md §8.3): its position, the envelope as stored and the hub's receipt time."""

    position: int
    envelope: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    member: str | None
    origin: str | None
    seq: int | None
    hash: str | None
    reason: str
    detail: str
    envelope: bytes
    conflicts_with: int | None = None
    input_size: int | None = None  # the whole input's length and digest when ``envelope`` is already a prefix of
    input_sha256: str | None = None  # it (a refused request: federation/hub/api/intake.py); else of ``envelope``


@dataclass(frozen=True, slots=True)
class QuarantineBounds:
    """How much of the refused inputs the quarantine keeps (docs/operating-hub.md "Quarantine"). Each input is
    kept whole up to ``item`` bytes, else its first ``item`` bytes; its bytes are kept only while its member's
    kept bytes stay within ``member`` (requests nobody authenticated count as one member) and everyone's within
    ``total``, else the refusal is kept without them (first come, first kept: evidence is never evicted by later
    input). Past ``items`` refusals of one member, a refusal is only counted. Every input keeps its length and
    SHA-256."""

    item: int = 256 * 1024
    member: int = 64 * 1024 * 1024
    total: int = 1024 * 1024 * 1024
    items: int = 100_000


_USAGE_FIELDS = ("items", "kept_bytes", "truncated_items", "dropped_items", "dropped_bytes")


async def _keep_refused(conn: AsyncConnection, rejected: Sequence[QuarantineRow], now: datetime,
                        bounds: QuarantineBounds) -> None:
    """Insert ``rejected`` within ``bounds``, and account for them in ``quarantine_usage`` (in the writer's
    transaction: under the log's lock where workers share it, so the figures read stay true until it commits)."""
    usage = {r.member: dict(r._mapping) for r in await conn.execute(sa.select(quarantine_usage))}
    total = sum(int(u["kept_bytes"]) for u in usage.values())
    touched: set[str] = set()
    rows = []
    for q in rejected:
        key = q.member or ""
        u = usage.get(key)
        if u is None:
            u = usage[key] = {"member": key, **dict.fromkeys(_USAGE_FIELDS, 0), "last_dropped_at": None, "new": True}
        touched.add(key)
        size = q.input_size if q.input_size is not None else len(q.envelope)
        kept, bound = q.envelope[:bounds.item], "item" if len(q.envelope) > bounds.item else None
        if u["items"] >= bounds.items:  # only counted: its bytes and its row
            u["dropped_items"] += 1
            u["dropped_bytes"] += size
            u["last_dropped_at"] = now
            continue
        if kept and u["kept_bytes"] + len(kept) > bounds.member:
            kept, bound = b"", "member"
        elif kept and total + len(kept) > bounds.total:
            kept, bound = b"", "total"
        if len(kept) < size:
            u["truncated_items"] += 1
            u["dropped_bytes"] += size - len(kept)
            if bound in ("member", "total"):
                u["last_dropped_at"] = now
        u["items"] += 1
        u["kept_bytes"] += len(kept)
        total += len(kept)
        rows.append({"received_at": now, "member": q.member, "origin": q.origin, "seq": q.seq, "hash": q.hash,
                     "reason": q.reason, "detail": q.detail, "conflicts_with": q.conflicts_with, "envelope": kept,
                     "input_size": size, "input_sha256": q.input_sha256 or hashlib.sha256(q.envelope).hexdigest(),
                     "bound": bound if len(kept) < size else None})
    if rows:
        await conn.execute(quarantine.insert(), rows)
    for key in sorted(touched):
        u = usage[key]
        values = {f: u[f] for f in _USAGE_FIELDS} | {"last_dropped_at": u["last_dropped_at"]}
        if u.pop("new", False):
            await conn.execute(quarantine_usage.insert().values(member=key, **values))
        else:
            await conn.execute(quarantine_usage.update().where(quarantine_usage.c.member == key).values(**values))


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    size: int
    root: str
    issued_at: datetime
    document: bytes


@dataclass(frozen=True, slots=True)
class CosignatureRow:
    """A member's co-signature (its JWS signature entry) of the checkpoint of ``size``, by the key ``kid``."""

    size: int
    kid: str
    member: str
    protected: str
    signature: str


async def _add_cosignatures(conn: AsyncConnection, rows: Sequence[CosignatureRow], now: datetime) -> None:
    """Keep co-signatures: the first one per key and size (re-sending is harmless; in a batch, the first wins)."""
    fresh: dict[tuple[int, str], CosignatureRow] = {}
    for row in rows:
        fresh.setdefault((row.size, row.kid), row)
    held = await conn.execute(sa.select(cosignatures.c.size, cosignatures.c.kid).where(
        sa.tuple_(cosignatures.c.size, cosignatures.c.kid).in_(list(fresh))))
    for key in held:
        fresh.pop((key.size, key.kid), None)
    if fresh:
        await conn.execute(cosignatures.insert(), [
            {"size": r.size, "kid": r.kid, "member": r.member, "protected": r.protected, "signature": r.signature,
             "received_at": now} for r in fresh.values()])


def _aware(when: datetime) -> datetime:
    """SQLite hands back naive UTC times; compare them as UTC."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


class LogConflictError(Exception):
    """The log grew under the writer: another process writes to the same database."""


@dataclass(frozen=True, slots=True)
class Held:
    """What the log holds at one (origin, seq)."""

    position: int
    hash: str


class LogReads:
    """What a writer reads to know where the log stands: each read on a connection of its own (the store), or
    all inside the writer's transaction (:class:`LogTransaction`), where they cannot change before it commits."""

    def _connection(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        raise NotImplementedError

    async def state(self) -> tuple[int, int]:
        """The log's size and the newest registry version held, in one query."""
        async with self._connection() as conn:
            size, version = (await conn.execute(_STATE)).one()
        return int(size), int(version)

    async def size(self) -> int:
        async with self._connection() as conn:
            return int((await conn.execute(_LOG_END)).scalar_one())

    async def heads(self, origins: Sequence[str] | None = None) -> dict[str, tuple[int, str]]:
        """Each origin's last (seq, hash) in the log (only those of ``origins``, if given: one index probe
        each, so a shared-log writer's catch-up does not grow with the log)."""
        async with self._connection() as conn:
            if origins is None:
                last = sa.select(log.c.origin, sa.func.max(log.c.seq).label("seq")).group_by(log.c.origin).subquery()
                q = sa.select(log.c.origin, log.c.seq, log.c.hash).join(
                    last, sa.and_(log.c.origin == last.c.origin, log.c.seq == last.c.seq))
                return {r.origin: (r.seq, r.hash) for r in await conn.execute(q)}
            out: dict[str, tuple[int, str]] = {}
            for origin in origins:
                r = (await conn.execute(_HEAD, {"origin": origin})).first()
                if r is not None:
                    out[origin] = (r.seq, r.hash)
            return out

    async def held(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], Held]:
        """What the log holds at each (origin, seq) asked for (absent keys: nothing held)."""
        if not keys:
            return {}
        out: dict[tuple[str, int], Held] = {}
        async with self._connection() as conn:
            for origin in {o for o, _ in keys}:
                seqs = [s for o, s in keys if o == origin]
                q = sa.select(log.c.seq, log.c.position, log.c.hash).where(
                    log.c.origin == origin, log.c.seq.in_(seqs))
                for r in await conn.execute(q):
                    out[(origin, r.seq)] = Held(r.position, r.hash)
        return out

    async def nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Stored Merkle nodes by (level, index); a proof needs O(log n) of them, read in one query."""
        if not keys:
            return {}
        async with self._connection() as conn:
            rows = await conn.execute(_NODES, {"keys": sorted(set(keys))})
        return {(r.level, r.idx): bytes(r.hash) for r in rows}

    async def checkpoint(self, size: int | None = None) -> bytes | None:
        """The checkpoint document for ``size`` (None: the latest)."""
        async with self._connection() as conn:
            held = await _checkpoint(conn, size)
        return held[1] if held is not None else None

    async def latest_registry_version(self) -> int:
        async with self._connection() as conn:
            return int((await conn.execute(_REGISTRY_END)).scalar_one())

    async def latest_registry(self) -> bytes | None:
        async with self._connection() as conn:
            return (await conn.execute(_LATEST_REGISTRY)).scalar_one_or_none()


class LogTransaction(LogReads):
    """The log writer's transaction (:meth:`HubStore.appending`): reads, then :meth:`append`, committed
    together when the ``async with`` block ends."""

    def __init__(self, conn: AsyncConnection, shared: bool) -> None:
        self.conn = conn
        self.shared = shared

    def _connection(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return contextlib.nullcontext(self.conn)

    async def append(self, rows: Sequence[LogRow], rejected: Sequence[QuarantineRow], now: datetime, *,
                     size: int, nodes: Sequence[tuple[int, int, bytes]] = (),
                     checkpoint: CheckpointRow | None = None, bounds: QuarantineBounds | None = None,
                     received: Sequence[datetime] | None = None,
                     cosigned: Sequence[CosignatureRow] = ()) -> list[int]:
        """Append ``rows`` after position ``size``, their Merkle nodes and the checkpoint that covers them, and
        keep ``rejected`` within the quarantine's ``bounds`` and the co-signatures ``cosigned``; the new positions.
        Each row is received at ``now``, or at its time in ``received`` (a log imported from another hub keeps its
        receipt times, §8.3).

        Raises:
            LogConflictError: the log does not end at ``size`` (a writer that ignored the lock; nothing is
                written).
        """
        conn = self.conn
        start = int((await conn.execute(_LOG_END)).scalar_one())
        if start != size:
            raise LogConflictError(f"the log ends at {start}, the writer expected {size}")
        positions = list(range(start + 1, start + 1 + len(rows)))
        if nodes:
            await db.insert_many(conn, merkle_nodes, list(nodes))
        if checkpoint:
            await conn.execute(checkpoints.insert().values(
                size=checkpoint.size, root=checkpoint.root, issued_at=checkpoint.issued_at,
                document=checkpoint.document))
        if rows:  # a LogRow is the log's columns between position and received_at (a test holds them so)
            times = [db.driver_value(conn, log.c.received_at, t) for t in received] if received is not None else None
            at = db.driver_value(conn, log.c.received_at, now)
            await db.insert_many(conn, log, [(p, *r, times[i] if times is not None else at)
                                             for i, (p, r) in enumerate(zip(positions, rows, strict=True))])
            if self.shared:
                await conn.execute(_NOTIFY, {"c": LOG_CHANNEL, "s": str(positions[-1])})
        if rejected:
            await _keep_refused(conn, rejected, now, bounds or QuarantineBounds())
        if cosigned:
            await _add_cosignatures(conn, cosigned, now)
        return positions


class HubStore(LogReads):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.shared = engine.dialect.name == "postgresql"  # several workers may write: see the module doc

    @classmethod
    async def open(cls, url: str) -> HubStore:
        engine = db.make_engine(url)
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    def _connection(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self.engine.connect()

    @contextlib.asynccontextmanager
    async def appending(self) -> AsyncIterator[LogTransaction]:
        """The writer's transaction, committed when the block ends (rolled back if it raises). On a shared log
        it first takes the writers' lock, so nothing it reads changes before it commits."""
        async with self.engine.begin() as conn:
            if self.shared:
                await conn.execute(_LOCK, {"k": _LOG_LOCK})
            yield LogTransaction(conn, self.shared)

    async def commit(self, rows: Sequence[LogRow], rejected: Sequence[QuarantineRow], now: datetime, *,
                     size: int, nodes: Sequence[tuple[int, int, bytes]] = (),
                     checkpoint: CheckpointRow | None = None, bounds: QuarantineBounds | None = None,
                     received: Sequence[datetime] | None = None) -> list[int]:
        """:meth:`LogTransaction.append` in a transaction of its own."""
        async with self.appending() as tx:
            return await tx.append(rows, rejected, now, size=size, nodes=nodes, checkpoint=checkpoint, bounds=bounds,
                                   received=received)

    async def read_log(self, after: int, limit: int) -> list[LogEntry]:
        async with self.engine.connect() as conn:
            return [LogEntry(r.position, r.envelope, _aware(r.received_at))
                    for r in await conn.execute(_READ_LOG, {"after": after, "limit": limit})]

    async def quarantined(self, *, member: str | None = None, reason: str | None = None,
                          limit: int = 100) -> list[dict[str, Any]]:
        q = sa.select(quarantine).order_by(quarantine.c.id.desc()).limit(limit)
        if member:
            q = q.where(quarantine.c.member == member)
        if reason:
            q = q.where(quarantine.c.reason == reason)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    async def quarantine_usage(self) -> dict[str, dict[str, Any]]:
        """Per member ('' for requests nobody authenticated): refusals and bytes kept, and what the bounds cut."""
        async with self.engine.connect() as conn:
            return {r.member: dict(r._mapping) for r in await conn.execute(sa.select(quarantine_usage))}

    async def quarantine_counts(self) -> dict[tuple[str | None, str], int]:
        q = sa.select(quarantine.c.member, quarantine.c.reason, sa.func.count()).group_by(
            quarantine.c.member, quarantine.c.reason)
        async with self.engine.connect() as conn:
            return {(m, r): int(n) for m, r, n in await conn.execute(q)}

    async def save_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        if nodes:
            async with self.engine.begin() as conn:
                await db.insert_many(conn, merkle_nodes, list(nodes))

    async def save_checkpoint(self, row: CheckpointRow) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(checkpoints.insert().values(size=row.size, root=row.root, issued_at=row.issued_at,
                                                           document=row.document))

    async def leaf_count(self) -> int:
        q = sa.select(sa.func.count()).where(merkle_nodes.c.level == 0)
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def checkpoint_cosigned(self, size: int | None = None) -> tuple[bytes, list[dict[str, str]]] | None:
        """The checkpoint document for ``size`` (None: the latest) and every co-signature held for it."""
        async with self.engine.connect() as conn:
            held = await _checkpoint(conn, size)
            if held is None:
                return None
            rows = await conn.execute(_COSIGNATURES, {"size": held[0]})
            return held[1], [{"protected": r.protected, "signature": r.signature} for r in rows]

    async def add_cosignature(self, size: int, kid: str, member: str, entry: dict[str, str], now: datetime) -> None:
        """Keep a member's co-signature (the first one per key and size; re-sending is harmless). A running hub's
        come through its writer (HubService.add_cosignature), in the log's group commit."""
        async with self.engine.begin() as conn:
            await _add_cosignatures(conn, [CosignatureRow(size, kid, member, entry["protected"], entry["signature"])],
                                    now)

    async def latest_cosigned(self) -> dict[str, int]:
        """Per member, the largest checkpoint size it co-signed (its last witnessed checkpoint)."""
        q = sa.select(cosignatures.c.member, sa.func.max(cosignatures.c.size)).group_by(cosignatures.c.member)
        async with self.engine.connect() as conn:
            return {m: int(s) for m, s in await conn.execute(q)}

    async def save_registry(self, version: int, hash_: str, document: bytes, now: datetime) -> None:
        """Keep a registry version (once; workers starting together may race: the first one wins)."""
        with contextlib.suppress(sa.exc.IntegrityError):
            async with self.engine.begin() as conn:
                exists = (await conn.execute(sa.select(registry_versions.c.hash).where(
                    registry_versions.c.version == version))).scalar_one_or_none()
                if exists is None:
                    await conn.execute(registry_versions.insert().values(
                        version=version, hash=hash_, document=document, stored_at=now))

    async def remember_signature(self, keyid: str, signature: bytes, expires_at: int, now: int) -> bool:
        """Remember a push signature until ``expires_at``; False when it was already remembered (a replay)."""
        digest = hashlib.sha256(signature).hexdigest()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(replays.delete().where(replays.c.expires_at < now))
                await conn.execute(replays.insert().values(keyid=keyid, signature=digest, expires_at=expires_at))
        except sa.exc.IntegrityError:
            return False
        return True

    async def add_governance(self, hash_: str, type_: str, base: int, subject: str | None, document: bytes,
                             now: datetime) -> bool:
        """Keep a governance document (once; False when already held)."""
        async with self.engine.begin() as conn:
            if (await conn.execute(sa.select(governance.c.hash).where(governance.c.hash == hash_))).first():
                return False
            await conn.execute(governance.insert().values(hash=hash_, type=type_, base=base, subject=subject,
                                                          document=document, received_at=now))
            return True

    async def governance_documents(self, base: int | range | None = None, *, pending: bool = False,
                                   subjects: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Governance documents in arrival order (those made against ``base`` only, or a version in the range,
        if given; undecided only, if ``pending``; about the given ``subjects`` only, if given)."""
        q = sa.select(governance).order_by(governance.c.received_at, governance.c.hash)
        if base is not None:
            q = q.where(_made_against(base))
        if pending:
            q = q.where(governance.c.decided_in.is_(None))
        if subjects is not None:
            if not subjects:
                return []
            q = q.where(governance.c.subject.in_(sorted(subjects)))
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    async def count_pending_governance(self, type_: str, base: int | range) -> int:
        """Undecided documents of one type made against ``base`` (or a version in the range): pending
        applications, say."""
        q = sa.select(sa.func.count()).select_from(governance).where(
            governance.c.type == type_, _made_against(base), governance.c.decided_in.is_(None))
        async with self.engine.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def save_decision(self, version: int, hash_: str, document: bytes, used: Sequence[str],
                            now: datetime) -> None:
        """A new registry version and the documents it decided, in one transaction."""
        async with self.engine.begin() as conn:
            await conn.execute(registry_versions.insert().values(version=version, hash=hash_, document=document,
                                                                 stored_at=now))
            if used:
                await conn.execute(governance.update().where(governance.c.hash.in_(used)).values(decided_in=version))
            if self.shared:
                await conn.execute(sa.text("SELECT pg_notify(:c, :v)"), {"c": REGISTRY_CHANNEL, "v": str(version)})

    async def registry_version(self, version: int) -> bytes | None:
        q = sa.select(registry_versions.c.document).where(registry_versions.c.version == version)
        async with self.engine.connect() as conn:
            doc = (await conn.execute(q)).scalar_one_or_none()
        return bytes(doc) if doc is not None else None

    # -- operators (the dashboard's accounts) and their audit trail -------------------------------------------

    async def add_operator(self, name: str, password_hash: str, now: datetime) -> bool:
        """A new operator account; False when the name is taken."""
        async with self.engine.begin() as conn:
            if (await conn.execute(sa.select(operators.c.name).where(operators.c.name == name))).first():
                return False
            await conn.execute(operators.insert().values(name=name, password_hash=password_hash, disabled=False,
                                                         created_at=now))
            return True

    async def operator(self, name: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(operators).where(operators.c.name == name))).first()
        return dict(row._mapping) if row is not None else None

    async def operators(self) -> list[dict[str, Any]]:
        q = sa.select(operators.c.name, operators.c.disabled, operators.c.created_at,
                      operators.c.last_sign_in_at).order_by(operators.c.name)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    async def set_operator(self, name: str, *, disabled: bool | None = None, password_hash: str | None = None,
                           last_sign_in_at: datetime | None = None) -> bool:
        """Change an operator account; False when there is none of that name."""
        values: dict[str, Any] = {k: v for k, v in (("disabled", disabled), ("password_hash", password_hash),
                                                    ("last_sign_in_at", last_sign_in_at)) if v is not None}
        async with self.engine.begin() as conn:
            done = await conn.execute(operators.update().where(operators.c.name == name).values(**values))
            return bool(done.rowcount)

    async def set_operator_totp(self, name: str, secret: str | None) -> bool:
        """Enrol (or, with None, remove) an operator's second factor; False when there is none of that name."""
        async with self.engine.begin() as conn:
            done = await conn.execute(operators.update().where(operators.c.name == name).values(
                totp_secret=secret, totp_last_step=None))
            return bool(done.rowcount)

    async def use_operator_totp_step(self, name: str, step: int) -> bool:
        """Record a sign-in with the code of ``step``: False, recording nothing, when the operator has used that
        step or a later one. One statement, so two sign-ins with one code cannot both pass."""
        last = operators.c.totp_last_step
        async with self.engine.begin() as conn:
            done = await conn.execute(operators.update().where(
                operators.c.name == name, sa.or_(last.is_(None), last < step)).values(totp_last_step=step))
            return bool(done.rowcount)

    async def add_operator_event(self, at: datetime, operator: str, action: str, detail: str = "") -> None:
        async with self.engine.begin() as conn:
            await conn.execute(operator_events.insert().values(at=at, operator=operator, action=action,
                                                               detail=detail))

    async def operator_events(self, limit: int = 100) -> list[dict[str, Any]]:
        q = sa.select(operator_events).order_by(operator_events.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    # -- what the dashboard and the status API show ------------------------------------------------------------

    async def save_pulls(self, pulls: dict[str, tuple[datetime, int]]) -> None:
        """Each member's latest signed pull (time, the position it asked after), replacing an older one (hub
        workers sharing the database each know the pulls they served: the newest wins)."""
        if not pulls:
            return
        async with self.engine.begin() as conn:
            held = {r.member: r.last_pull_at for r in await conn.execute(
                sa.select(member_pulls.c.member, member_pulls.c.last_pull_at)
                .where(member_pulls.c.member.in_(list(pulls))).with_for_update())}
            newer = {m: v for m, v in pulls.items()
                     if m not in held or _aware(held[m]) < _aware(v[0])}
            if newer:
                await conn.execute(member_pulls.delete().where(member_pulls.c.member.in_(list(newer))))
                await conn.execute(member_pulls.insert(), [{"member": m, "last_pull_at": at, "cursor": c}
                                                           for m, (at, c) in newer.items()])

    async def pulls(self) -> dict[str, tuple[datetime, int]]:
        async with self.engine.connect() as conn:
            return {r.member: (r.last_pull_at, int(r.cursor)) for r in await conn.execute(sa.select(member_pulls))}

    async def last_received(self, origins: Sequence[str]) -> dict[str, datetime]:
        """Per origin, when the hub last appended one of its envelopes (one index probe each, on
        ``ix_log_origin_received_at``, rather than a scan of the log)."""
        out: dict[str, datetime] = {}
        async with self.engine.connect() as conn:
            for origin in origins:
                q = sa.select(sa.func.max(log.c.received_at)).where(log.c.origin == origin)
                if (when := (await conn.execute(q)).scalar_one_or_none()) is not None:
                    out[origin] = when
        return out

    async def accepted_since(self, since: datetime) -> dict[str, int]:
        q = sa.select(log.c.origin, sa.func.count()).where(log.c.received_at >= since).group_by(log.c.origin)
        async with self.engine.connect() as conn:
            return {o: int(n) for o, n in await conn.execute(q)}

    async def refused_since(self, since: datetime) -> dict[str | None, int]:
        q = sa.select(quarantine.c.member, sa.func.count()).where(quarantine.c.received_at >= since).group_by(
            quarantine.c.member)
        async with self.engine.connect() as conn:
            return {m: int(n) for m, n in await conn.execute(q)}

    async def received_at(self, positions: Sequence[int]) -> dict[int, datetime]:
        """When each of these log positions was appended."""
        if not positions:
            return {}
        q = sa.select(log.c.position, log.c.received_at).where(log.c.position.in_(list(positions)))
        async with self.engine.connect() as conn:
            return {int(p): _aware(t) for p, t in await conn.execute(q)}

    async def arrival_times(self, since: datetime) -> tuple[list[datetime], list[datetime]]:
        """Times of the envelopes accepted and of those refused since ``since`` (for the throughput chart)."""
        async with self.engine.connect() as conn:
            acc = (await conn.execute(sa.select(log.c.received_at).where(log.c.received_at >= since))).scalars()
            ref = (await conn.execute(sa.select(quarantine.c.received_at).where(
                quarantine.c.received_at >= since))).scalars()
            return list(acc), list(ref)

    async def recent_log(self, origin: str, limit: int) -> list[dict[str, Any]]:
        q = sa.select(log.c.position, log.c.seq, log.c.hash, log.c.record_id, log.c.version, log.c.kind, log.c.op,
                      log.c.kid, log.c.received_at, log.c.envelope).where(log.c.origin == origin).order_by(
            log.c.position.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    async def quarantine_item(self, item_id: int) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(quarantine).where(quarantine.c.id == item_id))).first()
        return dict(row._mapping) if row is not None else None

    async def quarantine_page(self, *, member: str | None = None, reason: str | None = None,
                              since: datetime | None = None, until: datetime | None = None,
                              limit: int = 100) -> list[dict[str, Any]]:
        """Refused inputs, newest first, filtered (without the bytes: a page lists, a download gives them)."""
        q = sa.select(*(c for c in quarantine.c if c.name != "envelope"),
                      sa.func.length(quarantine.c.envelope).label("size")).order_by(
            quarantine.c.id.desc()).limit(limit)
        if member:
            q = q.where(quarantine.c.member == member)
        if reason:
            q = q.where(quarantine.c.reason == reason)
        if since:
            q = q.where(quarantine.c.received_at >= since)
        if until:
            q = q.where(quarantine.c.received_at < until)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    async def cosigners(self, size: int) -> list[dict[str, Any]]:
        """Who co-signed the checkpoint of ``size``, with which key and when."""
        q = sa.select(cosignatures.c.member, cosignatures.c.kid, cosignatures.c.received_at).where(
            cosignatures.c.size == size).order_by(cosignatures.c.member)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]

    async def registry_versions(self) -> list[dict[str, Any]]:
        q = sa.select(registry_versions.c.version, registry_versions.c.hash, registry_versions.c.stored_at).order_by(
            registry_versions.c.version.desc())
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(q)]
