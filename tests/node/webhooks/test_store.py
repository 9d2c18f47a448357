"""The webhook queue (node/webhooks/store.py, migration 0005), on SQLite and PostgreSQL: deliveries queued in
the transaction that applies a record, filters, the worker's due queries, attempts and their outcomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from federation.cli.main import main
from federation.server.db import engine as db
from node.config import NodeConfig
from node.store.records import MIGRATIONS, VERSION_TABLE, Changes, NodeStore
from node.webhooks.store import DELIVERED, DISABLED, FAILED, AttemptResult, DueDelivery, Subscription
from tests.support.factories import Member
from tests.support.nodes import subscription

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


async def due(store: NodeStore, sub: Subscription, at: datetime = NOW) -> list[DueDelivery]:
    return await store.webhooks.due_deliveries(sub.id, at, 100)


def types_of(rows: list[DueDelivery]) -> list[str]:
    return [json.loads(r.body)["type"] for r in rows]


class TestQueueing:
    async def test_authoring_queues_an_event_in_the_same_transaction(self, store: NodeStore, qa: Member,
                                                                     event: dict[str, Any]) -> None:
        """Publishing queues record.published with the record API's item (envelope included), due now."""
        sub = subscription()
        await store.webhooks.add_subscription(sub)
        env = qa.publish(event, record_id="QA:one")
        await store.author(env, NOW)
        [row] = await due(store, sub)
        doc = json.loads(row.body)
        assert doc["type"] == "record.published" and doc["timestamp"] == "2026-12-01T09:00:00.000Z"
        item = (await store.get_record("QA:one"))
        assert item is not None and doc["data"] == item.item()  # the record API's item, envelope included
        assert doc["data"]["envelope"] == env.to_dict()
        assert row.id.startswith("msg_") and row.secret == sub.secret and row.url == sub.url and row.attempts == 0
        assert store.webhooks.queued.is_set()

    async def test_queued_bodies_verify_offline(self, store: NodeStore, config: NodeConfig, qa: Member,
                                                event: dict[str, Any], tmp_path: Path) -> None:
        """``ipdn verify`` reads saved webhook bodies (JSON Lines) and checks each envelope; a forged one fails."""
        sub = subscription()
        await store.webhooks.add_subscription(sub)
        await store.author(qa.publish(event, record_id="QA:one"), NOW)
        await store.author(qa.publish(None, record_id="QA:one", version=2), NOW)
        bodies = [r.body for r in await due(store, sub)]
        saved = tmp_path / "hooks.jsonl"
        saved.write_bytes(b"\n".join(bodies) + b"\n")
        assert main(["verify", "--registry", str(config.registry_path), str(saved)]) == 0
        forged = json.loads(bodies[0])
        forged["data"]["envelope"]["signature"] = forged["data"]["envelope"]["signature"][::-1]
        saved.write_text(json.dumps(forged))
        assert main(["verify", "--registry", str(config.registry_path), str(saved)]) == 1

    async def test_nothing_is_queued_without_subscriptions(self, store: NodeStore, qa: Member,
                                                           event: dict[str, Any]) -> None:
        """Without subscriptions no event row is written."""
        await store.author(qa.publish(event, record_id="QA:one"), NOW)
        counts = await store.webhooks.counts()
        assert counts["deliveries"] == {"pending": 0, "failed": 0}
        async with store.engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM webhook_events"))).scalar_one() == 0

    async def test_a_failed_apply_queues_nothing(self, store: NodeStore, qa: Member, event: dict[str, Any]) -> None:
        """The outbox pattern: the same envelope twice breaks the transaction, and its event goes with it."""
        sub = subscription()
        await store.webhooks.add_subscription(sub)
        env = qa.publish(event, record_id="QA:one")
        await store.author(env, NOW)
        with pytest.raises(sa.exc.IntegrityError):
            await store.author(env, NOW)
        assert len(await due(store, sub)) == 1

    async def test_each_version_applied_from_the_hub_is_an_event_in_order(self, store: NodeStore, kr: Member,
                                                                          event: dict[str, Any]) -> None:
        """v1, v2 (cancelled) and a tombstone in one page: three events, in apply order, each compared with
        the version before it, although only the tombstone is stored as the record."""
        sub = subscription()
        await store.webhooks.add_subscription(sub)
        v1 = kr.publish({**event, "status": "scheduled"}, record_id="KR:a")
        v2 = kr.publish({**event, "status": "cancelled"}, record_id="KR:a", version=2)
        v3 = kr.publish(None, record_id="KR:a", version=3)
        envs = [v1, v2, v3]
        await store.apply(Changes(cursor=3, envelopes=[(e, i + 1) for i, e in enumerate(envs)], records={"KR:a": v3},
                                  events=envs), NOW)
        rows = await due(store, sub)
        assert types_of(rows) == ["record.published", "record.cancelled", "record.deleted"]
        assert [json.loads(r.body)["data"]["version"] for r in rows] == [1, 2, 3]
        assert json.loads(rows[2].body)["data"]["body"] is None

    async def test_filters_choose_the_subscriptions(self, store: NodeStore, qa: Member, kr: Member,
                                                    event: dict[str, Any]) -> None:
        """Each subscription gets only the events its filters want."""
        everything = subscription("a")
        programmes = subscription("b", kind="capacity-programme")
        from_kr = subscription("c", origin="KR")
        cancellations = subscription("d", types=["record.cancelled"])
        for s in (everything, programmes, from_kr, cancellations):
            await store.webhooks.add_subscription(s)
        await store.author(qa.publish(event, record_id="QA:one"), NOW)
        env = kr.publish(event, record_id="KR:x")
        await store.apply(Changes(cursor=1, envelopes=[(env, 1)], records={"KR:x": env}, events=[env]), NOW)
        assert len(await due(store, everything)) == 2
        assert await due(store, programmes) == []
        assert [json.loads(r.body)["data"]["record_id"] for r in await due(store, from_kr)] == ["KR:x"]
        assert await due(store, cancellations) == []

    async def test_disabled_subscriptions_get_nothing_new(self, store: NodeStore, qa: Member,
                                                          event: dict[str, Any]) -> None:
        """A disabled subscription queues nothing; re-enabled, it does not get what happened meanwhile."""
        sub = subscription()
        await store.webhooks.add_subscription(sub)
        assert await store.webhooks.disable(sub.id, "operator", "paused", NOW)
        await store.author(qa.publish(event, record_id="QA:one"), NOW)
        assert await due(store, sub) == []
        assert await store.webhooks.enable(sub.id)
        assert await due(store, sub) == []  # the event happened while it was disabled


