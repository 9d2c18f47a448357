"""The envelope container: construction rules, exact bytes kept, tamper evidence."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from federation.protocol import jws
from federation.protocol.canonical import canonical_bytes
from federation.protocol.envelope import TYP, Envelope, Payload
from federation.protocol.errors import EnvelopeFormatError, IpdnError
from federation.protocol.keys import b64u_decode, b64u_encode
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import keys_resolver, verify_envelope
from tests.support.factories import Member, example_bodies

NOW = datetime.now(UTC)


@pytest.fixture
def qa() -> Member:
    return Member("QA")


def payload_fields(**over: object) -> dict[str, object]:
    base: dict[str, object] = dict(origin="QA", seq=1, prev=None, record_id="QA:x", version=1,
                                   kind="cultural-event", schema="https://schemas.ipdn.network/cultural-event/v1",
                                   op="put", issued_at="2026-11-29T06:00:00.000Z", body={})
    return {**base, **over}


class TestPayloadRules:
    @pytest.mark.parametrize(("over", "why"), [
        ({"origin": "qa"}, "origin"),
        ({"record_id": "QA x"}, "record_id"),
        ({"seq": 0}, "seq"),
        ({"seq": True}, "seq"),
        ({"version": 1.0}, "version"),
        ({"seq": 2, "prev": None}, "prev"),
        ({"prev": "ab" * 32}, "prev"),
        ({"op": "patch"}, "op"),
        ({"op": "delete"}, "body"),
        ({"body": None}, "body"),
        ({"issued_at": "2026-11-29T06:00:00"}, "issued_at"),  # no offset: no instant (an offset is fine, §1)
        ({"schema": "http://insecure/x"}, "schema"),
    ])
    def test_malformed_payload_refused(self, over: dict[str, object], why: str) -> None:
        """Each structural rule of docs/PROTOCOL.md §3 is enforced when the payload is built."""
        with pytest.raises(EnvelopeFormatError):
            Payload(**payload_fields(**over))  # type: ignore[arg-type]

    def test_record_id_in_another_origins_namespace_refused(self) -> None:
        """A member cannot publish (or overwrite) a record id of another member."""
        with pytest.raises(EnvelopeFormatError) as e:
            Payload(**payload_fields(record_id="KR:x"))  # type: ignore[arg-type]
        assert e.value.reason == "foreign-record-id"

    def test_unknown_payload_member_refused(self) -> None:
        """Extra signed members would be ignored by some verifiers and honoured by others."""
        with pytest.raises(EnvelopeFormatError):
            Payload.from_dict({**payload_fields(), "extra": 1})

    def test_bidi_control_in_record_id_refused(self) -> None:
        """Identifiers with bidi overrides are refused at intake."""
        with pytest.raises(IpdnError) as e:
            Payload(**payload_fields(record_id="QA:a\u202eb"))  # type: ignore[arg-type]
        assert e.value.reason == "bidi-in-identifier"


class TestWireForm:
    def test_payload_is_canonical_and_kept(self, qa: Member) -> None:
        """The payload carries the RFC 8785 bytes, and parsing keeps exactly those bytes."""
        body = example_bodies("cultural-event")[0]
        env = qa.publish(body)
        assert env.jws.payload == canonical_bytes(env.payload.to_dict())
        again = Envelope.from_bytes(env.to_bytes())
        assert again.jws.payload == env.jws.payload and again.hash == env.hash and again.payload == env.payload

    def test_wire_bytes_are_compact_json(self, qa: Member) -> None:
        """to_bytes formats the JWS directly; it must give what json.dumps gives, and parse back."""
        env = qa.publish(example_bodies("cultural-event")[0])
        assert env.to_bytes() == json.dumps(env.to_dict(), separators=(",", ":")).encode("ascii")
        assert json.loads(env.to_bytes()) == env.to_dict()

    @pytest.mark.parametrize("layout", [
        pytest.param({"indent": 3, "ensure_ascii": False}, id="indented"),
        pytest.param({"separators": (",", ":"), "ensure_ascii": True}, id="u-escapes"),
        pytest.param({"separators": (",", ":"), "ensure_ascii": False, "sort_keys": False}, id="members-unsorted"),
    ])
    def test_second_encoding_of_one_record_refused(self, qa: Member, layout: dict[str, object]) -> None:
        """Correctly signed payload bytes that are not the JCS of the payload would give one record two hashes
        (two chain links, two log entries): refused at intake as payload-not-canonical (PROTOCOL.md §3.2)."""
        body = example_bodies("cultural-event")[0]
        fields = payload_fields(body=body, issued_at="2026-11-29T06:00:00.000Z")
        if layout.get("sort_keys") is False:
            fields = dict(reversed(list(fields.items())))
        raw = json.dumps(fields, **layout).encode()  # type: ignore[arg-type]
        assert raw != canonical_bytes(fields)
        doc = jws.sign(raw, qa.key, TYP)
        result = verify_envelope(json.dumps(doc.to_dict()).encode(), keys=keys_resolver({qa.key.kid: qa.public}),
                                 schemas=default_schemas(), now=NOW)
        assert [f.reason for f in result.failures] == ["payload-not-canonical"]

    def test_second_encoding_of_the_header_refused(self, qa: Member) -> None:
        """A protected header with a space in it: header-not-canonical (PROTOCOL.md §3.1)."""
        env = qa.publish(example_bodies("cultural-event")[0])
        header = json.dumps({"alg": "EdDSA", "kid": qa.key.kid, "typ": TYP}).encode()
        protected = b64u_encode(header)
        signature = qa.key.sign(f"{protected}.{env.jws.payload_b64}".encode())
        doc = {"protected": protected, "payload": env.jws.payload_b64, "signature": b64u_encode(signature)}
        result = verify_envelope(json.dumps(doc).encode(), keys=keys_resolver({qa.key.kid: qa.public}),
                                 schemas=default_schemas(), now=NOW)
        assert [f.reason for f in result.failures] == ["header-not-canonical"]

    def test_any_flipped_byte_fails_verification(self, qa: Member) -> None:
        """Flipping one bit of any byte of the wire form makes verification fail, with a reason."""
        env = qa.publish(example_bodies("cultural-event")[0])
        wire = env.to_bytes()
        keys = keys_resolver({qa.key.kid: qa.public})
        schemas = default_schemas()
        passed = []
        for i in range(len(wire)):
            tampered = bytearray(wire)
            tampered[i] ^= 0x01
            result = verify_envelope(bytes(tampered), keys=keys, schemas=schemas, now=NOW)
            if result.ok or not result.reason:
                passed.append(i)
        assert passed == []

    def test_alg_none_downgrade_refused(self, qa: Member) -> None:
        """A header with alg none (or any alg but EdDSA) is refused before any key is used."""
        env = qa.publish(example_bodies("cultural-event")[0])
        doc = env.to_dict()
        doc["protected"] = b64u_encode(canonical_bytes({"alg": "none", "kid": qa.key.kid, "typ": TYP}))
        with pytest.raises(EnvelopeFormatError) as e:
            Envelope.from_dict(doc)
        assert e.value.reason == "unsupported-alg"

    def test_other_document_type_refused(self, qa: Member) -> None:
        """A registry or checkpoint signature cannot be replayed as an envelope (typ is signed)."""
        doc = jws.sign(canonical_bytes(payload_fields()), qa.key, "ipdn-registry+jws")
        with pytest.raises(EnvelopeFormatError) as e:
            Envelope.from_dict(doc.to_dict())
        assert e.value.reason == "wrong-typ"

    def test_padded_base64_refused(self, qa: Member) -> None:
        """Standard base64 with padding is a second encoding of the same bytes: refused."""
        env = qa.publish(example_bodies("cultural-event")[0])
        doc = env.to_dict()
        doc["payload"] = base64.b64encode(b64u_decode(doc["payload"])).decode()
        with pytest.raises(EnvelopeFormatError):
            Envelope.from_dict(doc)
