"""The delivery worker (node/webhooks/delivery.py) against a real receiving server on a loopback port
(tests/support/webhook_receiver.py), which verifies every delivery with the standardwebhooks library (v1) and the
node's public key (v1a) and deduplicates by webhook-id. Retries run on a compressed schedule."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from federation.protocol.registry import SignedRegistry
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import verify_envelope
from federation.protocol.webhooks import public_key_text
from federation.server.times import utcnow
from node.config import NodeConfig
from node.store.records import NodeStore
from node.webhooks.delivery import GuardedResolver, WebhookWorker
from node.webhooks.events import load_or_create_key
from node.webhooks.store import DELIVERED, DISABLED, FAILED
from tests.support.factories import Member
from tests.support.nodes import subscription
from tests.support.timing import WatchedEvent, eventually
from tests.support.webhook_receiver import Receiver


@pytest.fixture
def hooks(config: NodeConfig) -> NodeConfig:
    """A node that may call loopback receivers, with retries 50 ms apart."""
    return dataclasses.replace(config, webhook_allow_loopback=True, webhook_schedule="0,0.05,0.05,0.05",
                               webhook_jitter=0.0, webhook_timeout=2.0, webhook_poll_interval=0.05)


@pytest.fixture
async def receiver(config: NodeConfig) -> AsyncIterator[Receiver]:
    r = Receiver(public_key_text(load_or_create_key(config.webhook_key_path)))
    await r.start()
    yield r
    await r.stop()


@contextlib.asynccontextmanager
async def running(config: NodeConfig, store: NodeStore, *, loop: bool = False) -> AsyncIterator[WebhookWorker]:
    worker = WebhookWorker(config, store.webhooks, load_or_create_key(config.webhook_key_path), clock=utcnow)
    await worker.start(loop=loop)
    try:
        yield worker
    finally:
        await worker.stop()


async def until(worker: WebhookWorker, check: Callable[[], Any], within: float = 10.0) -> Any:
    """Drain the queue until ``check()`` holds (retries fall due meanwhile)."""
    async def step() -> Any:
        await worker.drain()
        return check()
    return await eventually(step, within)


async def subscribe(store: NodeStore, receiver: Receiver, **filters: Any) -> str:
    sub = subscription(url=receiver.url, **filters)
    receiver.secret = sub.secret
    await store.webhooks.add_subscription(sub)
    return sub.id


async def publish(store: NodeStore, qa: Member, body: dict[str, Any] | None, record_id: str, version: int = 1) -> None:
    await store.author(qa.publish(body, record_id=record_id, version=version), datetime.now(UTC))


@contextlib.asynccontextmanager
async def one_event(config: NodeConfig, store: NodeStore, receiver: Receiver, qa: Member,
                    event: dict[str, Any]) -> AsyncIterator[tuple[str, WebhookWorker]]:
    """``receiver`` subscribed, QA:one published and the worker running: the subscription's id and the worker."""
    sub_id = await subscribe(store, receiver)
    await publish(store, qa, event, "QA:one")
    async with running(config, store) as worker:
        yield sub_id, worker


