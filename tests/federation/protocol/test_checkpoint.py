"""Signed checkpoints of the hub's log and members' co-signatures (docs/PROTOCOL.md §11)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from federation.protocol import jws
from federation.protocol.canonical import canonical_bytes
from federation.protocol.checkpoint import (
    TYP,
    Checkpoint,
    CheckpointError,
    SignedCheckpoint,
    cosign,
    parse_checkpoint,
    sign_checkpoint,
    signature_entry,
)
from federation.protocol.keys import PublicKey, SigningKey, b64u_decode, b64u_encode

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ROOT = hashlib.sha256(b"the log").digest()


class Keys:
    def __init__(self) -> None:
        self.hub = SigningKey.generate()
        self.qa, self.kr = SigningKey.generate(), SigningKey.generate()
        self.hub_keys = {self.hub.kid: self.hub.public}
        self.member_keys = {k.kid: PublicKey(k.public.key, k.kid, member=m) for m, k in (("QA", self.qa),
                                                                                         ("KR", self.kr))}


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def signed(keys: Keys) -> SignedCheckpoint:
    return sign_checkpoint("IPDN", 42, ROOT, keys.hub, NOW)


def parse_refused(obj: Any) -> CheckpointError:
    with pytest.raises(CheckpointError) as e:
        parse_checkpoint(obj)
    return e.value


class TestSigning:
    def test_checkpoint_states_size_root_and_time(self, signed: SignedCheckpoint) -> None:
        cp = signed.checkpoint
        assert (cp.network, cp.size, cp.root, cp.issued_at) == ("IPDN", 42, ROOT.hex(), "2026-12-01T12:00:00.000Z")
        assert cp.root_bytes == ROOT
        assert signed.payload == canonical_bytes(cp.to_dict())

    def test_hub_signature_verifies_without_cosigners(self, keys: Keys, signed: SignedCheckpoint) -> None:
        assert signed.verify(keys.hub_keys, keys.member_keys) == []
        assert signed.signers() == [keys.hub.kid]

    def test_empty_log_checkpoint(self, keys: Keys) -> None:
        """Size 0 with the empty tree's root is a valid checkpoint."""
        cp = sign_checkpoint("IPDN", 0, hashlib.sha256(b"").digest(), keys.hub, NOW)
        assert cp.verify(keys.hub_keys, {}) == []

    def test_general_serialization_verifies_as_plain_jws(self, keys: Keys, signed: SignedCheckpoint) -> None:
        """Each signature entry with the payload is an ordinary flattened JWS: any JOSE library verifies it."""
        obj = signed.to_dict()
        flat = {**obj["signatures"][0], "payload": obj["payload"]}
        doc = jws.parse(flat, TYP)
        assert doc.payload == signed.payload and doc.verify_with(keys.hub.public)


class TestRoundTrip:
    def test_parse_keeps_payload_and_signatures(self, keys: Keys, signed: SignedCheckpoint) -> None:
        cosigned = signed.with_signature(cosign(signed, keys.qa))
        again = parse_checkpoint(json.loads(cosigned.to_bytes()))
        assert again == cosigned
        assert again.to_bytes() == cosigned.to_bytes()
        assert again.verify(keys.hub_keys, keys.member_keys) == ["QA"]

    def test_checkpoint_dict_round_trip(self, signed: SignedCheckpoint) -> None:
        assert Checkpoint.from_dict(signed.checkpoint.to_dict()) == signed.checkpoint


