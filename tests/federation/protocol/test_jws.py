"""Flattened JWS with EdDSA (RFC 7515 §7.2.2, RFC 8037): the container every signed document travels in."""

from __future__ import annotations

import json
from typing import Any

import pytest

from federation.protocol import jws
from federation.protocol.canonical import canonical_bytes
from federation.protocol.errors import EnvelopeFormatError, InputError
from federation.protocol.keys import SigningKey, b64u_decode, b64u_encode

TYP = "ipdn-test+jws"
PAYLOAD = canonical_bytes({"hello": "world", "n": 1})


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def signed(key: SigningKey) -> dict[str, str]:
    return jws.sign(PAYLOAD, key, TYP).to_dict()


def with_header(key: SigningKey, header: dict[str, Any], *, sign_it: bool = True) -> dict[str, str]:
    """A JWS whose protected header is ``header`` (signed with ``key`` over it, so only the header is wrong)."""
    protected = b64u_encode(canonical_bytes(header))
    payload = b64u_encode(PAYLOAD)
    sig = key.sign(f"{protected}.{payload}".encode()) if sign_it else bytes(64)
    return {"protected": protected, "payload": payload, "signature": b64u_encode(sig)}


def refusal(obj: Any, typ: str = TYP) -> EnvelopeFormatError:
    with pytest.raises(EnvelopeFormatError) as e:
        jws.parse(obj, typ)
    return e.value


class TestRoundTrip:
    def test_signed_document_parses_and_verifies(self, key: SigningKey) -> None:
        """What sign() makes, parse() reads back member for member, and the signature verifies."""
        doc = jws.sign(PAYLOAD, key, TYP)
        again = jws.parse(doc.to_dict(), TYP)
        assert again == doc
        assert again.payload == PAYLOAD and again.kid == key.kid
        assert again.header == {"alg": "EdDSA", "kid": key.kid, "typ": TYP}
        assert again.verify_with(key.public)

    def test_signing_input_is_the_received_text(self, key: SigningKey) -> None:
        """The signing input is protected "." payload exactly as received (RFC 7515 §5.2), never re-encoded."""
        obj = signed(key)
        doc = jws.parse(obj, TYP)
        assert doc.signing_input == f"{obj['protected']}.{obj['payload']}".encode()
        assert doc.to_dict() == obj

    def test_protected_header_is_canonical(self, key: SigningKey) -> None:
        """The header is the signer's RFC 8785 bytes, so two signers of one document agree on it."""
        obj = signed(key)
        assert b64u_decode(obj["protected"]) == canonical_bytes({"alg": "EdDSA", "kid": key.kid, "typ": TYP})

    def test_header_with_extra_members_accepted(self, key: SigningKey) -> None:
        """Unknown header members other than crit and b64 are ignored, as JOSE allows."""
        doc = jws.parse(with_header(key, {"alg": "EdDSA", "kid": key.kid, "typ": TYP, "cty": "json"}), TYP)
        assert doc.verify_with(key.public)


class TestForgery:
    def test_payload_swapped_after_signing_fails_verification(self, key: SigningKey) -> None:
        """Another payload under the same header and signature parses but does not verify."""
        obj = {**signed(key), "payload": b64u_encode(canonical_bytes({"hello": "mallory", "n": 1}))}
        assert not jws.parse(obj, TYP).verify_with(key.public)

    def test_other_key_does_not_verify(self, key: SigningKey) -> None:
        """A signature verifies only with the key that made it."""
        assert not jws.parse(signed(key), TYP).verify_with(SigningKey.generate().public)

    @pytest.mark.parametrize("dumps", [
        pytest.param(lambda h: json.dumps(dict(reversed(list(h.items()))), separators=(",", ":")), id="reordered"),
        pytest.param(lambda h: json.dumps(h, sort_keys=True), id="spaced"),
        pytest.param(lambda h: json.dumps(h, separators=(",", ":"), sort_keys=True).replace('"a', '"\\u0061'),
                     id="escaped"),
    ])
    def test_second_encoding_of_a_header_refused(self, key: SigningKey, dumps: Any) -> None:
        """The same header in other bytes, even signed correctly: header-not-canonical (PROTOCOL.md §3.1)."""
        obj = signed(key)
        header = json.loads(b64u_decode(obj["protected"]))
        protected = b64u_encode(dumps(header).encode())
        assert protected != obj["protected"] and json.loads(b64u_decode(protected)) == header
        sig = key.sign(f"{protected}.{obj['payload']}".encode())
        assert refusal({**obj, "protected": protected, "signature": b64u_encode(sig)}).reason == "header-not-canonical"