class TestDelivery:
    async def test_a_signed_delivery_verifies_and_carries_a_verifiable_envelope(
            self, hooks: NodeConfig, store: NodeStore, receiver: Receiver, qa: Member, event: dict[str, Any],
            registry: SignedRegistry) -> None:
        """The receiver verifies v1 and v1a; the envelope in data verifies against the registry."""
        async with one_event(hooks, store, receiver, qa, event) as (sub_id, worker):
            await until(worker, lambda: receiver.received)
        [got] = receiver.received
        assert receiver.refused == [] and got.doc["type"] == "record.published"
        assert got.headers["Content-Type"] == "application/json"
        result = verify_envelope(json.dumps(got.doc["data"]["envelope"]).encode(),
                                 keys=registry.registry.member_keys().get, schemas=default_schemas(),
                                 now=datetime.now(UTC))
        assert result.ok and result.envelope is not None and result.envelope.payload.body == got.doc["data"]["body"]
        [d] = await store.webhooks.deliveries(subscription_id=sub_id)
        assert (d.id, d.state, d.attempts, d.last_status) == (got.id, DELIVERED, 1, 204)

    async def test_events_arrive_in_apply_order(self, hooks: NodeConfig, store: NodeStore, receiver: Receiver,
                                                qa: Member, event: dict[str, Any]) -> None:
        """Publish, postpone, cancel, delete: four events in order, versions 1 to 4."""
        await subscribe(store, receiver)
        await publish(store, qa, {**event, "status": "scheduled"}, "QA:one")
        await publish(store, qa, {**event, "status": "postponed"}, "QA:one", 2)
        await publish(store, qa, {**event, "status": "cancelled"}, "QA:one", 3)
        await publish(store, qa, None, "QA:one", 4)
        async with running(hooks, store) as worker:
            await until(worker, lambda: len(receiver.received) == 4)
        assert receiver.types() == ["record.published", "record.updated", "record.cancelled", "record.deleted"]
        assert [r.doc["data"]["version"] for r in receiver.received] == [1, 2, 3, 4]

    async def test_a_capacity_programme_subscription_gets_no_event_of_an_event(
            self, hooks: NodeConfig, store: NodeStore, receiver: Receiver, qa: Member, event: dict[str, Any]) -> None:
        """A subscription for kind=capacity-programme receives nothing for a cultural event."""
        other = Receiver(receiver.public_key)
        await other.start()
        try:
            await subscribe(store, other, kind="capacity-programme")
            async with one_event(hooks, store, receiver, qa, event) as (_, worker):
                await until(worker, lambda: receiver.received)
            assert other.attempts == []
        finally:
            await other.stop()

    async def test_retries_with_backoff_deliver_with_the_same_webhook_id(
            self, hooks: NodeConfig, store: NodeStore, receiver: Receiver, qa: Member, event: dict[str, Any]) -> None:
        """Two 500s, then 204: three attempts, one webhook-id, spaced by the schedule."""
        receiver.fail_next = 2
        async with one_event(hooks, store, receiver, qa, event) as (sub_id, worker):
            await until(worker, lambda: receiver.received)
        assert len(receiver.attempts) == 3 and len(set(receiver.attempts)) == 1
        assert receiver.received[0].id == receiver.attempts[0]
        [d] = await store.webhooks.deliveries(subscription_id=sub_id)
        assert [a.status for a in d.tried] == [500, 500, 204] and d.state == DELIVERED
        assert d.tried[0].error == "HTTP 500: receiver told to fail"
        assert (d.tried[1].at - d.tried[0].at).total_seconds() >= hooks.webhook_retry_schedule[1] * 0.9

    async def test_exhausted_schedule_fails_and_is_listed(
            self, hooks: NodeConfig, store: NodeStore, receiver: Receiver, qa: Member, event: dict[str, Any]) -> None:
        """A receiver that always fails gets one attempt per step, then the delivery is listed as failed."""
        receiver.fail_next = 100
        async with one_event(hooks, store, receiver, qa, event) as (sub_id, worker):
            await until(worker, lambda: len(receiver.attempts) == 4)
            await worker.drain()
        [d] = await store.webhooks.deliveries(subscription_id=sub_id, state=FAILED)
        assert d.attempts == len(hooks.webhook_retry_schedule) == 4
        counts = await store.webhooks.counts()
        assert counts["deliveries"] == {"pending": 0, "failed": 1}

    async def test_410_gone_disables_and_nothing_more_is_sent(
            self, hooks: NodeConfig, store: NodeStore, receiver: Receiver, qa: Member, event: dict[str, Any]) -> None:
        """After 410 the subscription is disabled and a later event is not sent."""
        receiver.gone = True
        async with one_event(hooks, store, receiver, qa, event) as (sub_id, worker):
            await until(worker, lambda: receiver.attempts)
            await publish(store, qa, event, "QA:two")
            await worker.drain()
        assert len(receiver.attempts) == 1
        sub = await store.webhooks.subscription(sub_id)
        assert sub is not None and sub.disabled is not None and (sub.state, sub.disabled.reason) == (DISABLED, "gone")
        assert "410" in sub.disabled.detail

    async def test_a_hanging_receiver_times_out_and_the_retry_is_deduplicated(
            self, hooks: NodeConfig, store: NodeStore, receiver: Receiver, qa: Member, event: dict[str, Any]) -> None:
        """The first attempt outlives the timeout (the receiver processes it anyway, later); the retry carries
        the same webhook-id, so the receiver recognises it."""
        receiver.hang = 0.6
        impatient = dataclasses.replace(hooks, webhook_timeout=0.2)
        async with one_event(impatient, store, receiver, qa, event) as (sub_id, worker):
            await until(worker, lambda: len(receiver.attempts) >= 1)
            receiver.hang = 0.0
            await until(worker, lambda: receiver.duplicates)
        [d] = await store.webhooks.deliveries(subscription_id=sub_id)
        assert d.tried[0].status is None and d.tried[0].error == "no answer within 0.2 s"
        assert d.state == DELIVERED and len(receiver.received) == 1

    async def test_redirects_are_failures(self, hooks: NodeConfig, store: NodeStore, receiver: Receiver, qa: Member,
                                          event: dict[str, Any]) -> None:
        """A 307 is a failed attempt (not followed: a redirect could lead anywhere); the retry succeeds."""
        receiver.fail_next, receiver.fail_status = 1, 307
        async with one_event(hooks, store, receiver, qa, event) as (sub_id, worker):
            await until(worker, lambda: receiver.received)
        [d] = await store.webhooks.deliveries(subscription_id=sub_id)
        assert [a.status for a in d.tried] == [307, 204]
        assert len(receiver.attempts) == 2  # the 307 was not followed within the first attempt

    async def test_retry_after_is_honoured(self, hooks: NodeConfig, store: NodeStore, receiver: Receiver, qa: Member,
                                           event: dict[str, Any]) -> None:
        """A Retry-After longer than the step pushes the retry back, capped at the schedule's longest step."""
        receiver.fail_next, receiver.fail_status = 2, 503
        slow = dataclasses.replace(hooks, webhook_schedule="0,1,20")  # steps of 1 s and 20 s, no jitter
        async with one_event(slow, store, receiver, qa, event) as (sub_id, worker):
            for retry_after, expected in (("10", 10.0), ("3600", 20.0)):
                receiver.retry_after = retry_after
                [row] = await store.webhooks.due_deliveries(sub_id, datetime.now(UTC) + timedelta(hours=1), 10)
                assert not await worker.deliver(row)
                [d] = await store.webhooks.deliveries(subscription_id=sub_id)
                assert d.next_attempt_at is not None and d.last_attempt_at is not None
                wait = (d.next_attempt_at - d.last_attempt_at).total_seconds()
                assert expected <= wait < expected + 1, retry_after

    async def test_worker_wakes_when_a_record_is_applied(self, hooks: NodeConfig, store: NodeStore,
                                                         receiver: Receiver, qa: Member, event: dict[str, Any]) -> None:
        """The running worker delivers at once, not at its next poll."""
        await subscribe(store, receiver)
        store.webhooks.queued = queued = WatchedEvent()
        async with running(dataclasses.replace(hooks, webhook_poll_interval=60), store, loop=True):
            await eventually(lambda: queued.waiters)  # the worker has looked once and waits for work
            await publish(store, qa, event, "QA:one")
            await eventually(lambda: receiver.received, within=3)

    async def test_stop_as_a_record_is_applied_returns(self, hooks: NodeConfig, store: NodeStore) -> None:
        """Stopping the worker in the same turn of the loop as it is woken still stops it (a full test run once
        hung here: asyncio.wait_for swallowed the cancellation; federation/server/aio.py)."""
        store.webhooks.queued = queued = WatchedEvent()
        worker = WebhookWorker(hooks, store.webhooks, load_or_create_key(hooks.webhook_key_path), clock=utcnow)
        await worker.start(loop=True)
        await eventually(lambda: queued.waiters)  # waiting for work
        queued.set()
        await asyncio.sleep(0)  # one turn of the loop: the worker is woken, not yet run
        await asyncio.wait_for(worker.stop(), 5)

    async def test_restart_resumes_pending_deliveries_from_the_database(
            self, hooks: NodeConfig, receiver: Receiver, qa: Member, event: dict[str, Any]) -> None:
        """A delivery that failed once, and one never tried, are both delivered by a new worker on a new store
        (a restarted node), with the webhook-ids they were queued with."""
        first = await NodeStore.open(hooks.db_url, "QA")
        try:
            receiver.fail_next = 1
            async with one_event(hooks, first, receiver, qa, event) as (_, worker):
                await until(worker, lambda: receiver.attempts)
            await publish(first, qa, event, "QA:two")
            queued = {d.id for d in await first.webhooks.deliveries()}
        finally:
            await first.close()
        second = await NodeStore.open(hooks.db_url, "QA")
        try:
            async with running(hooks, second, loop=True):
                await eventually(lambda: len(receiver.received) == 2, within=5)
        finally:
            await second.close()
        assert {r.id for r in receiver.received} == queued
        # A retry may come after a later event (documented): data.version orders versions of one record.
        assert sorted(r.doc["data"]["record_id"] for r in receiver.received) == ["QA:one", "QA:two"]


