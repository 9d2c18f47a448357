"""The hub's ingest and log service (federation/hub/ingest/service.py) without HTTP: group-committed appends,
duplicates and refusals, the checkpoint after each commit, pulls and long-polls, a restart over the same store,
and verification in worker processes. On SQLite, then PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from federation.hub.ingest.service import PARALLEL_MIN, HubService
from federation.hub.store.log import HubStore
from federation.protocol import merkle
from federation.protocol.envelope import Envelope
from federation.protocol.keys import SigningKey
from federation.protocol.registry import SignedRegistry, genesis
from federation.protocol.verify import Failure
from tests.support.factories import Member, example_bodies
from tests.support.timing import FakeClock, WatchedEvent, eventually

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def members() -> dict[str, Member]:
    return {c: Member(c) for c in ("QA", "KR")}


@pytest.fixture
def hub_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def registry(hub_key: SigningKey, members: dict[str, Member]) -> SignedRegistry:
    return genesis(hub_key=hub_key, hub_url="http://hub.test", now=T0 - timedelta(days=1),
                   founders=[(m.public, {"en": c}) for c, m in members.items()])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[HubStore]:
    s = await HubStore.open(db_url)
    yield s
    await s.close()


@pytest.fixture
async def service(store: HubStore, registry: SignedRegistry, hub_key: SigningKey,
                  clock: FakeClock) -> AsyncIterator[HubService]:
    s = HubService(store, registry, hub_key, clock=clock)
    await s.start()
    yield s
    await s.stop()


def publish(m: Member, n: int = 1, **kw: Any) -> list[Envelope]:
    return [m.publish(example_bodies("cultural-event")[0], issued=T0, **kw) for _ in range(n)]


def wire(envs: list[Envelope]) -> list[Any]:
    return [e.to_dict() for e in envs]


def statuses(outcomes: list[Any]) -> list[tuple[str, int | None]]:
    return [(o.status, o.position) for o in outcomes]


class TestAppend:
    async def test_accepted_in_order_with_positions(self, service: HubService, members: dict[str, Member]) -> None:
        """A batch is appended in order; each envelope answered with its position, once durable."""
        envs = publish(members["QA"], 3)
        outcomes = await service.ingest("QA", wire(envs))
        assert statuses(outcomes) == [("accepted", 1), ("accepted", 2), ("accepted", 3)]
        assert [o.hash for o in outcomes] == [e.hash for e in envs]
        assert service.size == 3 and service.heads["QA"].seq == 3 and service.heads["QA"].hash == envs[-1].hash
        assert [e.position for e in await service.store.read_log(0, 10)] == [1, 2, 3]

    async def test_resent_batch_is_duplicate_at_its_positions(self, service: HubService,
                                                              members: dict[str, Member]) -> None:
        """Re-sending is always safe: what is held is answered duplicate with its original position."""
        envs = publish(members["QA"], 2)
        await service.ingest("QA", wire(envs))
        again = await service.ingest("QA", wire(envs))
        assert statuses(again) == [("duplicate", 1), ("duplicate", 2)] and service.size == 2
        assert await service.store.quarantined() == []

    async def test_same_envelope_twice_in_one_batch_appended_once(self, service: HubService,
                                                                 members: dict[str, Member]) -> None:
        [env] = publish(members["QA"])
        outcomes = await service.ingest("QA", wire([env, env]))
        assert statuses(outcomes) == [("accepted", 1), ("accepted", 1)] and service.size == 1

    async def test_members_chains_interleave_in_one_log(self, service: HubService,
                                                        members: dict[str, Member]) -> None:
        """Concurrent pushes of two members are committed together (group commit), each chain in order."""
        qa, kr = await asyncio.gather(service.ingest("QA", wire(publish(members["QA"], 3))),
                                      service.ingest("KR", wire(publish(members["KR"], 3))))
        positions = sorted(o.position for o in [*qa, *kr] if o.position is not None)
        assert positions == [1, 2, 3, 4, 5, 6]
        assert [o.position for o in qa] == sorted(o.position for o in qa)  # type: ignore[type-var]
        assert service.heads["QA"].seq == service.heads["KR"].seq == 3

    async def test_activity_counted_at_the_clocks_time(self, service: HubService, members: dict[str, Member],
                                                       clock: FakeClock) -> None:
        clock.advance(42)
        await service.ingest("QA", wire(publish(members["QA"], 2)))
        await service.ingest("QA", [{"not": "an envelope"}])
        activity = service.member_activity("QA")
        assert (activity.accepted, activity.rejected, activity.last_push_at) == (2, 1, T0 + timedelta(seconds=42))


class TestRefusals:
    async def test_another_members_envelope_refused_and_kept(self, service: HubService,
                                                             members: dict[str, Member]) -> None:
        """A member relaying another's envelope is refused; the refusal is kept under the pushing member."""
        [env] = publish(members["QA"])
        [o] = await service.ingest("KR", wire([env]))
        assert (o.status, o.reason) == ("rejected", "not-own-envelope") and service.size == 0
        [q] = await service.store.quarantined()
        assert (q["member"], q["origin"], q["reason"], q["hash"]) == ("KR", "QA", "not-own-envelope", env.hash)
        assert bytes(q["envelope"]) == env.to_bytes()

    async def test_chain_gap_refused(self, service: HubService, members: dict[str, Member]) -> None:
        """An envelope whose predecessors the hub does not hold is refused (the node re-sends them first)."""
        first, second = publish(members["QA"], 2)
        [o] = await service.ingest("QA", wire([second]))
        assert (o.status, o.reason) == ("rejected", "chain-gap")
        assert statuses(await service.ingest("QA", wire([first, second]))) == [("accepted", 1), ("accepted", 2)]

    async def test_chain_fork_refused_with_the_position_it_conflicts_with(self, service: HubService,
                                                                         members: dict[str, Member]) -> None:
        """A second, different envelope at a held (origin, seq) is a fork: refused, and the quarantine points at
        the envelope it contradicts (evidence of the member equivocating)."""
        qa = members["QA"]
        first, second = publish(qa, 2)
        await service.ingest("QA", wire([first, second]))
        qa.seq, qa.prev = 1, first.hash  # QA signs another seq 2
        [other] = publish(qa, record_id="QA:other")
        [o] = await service.ingest("QA", wire([other]))
        assert (o.status, o.reason) == ("rejected", "chain-fork")
        [q] = await service.store.quarantined()
        assert q["reason"] == "chain-fork" and q["conflicts_with"] == 2

    async def test_bad_envelope_rejected_good_ones_appended(self, service: HubService,
                                                            members: dict[str, Member]) -> None:
        """Each envelope of a batch is judged alone: the bad one is refused with its reason and errors, the
        others appended."""
        envs = publish(members["QA"], 2)
        outcomes = await service.ingest("QA", [wire(envs)[0], {"not": "an envelope"}, wire(envs)[1]])
        assert statuses(outcomes) == [("accepted", 1), ("rejected", None), ("accepted", 2)]
        assert outcomes[1].reason == "malformed-envelope"
        assert outcomes[1].to_dict(1)["problem"]["type"].endswith("/malformed-envelope")

    async def test_refused_request_kept_whole(self, service: HubService) -> None:
        """keep_refusal keeps a whole refused request (not one envelope): reason, bytes, what is known of it."""
        await service.keep_refusal(None, Failure("request", "signature-missing", "no signature"), b"garbage",
                                   {"status": 401, "sha256": "x"})
        [q] = await service.store.quarantined()
        assert (q["member"], q["reason"], bytes(q["envelope"])) == (None, "signature-missing", b"garbage")
        assert json.loads(q["detail"])["request"] == {"status": 401, "sha256": "x"}
        assert service.size == 0


