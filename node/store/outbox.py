"""The outbox: own envelopes not yet acknowledged by the hub, with each push attempt and the hub's verdict.

An entry is queued in the transaction that keeps the envelope (:func:`enqueue`, called by
``NodeStore.author``); the hub's acknowledgement (:func:`accept_own`) comes with a push answer or with the
envelope seen again in the hub's log, in the transaction that applies that page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from federation.server.db import direct
from node.store.tables import envelopes, outbox, utc

PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    state: str
    position: int | None
    reason: str | None
    detail: str | None
    attempts: int
    envelope: bytes


# On the path of every pull that sees own envelopes: built once (ADR 15).
_POSITION_OWN = envelopes.update().where(
    envelopes.c.origin == sa.bindparam("b_origin"), envelopes.c.seq == sa.bindparam("b_seq")).values(
    position=sa.bindparam("b_position"))
_POSITION_OWN_LOGGED = envelopes.update().where(  # seen in the hub's log: with its receipt time (§8.3)
    envelopes.c.origin == sa.bindparam("b_origin"), envelopes.c.seq == sa.bindparam("b_seq")).values(
    position=sa.bindparam("b_position"), logged_at=sa.bindparam("b_logged_at"))
_ACCEPT_OWN = outbox.update().where(outbox.c.seq == sa.bindparam("b_seq")).values(
    state=ACCEPTED, position=sa.bindparam("b_position"), reason=None, detail=None)


async def enqueue(conn: AsyncConnection, seq: int) -> None:
    """Queue the own envelope ``seq`` for the hub (in the transaction that keeps it)."""
    await conn.execute(outbox.insert().values(seq=seq, state=PENDING, attempts=0))


async def accept_own(conn: AsyncConnection, member: str, positions: Sequence[tuple[int, int]],
                     logged_at: Mapping[int, datetime] | None = None) -> None:
    """The hub holds these own envelopes (seq, log position): durably accepted. ``logged_at`` (position -> the
    hub's receipt time) when they were seen in its log, kept to serve the log back as it was (§11.1)."""
    if positions:
        if logged_at:
            await direct.run(conn, _POSITION_OWN_LOGGED, [
                {"b_origin": member, "b_seq": seq, "b_position": position, "b_logged_at": utc(logged_at[position])
                 if position in logged_at else None} for seq, position in positions])
        else:
            await direct.run(conn, _POSITION_OWN, [{"b_origin": member, "b_seq": seq, "b_position": position}
                                               for seq, position in positions])
        await direct.run(conn, _ACCEPT_OWN, [{"b_seq": seq, "b_position": position} for seq, position in positions])


async def state_counts(conn: AsyncConnection) -> dict[str, int]:
    """How many entries are in each state."""
    return {s: int(n) for s, n in await conn.execute(
        sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state))}


class OutboxStore:
    def __init__(self, engine: AsyncEngine, member: str) -> None:
        self.engine = engine
        self.member = member  # the outbox holds only this origin's envelopes

    async def entries(self, state: str, limit: int) -> list[OutboxRow]:
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
        now = utc(now)
        async with self.engine.begin() as conn:
            if seqs:
                await conn.execute(outbox.update().where(outbox.c.seq.in_(list(seqs)))
                                   .values(attempts=outbox.c.attempts + 1, last_attempt_at=now))
            await accept_own(conn, self.member, accepted)
            if rejected is not None:
                seq, reason, detail = rejected
                await conn.execute(outbox.update().where(outbox.c.seq == seq)
                                   .values(state=REJECTED, reason=reason, detail=detail))

    async def requeue_after_rollback(self, size: int) -> int:
        """After the hub recovered from a rollback to ``size`` entries: own envelopes it acknowledged beyond that,
        and those it refused for a gap in the chain (its rewound log lacked their predecessors), are pushed
        again (re-sending is always safe: one already held is a ``duplicate``); how many."""
        async with self.engine.begin() as conn:
            lost = await conn.execute(outbox.update().where(outbox.c.state == ACCEPTED, outbox.c.position > size)
                                      .values(state=PENDING, position=None))
            gap = await conn.execute(outbox.update().where(outbox.c.state == REJECTED, outbox.c.reason == "chain-gap")
                                     .values(state=PENDING, reason=None, detail=None))
        return int(lost.rowcount) + int(gap.rowcount)

    async def retry_rejected(self) -> int:
        """Put rejected outbox entries back in the queue (an operator's decision); how many."""
        async with self.engine.begin() as conn:
            done = await conn.execute(outbox.update().where(outbox.c.state == REJECTED).values(state=PENDING))
        return int(done.rowcount)
