"""The webhook tables (migration 0005) and their queries: subscriptions, the delivery queue, attempts.

Part of the node's store (node/store/records.py opens it as ``NodeStore.webhooks``): deliveries are *added* by
the store itself, in the transaction that applies a record (:func:`add_event`, the outbox pattern: a
change the node acknowledged cannot lose its deliveries, and a crash cannot skip one); everything else
here is the worker's and the operator's. Every time is UTC.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from federation.protocol.webhooks import MESSAGE_PREFIX, new_id
from federation.server.db import direct
from node.webhooks.events import EventFilter

meta = sa.MetaData()
subscriptions = sa.Table(
    "webhook_subscriptions", meta,
    sa.Column("id", sa.String(40), primary_key=True), sa.Column("partner", sa.String(200)),
    sa.Column("url", sa.Text), sa.Column("filters", sa.Text), sa.Column("secret", sa.String(100)),
    sa.Column("state", sa.String(16)), sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("disabled_reason", sa.String(64)), sa.Column("disabled_detail", sa.Text),
    sa.Column("disabled_at", sa.DateTime(timezone=True)), sa.Column("failing_since", sa.DateTime(timezone=True)),
    sa.Column("last_success_at", sa.DateTime(timezone=True)), sa.Column("last_failure_at", sa.DateTime(timezone=True)),
)
events = sa.Table(
    "webhook_events", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True), sa.Column("type", sa.String(32)),
    sa.Column("record_id", sa.String(80)), sa.Column("origin", sa.String(2)), sa.Column("version", sa.BigInteger),
    sa.Column("created_at", sa.DateTime(timezone=True)), sa.Column("body", sa.LargeBinary),
)
deliveries = sa.Table(
    "webhook_deliveries", meta,
    sa.Column("id", sa.String(40), primary_key=True), sa.Column("subscription_id", sa.String(40)),
    sa.Column("event_id", sa.Integer), sa.Column("state", sa.String(16)), sa.Column("attempts", sa.Integer),
    sa.Column("created_at", sa.DateTime(timezone=True)), sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("last_attempt_at", sa.DateTime(timezone=True)), sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Column("last_status", sa.Integer), sa.Column("last_error", sa.Text),
)
attempts = sa.Table(
    "webhook_attempts", meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True), sa.Column("delivery_id", sa.String(40)),
    sa.Column("attempt", sa.Integer), sa.Column("at", sa.DateTime(timezone=True)), sa.Column("status", sa.Integer),
    sa.Column("error", sa.Text), sa.Column("duration_ms", sa.Integer),
)

ACTIVE, DISABLED = "active", "disabled"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
GONE, FAILING, OPERATOR = "gone", "failing", "operator"  # why a subscription was disabled


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _opt(when: datetime | None) -> datetime | None:
    return _utc(when) if when is not None else None


@dataclass(frozen=True, slots=True)
class Disabled:
    """Why and when a subscription was disabled (``GONE``, ``FAILING`` or ``OPERATOR``)."""

    reason: str
    detail: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    partner: str
    url: str
    filters: EventFilter
    secret: str
    state: str
    created_at: datetime
    disabled: Disabled | None = None  # set while the state is ``DISABLED``
    failing_since: datetime | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None

    @classmethod
    def from_row(cls, r: Any) -> Subscription:
        disabled = (Disabled(r.disabled_reason, r.disabled_detail, _utc(r.disabled_at))
                    if r.disabled_reason is not None else None)
        return cls(r.id, r.partner, r.url, EventFilter.from_dict(json.loads(r.filters)), r.secret, r.state,
                   _utc(r.created_at), disabled, _opt(r.failing_since), _opt(r.last_success_at),
                   _opt(r.last_failure_at))


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """One delivery to attempt now, with what the attempt needs."""

    id: str
    subscription_id: str
    event_id: int
    attempts: int  # made so far
    url: str
    secret: str | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt: int
    at: datetime
    status: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery as the operator and the partner see it, its attempts oldest first."""

    id: str
    subscription_id: str
    event_id: int
    type: str
    record_id: str
    version: int
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None
    tried: tuple[Attempt, ...] = ()


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt did: ``status`` None when no answer came (timeout, connection refused)."""

    at: datetime
    status: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


_ACTIVE = sa.select(subscriptions).where(subscriptions.c.state == ACTIVE).order_by(subscriptions.c.id)


async def active_subscriptions(conn: AsyncConnection) -> list[Subscription]:
    """Read for every applied page (a statement built once: ADR 15)."""
    return [Subscription.from_row(r) for r in await direct.rows(conn, _ACTIVE)]


async def add_event(conn: AsyncConnection, type_: str, *, record_id: str, origin: str, version: int, body: bytes,
                    subs: Sequence[Subscription], now: datetime) -> int:
    """Queue one event for ``subs`` (in the caller's transaction): the event with its body, one pending
    delivery per subscription, due now. The number of deliveries."""
    done = await conn.execute(events.insert().values(type=type_, record_id=record_id, origin=origin, version=version,
                                                     created_at=now, body=body))
    event_id = done.inserted_primary_key[0] if done.inserted_primary_key is not None else None
    await conn.execute(deliveries.insert(), [
        {"id": new_id(MESSAGE_PREFIX, now), "subscription_id": s.id, "event_id": event_id, "state": PENDING,
         "attempts": 0, "created_at": now, "next_attempt_at": now} for s in subs])
    return len(subs)


async def disable_partner(conn: AsyncConnection, partner: str, detail: str, now: datetime) -> int:
    """Disable every active subscription of ``partner`` (``operator``), in the caller's transaction."""
    done = await conn.execute(subscriptions.update().where(
        subscriptions.c.partner == partner, subscriptions.c.state == ACTIVE).values(
        state=DISABLED, disabled_reason=OPERATOR, disabled_detail=detail, disabled_at=now))
    return int(done.rowcount)


class WebhookStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.queued = asyncio.Event()  # set when deliveries were added or made due by this process

    # -- subscriptions -------------------------------------------------------------------------------------

    async def add_subscription(self, sub: Subscription) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(subscriptions.insert().values(
                id=sub.id, partner=sub.partner, url=sub.url, filters=json.dumps(sub.filters.to_dict()),
                secret=sub.secret, state=sub.state, created_at=_utc(sub.created_at)))

    async def subscriptions(self, partner: str | None = None) -> list[Subscription]:
        q = sa.select(subscriptions).order_by(subscriptions.c.id)
        if partner is not None:
            q = q.where(subscriptions.c.partner == partner)
        async with self.engine.connect() as conn:
            return [Subscription.from_row(r) for r in await conn.execute(q)]

    async def subscription(self, sub_id: str) -> Subscription | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(subscriptions).where(subscriptions.c.id == sub_id))).first()
        return Subscription.from_row(row) if row is not None else None

    async def remove_subscription(self, sub_id: str) -> bool:
        """Remove a subscription with its deliveries and their attempts; False if there was none."""
        async with self.engine.begin() as conn:
            ids = sa.select(deliveries.c.id).where(deliveries.c.subscription_id == sub_id)
            await conn.execute(attempts.delete().where(attempts.c.delivery_id.in_(ids)))
            await conn.execute(deliveries.delete().where(deliveries.c.subscription_id == sub_id))
            done = await conn.execute(subscriptions.delete().where(subscriptions.c.id == sub_id))
        return bool(done.rowcount)

    async def disable(self, sub_id: str, reason: str, detail: str, now: datetime) -> bool:
        async with self.engine.begin() as conn:
            return await self._disable(conn, sub_id, reason, detail, _utc(now))

    @staticmethod
    async def _disable(conn: AsyncConnection, sub_id: str, reason: str, detail: str, now: datetime) -> bool:
        done = await conn.execute(subscriptions.update().where(
            subscriptions.c.id == sub_id, subscriptions.c.state == ACTIVE).values(
            state=DISABLED, disabled_reason=reason, disabled_detail=detail, disabled_at=now))
        return bool(done.rowcount)

    async def enable(self, sub_id: str) -> bool:
        """Deliver to a disabled subscription again: its pending deliveries are due at once, its failure
        streak starts afresh. False if there is no such subscription."""
        async with self.engine.begin() as conn:
            done = await conn.execute(subscriptions.update().where(subscriptions.c.id == sub_id).values(
                state=ACTIVE, disabled_reason=None, disabled_detail=None, disabled_at=None, failing_since=None))
        self.queued.set()
        return bool(done.rowcount)

    async def retry_failed(self, sub_id: str, now: datetime) -> int:
        """Queue a subscription's failed deliveries again with a fresh schedule (same ``webhook-id``)."""
        async with self.engine.begin() as conn:
            done = await conn.execute(deliveries.update().where(
                deliveries.c.subscription_id == sub_id, deliveries.c.state == FAILED).values(
                state=PENDING, attempts=0, next_attempt_at=_utc(now)))
        self.queued.set()
        return int(done.rowcount)

    # -- the worker's queue --------------------------------------------------------------------------------

    def _due(self, now: datetime) -> Any:
        return sa.and_(deliveries.c.state == PENDING, deliveries.c.next_attempt_at <= _utc(now),
                       subscriptions.c.state == ACTIVE)

    async def due_subscriptions(self, now: datetime, *, exclude: Collection[str] = (), limit: int) -> list[str]:
        """Active subscriptions with a delivery due, but those in ``exclude`` (being served)."""
        q = (sa.select(deliveries.c.subscription_id).distinct()
             .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
             .where(self._due(now)).limit(limit))
        if exclude:
            q = q.where(deliveries.c.subscription_id.not_in(list(exclude)))
        async with self.engine.connect() as conn:
            return [r.subscription_id for r in await conn.execute(q)]

    async def next_due_at(self, *, exclude: Collection[str] = ()) -> datetime | None:
        """When the next pending delivery of an active subscription (not in ``exclude``) is due."""
        q = (sa.select(sa.func.min(deliveries.c.next_attempt_at))
             .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
             .where(deliveries.c.state == PENDING, subscriptions.c.state == ACTIVE))
        if exclude:
            q = q.where(deliveries.c.subscription_id.not_in(list(exclude)))
        async with self.engine.connect() as conn:
            when = (await conn.execute(q)).scalar_one_or_none()
        return _opt(when)

    async def due_deliveries(self, sub_id: str, now: datetime, limit: int) -> list[DueDelivery]:
        """A subscription's due deliveries, oldest event first (the order the node applied them)."""
        q = (sa.select(deliveries.c.id, deliveries.c.subscription_id, deliveries.c.event_id, deliveries.c.attempts,
                       subscriptions.c.url, subscriptions.c.secret, events.c.body)
             .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
             .join(events, events.c.id == deliveries.c.event_id)
             .where(deliveries.c.subscription_id == sub_id, self._due(now))
             .order_by(deliveries.c.event_id).limit(limit))
        async with self.engine.connect() as conn:
            return [DueDelivery(r.id, r.subscription_id, r.event_id, r.attempts, r.url, r.secret or None, r.body)
                    for r in await conn.execute(q)]

    async def record_attempt(self, delivery: DueDelivery, result: AttemptResult, *, next_attempt_at: datetime | None,
                             disable_after: timedelta) -> str | None:
        """Keep one attempt's result and move the delivery on: delivered (2xx); failed (410 Gone, or no
        retry left: ``next_attempt_at`` None); else due again at ``next_attempt_at``. A 410 disables the
        subscription (``gone``), and so does failing without a success for ``disable_after``
        (``failing``). The reason, if this attempt disabled the subscription."""
        at = _utc(result.at)
        n = delivery.attempts + 1
        gone = result.status == 410
        values: dict[str, Any] = {"attempts": n, "last_attempt_at": at, "last_status": result.status,
                                  "last_error": result.error}
        if result.delivered:
            values.update(state=DELIVERED, delivered_at=at, next_attempt_at=None)
        elif gone or next_attempt_at is None:
            values.update(state=FAILED, next_attempt_at=None)
        else:
            values.update(next_attempt_at=_utc(next_attempt_at))
        async with self.engine.begin() as conn:
            done = await conn.execute(deliveries.update().where(deliveries.c.id == delivery.id,
                                                                deliveries.c.state == PENDING).values(values))
            if not done.rowcount:  # removed with its subscription (or requeued) meanwhile: nothing to keep
                return None
            await conn.execute(attempts.insert().values(delivery_id=delivery.id, attempt=n, at=at, status=result.status,
                                                        error=result.error, duration_ms=result.duration_ms))
            sub = subscriptions.c
            if result.delivered:
                await conn.execute(subscriptions.update().where(sub.id == delivery.subscription_id)
                                   .values(failing_since=None, last_success_at=at))
                return None
            await conn.execute(subscriptions.update().where(sub.id == delivery.subscription_id).values(
                failing_since=sa.func.coalesce(sub.failing_since, at), last_failure_at=at))
            if gone:
                detail = f"the receiver answered 410 Gone to delivery {delivery.id}"
                return GONE if await self._disable(conn, delivery.subscription_id, GONE, detail, at) else None
            since = (await conn.execute(sa.select(sub.failing_since).where(
                sub.id == delivery.subscription_id))).scalar_one_or_none()
            if since is not None and at - _utc(since) >= disable_after:
                detail = f"every attempt failed since {_utc(since).isoformat()} (last: {result.error})"
                return FAILING if await self._disable(conn, delivery.subscription_id, FAILING, detail, at) else None
        return None

    async def prune(self, before: datetime) -> int:
        """Forget delivered and failed deliveries last touched before ``before`` (and events no delivery
        needs any more); pending ones are kept whatever their age. How many deliveries."""
        old = sa.and_(deliveries.c.state.in_([DELIVERED, FAILED]),
                      sa.func.coalesce(deliveries.c.last_attempt_at, deliveries.c.created_at) < _utc(before))
        async with self.engine.begin() as conn:
            await conn.execute(attempts.delete().where(attempts.c.delivery_id.in_(
                sa.select(deliveries.c.id).where(old))))
            done = await conn.execute(deliveries.delete().where(old))
            await conn.execute(events.delete().where(~sa.exists().where(deliveries.c.event_id == events.c.id)))
        return int(done.rowcount)

    # -- reading -------------------------------------------------------------------------------------------

    async def deliveries(self, *, subscription_id: str | None = None, partner: str | None = None,
                         state: str | None = None, limit: int = 50) -> list[Delivery]:
        """Deliveries, newest event first, each with its attempts."""
        q = (sa.select(deliveries, events.c.type, events.c.record_id, events.c.version)
             .join(events, events.c.id == deliveries.c.event_id)
             .order_by(deliveries.c.event_id.desc(), deliveries.c.id).limit(limit))
        if subscription_id is not None:
            q = q.where(deliveries.c.subscription_id == subscription_id)
        if partner is not None:
            q = q.where(deliveries.c.subscription_id.in_(
                sa.select(subscriptions.c.id).where(subscriptions.c.partner == partner)))
        if state is not None:
            q = q.where(deliveries.c.state == state)
        async with self.engine.connect() as conn:
            rows = list(await conn.execute(q))
            tried: dict[str, list[Attempt]] = {}
            if rows:
                aq = (sa.select(attempts).where(attempts.c.delivery_id.in_([r.id for r in rows]))
                      .order_by(attempts.c.delivery_id, attempts.c.id))
                for a in await conn.execute(aq):
                    tried.setdefault(a.delivery_id, []).append(
                        Attempt(a.attempt, _utc(a.at), a.status, a.error, a.duration_ms))
        return [Delivery(r.id, r.subscription_id, r.event_id, r.type, r.record_id, r.version, r.state, r.attempts,
                         _utc(r.created_at), _opt(r.next_attempt_at), _opt(r.last_attempt_at), _opt(r.delivered_at),
                         r.last_status, r.last_error, tuple(tried.get(r.id, ()))) for r in rows]

    async def counts(self) -> dict[str, dict[str, int]]:
        """Subscriptions by state, pending and failed deliveries: what the status page shows."""
        async with self.engine.connect() as conn:
            subs = {s: int(n) for s, n in await conn.execute(
                sa.select(subscriptions.c.state, sa.func.count()).group_by(subscriptions.c.state))}
            queue = {s: int(n) for s, n in await conn.execute(
                sa.select(deliveries.c.state, sa.func.count()).where(deliveries.c.state.in_([PENDING, FAILED]))
                .group_by(deliveries.c.state))}
        return {"subscriptions": {ACTIVE: subs.get(ACTIVE, 0), DISABLED: subs.get(DISABLED, 0)},
                "deliveries": {PENDING: queue.get(PENDING, 0), FAILED: queue.get(FAILED, 0)}}
