"""The node's service: authoring own records, and applying the hub's log (verified, chained, versioned)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from federation.protocol.envelope import Envelope
from federation.protocol.keys import SigningKey, b64u_encode
from federation.protocol.registry import KeyEntry, Policies, RegistryError, SignedRegistry, sign_registry
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import ChainHead, verify_envelope
from node.errors import HubProtocolError, InvalidRecordError, NotOwnRecordError, RecordDeletedError
from node.records.service import NodeService
from node.store.outbox import ACCEPTED, PENDING
from node.store.records import NodeStore
from tests.support.factories import Member, example_bodies, example_paths


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
        assert p.record_id.startswith("QA:") and p.schema == default_schemas().schema_id("cultural-event")
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
        """Cancelling is an update with status cancelled, the rest of the body unchanged."""
        first = await service.create("cultural-event", event)
        env = await service.cancel(first.payload.record_id, "the venue is closed")
        assert env.payload.body == {**event, "status": "cancelled"} and env.payload.version == 2
        rec = await service.get(first.payload.record_id)
        assert (rec.status, rec.op) == ("cancelled", "put")

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
        env["payload"] = b64u_encode(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
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


class TestRegistry:
    def _next(self, registry: SignedRegistry, hub_key: SigningKey, **over: Any) -> SignedRegistry:
        over.setdefault("change", {"action": "renew", "documents": []})
        return sign_registry(dataclasses.replace(registry.registry, **over), hub_key)

    def test_newer_registry_accepted_and_kept(self, service: NodeService, registry: SignedRegistry,
                                              hub_key: SigningKey) -> None:
        """A higher version signed by the trusted hub key replaces the trust anchor on disk."""
        v2 = self._next(registry, hub_key, version=2)
        assert service.registry_follower.accept(v2.to_bytes()) is True
        assert service.registry.registry.version == 2
        path = service.registry_follower.path
        assert path is not None and path.read_bytes() == v2.to_bytes()

    async def test_hub_adds_member_without_votes_refused(self, service: NodeService, registry: SignedRegistry,
                                                          hub_key: SigningKey) -> None:
        """A hub-signed version whose members do not follow from signed decisions is refused (PROTOCOL §12)."""
        reg = registry.registry
        intruder = dataclasses.replace(reg.members[0], code="ZZ")
        bogus = self._next(registry, hub_key, version=2, members=(*reg.members, intruder))
        with pytest.raises(RegistryError) as e:
            service.registry_follower.accept(bogus.to_bytes())
        assert e.value.reason == "unjustified-change" and service.registry.registry.version == 1
        assert [a["reason"] for a in await service.alarms()] == ["unjustified-change"]

    async def test_registry_rollback_refused(self, service: NodeService, registry: SignedRegistry,
                                             hub_key: SigningKey) -> None:
        """An older registry is refused, the current one kept, and an alarm raised."""
        service.registry_follower.accept(self._next(registry, hub_key, version=2).to_bytes())
        with pytest.raises(RegistryError):
            service.registry_follower.accept(registry.to_bytes())
        assert service.registry.registry.version == 2
        assert [a["reason"] for a in await service.alarms()] == ["registry-rollback"]

    async def test_expired_registry_refused(self, service: NodeService, registry: SignedRegistry,
                                            hub_key: SigningKey) -> None:
        """A newer but already expired registry (a freeze attack) is refused."""
        past = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with pytest.raises(RegistryError):
            service.registry_follower.accept(self._next(registry, hub_key, version=2, expires_at=past).to_bytes())
        assert service.registry.registry.version == 1
        assert [a["reason"] for a in await service.alarms()] == ["registry-expired"]

    async def test_registry_from_untrusted_signer_refused(self, service: NodeService,
                                                          registry: SignedRegistry) -> None:
        """A registry that names its own signer as the hub (so its signature checks out against itself) is
        refused: the signer is not a hub key of the registry the node already trusts."""
        stranger = SigningKey.generate()
        forged = self._next(registry, stranger, version=2, hub_keys=(KeyEntry(jwk=stranger.public.to_jwk()),))
        with pytest.raises(RegistryError) as e:
            service.registry_follower.accept(forged.to_bytes())
        assert e.value.reason == "registry-untrusted-signer" and service.registry.registry.version == 1
        assert [a["reason"] for a in await service.alarms()] == ["registry-untrusted-signer"]

    async def test_registry_signed_by_retired_hub_key_refused(self, service: NodeService, registry: SignedRegistry,
                                                              hub_key: SigningKey) -> None:
        """A hub key past its not_after in the trusted registry can no longer sign the next version."""
        retired = KeyEntry(jwk=hub_key.public.to_jwk(), not_after="2000-01-01T00:00:00.000Z")
        service.registry_follower.current = sign_registry(dataclasses.replace(registry.registry, hub_keys=(retired,)),
                                                          hub_key)
        with pytest.raises(RegistryError) as e:
            service.registry_follower.accept(self._next(service.registry, hub_key, version=2).to_bytes())
        assert e.value.reason == "registry-untrusted-signer" and service.registry.registry.version == 1

    async def test_registry_conflict_refused(self, service: NodeService, registry: SignedRegistry,
                                             hub_key: SigningKey) -> None:
        """Two different documents with the current version (a hub equivocating) are refused, not merged."""
        other = self._next(registry, hub_key, version=1, policies=Policies(max_batch=7))
        with pytest.raises(RegistryError) as e:
            service.registry_follower.accept(other.to_bytes())
        assert e.value.reason == "registry-conflict" and service.registry is registry
        assert [a["reason"] for a in await service.alarms()] == ["registry-conflict"]

    def test_same_registry_again_is_no_change(self, service: NodeService, registry: SignedRegistry) -> None:
        """The very registry the node holds, fetched again, is no change and no alarm."""
        assert service.registry_follower.accept(registry.to_bytes()) is False
        assert service.registry_follower.alarm is None
