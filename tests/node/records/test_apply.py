"""Applying the hub's log (node/records/apply.py): verified envelopes become records, the rest is quarantined,
the cursor moves with each page."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from federation.protocol.canonical import canonical_bytes
from federation.protocol.envelope import Envelope
from federation.protocol.keys import SigningKey, b64u_encode
from federation.protocol.registry import SignedRegistry
from federation.protocol.schemas import SchemaSet, default_schemas
from federation.protocol.verify import ChainHead
from node.errors import HubProtocolError
from node.own_keys import OwnKeys
from node.records.service import EVENT_V1, NodeService, schemas_written
from node.store.outbox import ACCEPTED
from node.store.records import NodeStore
from tests.support.factories import Member

EVENT_V2 = "https://schemas.ipdn.network/cultural-event/v2"


def log_of(*envs: Envelope, start: int = 1) -> list[tuple[int, Any]]:
    return [(start + i, e.to_dict()) for i, e in enumerate(envs)]


class TestApply:
    async def test_other_members_envelopes_applied(self, service: NodeService, kr: Member,
                                                   event: dict[str, Any]) -> None:
        """Valid envelopes from the log become records; the cursor moves to the last position."""
        a, b = kr.publish(event, record_id="KR:a"), kr.publish(event, record_id="KR:b")
        report = await service.applier.apply_log(0, log_of(a, b))
        assert (report.applied, report.quarantined) == (2, [])
        assert (await service.get("KR:b")).hash == b.hash
        assert await service.applier.cursor() == 2

    async def test_cursor_moved_by_another_writer_fails_one_page_only(self, service: NodeService, kr: Member,
                                                                     event: dict[str, Any], config: Any,
                                                                     registry: SignedRegistry) -> None:
        """The service keeps the cursor in memory (it is read for every pull); should something else move it in
        the database (a second process on the same database), the next page is refused against the stored
        frontier, nothing of it is written, and the cursor is read again."""
        a, b = kr.publish(event, record_id="KR:a"), kr.publish(event, record_id="KR:b")
        assert await service.applier.cursor() == 0
        other = NodeService(store=service.store, keys=service.keys, member="QA", registry=registry,
                            registry_path=config.registry_path)
        await other.applier.apply_log(0, log_of(a))
        with pytest.raises(RuntimeError, match="do not follow the stored cursor"):
            await service.applier.apply_log(0, log_of(a, b))
        assert await service.applier.cursor() == 1
        assert (await service.applier.apply_log(1, log_of(b, start=2))).applied == 1
        assert await service.applier.cursor() == 2

    async def test_latest_version_wins_and_tombstone_kept(self, service: NodeService, kr: Member,
                                                          event: dict[str, Any]) -> None:
        """An update replaces the record, a lower version does not, a tombstone is kept."""
        v1 = kr.publish(event, record_id="KR:a")
        v3 = kr.publish({**event, "status": "postponed"}, record_id="KR:a", version=3)
        v2 = kr.publish({**event, "status": "cancelled"}, record_id="KR:a", version=2)
        await service.applier.apply_log(0, log_of(v1, v3, v2))
        assert (await service.get("KR:a")).version == 3
        tomb = kr.publish(None, record_id="KR:a", version=4)
        await service.applier.apply_log(3, log_of(tomb, start=4))
        rec = await service.get("KR:a")
        assert (rec.op, rec.status, rec.body, rec.version) == ("delete", "deleted", None, 4)

    async def test_v2_record_with_a_reason_applied(self, store: NodeStore, qa: Member, kr: Member, config: Any,
                                                   registry: SignedRegistry, event: dict[str, Any]) -> None:
        """A cultural-event/v2 record (a cancellation with status_reason) from another member is applied by a node of
        this release, also one that writes only v1 itself (status_reasons off, ADR 0031)."""
        service = NodeService(store=store, keys=OwnKeys("QA", qa.key, directory=config.dir), member="QA",
                              registry=registry, schemas=schemas_written(False))
        body = {**event, "status": "cancelled", "status_reason": {"en": "The hall is closed", "ar": "القاعة مغلقة"}}
        env = kr.publish(body, record_id="KR:a", schema=EVENT_V2)
        report = await service.applier.apply_log(0, log_of(env))
        assert (report.applied, report.quarantined) == (1, [])
        assert (await service.get("KR:a")).body == body

    async def test_previous_release_quarantines_v2_and_stops_its_origin(self, store: NodeStore, qa: Member,
                                                                        kr: Member, config: Any,
                                                                        registry: SignedRegistry,
                                                                        event: dict[str, Any]) -> None:
        """Why v2 is written only when a record needs it and only once the network holds v2 (ADR 0031): a node that
        holds v1 alone quarantines a v2 envelope (unknown-schema), and every later envelope of its origin then
        fails the chain check; v1 envelopes, as this release writes them without a reason, it applies."""
        v1_only = SchemaSet({sid: doc for sid, doc in default_schemas().documents.items() if sid != EVENT_V2})
        old = NodeService(store=store, keys=OwnKeys("QA", qa.key, directory=config.dir), member="QA",
                          registry=registry, schemas=v1_only)
        plain = kr.publish({**event, "status": "cancelled"}, record_id="KR:a", schema=EVENT_V1)
        reason = kr.publish({**event, "status": "cancelled", "status_reason": {"en": "closed"}}, record_id="KR:b",
                            schema=EVENT_V2)
        after = kr.publish(event, record_id="KR:c", schema=EVENT_V1)
        report = await old.applier.apply_log(0, log_of(plain, reason, after))
        assert (report.applied, report.quarantined) == (1, ["unknown-schema", "chain-gap"])

    async def test_chain_gap_quarantined(self, service: NodeService, kr: Member, event: dict[str, Any]) -> None:
        """A log that skips an origin's seq is refused for that origin (and only it), and kept as evidence."""
        first = kr.publish(event)
        kr.publish(event)  # seq 2 never reaches the log
        third = kr.publish(event)
        fourth = kr.publish(event)
        report = await service.applier.apply_log(0, log_of(first, third, fourth))
        assert report.applied == 1 and report.quarantined == ["chain-gap", "chain-gap"]
        assert await service.store.heads(["KR"]) == {"KR": ChainHead(1, first.hash)}
        assert await service.applier.cursor() == 3
        assert {a["reason"] for a in await service.alarms()} == {"chain-gap"}

    async def test_fork_quarantined(self, service: NodeService, kr: Member, event: dict[str, Any]) -> None:
        """Two different envelopes with one seq: the second is kept in quarantine, the first stays."""
        original = kr.publish(event, record_id="KR:a")
        kr.seq, kr.prev = 0, None
        rival = kr.publish({**event, "status": "cancelled"}, record_id="KR:a")
        report = await service.applier.apply_log(0, log_of(original, rival))
        assert report.quarantined == ["chain-fork"]
        [q] = await service.store.quarantined()
        assert (q.origin, q.seq, q.hash, q.envelope) == ("KR", 1, rival.hash, rival.to_bytes())
        assert (await service.get("KR:a")).hash == original.hash

    async def test_prev_mismatch_quarantined(self, service: NodeService, kr: Member, event: dict[str, Any]) -> None:
        """An envelope that names another predecessor than the one held is a fork."""
        first = kr.publish(event)
        kr.prev = "0" * 64
        report = await service.applier.apply_log(0, log_of(first, kr.publish(event)))
        assert report.quarantined == ["chain-fork"]

    async def test_duplicate_ignored(self, service: NodeService, kr: Member, event: dict[str, Any]) -> None:
        """An envelope already held is neither applied again nor quarantined."""
        env = kr.publish(event)
        await service.applier.apply_log(0, log_of(env))
        report = await service.applier.apply_log(1, log_of(env, start=2))
        assert (report.applied, report.duplicates, report.quarantined) == (0, 1, [])
        assert (await service.counts()).quarantine == 0

    async def test_tampered_envelope_refused(self, service: NodeService, kr: Member, event: dict[str, Any]) -> None:
        """A payload changed after signing fails the signature and is not applied."""
        env = kr.publish(event, record_id="KR:a").to_dict()
        payload = json.loads(base64.urlsafe_b64decode(env["payload"] + "=="))
        payload["body"]["status"] = "cancelled"
        env["payload"] = b64u_encode(canonical_bytes(payload))  # canonical, so the signature is what fails
        report = await service.applier.apply_log(0, [(1, env)])
        assert report.quarantined == ["bad-signature"]
        assert await service.store.get_record("KR:a") is None

    async def test_envelope_from_unknown_key_refused(self, service: NodeService, event: dict[str, Any]) -> None:
        """A key outside the registry cannot publish through the hub, whatever origin it claims."""
        intruder = Member("KR", key=SigningKey.generate())
        report = await service.applier.apply_log(0, log_of(intruder.publish(event)))
        assert report.quarantined == ["key-unknown"]

    async def test_malformed_entry_quarantined(self, service: NodeService) -> None:
        """A log entry that is a JWS but not an envelope is kept with its intake reason; the cursor moves on
        (one without the JWS members is no leaf of the log: tests/node/sync/test_logtrust.py)."""
        report = await service.applier.apply_log(0, [(1, {"protected": "x", "payload": "y", "signature": "z"})])
        assert report.quarantined == ["malformed-envelope"] and await service.applier.cursor() == 1

    async def test_version_conflict_kept_as_evidence(self, service: NodeService, kr: Member,
                                                     event: dict[str, Any]) -> None:
        """A second envelope for the same record version is kept in quarantine and not applied."""
        first = kr.publish(event, record_id="KR:a")
        second = kr.publish({**event, "status": "cancelled"}, record_id="KR:a", version=1)
        report = await service.applier.apply_log(0, log_of(first, second))
        assert report.quarantined == ["version-conflict"]
        assert (await service.get("KR:a")).hash == first.hash

    async def test_own_envelope_from_log_records_position(self, service: NodeService,
                                                          event: dict[str, Any]) -> None:
        """The node's own envelope coming back marks it accepted at its log position."""
        env = await service.create("cultural-event", event)
        report = await service.applier.apply_log(0, log_of(env))
        assert report.duplicates == 1
        [row] = await service.store.outbox.entries(ACCEPTED, 10)
        assert (row.seq, row.position) == (1, 1)

    async def test_gap_in_log_positions_refused(self, service: NodeService, kr: Member,
                                                event: dict[str, Any]) -> None:
        """A page whose positions skip is the hub misbehaving: nothing is applied, the cursor stays."""
        with pytest.raises(HubProtocolError):
            await service.applier.apply_log(0, [(2, kr.publish(event).to_dict())])
        assert await service.applier.cursor() == 0 and (await service.counts()).received == 0

    async def test_restart_resumes_where_it_stopped(self, service: NodeService, store: NodeStore, kr: Member,
                                                    event: dict[str, Any], registry: SignedRegistry) -> None:
        """Heads and cursor come from the database: a new service instance continues the chain."""
        await service.applier.apply_log(0, log_of(kr.publish(event)))
        again = NodeService(store=store, keys=service.keys, member="QA", registry=registry)
        report = await again.applier.apply_log(await again.applier.cursor(), log_of(kr.publish(event), start=2))
        assert report.applied == 1
