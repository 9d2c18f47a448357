"""Ed25519 keys: Wycheproof conformance, JWK forms (RFC 8037), thumbprints (RFC 7638), key files."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.protocol.errors import KeyFileError
from federation.protocol.keys import (
    PublicKey,
    SigningKey,
    b64u_decode,
    b64u_decode_reference,
    b64u_encode,
    thumbprint,
)


def wycheproof_cases(vectors: Path) -> list[tuple[int, str, dict[str, Any], str]]:
    doc = json.loads((vectors / "ed25519" / "wycheproof_ed25519_test.json").read_text())
    return [(t["tcId"], g["publicKey"]["pk"], t, t["result"]) for g in doc["testGroups"] for t in g["tests"]]


class TestWycheproof:
    @pytest.mark.parametrize("path", ["verify", "verify_reference"])
    def test_every_case_gives_expected_verdict(self, vectors: Path, path: str) -> None:
        """All 150 cases, on the fast path (libsodium) and the reference (cryptography): valid ones verify;
        malleable, non-canonical and malformed ones do not."""
        cases = wycheproof_cases(vectors)
        assert len(cases) == 150
        wrong = []
        for tc_id, pk, t, result in cases:
            key = PublicKey.from_raw(bytes.fromhex(pk))
            verdict = getattr(key, path)(bytes.fromhex(t["sig"]), bytes.fromhex(t["msg"]))
            if verdict != (result == "valid"):
                wrong.append(tc_id)
        assert wrong == []


class TestFastVerifyAgreesWithReference:
    """libsodium (the hot path) and cryptography (the reference) must never disagree, or two verifiers of one
    envelope could reach different verdicts."""

    @given(message=st.binary(max_size=300), flip=st.integers(min_value=-1, max_value=64 * 8 - 1),
           truncate=st.booleans())
    @settings(max_examples=300, deadline=None)
    def test_signature_forgery_by_bit_flip_refused_by_both(self, message: bytes, flip: int, truncate: bool) -> None:
        key = SigningKey.generate()
        sig = bytearray(key.sign(message))
        if flip >= 0:
            sig[flip // 8] ^= 1 << (flip % 8)
        if truncate:
            sig = sig[:63]
        pub = key.public
        assert pub.verify(bytes(sig), message) == pub.verify_reference(bytes(sig), message)
        assert pub.verify(bytes(sig), message) == (flip < 0 and not truncate)

    @given(raw=st.binary(min_size=32, max_size=32), sig=st.binary(min_size=64, max_size=64),
           message=st.binary(max_size=64))
    @settings(max_examples=300, deadline=None)
    def test_arbitrary_keys_and_signatures_same_verdict(self, raw: bytes, sig: bytes, message: bytes) -> None:
        try:
            pub = PublicKey.from_raw(raw)
        except ValueError:
            return  # not a usable point: no key object can exist, so neither path is reached
        assert pub.verify(sig, message) == pub.verify_reference(sig, message)

    @pytest.mark.parametrize("raw", [bytes(32), bytes([1]) + bytes(31), bytes.fromhex(
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")])  # orders 4, 1 and 8
    def test_weak_key_forgery_refused(self, raw: bytes) -> None:
        """A small-order public key, under which OpenSSL verifies forged signatures, cannot become a key."""
        with pytest.raises(ValueError, match="small-order"):
            PublicKey.from_raw(raw)
        with pytest.raises(KeyFileError):
            PublicKey.from_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(raw)})


class TestJwk:
    def test_rfc8037_thumbprint_example(self) -> None:
        """RFC 8037 Appendix A.3: the thumbprint of the example key."""
        x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        assert thumbprint(x) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"

    def test_round_trip(self) -> None:
        """to_jwk then from_jwk gives the same key and kid."""
        pub = SigningKey.generate().public
        again = PublicKey.from_jwk(pub.to_jwk())
        assert again.kid == pub.kid and again.verify(b"", b"") is False

    def test_kid_substitution_refused(self) -> None:
        """A JWK claiming another key's id is refused: kids are thumbprints, not labels."""
        jwk = SigningKey.generate().public.to_jwk()
        jwk["kid"] = SigningKey.generate().kid
        with pytest.raises(KeyFileError):
            PublicKey.from_jwk(jwk)

    @pytest.mark.parametrize("change", [{"kty": "EC"}, {"crv": "X25519"}, {"d": "AAAA"}, {"x": "!!"}])
    def test_wrong_key_type_refused(self, change: dict[str, str]) -> None:
        """Only public OKP/Ed25519 JWKs are accepted (a private d is never taken as a public key)."""
        jwk = {**SigningKey.generate().public.to_jwk(), **change}
        jwk.pop("kid")
        with pytest.raises(KeyFileError):
            PublicKey.from_jwk(jwk)

    def test_validity_window(self) -> None:
        """A key is valid from not_before (inclusive) to not_after (exclusive)."""
        t = datetime(2026, 1, 1, tzinfo=UTC)
        k = PublicKey(SigningKey.generate().public.key, "k", not_before=t, not_after=t + timedelta(days=1))
        assert not k.valid_at(t - timedelta(seconds=1))
        assert k.valid_at(t) and not k.valid_at(t + timedelta(days=1))