class TestWhereDeliveriesGo:
    async def test_dns_rebinding_to_loopback_refused_at_connect(
            self, hooks: NodeConfig, store: NodeStore, receiver: Receiver, qa: Member, event: dict[str, Any]) -> None:
        """A subscription that reaches loopback (by an IP literal or a name resolving there) is refused when
        connecting on a node that does not allow loopback."""
        strict = dataclasses.replace(hooks, webhook_allow_loopback=False)
        by_ip = await subscribe(store, receiver)
        named = subscription(url=receiver.url.replace("127.0.0.1", "localhost"))
        await store.webhooks.add_subscription(named)
        by_name = named.id
        await publish(store, qa, event, "QA:one")
        async with running(strict, store) as worker:
            await worker.drain()
        assert receiver.attempts == []
        [a] = await store.webhooks.deliveries(subscription_id=by_ip)
        [b] = await store.webhooks.deliveries(subscription_id=by_name)
        assert "127.0.0.1 is not a public address" in (a.last_error or "")
        assert "resolves to no public address" in (b.last_error or "")

    async def test_guarded_resolver(self) -> None:
        """The resolver drops loopback addresses unless allowed."""
        strict, lenient = GuardedResolver(allow_loopback=False), GuardedResolver(allow_loopback=True)
        try:
            with pytest.raises(OSError, match="no public address"):
                await strict.resolve("localhost", 80)
            assert {r["host"] for r in await lenient.resolve("localhost", 80)} <= {"127.0.0.1", "::1"}
        finally:
            await strict.close()
            await lenient.close()
