"""Governance: registry versions follow only from members' signed decisions (PROTOCOL.md §12)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from federation.protocol.governance import (
    ACTIONS,
    APPLY,
    RENEW,
    GovernanceError,
    check_transition,
    evolve,
    next_version,
    quorum,
    sign_document,
)
from federation.protocol.keys import PublicKey, SigningKey, b64u_encode
from federation.protocol.registry import (
    KeyEntry,
    RegistryError,
    SignedRegistry,
    accept_update,
    genesis,
    parse_registry,
    sign_registry,
)
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import verify_envelope
from tests.support.factories import Member, example_bodies

NOW = datetime.now(UTC)
FOUNDERS = ("QA", "TR", "KR", "HU", "TW", "NG")


class Network:
    """A hub key, six founders, and the current signed registry."""

    def __init__(self) -> None:
        self.hub = SigningKey.generate()
        self.members = {c: Member(c) for c in FOUNDERS}
        self.registry = genesis(hub_key=self.hub, hub_url="https://hub.test",
                                founders=[(m.public, {"en": c}) for c, m in self.members.items()],
                                now=datetime.now(UTC))

    @property
    def base(self) -> int:
        return self.registry.registry.version

    def vote(self, voter: str, subject: Any, decision: str = "approve", key: SigningKey | None = None) -> Any:
        return sign_document({"type": "vote", "base": self.base, "proposal": subject.hash, "voter": voter,
                              "decision": decision}, key or self.members[voter].key, now=datetime.now(UTC))

    def change(self, action: str, docs: list[Any]) -> dict[str, Any]:
        return {"action": action, "documents": [d.to_dict() for d in docs]}

    def advance(self, action: str, docs: list[Any]) -> SignedRegistry:
        new = next_version(self.registry, self.change(action, docs), self.hub, now=datetime.now(UTC))
        check_transition(self.registry, new)
        accept_update(self.registry, new, NOW)
        self.registry = new
        return new

    def application(self, code: str = "MX", key: SigningKey | None = None) -> tuple[SigningKey, Any]:
        new_key = key or SigningKey.generate()
        app = sign_document({"type": "application", "base": self.base, "member": code,
                             "names": {"es": "Secretaría de Cultura", "en": "Mexico's Ministry of Culture"},
                             "contact": {"email": "ipdn@cultura.example"}, "endpoint": "https://ipdn.cultura.example",
                             "key": new_key.public.to_jwk()}, new_key, now=datetime.now(UTC))
        return new_key, app

    def proposal(self, action: str, member: str, proposer: str = "QA") -> Any:
        return sign_document({"type": "proposal", "base": self.base, "action": action, "member": member,
                              "proposer": proposer, "reason": "decided by the General Assembly"},
                             self.members[proposer].key, now=datetime.now(UTC))


@pytest.fixture
def net() -> Network:
    return Network()


def reason(excinfo: Any) -> str:
    return str(excinfo.value.reason)


class TestAdmission:
    def test_applicant_admitted_with_quorum(self, net: Network) -> None:
        """An application approved by two thirds of the active members makes an active member."""
        key, app = net.application()
        assert quorum(net.registry.registry) == 4
        net.advance("admit", [app] + [net.vote(c, app) for c in FOUNDERS[:4]])
        mx = net.registry.registry.member("MX")
        assert mx is not None and mx.status == "active" and mx.endpoint == "https://ipdn.cultura.example"
        assert key.kid in net.registry.registry.member_keys()

    def test_admission_without_quorum_refused(self, net: Network) -> None:
        """Three approvals of six (below two thirds) admit nobody."""
        _, app = net.application()
        with pytest.raises(GovernanceError) as e:
            net.advance("admit", [app] + [net.vote(c, app) for c in FOUNDERS[:3]])
        assert reason(e) == "quorum-not-met"

    def test_rejections_do_not_count(self, net: Network) -> None:
        """Votes against are not approvals."""
        _, app = net.application()
        votes = [net.vote(c, app) for c in FOUNDERS[:3]] + [net.vote("HU", app, "reject")]
        with pytest.raises(GovernanceError):
            net.advance("admit", [app, *votes])

    def test_duplicate_votes_counted_once(self, net: Network) -> None:
        """One member voting four times is one approval."""
        _, app = net.application()
        with pytest.raises(GovernanceError) as e:
            net.advance("admit", [app] + [net.vote("QA", app) for _ in range(4)])
        assert reason(e) == "quorum-not-met"

    def test_votes_from_non_members_refused(self, net: Network) -> None:
        """A vote signed by a key outside the registry (claiming to be a member) is refused."""
        _, app = net.application()
        forged = net.vote("TW", app, key=SigningKey.generate())
        with pytest.raises(GovernanceError) as e:
            net.advance("admit", [app] + [net.vote(c, app) for c in FOUNDERS[:3]] + [forged])
        assert reason(e) == "bad-governance-signature"

    def test_votes_from_suspended_members_refused(self, net: Network) -> None:
        """A suspended member no longer votes."""
        prop = net.proposal("suspend", "NG")
        net.advance("suspend", [prop] + [net.vote(c, prop) for c in FOUNDERS[:4]])
        _, app = net.application()
        with pytest.raises(GovernanceError) as e:
            net.advance("admit", [app] + [net.vote(c, app) for c in ("QA", "TR", "KR", "NG")])
        assert reason(e) == "not-an-active-member"

    def test_application_signed_by_other_key_refused(self, net: Network) -> None:
        """An application must be signed by the key it asks to register."""
        key, _ = net.application()
        _, other = net.application(key=SigningKey.generate())
        forged = sign_document({**other.body, "key": key.public.to_jwk()}, SigningKey.generate(), now=datetime.now(UTC))
        with pytest.raises(GovernanceError) as e:
            net.advance("admit", [forged] + [net.vote(c, forged) for c in FOUNDERS[:4]])
        assert reason(e) == "bad-governance-signature"

    def test_weak_key_admission_refused(self, net: Network) -> None:
        """An application presenting a small-order key (under which OpenSSL accepts an all-zero signature for any
        message, so anyone could forge its envelopes) is refused before any signature is checked."""
        _, app = net.application()
        weak = {"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(bytes(32))}
        body = {k: v for k, v in app.body.items() if k not in ("network", "issued_at")}
        forged = sign_document({**body, "key": weak}, SigningKey.generate(), now=datetime.now(UTC))
        with pytest.raises(GovernanceError) as e:
            net.advance("admit", [forged] + [net.vote(c, forged) for c in FOUNDERS[:4]])
        assert reason(e) == "bad-key"

    def test_stale_votes_replayed_on_later_registry_refused(self, net: Network) -> None:
        """Votes collected for version N do not carry a decision on version N+1."""
        _, app = net.application()
        votes = [net.vote(c, app) for c in FOUNDERS[:4]]
        net.advance("renew", [])
        with pytest.raises(GovernanceError) as e:
            net.advance("admit", [app, *votes])
        assert reason(e) == "stale-governance-document"


class TestHubCannotActAlone:
    def test_hub_adds_member_without_votes_detected(self, net: Network) -> None:
        """A registry version listing an extra member with no justification is refused by nodes."""
        intruder = Member("ZZ")
        reg = net.registry.registry
        bogus = replace(reg, version=reg.version + 1, change={"action": "renew", "documents": []},
                        members=(*reg.members, replace(reg.members[0], code="ZZ", keys=())))
        with pytest.raises(GovernanceError) as e:
            check_transition(net.registry, sign_registry(bogus, net.hub))
        assert reason(e) == "unjustified-change"
        assert intruder.code not in {m.code for m in net.registry.registry.members}

    def test_hub_swaps_member_key_detected(self, net: Network) -> None:
        """Replacing a member's key without that member's rotation is refused."""
        reg = net.registry.registry
        qa = reg.member("QA")
        assert qa is not None
        stolen = replace(qa, keys=(replace(qa.keys[0], jwk=SigningKey.generate().public.to_jwk()),))
        bogus = replace(reg, version=reg.version + 1, change={"action": "renew", "documents": []},
                        members=tuple(stolen if m.code == "QA" else m for m in reg.members))
        with pytest.raises(GovernanceError):
            check_transition(net.registry, sign_registry(bogus, net.hub))

    def test_skipped_version_refused(self, net: Network) -> None:
        """Versions advance one at a time, each justified."""
        new = next_version(net.registry, {"action": "renew", "documents": []}, net.hub, now=datetime.now(UTC))
        skipped = sign_registry(replace(new.registry, version=3), net.hub)
        with pytest.raises(GovernanceError) as e:
            check_transition(net.registry, skipped)
        assert reason(e) == "registry-version-skipped"

    def test_hub_replays_old_registry_refused(self, net: Network) -> None:
        """Once at version 2, a node refuses version 1 again (rollback)."""
        old = net.registry
        net.advance("renew", [])
        with pytest.raises(RegistryError) as e:
            accept_update(net.registry, old, NOW)
        assert reason(e) == "registry-rollback"

    def test_hub_slips_weak_key_into_registry_refused(self, net: Network) -> None:
        """A signed registry listing a small-order key for a member (so that anyone could forge its envelopes for
        verifiers that accept such keys) does not load: every key is checked when a registry is parsed."""
        reg = net.registry.registry
        qa = reg.member("QA")
        assert qa is not None
        weak = KeyEntry(jwk={"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(bytes(32))})
        bogus = sign_registry(replace(reg, members=tuple(replace(m, keys=(*m.keys, weak)) if m.code == "QA" else m
                                                         for m in reg.members)), net.hub)
        with pytest.raises(RegistryError, match="small-order"):
            parse_registry(bogus.to_bytes())

    def test_hub_serves_expired_registry_refused(self, net: Network) -> None:
        """A registry past its expiry is refused (a frozen hub cannot pin nodes to old membership)."""
        new = next_version(net.registry, {"action": "renew", "documents": []}, net.hub,
                           now=NOW - timedelta(days=400))
        with pytest.raises(RegistryError) as e:
            accept_update(net.registry, new, NOW)
        assert reason(e) == "registry-expired"


class TestMembership:
    def test_suspended_members_new_envelopes_refused_old_ones_valid(self, net: Network) -> None:
        """After suspension, NG's earlier envelope still verifies; a new one signed after does not."""
        ng = net.members["NG"]
        before = ng.publish(example_bodies("cultural-event")[0], issued=NOW - timedelta(minutes=1))
        prop = net.proposal("suspend", "NG")
        net.advance("suspend", [prop] + [net.vote(c, prop) for c in FOUNDERS[:4]])
        reg = net.registry.registry
        assert reg.member("NG").status == "suspended"  # type: ignore[union-attr]
        assert verify_envelope(before.to_bytes(), keys=reg.member_keys().get, schemas=default_schemas(),
                               now=NOW).ok

    def test_reinstate_and_self_withdraw(self, net: Network) -> None:
        """A suspended member can be reinstated by quorum; a member withdraws by its own signature."""
        prop = net.proposal("suspend", "TW")
        net.advance("suspend", [prop] + [net.vote(c, prop) for c in FOUNDERS[:4]])
        back = net.proposal("reinstate", "TW")
        net.advance("reinstate", [back] + [net.vote(c, back) for c in FOUNDERS[:4]])
        assert net.registry.registry.member("TW").status == "active"  # type: ignore[union-attr]
        leave = net.proposal("withdraw", "TW", proposer="TW")
        net.advance("withdraw", [leave])
        assert net.registry.registry.member("TW").status == "withdrawn"  # type: ignore[union-attr]

    def test_withdrawal_of_another_member_needs_quorum(self, net: Network) -> None:
        """QA cannot withdraw TW alone."""
        with pytest.raises(GovernanceError):
            net.advance("withdraw", [net.proposal("withdraw", "TW")])