class TestBase64url:
    @pytest.mark.parametrize("text", ["ab+c", "ab/c", "YQ==", "YR", "a"])
    def test_non_canonical_base64url_refused(self, text: str) -> None:
        """Padding, the standard alphabet and non-zero trailing bits are refused (one encoding per value)."""
        with pytest.raises(ValueError, match="base64url"):
            b64u_decode(text)

    def test_round_trip(self) -> None:
        """Every byte string survives encode/decode."""
        for n in range(70):
            data = bytes(range(n))
            assert b64u_decode(b64u_encode(data)) == data


class TestKeyFiles:
    def test_private_key_written_owner_only(self, tmp_path: Path) -> None:
        """The PEM is mode 0600 and reloads to the same key."""
        key = SigningKey.generate()
        key.save(tmp_path / "QA.key.pem")
        assert stat.S_IMODE((tmp_path / "QA.key.pem").stat().st_mode) == 0o600
        assert SigningKey.load(tmp_path / "QA.key.pem").kid == key.kid

    def test_existing_key_not_overwritten(self, tmp_path: Path) -> None:
        """Saving never clobbers an existing private key."""
        SigningKey.generate().save(tmp_path / "k.pem")
        with pytest.raises(FileExistsError):
            SigningKey.generate().save(tmp_path / "k.pem")

    def test_non_ed25519_pem_refused(self, tmp_path: Path) -> None:
        """An RSA or garbage file is a typed error, not a crash."""
        (tmp_path / "k.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        with pytest.raises(KeyFileError):
            SigningKey.load(tmp_path / "k.pem")


def _decoded(decode: Any, text: str) -> bytes | None:
    try:
        return decode(text)
    except ValueError:
        return None


class TestBase64urlFastPathAgreesWithReference:
    @given(raw=st.binary(max_size=80), cut=st.integers(0, 3), at=st.integers(min_value=0),
           char=st.sampled_from(list("AQgwBz09-_+/=. \n\u00e9")), mutate=st.booleans())
    @settings(max_examples=2000, deadline=None)
    def test_same_bytes_or_same_refusal(self, raw: bytes, cut: int, at: int, char: str, mutate: bool) -> None:
        """Padding, foreign alphabets, whitespace, non-zero trailing bits and impossible lengths are refused by
        both; everything else decodes to the same bytes."""
        text = b64u_encode(raw)
        text = text[:len(text) - cut] if cut <= len(text) else text
        if mutate and text:
            text = text[:at % len(text)] + char + text[at % len(text) + 1:]
        assert _decoded(b64u_decode, text) == _decoded(b64u_decode_reference, text)
