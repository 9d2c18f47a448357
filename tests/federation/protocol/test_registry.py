"""The registry, every party's trust anchor (docs/PROTOCOL.md §7): its form, its own signature, and which
versions a party moves to (no rollback, no freeze, no equivocation, no stranger's signature)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from federation.protocol import jws
from federation.protocol.canonical import canonical_bytes
from federation.protocol.envelope import format_time
from federation.protocol.keys import SigningKey, b64u_encode
from federation.protocol.registry import (
    TYP,
    KeyEntry,
    Member,
    Policies,
    Registry,
    RegistryError,
    SignedRegistry,
    accept_update,
    genesis,
    load_registry,
    load_registry_keys,
    parse_registry,
    sign_registry,
)
from tests.support.factories import Member as Publisher

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Net:
    def __init__(self) -> None:
        self.hub = SigningKey.generate()
        self.qa, self.kr = Publisher("QA"), Publisher("KR")
        self.v1 = genesis(hub_key=self.hub, hub_url="https://hub.test", now=NOW,
                          founders=[(self.qa.public, {"en": "Qatar"}), (self.kr.public, {"en": "Korea"})])

    def next(self, current: SignedRegistry | None = None, key: SigningKey | None = None, **over: Any) -> SignedRegistry:
        reg = (current or self.v1).registry
        over.setdefault("version", reg.version + 1)
        return sign_registry(replace(reg, **over), key or self.hub)


@pytest.fixture
def net() -> Net:
    return Net()


def refused(current: SignedRegistry, new: SignedRegistry, now: datetime = NOW) -> str:
    with pytest.raises(RegistryError) as e:
        accept_update(current, new, now)
    return e.value.reason


def parse_refused(data: bytes) -> str:
    with pytest.raises(RegistryError) as e:
        parse_registry(data)
    return e.value.reason


class TestGenesis:
    def test_founders_listed_active_first_chairs(self, net: Net) -> None:
        """Version 1 lists every founder active with its key; the first founder chairs."""
        reg = net.v1.registry
        assert reg.version == 1 and reg.hub_url == "https://hub.test"
        assert [(m.code, m.role, m.status) for m in reg.members] == [("QA", "chair", "active"),
                                                                     ("KR", "member", "active")]
        assert set(reg.member_keys()) == {net.qa.key.kid, net.kr.key.kid}
        assert reg.member_keys()[net.kr.key.kid].member == "KR"
        assert list(reg.hub_public_keys()) == [net.hub.kid]

    def test_lifetime_and_chair_chosen(self, net: Net) -> None:
        v1 = genesis(hub_key=net.hub, hub_url="https://hub.test", now=NOW, chair="KR", lifetime=timedelta(days=2),
                     founders=[(net.qa.public, {"en": "Qatar"}), (net.kr.public, {"en": "Korea"})])
        assert v1.registry.member("KR").role == "chair"  # type: ignore[union-attr]
        assert v1.registry.expires_at == format_time(NOW + timedelta(days=2))
        assert not v1.registry.expired(NOW + timedelta(days=1)) and v1.registry.expired(NOW + timedelta(days=2))

    def test_keys_listed_without_member_claim(self, net: Net) -> None:
        """The registry says whose a key is; the JWK itself carries no ipdn_member."""
        assert all("ipdn_member" not in k.jwk for m in net.v1.registry.members for k in m.keys)


class TestRoundTrip:
    def test_signed_registry_round_trips_byte_for_byte(self, net: Net) -> None:
        """Parsing keeps the JWS as received: the bytes served are the bytes signed, and the hash is stable."""
        again = parse_registry(net.v1.to_bytes())
        assert again.registry == net.v1.registry
        assert again.to_bytes() == net.v1.to_bytes() and again.hash == net.v1.hash

    def test_dict_round_trip_keeps_every_field(self, net: Net) -> None:
        reg = replace(net.v1.registry, policies=Policies(max_batch=10, clock_skew_seconds=5),
                      members=(*net.v1.registry.members,
                               Member(code="MX", names={"es": "México"}, status="applicant", endpoint="https://mx.test",
                                      contact={"email": "ops@mx.test"})),
                      change={"action": "renew", "documents": []})
        assert Registry.from_dict(reg.to_dict()) == reg

    def test_unknown_policies_ignored_defaults_filled(self) -> None:
        assert Policies.from_dict({"max_batch": 3, "future_rule": 1}) == Policies(max_batch=3)

    def test_key_window_read_from_entry(self, net: Net) -> None:
        entry = KeyEntry(jwk=net.qa.key.public.to_jwk(), not_before="2026-01-01T00:00:00.000Z",
                         not_after="2027-01-01T00:00:00.000Z")
        pub = entry.public("QA")
        assert pub.member == "QA" and pub.valid_at(NOW)
        assert not pub.valid_at(datetime(2025, 12, 31, tzinfo=UTC))
        assert not pub.valid_at(datetime(2027, 1, 1, tzinfo=UTC))  # not_after is exclusive

    def test_load_from_file(self, net: Net, tmp_path: Path) -> None:
        path = tmp_path / "registry.json"
        path.write_bytes(net.v1.to_bytes())
        assert load_registry(path).hash == net.v1.hash
        assert set(load_registry_keys(path)) == {net.qa.key.kid, net.kr.key.kid}

    def test_missing_file_refused(self, tmp_path: Path) -> None:
        with pytest.raises(RegistryError) as e:
            load_registry(tmp_path / "absent.json")
        assert e.value.reason == "registry-invalid"


class TestParseRefusals:
    def test_registry_signed_by_unlisted_key_refused(self, net: Net) -> None:
        """A registry whose signer is not one of the hub keys it lists is not a registry at all."""
        forged = sign_registry(net.v1.registry, SigningKey.generate())
        assert parse_refused(forged.to_bytes()) == "registry-bad-signature"

    def test_registry_altered_after_signing_refused(self, net: Net) -> None:
        """A member added to the payload after the hub signed breaks the signature."""
        doc = net.v1.document.to_dict()
        body = json.loads(net.v1.document.payload)
        body["members"][1]["role"] = "chair"
        altered = {**doc, "payload": b64u_encode(canonical_bytes(body))}
        assert parse_refused(canonical_bytes(altered)) == "registry-bad-signature"

    def test_envelope_signature_replayed_as_registry_refused(self, net: Net) -> None:
        """A hub-signed document of another type (typ) is not accepted as a registry."""
        other = jws.sign(net.v1.document.payload, net.hub, "ipdn-checkpoint+jws")
        assert parse_refused(canonical_bytes(other.to_dict())) == "registry-invalid"

    @pytest.mark.parametrize("data", [b"", b"not json", b"[]", b'{"payload":"","protected":"","signature":""}'])
    def test_not_a_jws_refused(self, data: bytes) -> None:
        assert parse_refused(data) == "registry-invalid"

    def test_duplicate_member_in_json_refused(self, net: Net) -> None:
        """Strict JSON: a document member twice (read one way by us, another by someone else) is refused."""
        raw = net.v1.document.payload.replace(b'"version":1', b'"version":1,"version":2')
        doc = jws.sign(raw, net.hub, TYP)
        assert parse_refused(canonical_bytes(doc.to_dict())) == "registry-invalid"

    @pytest.mark.parametrize(("change", "why"), [
        (lambda d: d.pop("members"), "no members"),
        (lambda d: d["hub"].pop("keys"), "no hub keys"),
        (lambda d: d.update(version=0), "version 0"),
        (lambda d: d.update(version="2"), "version a string"),
        (lambda d: d.update(version=True), "version a boolean"),
        (lambda d: d.update(issued_at="yesterday"), "bad time"),
        (lambda d: d["members"].append(dict(d["members"][0])), "member twice"),
        (lambda d: d["members"][0].update(role="king"), "unknown role"),
        (lambda d: d["members"][0].update(status="banned"), "unknown status"),
    ])
    def test_malformed_registry_refused(self, net: Net, change: Any, why: str) -> None:
        """Each structural rule: a registry with any of these does not load, whoever signed it."""
        body = json.loads(net.v1.document.payload)
        change(body)
        doc = jws.sign(canonical_bytes(body), net.hub, TYP)
        assert parse_refused(canonical_bytes(doc.to_dict())) == "registry-invalid", why

    @pytest.mark.parametrize(("change", "why"), [
        (lambda d: d["members"][0]["keys"][0]["jwk"].update(kid="not-the-thumbprint"), "kid not thumbprint"),
        (lambda d: d["members"][0]["keys"][0]["jwk"].update(kty="RSA"), "not an Ed25519 key"),
    ])
    def test_unusable_jwk_refused_as_bad_key(self, net: Net, change: Any, why: str) -> None:
        """A JWK that is not exactly an Ed25519 public key with its thumbprint is bad-key (PROTOCOL.md §3.1)."""
        body = json.loads(net.v1.document.payload)
        change(body)
        doc = jws.sign(canonical_bytes(body), net.hub, TYP)
        assert parse_refused(canonical_bytes(doc.to_dict())) == "bad-key", why

    def test_weak_member_key_refused(self, net: Net) -> None:
        """A small-order key (under which some libraries accept forged signatures) does not load."""
        weak = KeyEntry(jwk={"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(bytes(32))})
        reg = net.v1.registry
        bogus = replace(reg, members=(replace(reg.members[0], keys=(*reg.members[0].keys, weak)), *reg.members[1:]))
        assert parse_refused(sign_registry(bogus, net.hub).to_bytes()) == "bad-key"


class TestAcceptUpdate:
    def test_next_version_by_trusted_hub_key_accepted(self, net: Net) -> None:
        v2 = net.next()
        assert accept_update(net.v1, v2, NOW) is v2

    def test_same_registry_again_keeps_current(self, net: Net) -> None:
        """Fetching the registry one holds is no change (the same object is returned)."""
        assert accept_update(net.v1, parse_registry(net.v1.to_bytes()), NOW) is net.v1

    def test_hub_key_rotation_by_old_key_accepted(self, net: Net) -> None:
        """The trusted hub key signs the version that names its successor; the successor signs the next."""
        new_hub = SigningKey.generate()
        v2 = net.next(hub_keys=(KeyEntry(jwk=new_hub.public.to_jwk()),))
        with pytest.raises(RegistryError):  # v2 names only new_hub, so hub's signature no longer matches v2 itself
            parse_registry(v2.to_bytes())
        both = (*net.v1.registry.hub_keys, KeyEntry(jwk=new_hub.public.to_jwk()))
        v2 = parse_registry(net.next(hub_keys=both).to_bytes())
        assert accept_update(net.v1, v2, NOW) is v2
        v3 = parse_registry(net.next(v2, new_hub).to_bytes())
        assert accept_update(v2, v3, NOW) is v3

    def test_registry_rollback_refused(self, net: Net) -> None:
        """A hub (or a mirror) serving an older version cannot undo a suspension or a key revocation."""
        v2 = net.next()
        assert refused(v2, net.v1) == "registry-rollback"

    def test_registry_equivocation_refused(self, net: Net) -> None:
        """Two different documents with one version number (a hub showing members different registries)."""
        other = net.next(version=1, policies=Policies(max_batch=1))
        assert refused(net.v1, other) == "registry-conflict"

    def test_registry_freeze_refused(self, net: Net) -> None:
        """A newer version that has already expired cannot pin a party to stale membership."""
        v2 = net.next(expires_at=format_time(NOW - timedelta(seconds=1)))
        assert refused(net.v1, v2) == "registry-expired"

    def test_registry_expiring_at_now_refused(self, net: Net) -> None:
        """Expiry is exclusive: a registry is expired at its expires_at."""
        v2 = net.next(expires_at=format_time(NOW))
        assert refused(net.v1, v2) == "registry-expired"

    def test_registry_from_self_named_hub_refused(self, net: Net) -> None:
        """An attacker's registry naming its own key as the hub's verifies against itself but not against the
        registry the party already trusts."""
        stranger = SigningKey.generate()
        forged = parse_registry(net.next(key=stranger, hub_keys=(KeyEntry(jwk=stranger.public.to_jwk()),)).to_bytes())
        assert refused(net.v1, forged) == "registry-untrusted-signer"

    def test_registry_signed_by_retired_hub_key_refused(self, net: Net) -> None:
        """A hub key past its not_after (a leaked old key) cannot sign the next version."""
        retired = (KeyEntry(jwk=net.hub.public.to_jwk(), not_after=format_time(NOW - timedelta(days=1))),)
        current = net.next(version=1, hub_keys=retired)
        assert refused(current, net.next(current)) == "registry-untrusted-signer"

    def test_registry_signed_by_hub_key_not_yet_valid_refused(self, net: Net) -> None:
        early = (KeyEntry(jwk=net.hub.public.to_jwk(), not_before=format_time(NOW + timedelta(days=1))),)
        current = net.next(version=1, hub_keys=early)
        assert refused(current, net.next(current)) == "registry-untrusted-signer"
        assert accept_update(current, net.next(current), NOW + timedelta(days=1)).registry.version == 2

    def test_rollback_checked_before_signature(self, net: Net) -> None:
        """An old version is refused as a rollback whoever signed it (the reason says what the hub did)."""
        v3 = net.next(net.next())
        assert refused(v3, net.next(version=2, key=net.hub)) == "registry-rollback"
