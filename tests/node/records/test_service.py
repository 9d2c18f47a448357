"""The node's service: authoring own records (signed, chained, versioned) and reading them.

Applying the hub's log is tests/node/records/test_apply.py's; the registry tests/node/sync/test_registry.py's."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from federation.protocol.envelope import Envelope
from federation.protocol.registry import SignedRegistry
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import ChainHead, verify_envelope
from node.config import NodeConfig
from node.errors import InvalidRecordError, NotOwnRecordError, RecordDeletedError
from node.own_keys import OwnKeys
from node.records.service import EVENT_V1, NodeService, schemas_written
from node.store.outbox import PENDING
from node.store.records import NodeStore
from tests.support.factories import Member, example_bodies, example_paths

EVENT_V2 = "https://schemas.ipdn.network/cultural-event/v2"


def verify_own(env: Envelope, registry: SignedRegistry, head: ChainHead | None = None) -> list[str]:
    result = verify_envelope(env.to_bytes(), keys=registry.registry.member_keys().get, schemas=default_schemas(),
                             now=datetime.now(UTC), chain_head=head, check_chain_head=True)
    return [f.reason for f in result.failures]


def log_of(*envs: Envelope, start: int = 1) -> list[tuple[int, Any]]:
    return [(start + i, e.to_dict()) for i, e in enumerate(envs)]


class TestAuthoring:
    async def test_create_signs_a_verifiable_envelope(self, service: NodeService, registry: SignedRegistry,
                                                      event: dict[str, Any]) -> None:
        """A valid record becomes seq 1 of the own chain, signed by the member key, and waits in the outbox."""
        env = await service.create("cultural-event", event)
        assert verify_own(env, registry) == []
        p = env.payload
        assert (p.origin, p.seq, p.prev, p.version, p.op) == ("QA", 1, None, 1, "put")
        # The oldest version that holds the body (ADR 0031): v1 for a body without status_reason.
        assert p.record_id.startswith("QA:") and p.schema == EVENT_V1
        assert service.outbox_changed.is_set()
        assert [r.seq for r in await service.store.outbox.entries(PENDING, 10)] == [1]

    async def test_every_valid_example_is_published(self, service: NodeService) -> None:
        """Each valid example of each kind is accepted for publishing."""
        for kind in ("cultural-event", "capacity-programme"):
            for body in example_bodies(kind):
                await service.create(kind, body)

    async def test_invalid_record_refused_and_nothing_stored(self, service: NodeService) -> None:
        """Every invalid example is refused with its issues (pointer, keyword) and leaves no trace."""
        for path in example_paths("cultural-event", valid=False):
            if path.name == "expected.json":
                continue
            with pytest.raises(InvalidRecordError) as e:
                await service.create("cultural-event", json.loads(path.read_text()))
            assert e.value.issues and all(i.keyword for i in e.value.issues), path.name
        counts = await service.counts()
        assert (counts.own, counts.outbox) == (0, {})
        assert await service.store.heads(["QA"]) == {}

    async def test_update_bumps_version_and_seq(self, service: NodeService, registry: SignedRegistry,
                                                event: dict[str, Any]) -> None:
        """An update is the next envelope of the chain with the same record id and version + 1."""
        first = await service.create("cultural-event", event)
        second = await service.update(first.payload.record_id, {**event, "status": "postponed"})
        p = second.payload
        assert (p.record_id, p.version, p.seq, p.prev) == (first.payload.record_id, 2, 2, first.hash)
        assert verify_own(second, registry, ChainHead(1, first.hash)) == []
        assert (await service.get(p.record_id)).status == "postponed"

    async def test_cancel_sets_status_cancelled(self, service: NodeService, event: dict[str, Any]) -> None:
        """Cancelling without a reason is an update with status cancelled, the rest of the body unchanged, still
        cultural-event/v1 (what nodes of the previous release hold)."""
        first = await service.create("cultural-event", event)
        env = await service.cancel(first.payload.record_id)
        assert env.payload.body == {**event, "status": "cancelled"} and env.payload.version == 2
        assert env.payload.schema == EVENT_V1
        rec = await service.get(first.payload.record_id)
        assert (rec.status, rec.op) == ("cancelled", "put")

    async def test_cancel_with_a_reason_publishes_it_in_v2(self, service: NodeService, registry: SignedRegistry,
                                                           event: dict[str, Any]) -> None:
        """A reason goes into status_reason in the language given, as one line; only that record pins v2."""
        first = await service.create("cultural-event", event)
        env = await service.cancel(first.payload.record_id, "  أُغلقت القاعة\nللصيانة ", lang="ar")
        assert env.payload.body == {**event, "status": "cancelled", "status_reason": {"ar": "أُغلقت القاعة للصيانة"}}
        assert env.payload.schema == EVENT_V2
        assert verify_own(env, registry, ChainHead(1, first.hash)) == []
        # Restored to scheduled without the reason: back to v1.
        again = await service.update(first.payload.record_id, event)
        assert again.payload.schema == EVENT_V1

    async def test_cancel_drops_the_reason_of_a_postponement(self, service: NodeService,
                                                             event: dict[str, Any]) -> None:
        """A reason given for a postponement does not stay to explain a cancellation given without one."""
        first = await service.create("cultural-event", {**event, "status": "postponed",
                                                        "status_reason": {"en": "The soloist is ill"}})
        assert first.payload.schema == EVENT_V2
        env = await service.cancel(first.payload.record_id)
        assert "status_reason" not in (env.payload.body or {}) and env.payload.schema == EVENT_V1

    async def test_reason_kept_out_while_v2_is_not_written(self, store: NodeStore, qa: Member,
                                                           registry: SignedRegistry, config: NodeConfig,
                                                           event: dict[str, Any]) -> None:
        """With status_reasons off (the default: the network may still run the previous release), the node writes
        v1 only: the reason is not published, a body with status_reason is refused, v2 records are still read."""
        service = NodeService(store=store, keys=OwnKeys("QA", qa.key, directory=config.dir), member="QA",
                              registry=registry, schemas=schemas_written(False))
        first = await service.create("cultural-event", event)
        env = await service.cancel(first.payload.record_id, "the venue is closed")
        assert env.payload.body == {**event, "status": "cancelled"} and env.payload.schema == EVENT_V1
        with pytest.raises(InvalidRecordError):
            await service.create("cultural-event", {**event, "status": "postponed", "status_reason": {"en": "why"}})
        assert schemas_written(True).latest["cultural-event"] == EVENT_V2

    async def test_delete_makes_a_tombstone(self, service: NodeService, event: dict[str, Any]) -> None:
        """A delete is a signed tombstone (no body, version + 1); deleting again returns the same one."""
        first = await service.create("cultural-event", event)
        tomb = await service.delete(first.payload.record_id)
        assert (tomb.payload.op, tomb.payload.body, tomb.payload.version) == ("delete", None, 2)
        rec = await service.get(first.payload.record_id)
        assert (rec.op, rec.status, rec.body) == ("delete", "deleted", None)
        assert (await service.delete(first.payload.record_id)).hash == tomb.hash
        with pytest.raises(RecordDeletedError):
            await service.cancel(first.payload.record_id)

    async def test_update_of_other_members_record_refused(self, service: NodeService, kr: Member,
                                                          event: dict[str, Any]) -> None:
        """The node cannot publish a version of a record another member originated."""
        await service.applier.apply_log(0, log_of(kr.publish(event, record_id="KR:theirs")))
        for change in (service.update("KR:theirs", event), service.cancel("KR:theirs"), service.delete("KR:theirs")):
            with pytest.raises(NotOwnRecordError):
                await change

    async def test_concurrent_authoring_keeps_the_chain_gapless(self, service: NodeService,
                                                                registry: SignedRegistry,
                                                                event: dict[str, Any]) -> None:
        """Records created at once get seqs 1..n, each naming its predecessor."""
        envs = await asyncio.gather(*(service.create("cultural-event", event) for _ in range(10)))
        envs = sorted(envs, key=lambda e: e.payload.seq)
        assert [e.payload.seq for e in envs] == list(range(1, 11))
        head = None
        for e in envs:
            assert verify_own(e, registry, head) == []
            head = ChainHead(e.payload.seq, e.hash)