class TestCheckpoint:
    async def test_checkpoint_signed_after_each_commit(self, service: HubService, members: dict[str, Member],
                                                       hub_key: SigningKey, registry: SignedRegistry,
                                                       clock: FakeClock) -> None:
        """Each commit that appends ends with a hub-signed checkpoint of the new size and RFC 9162 root, issued
        at the service's clock, stored with the log."""
        assert service.checkpoint is None
        envs = publish(members["QA"], 3)
        clock.advance(5)
        await service.ingest("QA", wire(envs))
        cp = service.checkpoint
        assert cp is not None and cp.checkpoint.size == 3
        assert cp.checkpoint.root_bytes == merkle.root([merkle.leaf_hash(e.leaf) for e in envs])
        assert cp.checkpoint.issued_at == "2026-12-01T12:00:05.000Z"
        assert cp.verify(registry.registry.hub_public_keys(), registry.registry.member_keys()) == []
        assert await service.store.checkpoint() == cp.to_bytes()

    async def test_refusals_alone_sign_no_checkpoint(self, service: HubService, members: dict[str, Member]) -> None:
        await service.ingest("KR", wire(publish(members["QA"])))
        assert service.checkpoint is None and await service.store.checkpoint() is None


class TestPull:
    async def test_read_after_position(self, service: HubService, members: dict[str, Member]) -> None:
        """Entries after a position, at most ``limit``, as stored."""
        envs = publish(members["QA"], 3)
        await service.ingest("QA", wire(envs))
        rows = await service.read_log(1, 1, 0)
        assert [e.position for e in rows] == [2] and json.loads(rows[0].envelope) == envs[1].to_dict()
        assert await service.read_log(3, 10, 0) == []

    async def test_long_poll_answered_when_an_envelope_is_committed(self, service: HubService,
                                                                    members: dict[str, Member]) -> None:
        service._changed = changed = WatchedEvent()  # what a held pull waits on
        pull = asyncio.create_task(service.read_log(0, 10, 30))
        await eventually(lambda: changed.waiters == 1)
        await service.ingest("QA", wire(publish(members["QA"])))
        assert [e.position for e in await asyncio.wait_for(pull, 5)] == [1]

    async def test_long_poll_with_nothing_arriving_answers_empty(self, service: HubService) -> None:
        assert await service.read_log(0, 10, 0.05) == []

    async def test_held_pulls_answered_at_shutdown(self, service: HubService) -> None:
        """wake_readers answers every held pull at once (clients reconnect elsewhere), and no new one waits."""
        service._changed = changed = WatchedEvent()
        pulls = [asyncio.create_task(service.read_log(0, 10, 30)) for _ in range(3)]
        await eventually(lambda: changed.waiters == 3)
        service.wake_readers()
        assert await asyncio.wait_for(asyncio.gather(*pulls), 5) == [[], [], []]
        assert await asyncio.wait_for(service.read_log(0, 10, 30), 5) == []


