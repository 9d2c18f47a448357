"""``ipdn audit``: an outside auditor of the hub, driven against an in-memory hub built from real signed envelopes,
a real registry, real Merkle trees and real signed checkpoints (no HTTP mocks), and once against a real hub process.

The attack tests are named after what a dishonest hub does; each checks the audit fails and names where and why.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from federation.audit import (
    AuditReport,
    HubHttpError,
    audit,
    load_checkpoint,
    save_checkpoint,
)
from federation.cli.main import main
from federation.protocol import merkle
from federation.protocol.canonical import canonical_bytes
from federation.protocol.checkpoint import CheckpointError, SignedCheckpoint, cosign, sign_checkpoint
from federation.protocol.envelope import Envelope, format_time, leaf_bytes
from federation.protocol.errors import IpdnError
from federation.protocol.governance import next_version, sign_document
from federation.protocol.keys import SigningKey, b64u_decode, b64u_encode
from federation.protocol.registry import KeyEntry, Registry, SignedRegistry, genesis, sign_registry
from tests.support.factories import Member, example_bodies, push_request
from tests.support.harness import IPDN, Federation, free_port, http

PAGE = 5  # small pages, so a dozen entries take several
N = 12  # entries in the simulated log: QA and KR alternate, so QA seq s is at position 2s - 1


# -- an in-memory hub ---------------------------------------------------------------------------------------


@dataclass
class World:
    """Two members, a hub key and a genesis registry listing them, and a log of real envelopes."""

    hub_key: SigningKey
    qa: Member
    kr: Member
    signed_registry: SignedRegistry
    envelopes: list[Envelope]
    versions: list[SignedRegistry] = field(default_factory=list)  # the registry chain the hub serves (v1 ...)

    @property
    def chain(self) -> list[SignedRegistry]:
        return self.versions or [self.signed_registry]

    @property
    def registry(self) -> Registry:
        return self.signed_registry.registry

    @property
    def log(self) -> list[dict[str, str]]:
        """The log's envelopes as the hub serves them (position i + 1)."""
        return [e.to_dict() for e in self.envelopes]


def make_world(n: int = N) -> World:
    hub_key, qa, kr = SigningKey.generate(), Member("QA"), Member("KR")
    reg = genesis(hub_key=hub_key, hub_url="https://hub.test",
                  founders=[(qa.public, {"en": "Katara"}), (kr.public, {"en": "Korea Foundation"})],
                  now=datetime.now(UTC))
    bodies = example_bodies("cultural-event")
    envelopes = [(qa, kr)[i % 2].publish(bodies[i % len(bodies)]) for i in range(n)]
    return World(hub_key, qa, kr, reg, envelopes)


def admit_mz(world: World) -> Member:
    """Registry v2: MZ applies and QA and KR (the quorum of two founders) approve; MZ then publishes three
    envelopes, appended to the log."""
    mz = Member("MZ")
    now = datetime.now(UTC)
    app = sign_document({"type": "application", "base": 1, "member": "MZ", "names": {"en": "Mozambique"},
                         "endpoint": "https://ipdn.mz.example", "key": mz.key.public.to_jwk()}, mz.key, now=now)
    votes = [sign_document({"type": "vote", "base": 1, "proposal": app.hash, "voter": m.code, "decision": "approve"},
                           m.key, now=now) for m in (world.qa, world.kr)]
    v2 = next_version(world.signed_registry, {"action": "admit", "documents": [d.to_dict() for d in (app, *votes)]},
                      world.hub_key, now=now)
    world.versions = [world.signed_registry, v2]
    bodies = example_bodies("cultural-event")
    world.envelopes += [mz.publish(bodies[i % len(bodies)]) for i in range(3)]
    return mz