class TestCosigning:
    def test_members_cosign_in_order(self, keys: Keys, signed: SignedCheckpoint) -> None:
        """Members who verified the checkpoint add their signatures; verify names each, the hub's stays first."""
        both = signed.with_signature(cosign(signed, keys.qa)).with_signature(cosign(signed, keys.kr))
        assert both.signers() == [keys.hub.kid, keys.qa.kid, keys.kr.kid]
        assert both.verify(keys.hub_keys, keys.member_keys) == ["QA", "KR"]

    def test_cosigning_again_replaces_the_earlier_signature(self, keys: Keys, signed: SignedCheckpoint) -> None:
        """One key counts once: a member re-sending its co-signature does not count twice."""
        twice = signed.with_signature(cosign(signed, keys.qa)).with_signature(cosign(signed, keys.qa))
        assert twice.signers() == [keys.hub.kid, keys.qa.kid]
        assert twice.verify(keys.hub_keys, keys.member_keys) == ["QA"]

    def test_cosignature_of_another_checkpoint_not_counted(self, keys: Keys, signed: SignedCheckpoint) -> None:
        """A co-signature over another size or root (moved onto this checkpoint) vouches for nothing here."""
        other = sign_checkpoint("IPDN", 41, ROOT, keys.hub, NOW)
        moved = signed.with_signature(cosign(other, keys.qa))
        assert moved.verify(keys.hub_keys, keys.member_keys) == []

    def test_cosignature_by_unknown_key_not_counted(self, keys: Keys, signed: SignedCheckpoint) -> None:
        """A stranger's co-signature is carried but names no member."""
        stranger = signed.with_signature(cosign(signed, SigningKey.generate()))
        assert stranger.verify(keys.hub_keys, keys.member_keys) == []

    def test_hub_key_cosigning_as_member_not_counted(self, keys: Keys, signed: SignedCheckpoint) -> None:
        """The hub cannot witness itself: its key is not a member key, so its second signature names nobody."""
        extra_hub = SigningKey.generate()
        hub_keys = {**keys.hub_keys, extra_hub.kid: extra_hub.public}
        selfwitness = signed.with_signature(cosign(signed, extra_hub))
        assert selfwitness.verify(hub_keys, keys.member_keys) == []

    def test_key_without_member_not_counted(self, keys: Keys, signed: SignedCheckpoint) -> None:
        loose = SigningKey.generate()
        cp = signed.with_signature(cosign(signed, loose))
        assert cp.verify(keys.hub_keys, {**keys.member_keys, loose.kid: loose.public}) == []

    def test_forged_cosignature_not_counted(self, keys: Keys, signed: SignedCheckpoint) -> None:
        """A co-signature entry naming QA's kid but signed by someone else does not count as QA's."""
        forged = {"protected": cosign(signed, keys.qa)["protected"],
                  "signature": cosign(signed, SigningKey.generate())["signature"]}
        assert signed.with_signature(forged).verify(keys.hub_keys, keys.member_keys) == []

    def test_cosignature_not_base64url_not_counted(self, keys: Keys, signed: SignedCheckpoint) -> None:
        entry = {**cosign(signed, keys.qa), "signature": "not base64url!"}
        assert signed.with_signature(entry).verify(keys.hub_keys, keys.member_keys) == []


class TestHubSignatureRefused:
    def test_checkpoint_signed_by_stranger_refused(self, keys: Keys) -> None:
        """A checkpoint not signed by a hub key (someone else's view of the log) is refused."""
        forged = sign_checkpoint("IPDN", 42, ROOT, SigningKey.generate(), NOW)
        with pytest.raises(CheckpointError) as e:
            forged.verify(keys.hub_keys, keys.member_keys)
        assert e.value.reason == "checkpoint-bad-signature"

    def test_checkpoint_signed_by_member_refused(self, keys: Keys) -> None:
        """A member key cannot stand in for the hub's."""
        forged = sign_checkpoint("IPDN", 42, ROOT, keys.qa, NOW)
        with pytest.raises(CheckpointError) as e:
            forged.verify(keys.hub_keys, keys.member_keys)
        assert e.value.reason == "checkpoint-bad-signature"

    def test_checkpoint_with_cosignature_first_refused(self, keys: Keys, signed: SignedCheckpoint) -> None:
        """The hub's signature is the first: a member's signature moved to the front does not pass as the hub's."""
        reordered = SignedCheckpoint(signed.checkpoint, signed.payload, (cosign(signed, keys.qa), *signed.signatures))
        with pytest.raises(CheckpointError) as e:
            reordered.verify(keys.hub_keys, keys.member_keys)
        assert e.value.reason == "checkpoint-bad-signature"

    def test_checkpoint_without_signatures_refused(self, keys: Keys, signed: SignedCheckpoint) -> None:
        unsigned = SignedCheckpoint(signed.checkpoint, signed.payload, ())
        with pytest.raises(CheckpointError) as e:
            unsigned.verify(keys.hub_keys, keys.member_keys)
        assert e.value.reason == "checkpoint-bad-signature"

    def test_checkpoint_size_altered_refused(self, keys: Keys, signed: SignedCheckpoint) -> None:
        """A hub signature over size 42 does not vouch for size 43 with the same root (a rewritten history)."""
        cp = Checkpoint("IPDN", 43, ROOT.hex(), signed.checkpoint.issued_at)
        altered = parse_checkpoint({"payload": b64u_encode(canonical_bytes(cp.to_dict())),
                                    "signatures": list(signed.signatures)})
        with pytest.raises(CheckpointError) as e:
            altered.verify(keys.hub_keys, keys.member_keys)
        assert e.value.reason == "checkpoint-bad-signature"


def payload_of(d: dict[str, Any]) -> str:
    return b64u_encode(json.dumps(d).encode())