class TestKeys:
    def rotation(self, net: Network, code: str, old: SigningKey, new: SigningKey, effective: datetime,
                 pop_key: SigningKey | None = None) -> list[Any]:
        body = {"type": "rotation", "base": net.base, "member": code, "new_key": new.public.to_jwk(),
                "effective": effective.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
        first = sign_document(body, old, now=NOW)
        second = sign_document(first.body, pop_key or new, now=NOW)
        return [first, second]

    def test_rotation_ends_old_key_at_effective_time(self, net: Network) -> None:
        """After rotation, envelopes by the old key issued after the effective time are refused."""
        kr = net.members["KR"]
        new = SigningKey.generate()
        effective = NOW + timedelta(seconds=1)
        net.advance("rotate", self.rotation(net, "KR", kr.key, new, effective))
        keys = net.registry.registry.member_keys()
        old_pub, new_pub = keys[kr.key.kid], keys[new.kid]
        assert old_pub.valid_at(NOW) and not old_pub.valid_at(effective)
        assert new_pub.valid_at(effective) and not new_pub.valid_at(NOW)

    def test_forged_rotation_refused(self, net: Network) -> None:
        """A rotation signed by someone else's key (a hub or thief claiming KR) is refused."""
        thief = SigningKey.generate()
        docs = self.rotation(net, "KR", SigningKey.generate(), thief, NOW + timedelta(seconds=1))
        with pytest.raises(GovernanceError) as e:
            net.advance("rotate", docs)
        assert reason(e) == "bad-governance-signature"

    def test_rotation_without_proof_of_possession_refused(self, net: Network) -> None:
        """KR cannot register a key it does not hold (e.g. another member's public key)."""
        kr = net.members["KR"]
        docs = self.rotation(net, "KR", kr.key, SigningKey.generate(), NOW + timedelta(seconds=1),
                             pop_key=SigningKey.generate())
        with pytest.raises(GovernanceError):
            net.advance("rotate", docs)

    def test_envelope_under_revoked_key_after_revocation_refused(self, net: Network) -> None:
        """KR revokes its key (compromised) effective in one minute: envelopes issued before stay valid,
        envelopes under that key issued after are refused."""
        kr = net.members["KR"]
        cutoff = NOW + timedelta(minutes=1)
        revoke = sign_document({"type": "revocation", "base": net.base, "member": "KR", "kid": kr.key.kid,
                                "effective": cutoff.isoformat(timespec="milliseconds").replace("+00:00", "Z")},
                               kr.key, now=NOW)
        net.advance("revoke", [revoke])
        keys, schemas = net.registry.registry.member_keys(), default_schemas()
        early = kr.publish(example_bodies("cultural-event")[0], issued=NOW)
        late = kr.publish(example_bodies("cultural-event")[0], issued=NOW + timedelta(minutes=30))
        assert verify_envelope(early.to_bytes(), keys=keys.get, schemas=schemas, now=NOW).ok
        result = verify_envelope(late.to_bytes(), keys=keys.get, schemas=schemas, now=NOW + timedelta(minutes=30))
        assert [f.reason for f in result.failures] == ["key-not-valid"]

    def test_revocation_by_other_member_refused(self, net: Network) -> None:
        """QA cannot revoke KR's key alone."""
        kr = net.members["KR"]
        revoke = sign_document({"type": "revocation", "base": net.base, "member": "KR", "kid": kr.key.kid},
                               net.members["QA"].key, now=datetime.now(UTC))
        with pytest.raises(GovernanceError) as e:
            net.advance("revoke", [revoke])
        assert reason(e) == "bad-governance-signature"

    def test_backdated_rotation_refused(self, net: Network) -> None:
        """A rotation cannot end the old key before it was signed (which would void honest envelopes)."""
        kr = net.members["KR"]
        with pytest.raises(GovernanceError) as e:
            net.advance("rotate", self.rotation(net, "KR", kr.key, SigningKey.generate(), NOW - timedelta(days=1)))
        assert reason(e) == "backdated-governance"


class TestHandover:
    def handover(self, net: Network, new_hub: SigningKey, signer: SigningKey) -> Any:
        return sign_document({"type": "handover", "base": net.base, "chair": "TR",
                              "hub": {"url": "https://hub.tr.example", "keys": [new_hub.public.to_jwk()]}},
                             signer, now=datetime.now(UTC))

    def test_handover_moves_hub_and_chair(self, net: Network) -> None:
        """Signed by the outgoing hub and approved by quorum: new URL and key, TR chairs, old key ended."""
        new_hub = SigningKey.generate()
        doc = self.handover(net, new_hub, net.hub)
        net.advance("handover", [doc] + [net.vote(c, doc) for c in FOUNDERS[:4]])
        reg = net.registry.registry
        assert reg.hub_url == "https://hub.tr.example" and new_hub.kid in reg.hub_public_keys()
        assert reg.member("TR").role == "chair" and reg.member("QA").role == "member"  # type: ignore[union-attr]
        ended = datetime.fromisoformat(doc.body["issued_at"])
        assert not reg.hub_public_keys()[net.hub.kid].valid_at(ended)
        # The next version is signed by the new hub, and nodes follow.
        following = next_version(net.registry, {"action": "renew", "documents": []}, new_hub, now=datetime.now(UTC))
        check_transition(net.registry, following)
        accept_update(net.registry, following, datetime.now(UTC))

    def test_forged_handover_refused(self, net: Network) -> None:
        """A handover not signed by the outgoing hub is refused, however many votes it has."""
        new_hub = SigningKey.generate()
        doc = self.handover(net, new_hub, new_hub)
        with pytest.raises(GovernanceError) as e:
            net.advance("handover", [doc] + [net.vote(c, doc) for c in FOUNDERS])
        assert reason(e) == "bad-governance-signature"

    def test_handover_without_quorum_refused(self, net: Network) -> None:
        """The outgoing hub alone cannot hand the network to anyone."""
        doc = self.handover(net, SigningKey.generate(), net.hub)
        with pytest.raises(GovernanceError) as e:
            net.advance("handover", [doc, net.vote("QA", doc)])
        assert reason(e) == "quorum-not-met"



class TestDispatch:
    def test_every_action_has_its_function(self) -> None:
        """Each action names one function; renewal is the one action without documents."""
        assert set(ACTIONS) == {*APPLY, RENEW}
        assert set(APPLY) == {"admit", "suspend", "reinstate", "withdraw", "rotate", "revoke", "handover"}
        assert {f.__name__ for f in APPLY.values()} == set(APPLY)

    @pytest.mark.parametrize("change", [None, [], {}, {"action": "merge", "documents": []},
                                        {"action": ["admit"], "documents": []}, {"action": 7},
                                        {"action": "admit", "documents": None}, {"action": "renew", "documents": {}}])
    def test_unknown_action_refused(self, net: Network, change: Any) -> None:
        """A change without an action this protocol knows is refused, never taken for another one."""
        with pytest.raises(GovernanceError) as e:
            evolve(net.registry.registry, change)
        assert reason(e) == "governance-malformed"

    def test_action_and_document_must_agree(self, net: Network) -> None:
        """A handover's documents under another action (or another action's under handover) are refused."""
        doc = TestHandover().handover(net, SigningKey.generate(), net.hub)
        votes = [net.vote(c, doc) for c in FOUNDERS[:4]]
        for action in ("admit", "suspend", "rotate", "revoke"):
            with pytest.raises(GovernanceError) as e:
                evolve(net.registry.registry, net.change(action, [doc, *votes]))
            assert reason(e) == "governance-malformed", action
        _, app = net.application()
        with pytest.raises(GovernanceError) as e:
            evolve(net.registry.registry, net.change("handover", [app, *[net.vote(c, app) for c in FOUNDERS[:4]]]))
        assert reason(e) == "governance-malformed"

    def test_renewal_carries_no_documents_and_others_need_some(self, net: Network) -> None:
        """A renewal changes nothing and carries nothing; any other action without documents is refused."""
        assert evolve(net.registry.registry, {"action": "renew", "documents": []}) == net.registry.registry
        _, app = net.application()
        for change in ({"action": "renew", "documents": [app.to_dict()]}, {"action": "admit", "documents": []}):
            with pytest.raises(GovernanceError) as e:
                evolve(net.registry.registry, change)
            assert reason(e) == "governance-malformed"


def test_public_key_helper_roundtrip() -> None:
    """Member keys in factories carry their member code (used above)."""
    m = Member("QA")
    assert isinstance(m.public, PublicKey) and m.public.member == "QA"