def registry_routes(chain: list[SignedRegistry]) -> dict[str, bytes]:
    """``GET /api/v1/registry`` (the latest) and ``?version=K`` for each version of the chain."""
    routes = {f"/api/v1/registry?version={r.registry.version}": r.to_bytes() for r in chain}
    routes["/api/v1/registry"] = chain[-1].to_bytes()
    return routes


def leaf_hashes(log: list[dict[str, str]]) -> list[bytes]:
    return [merkle.leaf_hash(leaf_bytes(e)) for e in log]


def tree_getter(hashes: list[bytes]) -> merkle.NodeGetter:
    return lambda level, index: merkle.root(hashes[index << level:(index + 1) << level])


def checkpoint_of(log: list[dict[str, str]], key: SigningKey, size: int | None = None,
                  network: str = "IPDN") -> SignedCheckpoint:
    size = len(log) if size is None else size
    return sign_checkpoint(network, size, merkle.root(leaf_hashes(log)[:size]), key, datetime.now(UTC))


def received_times(served: list[dict[str, str]]) -> list[str]:
    """An honest hub's receipt time of each entry: its issued_at (pushed at once), never before an earlier one's."""
    out, latest = [], "2000-01-01T00:00:00.000Z"
    for entry in served:
        with contextlib.suppress(IpdnError, TypeError, AttributeError):
            latest = max(latest, format_time(Envelope.from_dict(entry).payload.issued))
        out.append(latest)
    return out


class SimHub:
    """The hub's read API as a dict of path -> bytes (PROTOCOL.md §8.3 and the log endpoints).

    ``served`` is what the log pages show (at ``positions``, default 1..n); ``tree`` is the log the checkpoint
    and the consistency proofs are computed from (default: ``served``), so the two can be made to disagree.
    """

    def __init__(self, served: list[dict[str, str]], *, tree: list[dict[str, str]] | None = None,
                 checkpoint: SignedCheckpoint | None = None, positions: list[int] | None = None,
                 hub_key: SigningKey | None = None, limit: int = PAGE, receipts: list[str] | None = None) -> None:
        tree = served if tree is None else tree
        positions = positions or list(range(1, len(served) + 1))
        if checkpoint is None and tree:
            assert hub_key is not None
            checkpoint = checkpoint_of(tree, hub_key)
        self.routes: dict[str, bytes] = {}
        self.requested: list[str] = []
        receipts = receipts or received_times(served)
        for after in range(max(positions, default=0) + 1):
            page = [{"position": p, "received_at": r, "envelope": e}
                    for p, e, r in zip(positions, served, receipts, strict=True) if p > after]
            page = page[:limit]
            doc = {"entries": page, "next": page[-1]["position"] if page else after, "size": len(served)}
            self.routes[f"/api/v1/log?after={after}&limit={limit}"] = json.dumps(doc).encode()
        if checkpoint is not None:
            self.routes["/api/v1/log/checkpoint"] = checkpoint.to_bytes()
            hashes = leaf_hashes(tree)
            size = checkpoint.checkpoint.size
            for frm in range(1, size):
                proof = merkle.consistency_proof(frm, size, tree_getter(hashes))
                self.routes[f"/api/v1/log/proof/consistency?from={frm}&to={size}"] = json.dumps(
                    {"from": frm, "to": size, "proof": [h.hex() for h in proof]}).encode()

    def fetch(self, path: str) -> bytes:
        self.requested.append(path)
        try:
            return self.routes[path]
        except KeyError:
            reason = "no-checkpoint" if path.startswith("/api/v1/log/checkpoint") else "not-found"
            raise HubHttpError(path, 404, "not held by this hub", reason=reason) from None


def run_audit(world: World, hub: SimHub, **kw: Any) -> AuditReport:
    """Audit from the genesis registry; the hub serves the world's registry chain unless a test set its own."""
    for path, data in registry_routes(world.chain).items():
        hub.routes.setdefault(path, data)
    return audit(hub.fetch, world.signed_registry, page_limit=PAGE, **{"now": datetime.now(UTC), **kw})


