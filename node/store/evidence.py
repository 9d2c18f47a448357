"""What the node saw of the hub's log, and the evidence that the log misbehaves (log trust).

``sync_state`` holds the pull cursor, the node's Merkle frontier over every entry pulled (written with the
cursor, in the transaction that applies a page: :func:`save_position`) and the last checkpoint accepted, as
received; ``checkpoint_evidence`` the proof of misbehaviour (the last checkpoint accepted and the offending
document). The judgements are node/sync/logtrust.py's and node/sync/trust.py's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from federation.protocol import merkle
from federation.server.db import direct
from node.store.tables import checkpoint_evidence, envelopes, quarantine, sync_state, utc

CURSOR_KEY = "cursor"
FRONTIER_KEY = "frontier"  # JSON [[level, hex], ...] of merkle.Frontier.to_list(), written with the cursor
CHECKPOINT_KEY = "checkpoint"  # the last checkpoint accepted, as received
RECEIPT_KEY = "receipt"  # the hub's receipt time of the latest entry applied (§8.3), written with the cursor
RESOLVED_KEY = "evidence_resolved"  # evidence rows with an id up to this one no longer halt (a hub recovered)


@dataclass(frozen=True, slots=True)
class LogView:
    """What the node saw of the hub's log: the cursor, the frontier over those entries (None: a database
    from before the frontier was kept), and the last checkpoint it accepted, as received."""

    cursor: int
    frontier: merkle.Frontier | None
    checkpoint: bytes | None
    received_at: datetime | None = None  # the hub's receipt time of the entry at the cursor (None: not known)


@dataclass(frozen=True, slots=True)
class EvidenceRow:
    """Proof of the hub's misbehaviour: the last checkpoint accepted and the offending document, as received."""

    reason: str
    detail: str
    accepted: bytes | None
    offending: bytes | None
    id: int | None = None
    created_at: datetime | None = None


def _frontier_json(frontier: merkle.Frontier) -> str:
    return json.dumps([[level, h.hex()] for level, h in frontier.to_list()])


# On the path of every pull: built once (ADR 15).
_LOG_VIEW = sa.select(sync_state).where(sync_state.c.key.in_([CURSOR_KEY, FRONTIER_KEY, CHECKPOINT_KEY, RECEIPT_KEY]))
_CURSOR = sa.select(sync_state.c.value).where(sync_state.c.key == CURSOR_KEY)
_UPSERT_STATE: dict[str, Any] = {}  # dialect name -> INSERT .. ON CONFLICT (key) DO UPDATE (SQLite and PostgreSQL)


def _upsert_state(dialect: str) -> Any:
    stmt = _UPSERT_STATE.get(dialect)
    if stmt is None:
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(sync_state)
        stmt = _UPSERT_STATE[dialect] = insert.on_conflict_do_update(
            index_elements=[sync_state.c.key], set_={"value": insert.excluded.value})
    return stmt


async def _set_states(conn: AsyncConnection, values: dict[str, str]) -> None:
    """Set these sync_state keys, in one statement."""
    await direct.run(conn, _upsert_state(conn.dialect.name), [{"key": k, "value": v} for k, v in values.items()])


async def read_view(conn: AsyncConnection) -> LogView:
    """The cursor, the frontier and the last accepted checkpoint, on ``conn``."""
    state = {r.key: r.value for r in await direct.rows(conn, _LOG_VIEW)}
    frontier = state.get(FRONTIER_KEY)
    checkpoint = state.get(CHECKPOINT_KEY)
    received = state.get(RECEIPT_KEY)
    return LogView(int(state.get(CURSOR_KEY, 0)),
                   merkle.Frontier.from_list((lv, bytes.fromhex(h)) for lv, h in json.loads(frontier))
                   if frontier is not None else None,
                   checkpoint.encode() if checkpoint is not None else None,
                   datetime.fromisoformat(received) if received is not None else None)