class TestRefusals:
    @pytest.mark.parametrize("obj", [
        None, [], "a.b.c", {"protected": "", "payload": ""},
        {"protected": "", "payload": "", "signature": "", "header": {}},
    ])
    def test_not_a_flattened_jws_refused(self, obj: Any) -> None:
        """Only the three members of the flattened serialization: no compact form, no unprotected header."""
        assert refusal(obj).reason == "malformed-envelope"

    @pytest.mark.parametrize("member", ["protected", "payload", "signature"])
    @pytest.mark.parametrize("bad", ["a+b/", "YQ==", "YR", 7])
    def test_member_not_strict_base64url_refused(self, key: SigningKey, member: str, bad: Any) -> None:
        """Padding, the standard alphabet, non-zero trailing bits or a non-string are not base64url."""
        assert refusal({**signed(key), member: bad}).reason == "malformed-envelope"

    def test_alg_none_refused(self, key: SigningKey) -> None:
        """alg none (an unsigned token passing as signed) is refused: the algorithm is fixed (RFC 8725 §3.1)."""
        e = refusal(with_header(key, {"alg": "none", "kid": key.kid, "typ": TYP}, sign_it=False))
        assert e.reason == "unsupported-alg"

    @pytest.mark.parametrize("alg", ["HS256", "ES256", "RS256", "eddsa", None])
    def test_algorithm_substitution_refused(self, key: SigningKey, alg: Any) -> None:
        """The header never chooses the algorithm (no HS256 keyed with the public key)."""
        assert refusal(with_header(key, {"alg": alg, "kid": key.kid, "typ": TYP})).reason == "unsupported-alg"

    def test_document_of_another_type_refused(self, key: SigningKey) -> None:
        """A signature over one kind of document is not accepted as another (typ is signed and checked)."""
        e = refusal(signed(key), "ipdn-envelope+jws")
        assert e.reason == "wrong-typ"

    def test_missing_typ_refused(self, key: SigningKey) -> None:
        assert refusal(with_header(key, {"alg": "EdDSA", "kid": key.kid})).reason == "wrong-typ"

    @pytest.mark.parametrize("header", [
        {"alg": "EdDSA", "typ": TYP},
        {"alg": "EdDSA", "typ": TYP, "kid": 7},
    ])
    def test_header_without_string_kid_refused(self, key: SigningKey, header: dict[str, Any]) -> None:
        assert refusal(with_header(key, header)).reason == "malformed-envelope"

    def test_crit_header_refused(self, key: SigningKey) -> None:
        """An extension the verifier must understand (crit) is one we do not: refused, not ignored."""
        header = {"alg": "EdDSA", "kid": key.kid, "typ": TYP, "crit": ["exp"], "exp": 1}
        assert refusal(with_header(key, header)).reason == "malformed-envelope"

    def test_unencoded_payload_option_refused(self, key: SigningKey) -> None:
        """b64 false (RFC 7797) would sign other bytes than the ones carried."""
        header = {"alg": "EdDSA", "kid": key.kid, "typ": TYP, "b64": False}
        assert refusal(with_header(key, header)).reason == "malformed-envelope"

    def test_bidi_control_in_kid_refused(self, key: SigningKey) -> None:
        """A kid with a bidi override could display as another key's id."""
        header = {"alg": "EdDSA", "kid": key.kid[:4] + "\u202e" + key.kid[4:], "typ": TYP}
        # raised by the identifier check as the StrictJsonError it is, not wrapped as EnvelopeFormatError
        with pytest.raises(InputError) as e:
            jws.parse(with_header(key, header), TYP)
        assert e.value.reason == "bidi-in-identifier"

    def test_header_not_an_object_refused(self, key: SigningKey) -> None:
        obj = {**signed(key), "protected": b64u_encode(b'["EdDSA"]')}
        assert refusal(obj).reason == "malformed-envelope"

    def test_duplicate_header_member_refused(self, key: SigningKey) -> None:
        """A header with alg twice could be read as EdDSA by one parser and as none by another."""
        raw = f'{{"alg":"none","alg":"EdDSA","kid":"{key.kid}","typ":"{TYP}"}}'.encode()
        assert refusal({**signed(key), "protected": b64u_encode(raw)}).reason == "duplicate-key"

    def test_oversized_header_refused(self, key: SigningKey) -> None:
        """The header is bounded (2 KB) before it is parsed."""
        header = {"alg": "EdDSA", "kid": key.kid, "typ": TYP, "pad": "x" * 3000}
        assert refusal(with_header(key, header)).reason == "too-large"

    def test_deeply_nested_header_refused(self, key: SigningKey) -> None:
        header = {"alg": "EdDSA", "kid": key.kid, "typ": TYP, "x": {"y": {"z": 1}}}
        assert refusal(with_header(key, header)).reason == "too-deep"

    @pytest.mark.parametrize("length", [0, 63, 65])
    def test_signature_of_wrong_length_refused(self, key: SigningKey, length: int) -> None:
        """An Ed25519 signature is 64 bytes; anything else is refused before any verification."""
        e = refusal({**signed(key), "signature": b64u_encode(bytes(length))})
        assert e.reason == "bad-signature"