class TestAttempts:
    async def queued(self, store: NodeStore, qa: Member, event: dict[str, Any], n: int = 1) -> tuple[Subscription,
                                                                                                     list[DueDelivery]]:
        sub = subscription()
        await store.webhooks.add_subscription(sub)
        for i in range(n):
            await store.author(qa.publish(event, record_id=f"QA:{i}"), NOW)
        return sub, await due(store, sub)

    async def test_delivered_on_2xx(self, store: NodeStore, qa: Member, event: dict[str, Any]) -> None:
        """A 2xx answer delivers: attempt kept, nothing due any more, failure streak cleared."""
        sub, [row] = await self.queued(store, qa, event)
        assert await store.webhooks.record_attempt(row, AttemptResult(NOW, 204, None, 12), next_attempt_at=None,
                                                   disable_after=WEEK) is None
        [d] = await store.webhooks.deliveries(subscription_id=sub.id)
        assert (d.state, d.attempts, d.last_status, d.delivered_at) == (DELIVERED, 1, 204, NOW)
        assert [(a.attempt, a.status, a.duration_ms) for a in d.tried] == [(1, 204, 12)]
        assert await due(store, sub, NOW + WEEK) == []
        got = await store.webhooks.subscription(sub.id)
        assert got is not None and got.last_success_at == NOW and got.failing_since is None

    async def test_failure_schedules_a_retry_then_fails_for_good(self, store: NodeStore, qa: Member,
                                                                 event: dict[str, Any]) -> None:
        """A failure is due again later with the same id; the last failure fails it; retry_failed queues it afresh."""
        sub, [row] = await self.queued(store, qa, event)
        later = NOW + timedelta(seconds=5)
        await store.webhooks.record_attempt(row, AttemptResult(NOW, 503, "HTTP 503", 3), next_attempt_at=later,
                                            disable_after=WEEK)
        assert await due(store, sub, NOW) == []
        [again] = await due(store, sub, later)
        assert (again.id, again.attempts) == (row.id, 1)  # the same webhook-id
        assert await store.webhooks.next_due_at() == later
        await store.webhooks.record_attempt(again, AttemptResult(later, None, "timeout", 15000), next_attempt_at=None,
                                            disable_after=WEEK)
        [d] = await store.webhooks.deliveries(subscription_id=sub.id, state=FAILED)
        assert (d.attempts, d.last_status, d.last_error) == (2, None, "timeout")
        assert [a.error for a in d.tried] == ["HTTP 503", "timeout"]
        assert (await store.webhooks.counts())["deliveries"] == {"pending": 0, "failed": 1}
        got = await store.webhooks.subscription(sub.id)
        assert got is not None and got.failing_since == NOW and got.state == "active"
        assert await store.webhooks.retry_failed(sub.id, later) == 1
        [requeued] = await due(store, sub, later)
        assert (requeued.id, requeued.attempts) == (row.id, 0)

    async def test_410_gone_disables_the_subscription(self, store: NodeStore, qa: Member,
                                                      event: dict[str, Any]) -> None:
        """410 Gone fails the delivery and disables the subscription; what was queued waits for enabling."""
        sub, [first, second] = await self.queued(store, qa, event, 2)
        assert await store.webhooks.record_attempt(first, AttemptResult(NOW, 410, "HTTP 410", 2),
                                                   next_attempt_at=None, disable_after=WEEK) == "gone"
        got = await store.webhooks.subscription(sub.id)
        assert got is not None and got.disabled is not None
        assert (got.state, got.disabled.reason, got.disabled.at) == (DISABLED, "gone", NOW)
        assert await store.webhooks.due_subscriptions(NOW, limit=10) == []
        assert await store.webhooks.next_due_at() is None
        counts = await store.webhooks.counts()
        assert counts["subscriptions"] == {"active": 0, "disabled": 1}
        assert counts["deliveries"] == {"pending": 1, "failed": 1}  # the second waits for re-enabling
        await store.webhooks.enable(sub.id)
        assert [r.id for r in await due(store, sub)] == [second.id]

    async def test_failing_for_days_disables_the_subscription(self, store: NodeStore, qa: Member,
                                                              event: dict[str, Any]) -> None:
        """Failures without a success for disable_after disable the subscription (circuit breaker)."""
        sub, [row] = await self.queued(store, qa, event)
        await store.webhooks.record_attempt(row, AttemptResult(NOW, 500, "HTTP 500", 1),
                                            next_attempt_at=NOW + timedelta(days=3), disable_after=WEEK)
        [row] = await due(store, sub, NOW + timedelta(days=3))
        assert await store.webhooks.record_attempt(row, AttemptResult(NOW + timedelta(days=3), 500, "HTTP 500", 1),
                                                   next_attempt_at=NOW + WEEK, disable_after=WEEK) is None
        [row] = await due(store, sub, NOW + WEEK)
        assert await store.webhooks.record_attempt(row, AttemptResult(NOW + WEEK, 500, "HTTP 500", 1),
                                                   next_attempt_at=NOW + 2 * WEEK, disable_after=WEEK) == "failing"
        got = await store.webhooks.subscription(sub.id)
        assert got is not None and got.state == DISABLED and got.disabled is not None
        assert "HTTP 500" in got.disabled.detail

    async def test_a_success_ends_the_failure_streak(self, store: NodeStore, qa: Member,
                                                     event: dict[str, Any]) -> None:
        """One success resets the failure streak."""
        sub, [a, b] = await self.queued(store, qa, event, 2)
        await store.webhooks.record_attempt(a, AttemptResult(NOW, 500, "x", 1), next_attempt_at=NOW + WEEK,
                                            disable_after=WEEK)
        await store.webhooks.record_attempt(b, AttemptResult(NOW, 200, None, 1), next_attempt_at=None,
                                            disable_after=WEEK)
        got = await store.webhooks.subscription(sub.id)
        assert got is not None and got.failing_since is None

    async def test_due_queries_serve_oldest_first_and_skip_busy_lanes(self, store: NodeStore, qa: Member,
                                                                      event: dict[str, Any]) -> None:
        """Due deliveries come in apply order; a subscription being served is skipped."""
        sub, rows = await self.queued(store, qa, event, 3)
        assert [json.loads(r.body)["data"]["record_id"] for r in rows] == ["QA:0", "QA:1", "QA:2"]
        assert await store.webhooks.due_subscriptions(NOW, limit=10) == [sub.id]
        assert await store.webhooks.due_subscriptions(NOW, exclude=[sub.id], limit=10) == []
        assert await store.webhooks.due_subscriptions(NOW - timedelta(seconds=1), limit=10) == []

    async def test_remove_and_prune(self, store: NodeStore, qa: Member, event: dict[str, Any]) -> None:
        """Pruning keeps pending deliveries; removing a subscription removes its deliveries; orphan events go."""
        sub, [a, b] = await self.queued(store, qa, event, 2)
        await store.webhooks.record_attempt(a, AttemptResult(NOW, 200, None, 1), next_attempt_at=None,
                                            disable_after=WEEK)
        assert await store.webhooks.prune(NOW + timedelta(days=31)) == 1  # the pending one is kept
        assert [d.id for d in await store.webhooks.deliveries(subscription_id=sub.id)] == [b.id]
        assert await store.webhooks.remove_subscription(sub.id)
        assert not await store.webhooks.remove_subscription(sub.id)
        assert await store.webhooks.deliveries() == []
        await store.webhooks.prune(NOW)
        async with store.engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM webhook_events"))).scalar_one() == 0

    async def test_listing_by_partner_newest_first(self, store: NodeStore, qa: Member,
                                                   event: dict[str, Any]) -> None:
        """Listings are per partner, newest event first."""
        mine, other = subscription("museum"), subscription("library")
        await store.webhooks.add_subscription(mine)
        await store.webhooks.add_subscription(other)
        for i in range(2):
            await store.author(qa.publish(event, record_id=f"QA:{i}"), NOW)
        assert [s.id for s in await store.webhooks.subscriptions("museum")] == [mine.id]
        rows = await store.webhooks.deliveries(partner="museum")
        assert [(d.subscription_id, d.record_id) for d in rows] == [(mine.id, "QA:1"), (mine.id, "QA:0")]