async def save_position(conn: AsyncConnection, cursor: int, frontier: merkle.Frontier | None,
                        received_at: datetime | None = None) -> None:
    """Move the cursor (and the frontier and the receipt time at it with it, when given), in the caller's
    transaction."""
    state = {CURSOR_KEY: str(cursor)}
    if frontier is not None:
        state[FRONTIER_KEY] = _frontier_json(frontier)
    if received_at is not None:
        state[RECEIPT_KEY] = utc(received_at).isoformat()
    await _set_states(conn, state)


class TrustStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def cursor(self) -> int:
        """The position of the last log entry applied (0: none yet)."""
        async with self.engine.connect() as conn:
            value = (await conn.execute(_CURSOR)).scalar_one_or_none()
        return int(value) if value is not None else 0

    async def log_view(self) -> LogView:
        """The cursor, the frontier and the last accepted checkpoint, read together."""
        async with self.engine.connect() as conn:
            return await read_view(conn)

    async def save_frontier(self, cursor: int, frontier: merkle.Frontier) -> None:
        """Keep a frontier rebuilt for ``cursor`` (a database from before 0002), unless the cursor moved."""
        async with self.engine.begin() as conn:
            current = (await conn.execute(_CURSOR)).scalar_one_or_none()
            if int(current or 0) == cursor:
                await _set_states(conn, {FRONTIER_KEY: _frontier_json(frontier)})

    async def logged_envelopes(self, upto: int, after: int = 0,
                               limit: int | None = None) -> list[tuple[int, bytes, datetime | None]]:
        """(position, bytes, the hub's receipt time or None) of every held or quarantined envelope at log positions
        after+1..upto, in order (at most ``limit``): the node's copy of the hub's log, which it serves back to a
        recovering hub with the receipt times the hub's log gave (PROTOCOL.md §11.1)."""
        held = sa.select(envelopes.c.position, envelopes.c.envelope, envelopes.c.logged_at).where(
            envelopes.c.position > after, envelopes.c.position <= upto)
        refused = sa.select(quarantine.c.position, quarantine.c.envelope, quarantine.c.logged_at).where(
            quarantine.c.position > after, quarantine.c.position <= upto)
        if limit is not None:
            held = held.order_by(envelopes.c.position).limit(limit)
            refused = refused.order_by(quarantine.c.position).limit(limit)
        rows: dict[int, tuple[bytes, datetime | None]] = {}
        async with self.engine.connect() as conn:  # a version conflict is both held and quarantined: once
            for q in (held, refused):
                for r in await conn.execute(q):
                    known = rows.get(int(r.position))
                    at = r.logged_at if r.logged_at is not None else (known[1] if known else None)
                    rows[int(r.position)] = (bytes(r.envelope), utc(at) if at is not None else None)
        return [(p, env, at) for p, (env, at) in sorted(rows.items())][:limit]

    async def accept_checkpoint(self, raw: bytes) -> None:
        """Keep ``raw`` (as received) as the last checkpoint this node verified."""
        async with self.engine.begin() as conn:
            await _set_states(conn, {CHECKPOINT_KEY: raw.decode()})

    async def add_evidence(self, row: EvidenceRow, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(checkpoint_evidence.insert().values(
                created_at=utc(now), reason=row.reason, detail=row.detail, accepted=row.accepted,
                offending=row.offending))

    async def resolve_evidence(self, through: int) -> None:
        """Evidence up to id ``through`` no longer halts (kept all the same): the hub recovered from a rollback."""
        async with self.engine.begin() as conn:
            await _set_states(conn, {RESOLVED_KEY: str(through)})

    async def evidence(self, limit: int = 100, *, resolved: bool = False) -> list[EvidenceRow]:
        """Evidence held, newest first: unresolved (any row means applying from the hub is halted), or with
        ``resolved`` every row kept."""
        q = sa.select(checkpoint_evidence).order_by(checkpoint_evidence.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            if not resolved:
                done = (await conn.execute(sa.select(sync_state.c.value).where(
                    sync_state.c.key == RESOLVED_KEY))).scalar_one_or_none()
                q = q.where(checkpoint_evidence.c.id > int(done or 0))
            return [EvidenceRow(r.reason, r.detail, r.accepted, r.offending, r.id, utc(r.created_at))
                    for r in await conn.execute(q)]