def labels(report: AuditReport) -> list[str]:
    """Each failure line up to its message: ``position 5: chain-fork``, ``root-mismatch at size 12``."""
    return [":".join(line.split(":")[:2 if line.startswith("position ") else 1]) for line in report.failure_lines()]


def tampered(envelope: dict[str, str], **body_changes: Any) -> dict[str, str]:
    """The envelope with its payload's body edited and re-encoded, the signature left as it was."""
    payload = json.loads(b64u_decode(envelope["payload"]))
    payload["body"] = {**payload["body"], **body_changes}
    return {**envelope, "payload": b64u_encode(canonical_bytes(payload))}  # canonical: the signature fails


@pytest.fixture
def world() -> World:
    return make_world()


# -- honest hubs ----------------------------------------------------------------------------------------------


# The registry chain: audits start from a registry the auditor trusts (the genesis) and walk to the latest.


def test_audit_from_genesis_verifies_members_admitted_later(world: World) -> None:
    """The attack that found it: audited from the genesis registry, an honest hub whose v2 admitted MZ
    failed with key-unknown for every MZ envelope. The audit walks v1 -> v2 (checking the votes) and
    verifies MZ's envelopes against v2, the version in force when they were issued."""
    admit_mz(world)
    hub = SimHub(world.log, hub_key=world.hub_key)
    report = run_audit(world, hub)
    assert report.ok, report.failure_lines()
    assert report.entries_verified == N + 3 and report.heads["MZ"].seq == 3
    assert "/api/v1/registry?version=2" in hub.requested or "/api/v1/registry" in hub.requested


def test_envelope_issued_before_admission_is_key_unknown(world: World) -> None:
    """A key is judged by the version in force when the envelope was issued: MZ's envelope dated a day
    before v2 (beyond any clock skew) names a key the registry did not list then."""
    mz = admit_mz(world)
    early = mz.publish(example_bodies("cultural-event")[0], issued=datetime(2020, 1, 1, tzinfo=UTC))
    world.envelopes.append(early)
    report = run_audit(world, SimHub(world.log, hub_key=world.hub_key))
    assert labels(report) == [f"position {N + 4}: key-unknown"]


def revoke_kr(world: World, *, effective: datetime, published: datetime) -> None:
    """Registry v2: KR revokes its key from ``effective`` (the revocation's issued_at, its signer's choice),
    published at ``published``."""
    doc = sign_document({"type": "revocation", "base": 1, "member": "KR", "kid": world.kr.key.kid}, world.kr.key,
                        now=effective)
    world.versions = [world.signed_registry, next_version(
        world.signed_registry, {"action": "revoke", "documents": [doc.to_dict()]}, world.hub_key, now=published)]


def test_audit_flags_envelope_logged_after_its_key_ended(world: World) -> None:
    """KR's key is revoked (published) at T; the hub logs an hour later an envelope signed by it with issued_at
    dated back into its window. Judged at the hub's receipt time by the version in force then, it fails."""
    base = datetime.now(UTC)
    revoke_kr(world, effective=base + timedelta(hours=1), published=base + timedelta(hours=1))
    world.envelopes.append(world.kr.publish(example_bodies("cultural-event")[0], issued=base + timedelta(minutes=30)))
    receipts = [*received_times(world.log)[:-1], format_time(base + timedelta(hours=2))]
    report = run_audit(world, SimHub(world.log, hub_key=world.hub_key, receipts=receipts),
                       now=base + timedelta(hours=3))
    assert labels(report) == [f"position {N + 1}: key-not-valid-at-receipt"]