@pytest.mark.empty_db
async def test_upgrade_from_0004(config: NodeConfig, qa: Member, event: dict[str, Any]) -> None:
    """A node database at revision 0004 (before webhooks) upgrades past 0005 when opened and queues events."""
    engine = db.make_engine(config.db_url)
    await db.migrate(engine, MIGRATIONS, VERSION_TABLE, "0004")
    await engine.dispose()
    store = await NodeStore.open(config.db_url, "QA")
    try:
        assert int(await db.current_revision(store.engine, MIGRATIONS, VERSION_TABLE) or 0) >= 5
        sub = subscription()
        await store.webhooks.add_subscription(sub)
        await store.author(qa.publish(event, record_id="QA:one"), NOW)
        assert len(await due(store, sub)) == 1
    finally:
        await store.close()


class TestPartnersAndRaces:
    async def test_revoking_a_partners_last_key_disables_its_subscriptions(self, store: NodeStore) -> None:
        """No live key left: the partner's subscriptions are disabled (operator), others untouched."""
        from node.partners.access import new_key, parse_scopes

        rows = [new_key("museum", parse_scopes("webhooks"), None, NOW)[1] for _ in range(2)]
        for row in rows:
            await store.partners.add(row)
        mine, other = subscription("museum"), subscription("library")
        await store.webhooks.add_subscription(mine)
        await store.webhooks.add_subscription(other)
        await store.partners.revoke("museum", NOW, rows[0].key_id)
        assert {s.state for s in await store.webhooks.subscriptions()} == {"active"}  # one key is still live
        await store.partners.revoke("museum", NOW)
        got = await store.webhooks.subscription(mine.id)
        assert got is not None and got.disabled is not None
        assert (got.state, got.disabled.reason) == (DISABLED, "operator")
        assert "revoked" in got.disabled.detail
        untouched = await store.webhooks.subscription(other.id)
        assert untouched is not None and untouched.state == "active"

    async def test_an_attempt_on_a_removed_subscription_is_dropped(self, store: NodeStore, qa: Member,
                                                                   event: dict[str, Any]) -> None:
        """The subscription was removed while its delivery was in flight: nothing to record, no error."""
        sub = subscription()
        await store.webhooks.add_subscription(sub)
        await store.author(qa.publish(event, record_id="QA:one"), NOW)
        [row] = await due(store, sub)
        await store.webhooks.remove_subscription(sub.id)
        assert await store.webhooks.record_attempt(row, AttemptResult(NOW, 500, "x", 1), next_attempt_at=None,
                                                   disable_after=WEEK) is None
        assert await store.webhooks.deliveries() == []