class TestRestart:
    async def test_new_service_continues_the_log(self, store: HubStore, service: HubService,
                                                 registry: SignedRegistry, hub_key: SigningKey,
                                                 members: dict[str, Member]) -> None:
        """A restarted hub reads size, chain heads, Merkle frontier and checkpoint back: a re-sent envelope is
        a duplicate, the next one continues the chain, the next checkpoint covers both runs' entries."""
        qa = members["QA"]
        envs = publish(qa, 2)
        await service.ingest("QA", wire(envs))
        await service.stop()
        again = HubService(store, registry, hub_key, clock=FakeClock(T0))
        await again.start()
        try:
            assert (again.size, again.heads) == (service.size, service.heads)
            assert again.checkpoint is not None and again.checkpoint.checkpoint == service.checkpoint.checkpoint  # type: ignore[union-attr]
            assert statuses(await again.ingest("QA", wire(envs[1:]))) == [("duplicate", 2)]
            nxt = publish(qa)
            assert statuses(await again.ingest("QA", wire(nxt))) == [("accepted", 3)]
            assert again.checkpoint.checkpoint.root_bytes == merkle.root(  # type: ignore[union-attr]
                [merkle.leaf_hash(e.leaf) for e in [*envs, *nxt]])
        finally:
            await again.stop()


class TestWorkerProcesses:
    async def test_large_batch_verified_in_worker_processes(self, store: HubStore, registry: SignedRegistry,
                                                            hub_key: SigningKey, members: dict[str, Member]) -> None:
        """A batch of PARALLEL_MIN envelopes or more is verified in the pool; the outcomes are those of the event
        loop's verification (an envelope of another member refused among them)."""
        s = HubService(store, registry, hub_key, clock=FakeClock(T0), verify_workers=1)
        await s.start()
        try:
            envs = wire(publish(members["QA"], PARALLEL_MIN))
            stray = wire(publish(members["KR"]))
            outcomes = await s.ingest("QA", [*envs[:10], *stray, *envs[10:]])
            assert [o.status for o in outcomes].count("accepted") == PARALLEL_MIN
            assert outcomes[10].reason == "not-own-envelope"
            assert s.size == PARALLEL_MIN
        finally:
            await s.stop()