def test_audit_notes_envelope_signed_by_key_revoked_after_the_fact(world: World) -> None:
    """KR revokes its key from a time before an envelope the hub logged, but publishes that only later: the hub did
    nothing wrong (no failure), and the report names the entry as kept but not verified."""
    base = datetime.now(UTC)
    world.envelopes.append(world.kr.publish(example_bodies("cultural-event")[0], issued=base + timedelta(minutes=30)))
    revoke_kr(world, effective=base + timedelta(minutes=10), published=base + timedelta(hours=1))
    report = run_audit(world, SimHub(world.log, hub_key=world.hub_key), now=base + timedelta(hours=2))
    assert report.ok, report.failure_lines()
    assert report.revoked_after == [N + 1] and report.entries_verified == N
    assert any("revoked after the fact" in line for line in report.summary_lines())


def test_audit_flags_receipt_times_that_go_back(world: World) -> None:
    """A hub that dates an entry's receipt back before earlier entries' (to slip it into a key's window)."""
    receipts = received_times(world.log)
    receipts[5] = "2001-01-01T00:00:00.000Z"
    report = run_audit(world, SimHub(world.log, hub_key=world.hub_key, receipts=receipts))
    assert labels(report) == ["position 6: receipt-time-invalid"]


def test_forged_registry_version_refused(world: World) -> None:
    """A hub that signs a v2 adding a member without the members' votes: the chain walk recomputes v2
    from v1 and its (empty) change, and the audit fails naming the forged step."""
    mz = admit_mz(world)
    bogus = next_version(world.signed_registry, {"action": "renew", "documents": []}, world.hub_key,
                         now=datetime.now(UTC))
    v2 = world.versions[1].registry
    forged = sign_registry(replace(bogus.registry, members=v2.members), world.hub_key)
    world.versions = [world.signed_registry, forged]
    report = run_audit(world, SimHub(world.log, hub_key=world.hub_key))
    assert labels(report) == ["unjustified-change"]
    assert report.entries_read == 0 and mz.seq == 3


def test_registry_version_signed_by_stranger_refused(world: World) -> None:
    """A v2 signed by a key v1 does not list as a hub key (listing itself as the hub) is refused."""
    admit_mz(world)
    stranger = SigningKey.generate()
    v2 = world.versions[1].registry
    forged = sign_registry(replace(v2, hub_keys=(KeyEntry(jwk=stranger.public.to_jwk()),)), stranger)
    world.versions = [world.signed_registry, forged]
    assert labels(run_audit(world, SimHub(world.log, hub_key=world.hub_key))) == ["registry-untrusted-signer"]


