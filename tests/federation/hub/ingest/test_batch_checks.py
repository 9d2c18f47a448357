"""The ingest checks (federation/hub/ingest/batch_checks.py): one envelope's checks and facts, in the event loop or
in a worker process, with the same results."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from federation.hub.ingest import batch_checks
from federation.hub.ingest.batch_checks import Checked, check_batch
from federation.protocol import merkle
from federation.protocol.keys import SigningKey
from federation.protocol.registry import Policies, SignedRegistry, genesis, sign_registry
from tests.support.factories import Member, example_bodies

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def registry(hub_key: SigningKey, qa: Member, kr: Member) -> SignedRegistry:
    return genesis(hub_key=hub_key, hub_url="http://hub.test", now=NOW - timedelta(days=1),
                   founders=[(qa.public, {"en": "QA"}), (kr.public, {"en": "KR"})])


def body() -> dict[str, Any]:
    return example_bodies("cultural-event")[0]


def reasons(c: Checked) -> list[str]:
    return [f.reason for f in c.failures]


class TestOneEnvelope:
    def test_valid_envelope_passes_with_its_facts(self, registry: SignedRegistry, qa: Member) -> None:
        """A valid envelope has no failure and carries what the writer needs, its leaf hash computed here."""
        first, second = qa.publish(body(), issued=NOW), qa.publish(body(), issued=NOW)
        [a, b] = check_batch(registry.to_bytes(), "QA", [first.to_dict(), second.to_dict()], NOW)
        assert a.failures == () and b.failures == ()
        p = second.payload
        assert (b.origin, b.seq, b.prev, b.hash, b.record_id, b.version, b.kind, b.op, b.kid) == (
            "QA", 2, first.hash, second.hash, p.record_id, 1, "cultural-event", "put", qa.key.kid)
        assert b.wire == second.to_bytes() and b.leaf_hash == merkle.leaf_hash(second.leaf)

    def test_chain_not_checked_here(self, registry: SignedRegistry, qa: Member) -> None:
        """The chain is the writer's to check, in order: a later envelope alone passes the batch_checks."""
        qa.publish(body(), issued=NOW)
        later = qa.publish(body(), issued=NOW)
        assert check_batch(registry.to_bytes(), "QA", [later.to_dict()], NOW)[0].failures == ()

    def test_member_pushing_another_members_envelope_refused(self, registry: SignedRegistry, qa: Member,
                                                            kr: Member) -> None:
        """A member cannot push (relay or replay) another member's envelope, even a valid one."""
        [c] = check_batch(registry.to_bytes(), "KR", [qa.publish(body(), issued=NOW).to_dict()], NOW)
        assert reasons(c) == ["not-own-envelope"] and c.origin == "QA"

    def test_envelope_signed_by_unknown_key_refused(self, registry: SignedRegistry) -> None:
        stranger = Member("QA")  # QA's code, another key
        [c] = check_batch(registry.to_bytes(), "QA", [stranger.publish(body(), issued=NOW).to_dict()], NOW)
        assert reasons(c) == ["key-unknown"]

    def test_envelope_signed_with_another_members_key_refused(self, registry: SignedRegistry, qa: Member,
                                                              kr: Member) -> None:
        [c] = check_batch(registry.to_bytes(), "QA", [qa.publish(body(), issued=NOW, key=kr.key).to_dict()], NOW)
        assert "key-not-origin" in reasons(c)

    def test_envelope_from_the_future_refused(self, registry: SignedRegistry, qa: Member) -> None:
        """issued_at later than the reference time plus the registry's clock skew is refused."""
        skew = registry.registry.policies.clock_skew_seconds
        [ok] = check_batch(registry.to_bytes(), "QA", [qa.publish(body(), issued=NOW + timedelta(
            seconds=skew - 1)).to_dict()], NOW)
        [late] = check_batch(registry.to_bytes(), "QA", [qa.publish(body(), issued=NOW + timedelta(
            seconds=skew + 1)).to_dict()], NOW)
        assert ok.failures == () and reasons(late) == ["issued-in-future"]

    def test_not_an_envelope_refused_at_intake_bytes_kept(self, registry: SignedRegistry) -> None:
        """What does not parse fails the intake check; its JSON is kept as the wire bytes (for the quarantine)."""
        obj = {"protected": "x", "payload": "y"}
        [c] = check_batch(registry.to_bytes(), "QA", [obj], NOW)
        assert [f.check for f in c.failures] == ["intake"] and c.origin is None and c.hash is None
        assert json.loads(c.wire) == obj

    def test_envelope_over_the_registrys_size_limit_refused(self, registry: SignedRegistry, hub_key: SigningKey,
                                                            qa: Member) -> None:
        """The size limit is the signed registry's policy, not a constant of the hub."""
        small = sign_registry(dataclasses.replace(registry.registry, policies=Policies(max_envelope_bytes=1024)),
                              hub_key)
        env = qa.publish(body(), issued=NOW)
        [c] = check_batch(small.to_bytes(), "QA", [env.to_dict()], NOW)
        assert [f.check for f in c.failures] == ["intake"] and reasons(c) == ["too-large"]

    def test_each_envelope_judged_alone(self, registry: SignedRegistry, qa: Member) -> None:
        """One bad envelope in a batch does not fail the others; results come back in order."""
        good = qa.publish(body(), issued=NOW)
        out = check_batch(registry.to_bytes(), "QA", [{"bad": 1}, good.to_dict(), []], NOW)
        assert [bool(c.failures) for c in out] == [True, False, True]


class TestRegistryCache:
    def test_registry_parsed_once_per_document(self, registry: SignedRegistry, hub_key: SigningKey,
                                               qa: Member) -> None:
        """A worker parses (and checks the signature of) the registry once; a new version replaces it."""
        data = registry.to_bytes()
        check_batch(data, "QA", [], NOW)
        cached = batch_checks._registries[data]
        check_batch(data, "QA", [qa.publish(body(), issued=NOW).to_dict()], NOW)
        assert batch_checks._registries[data] is cached
        v2 = sign_registry(dataclasses.replace(registry.registry, version=2), hub_key).to_bytes()
        check_batch(v2, "QA", [], NOW)
        assert list(batch_checks._registries) == [v2]


class TestWorkerProcess:
    def test_worker_process_gives_the_same_results(self, registry: SignedRegistry, qa: Member,
                                                   kr: Member) -> None:
        """check_batch in a spawned worker (as the hub's pool runs it) returns what it returns in the event loop,
        failures and facts alike, across the pickling both ways."""
        batch: list[object] = [qa.publish(body(), issued=NOW).to_dict() for _ in range(3)]
        batch += [kr.publish(body(), issued=NOW).to_dict(), {"not": "an envelope"},
                  qa.publish(body(), issued=NOW + timedelta(days=1)).to_dict()]
        here = check_batch(registry.to_bytes(), "QA", batch, NOW)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            there = pool.submit(check_batch, registry.to_bytes(), "QA", batch, NOW).result(timeout=60)
        assert there == here
        assert [reasons(c) for c in there] == [[], [], [], ["not-own-envelope"], ["malformed-envelope"],
                                               ["issued-in-future"]]