GOOD = {"network": "IPDN", "size": 1, "root": "ab" * 32, "issued_at": "2026-12-01T12:00:00.000Z"}


class TestParseRefusals:
    @pytest.mark.parametrize("obj", [None, [], "x", {"payload": ""}, {"payload": "", "signatures": {}},
                                     {"payload": "", "signatures": [], "extra": 1}])
    def test_not_a_checkpoint_document_refused(self, obj: Any) -> None:
        assert parse_refused(obj).reason == "checkpoint-invalid"

    @pytest.mark.parametrize(("payload", "why"), [
        ({**GOOD, "size": -1}, "negative size"),
        ({**GOOD, "size": 1.0}, "float size"),
        ({**GOOD, "size": True}, "boolean size"),
        ({**GOOD, "root": "AB" * 32}, "upper-case root"),
        ({**GOOD, "root": "ab" * 31}, "short root"),
        ({**GOOD, "issued_at": "2026-12-01"}, "bad time"),
        ({**GOOD, "extra": 1}, "extra member"),
        ({k: v for k, v in GOOD.items() if k != "network"}, "missing network"),
    ])
    def test_malformed_payload_refused(self, signed: SignedCheckpoint, payload: dict[str, Any], why: str) -> None:
        obj = {"payload": payload_of(payload), "signatures": list(signed.signatures)}
        assert parse_refused(obj).reason == "checkpoint-invalid", why

    @pytest.mark.parametrize("raw", [b"[1]", b"not json", b'{"size":1,"size":2}', b'{"a":{"b":{"c":{"d":{}}}}}'])
    def test_payload_not_strict_json_refused(self, signed: SignedCheckpoint, raw: bytes) -> None:
        obj = {"payload": b64u_encode(raw), "signatures": list(signed.signatures)}
        assert parse_refused(obj).reason == "checkpoint-invalid"

    def test_payload_not_base64url_refused(self, signed: SignedCheckpoint) -> None:
        assert parse_refused({"payload": "a+b=", "signatures": list(signed.signatures)}).reason == "checkpoint-invalid"

    @pytest.mark.parametrize("entry", [
        "sig", {"protected": "x"}, {"protected": "x", "signature": "y", "header": {}},
    ])
    def test_malformed_signature_entry_refused(self, signed: SignedCheckpoint, entry: Any) -> None:
        obj = {**signed.to_dict(), "signatures": [*signed.signatures, entry]}
        assert parse_refused(obj).reason == "checkpoint-invalid"

    @pytest.mark.parametrize("header", [
        {"alg": "none", "kid": "k", "typ": TYP},
        {"alg": "HS256", "kid": "k", "typ": TYP},
        {"alg": "EdDSA", "kid": "k", "typ": "ipdn-registry+jws"},
        {"alg": "EdDSA", "typ": TYP},
        {"alg": "EdDSA", "kid": 1, "typ": TYP},
    ])
    def test_signature_header_not_eddsa_checkpoint_refused(self, signed: SignedCheckpoint,
                                                           header: dict[str, Any]) -> None:
        """alg none or another algorithm, another document type, or no kid: refused when parsed."""
        entry = {"protected": b64u_encode(json.dumps(header).encode()), "signature": b64u_encode(bytes(64))}
        obj = {**signed.to_dict(), "signatures": [entry]}
        assert parse_refused(obj).reason == "checkpoint-invalid"

    def test_signature_header_not_json_refused(self, signed: SignedCheckpoint) -> None:
        entry = {"protected": b64u_encode(b"{"), "signature": b64u_encode(bytes(64))}
        assert parse_refused({**signed.to_dict(), "signatures": [entry]}).reason == "checkpoint-invalid"

    def test_registry_signature_replayed_as_checkpoint_refused(self, keys: Keys) -> None:
        """A hub signature over another kind of document (typ registry) is not a checkpoint signature."""
        payload = canonical_bytes(GOOD)
        doc = jws.sign(payload, keys.hub, "ipdn-registry+jws").to_dict()
        entry = {"protected": doc["protected"], "signature": doc["signature"]}
        obj = {"payload": doc["payload"], "signatures": [entry]}
        assert parse_refused(obj).reason == "checkpoint-invalid"

    def test_with_signature_refuses_malformed_entry(self, signed: SignedCheckpoint) -> None:
        with pytest.raises(CheckpointError):
            signed.with_signature({"protected": b64u_encode(b"[]"), "signature": ""})

    def test_signature_entry_header_decodes(self, keys: Keys) -> None:
        entry = signature_entry(b"{}", keys.qa)
        assert json.loads(b64u_decode(entry["protected"])) == {"alg": "EdDSA", "kid": keys.qa.kid, "typ": TYP}