class TestHonestHub:
    def test_honest_hub_passes(self, world: World) -> None:
        """Checkpoint signed by the hub and co-signed by KR, every envelope verifies, the root matches."""
        cp = checkpoint_of(world.log, world.hub_key)
        cp = cp.with_signature(cosign(cp, world.kr.key))
        report = run_audit(world, SimHub(world.log, checkpoint=cp))
        assert report.ok, report.failure_lines()
        assert report.log_size == N and report.entries_read == N and report.entries_verified == N
        assert {o: h.seq for o, h in report.heads.items()} == {"QA": N // 2, "KR": N // 2}
        assert report.cosigners == ["KR"]
        summary = "\n".join(report.summary_lines("https://hub.test"))
        assert f"log size {N}" in summary and f"entries verified {N} of {N}" in summary
        assert "KR seq 6, QA seq 6" in summary and "co-signed by KR" in summary and summary.endswith("OK")

    def test_reads_page_by_page_and_stops_at_checkpoint_size(self, world: World) -> None:
        """The log grew after the checkpoint: the audit reads pages of the given limit up to the checkpoint's size."""
        hub = SimHub(world.log, checkpoint=checkpoint_of(world.log, world.hub_key, size=7))
        report = run_audit(world, hub)
        assert report.ok and report.log_size == 7 and report.entries_read == 7
        assert [p for p in hub.requested if p.startswith("/api/v1/log?")] == [
            f"/api/v1/log?after=0&limit={PAGE}", f"/api/v1/log?after={PAGE}&limit={PAGE}"]

    def test_empty_log_passes(self, world: World) -> None:
        """A hub with no checkpoint yet (empty log) passes, with log size 0."""
        report = run_audit(world, SimHub([], hub_key=world.hub_key))
        assert report.ok and report.log_size == 0 and report.checkpoint is None

    def test_later_audit_proves_consistency_with_earlier_checkpoint(self, world: World) -> None:
        """Given the checkpoint of an earlier audit (size 8), the hub's consistency proof to size 12 verifies."""
        earlier = checkpoint_of(world.log, world.hub_key, size=8).checkpoint
        report = run_audit(world, SimHub(world.log, hub_key=world.hub_key), previous=earlier)
        assert report.ok, report.failure_lines()
        assert report.consistent_from == 8
        assert "consistent with the earlier checkpoint of size 8" in report.summary_lines()


# -- dishonest hubs -------------------------------------------------------------------------------------------


class TestDishonestHub:
    @pytest.mark.parametrize("rewrite", ["swapped-entries", "same-seq-fork", "edited-body"])
    def test_hub_rewrites_old_entry_detected(self, world: World, rewrite: str) -> None:
        """The hub serves a rewritten entry but the checkpoint of the original log: root mismatch, and
        whatever the envelopes themselves show.

        swapped-entries: positions 3 (QA seq 2) and 4 (KR seq 2) exchanged; every envelope and chain still
        verifies, only the root gives it away. same-seq-fork: position 3 replaced by another envelope QA validly
        signed with seq 2; QA seq 3 at position 5 no longer chains on it. edited-body: position 3's body edited.
        """
        served = list(world.log)
        if rewrite == "swapped-entries":
            served[2], served[3] = served[3], served[2]
            expected = {"root-mismatch at size 12"}
        elif rewrite == "same-seq-fork":
            seq1 = world.envelopes[0]
            fork = Member("QA", key=world.qa.key, seq=1, prev=seq1.hash).publish(example_bodies("cultural-event")[1])
            assert fork.payload.seq == 2 and fork.hash != world.envelopes[2].hash
            served[2] = fork.to_dict()
            expected = {"position 5: chain-fork", "root-mismatch at size 12"}
        else:
            served[2] = tampered(served[2], title={"en": "Rewritten"})
            expected = {"position 3: bad-signature", "root-mismatch at size 12"}
        report = run_audit(world, SimHub(served, checkpoint=checkpoint_of(world.log, world.hub_key)))
        assert not report.ok
        assert set(labels(report)) == expected, report.failure_lines()

    def test_hub_drops_entry_detected(self, world: World) -> None:
        """The hub drops position 5 (QA seq 3) and renumbers the rest, keeping the checkpoint: QA seq 4 (now at
        position 6) breaks QA's chain, and the log is one entry short of the checkpoint."""
        served = world.log[:4] + world.log[5:]
        report = run_audit(world, SimHub(served, checkpoint=checkpoint_of(world.log, world.hub_key)))
        lines = report.failure_lines()
        assert any(line.startswith("position 6: chain-gap: seq 4 after 2") for line in lines), lines
        assert any(line.startswith("log-truncated at size 11") for line in lines), lines

    def test_hub_drops_entry_and_resigns_checkpoint_detected(self, world: World) -> None:
        """Even with a fresh checkpoint signed over the shortened log (roots agree), the gap in QA's chain shows."""
        served = world.log[:4] + world.log[5:]
        report = run_audit(world, SimHub(served, hub_key=world.hub_key))
        assert labels(report) == ["position 6: chain-gap"]

    def test_hub_skips_a_position_detected(self, world: World) -> None:
        """Positions must run 1..N: a page that jumps from 4 to 6 is named at the missing position."""
        served = world.log[:4] + world.log[5:]
        positions = [*range(1, 5), *range(6, N + 1)]
        report = run_audit(world, SimHub(served, positions=positions, checkpoint=checkpoint_of(world.log,
                                                                                               world.hub_key)))
        lines = report.failure_lines()
        assert lines[0] == "position 5: position-gap: the hub served position 6 next: entries 5..5 are missing"

    def test_hub_repeats_entry_detected(self, world: World) -> None:
        """The hub serves QA seq 2 twice (positions 3 and 4): the second is named as a duplicate or fork."""
        served = [*world.log[:3], world.log[2], *world.log[3:]]
        report = run_audit(world, SimHub(served, hub_key=world.hub_key))
        assert labels(report) == ["position 4: chain-stale"]
        assert "the log holds this origin's seq twice" in report.failure_lines()[0]

    @pytest.mark.parametrize("page", [b"<html>busy</html>", b'{"entries": 5}', b'{"entries": [{"envelope": {}}]}'])
    def test_hub_serving_malformed_page_fails_without_crashing(self, world: World, page: bytes) -> None:
        """A log page that is not a log page is a failure of the hub (exit 1), named by where it was read."""
        hub = SimHub(world.log, hub_key=world.hub_key)
        hub.routes[f"/api/v1/log?after={PAGE}&limit={PAGE}"] = page
        report = run_audit(world, hub)
        assert not report.ok and report.entries_read == PAGE
        assert report.failure_lines()[0].split(":")[0] in (
            f"malformed-json after position {PAGE}", f"malformed-log-page after position {PAGE}", "position 6")

    def test_hub_error_answer_fails(self, world: World) -> None:
        """An HTTP error in the middle of the log (here a page the hub does not hold) ends the audit as a failure."""
        hub = SimHub(world.log, hub_key=world.hub_key)
        del hub.routes[f"/api/v1/log?after={PAGE}&limit={PAGE}"]
        lines = run_audit(world, hub).failure_lines()
        assert lines == [f"not-found: GET /api/v1/log?after={PAGE}&limit={PAGE}: HTTP 404: not held by this hub"]

    def test_hub_rewrites_history_since_last_audit_detected(self, world: World) -> None:
        """Since the audit that saved the checkpoint of size 8, the hub rewrote the log (positions 3 and 4
        swapped: every envelope still verifies) and signed a new checkpoint over it: the consistency proof from
        8 to 12 cannot verify, and the first 8 entries no longer hash to the earlier root."""
        earlier = checkpoint_of(world.log, world.hub_key, size=8).checkpoint
        rewritten = list(world.log)
        rewritten[2], rewritten[3] = rewritten[3], rewritten[2]
        report = run_audit(world, SimHub(rewritten, hub_key=world.hub_key), previous=earlier)
        lines = report.failure_lines()
        assert not report.ok and report.consistent_from is None
        assert any(line.startswith("consistency-proof-invalid from 8 to 12: ") for line in lines), lines
        assert any(line.startswith("history-rewritten at size 8: ") for line in lines), lines
        assert report.entries_verified == N  # nothing but the tree shows it

    def test_bogus_consistency_proof_detected(self, world: World) -> None:
        """An honest log with a consistency proof that does not lead to the roots fails on the proof alone."""
        earlier = checkpoint_of(world.log, world.hub_key, size=8).checkpoint
        hub = SimHub(world.log, hub_key=world.hub_key)
        path = "/api/v1/log/proof/consistency?from=8&to=12"
        doc = json.loads(hub.routes[path])
        doc["proof"][0] = "00" * 32
        hub.routes[path] = json.dumps(doc).encode()
        lines = run_audit(world, hub, previous=earlier).failure_lines()
        assert len(lines) == 1 and lines[0].startswith("consistency-proof-invalid from 8 to 12: ")

    def test_hub_shrinks_log_since_last_audit_detected(self, world: World) -> None:
        """The hub now shows 8 entries where the last audit saw 12: a log never shrinks."""
        earlier = checkpoint_of(world.log, world.hub_key).checkpoint
        report = run_audit(world, SimHub(world.log[:8], hub_key=world.hub_key), previous=earlier)
        assert labels(report) == ["consistency-proof-invalid from 12 to 8"]

    @pytest.mark.parametrize("signer", ["stranger", "member"])
    def test_forged_checkpoint_refused(self, world: World, signer: str) -> None:
        """A checkpoint whose first signature is not by a hub key of the registry (a stranger's key, or a
        member's) is refused, and nothing is audited against it."""
        key = SigningKey.generate() if signer == "stranger" else world.kr.key
        report = run_audit(world, SimHub(world.log, checkpoint=checkpoint_of(world.log, key)))
        assert not report.ok and not report.checkpoint_valid and report.entries_read == 0
        assert labels(report) == ["checkpoint-bad-signature"]

    def test_checkpoint_of_another_network_refused(self, world: World) -> None:
        """A hub-signed checkpoint for another network name is not this network's log."""
        cp = checkpoint_of(world.log, world.hub_key, network="OTHER")
        assert labels(run_audit(world, SimHub(world.log, checkpoint=cp))) == ["checkpoint-wrong-network"]

    def test_tampered_envelope_named_with_position(self, world: World) -> None:
        """A hub that edits one envelope's body (and signs a checkpoint over what it serves): the audit names the
        position and the reason, and only that entry fails."""
        served = list(world.log)
        served[6] = tampered(served[6], title={"en": "Tampered"})
        report = run_audit(world, SimHub(served, hub_key=world.hub_key))
        assert report.failure_lines() == ["position 7: bad-signature: the Ed25519 signature does not verify"]
        assert report.entries_verified == N - 1 and report.entries_read == N

    def test_envelope_by_unregistered_key_named_with_position(self, world: World) -> None:
        """An envelope claiming QA but signed by a key the registry does not list is named at its position."""
        intruder = Member("QA", seq=N // 2, prev=world.envelopes[-2].hash).publish(example_bodies("cultural-event")[0])
        served = [*world.log, intruder.to_dict()]
        assert labels(run_audit(world, SimHub(served, hub_key=world.hub_key))) == [f"position {N + 1}: key-unknown"]


# -- checkpoint files, progress, the command -------------------------------------------------------------------


class TestCheckpointFile:
    def test_saved_checkpoint_loads_for_next_audit(self, world: World, tmp_path: Path) -> None:
        """A checkpoint saved with its co-signatures loads back, its hub signature checked."""
        cp = checkpoint_of(world.log, world.hub_key)
        cp = cp.with_signature(cosign(cp, world.qa.key))
        save_checkpoint(cp, tmp_path / "last.json")
        assert load_checkpoint(tmp_path / "last.json", world.registry) == cp.checkpoint

    def test_edited_saved_checkpoint_refused(self, world: World, tmp_path: Path) -> None:
        """A saved checkpoint whose size was edited (to skip the rewritten part) no longer verifies."""
        cp = checkpoint_of(world.log, world.hub_key, size=8)
        forged = SignedCheckpoint(replace(cp.checkpoint, size=4), cp.payload.replace(b'"size":8', b'"size":4'),
                                  cp.signatures)
        save_checkpoint(forged, tmp_path / "last.json")
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / "last.json", world.registry)


@contextlib.contextmanager
def serve(routes: dict[str, bytes]) -> Iterator[str]:
    """The simulated hub's routes behind a plain HTTP server on loopback (its base URL)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = routes.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if body is not None else b'{"reason":"not-found","detail":"no such path"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class TestCommand:
    def run(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        try:
            code = main(["audit", *argv])
        except SystemExit as e:
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    def test_failures_printed_one_per_line_exit_1(self, world: World, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
        """Over HTTP (the simulated hub behind a plain HTTP server), a tampered entry is printed with its position,
        the command exits 1, and no checkpoint is saved for next time."""
        (tmp_path / "registry.json").write_bytes(world.signed_registry.to_bytes())
        served = list(world.log)
        served[6] = tampered(served[6], title={"en": "Tampered"})
        hub = SimHub(served, hub_key=world.hub_key, limit=1000)
        hub.routes.update(registry_routes(world.chain))
        with serve(hub.routes) as url:
            code, out, err = self.run(capsys, "--hub", url, "--registry", str(tmp_path / "registry.json"),
                                      "--save-checkpoint", str(tmp_path / "last.json"))
        assert code == 1
        assert out.splitlines()[0] == "position 7: bad-signature: the Ed25519 signature does not verify"
        assert out.rstrip().endswith("FAILED: 1 failure(s)")
        assert not (tmp_path / "last.json").exists() and "not writing" in err

    def test_unreachable_hub_is_usage_error(self, world: World, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
        """Nothing listening at --hub: exit 2 with a one-line reason."""
        (tmp_path / "registry.json").write_bytes(world.signed_registry.to_bytes())
        code, out, err = self.run(capsys, "--hub", f"http://127.0.0.1:{free_port()}", "--registry",
                                  str(tmp_path / "registry.json"), "--quiet")
        assert code == 2 and out == ""
        assert len(err.splitlines()) == 1 and err.startswith("ipdn: hub-unreachable: cannot reach")

    @pytest.mark.parametrize("hub", ["file:///etc/passwd", "hub.example"])
    def test_non_http_url_is_usage_error(self, world: World, tmp_path: Path, hub: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
        """--hub must be an http(s) URL (urllib would otherwise open files)."""
        (tmp_path / "registry.json").write_bytes(world.signed_registry.to_bytes())
        code, _, err = self.run(capsys, "--hub", hub, "--registry", str(tmp_path / "registry.json"))
        assert code == 2 and "http:// or https://" in err


@pytest.mark.e2e
class TestAgainstRealHub:
    def test_real_hub_passes_and_later_audit_is_consistent(self, tmp_path: Path) -> None:
        """`ipdn audit` against a real hub process: 10 pushed envelopes verify, the checkpoint is saved; after 6
        more, a second audit from the saved checkpoint proves consistency. Both exit 0."""
        f = Federation(tmp_path, ["QA", "KR"]).init()
        try:
            f.start("hub")
            members = {m: Member(m, key=SigningKey.load(f.root / "keys" / f"{m}.key.pem")) for m in f.members}
            bodies = example_bodies("cultural-event")

            def push(count: int) -> None:
                for m in members.values():
                    envs = [m.publish(bodies[i % len(bodies)]) for i in range(count)]
                    data, headers = push_request(m, envs, f.hub_url)
                    code, doc = http("POST", f.hub_url + "/api/v1/envelopes", data=data, headers=headers)
                    assert code == 200 and {r["status"] for r in doc["results"]} == {"accepted"}, doc

            def ipdn_audit(*extra: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run([IPDN, "audit", "--hub", f.hub_url, "--registry",
                                       str(f.root / "hub" / "registry.json"), *extra],
                                      capture_output=True, text=True, timeout=120)

            push(5)
            saved = tmp_path / "last-checkpoint.json"
            p = ipdn_audit("--save-checkpoint", str(saved))
            assert p.returncode == 0, p.stdout + p.stderr
            assert "log size 10," in p.stdout and "entries verified 10 of 10" in p.stdout
            assert "origins 2: KR seq 5, QA seq 5" in p.stdout and p.stdout.rstrip().endswith("OK")
            assert saved.exists()

            push(3)
            p = ipdn_audit("--from-checkpoint", str(saved), "--save-checkpoint", str(saved))
            assert p.returncode == 0, p.stdout + p.stderr
            assert "log size 16," in p.stdout and "entries verified 16 of 16" in p.stdout
            assert "consistent with the earlier checkpoint of size 10" in p.stdout
        finally:
            f.close()
