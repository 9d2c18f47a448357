"""HTTP Message Signatures (RFC 9421) and Content-Digest (RFC 9530): conformance, attacks, hostile input."""

from __future__ import annotations

import base64
import contextlib
import datetime
import enum
import hashlib
import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import http_sf
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from federation.protocol.httpsig import (
    DEFAULT_COMPONENTS,
    BadSignatureError,
    ContentDigestError,
    HttpSignatureError,
    ReplayCache,
    ReplayedSignatureError,
    SignatureCoverageError,
    SignatureExpiredError,
    SignatureFromFutureError,
    SignatureMalformedError,
    SignatureMissingError,
    SignatureParams,
    UnknownKeyError,
    VerifiedSignature,
    _ser_bare,
    _sf_integer,
    _sf_string,
    content_digest,
    format_signature_headers,
    sign_request,
    signature_base,
    verify_content_digest,
    verify_request,
)
from tests.support import paths

VECTORS = paths.VECTORS
B26 = VECTORS / "httpsig" / "rfc9421-b26-ed25519.json"

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
KEYID = "member-qa-key-1"
OTHER_KEYID = "member-tr-key-1"
NOW = 1_760_000_000
TARGET = "https://hub.example.org/v1/push"
BODY = b'{"envelopes":["eyJhbGciOiJFZERTQSJ9..sig"]}'
BASE_HEADERS = {"Content-Type": "application/json"}


def keys(keyid: str) -> Ed25519PublicKey | None:
    return {KEYID: KEY.public_key(), OTHER_KEYID: OTHER_KEY.public_key()}.get(keyid)


def signed(
    *,
    method: str = "POST",
    target: str = TARGET,
    body: bytes = BODY,
    key: Ed25519PrivateKey = KEY,
    keyid: str = KEYID,
    created: int = NOW,
    **kwargs: Any,
) -> dict[str, str]:
    """A request's full headers after signing."""
    headers = dict(BASE_HEADERS)
    added = sign_request(
        method, target, headers, body, private_key=key, keyid=keyid, created=created, **kwargs
    )
    return {**headers, **added}


def verify(
    headers: Mapping[str, str],
    *,
    method: str = "POST",
    target: str = TARGET,
    body: bytes = BODY,
    now: int = NOW,
    resolve_key: Callable[[str], Ed25519PublicKey | None] = keys,
    **kwargs: Any,
) -> VerifiedSignature:
    return verify_request(method, target, headers, body, resolve_key=resolve_key, now=now, **kwargs)


def edited(name: str, old: str, new: str, **kwargs: Any) -> dict[str, str]:
    """A signed request's headers (``signed(**kwargs)``) with ``old`` replaced by ``new`` in field ``name``."""
    headers = signed(**kwargs)
    headers[name] = headers[name].replace(old, new)
    return headers


def with_input(headers: dict[str, str], signature_input: str) -> dict[str, str]:
    return {**headers, "Signature-Input": signature_input}


def load_b26() -> dict[str, Any]:
    if not B26.is_file():
        pytest.fail(f"RFC 9421 vector not found at {B26} (tests/vectors)")
    doc: dict[str, Any] = json.loads(B26.read_text())
    return doc


class TestRfc9421B26:
    """RFC 9421 Appendix B.2.6 (Ed25519), from tests/vectors/httpsig/."""

    COMPONENTS = ("date", "@method", "@path", "@authority", "content-type", "content-length")
    CREATED = 1618884473

    def params(self, v: dict[str, Any]) -> SignatureParams:
        return SignatureParams(created=self.CREATED, keyid=v["key_id"])

    def verify_vector(self, v: dict[str, Any], changed: Mapping[str, str] | None = None) -> VerifiedSignature:
        """verify_request on the RFC's request with its Signature-Input and Signature, ``changed`` headers replaced."""
        r = v["request"]
        public = load_pem_public_key(v["public_key_pem"].encode())
        assert isinstance(public, Ed25519PublicKey)
        headers = {
            **r["headers"],
            **(changed or {}),
            "Signature-Input": v["expected"]["Signature-Input"],
            "Signature": v["expected"]["Signature"],
        }
        return verify_request(
            r["method"],
            r["target_uri"],
            headers,
            r["body"].encode(),
            resolve_key={v["key_id"]: public}.get,
            now=self.CREATED,
            required=self.COMPONENTS,
        )

    def test_signature_base_matches_vector(self) -> None:
        """The signature base built from the vector's request equals the RFC's, byte for byte."""
        v = load_b26()
        r = v["request"]
        base = signature_base(r["method"], r["target_uri"], r["headers"], self.COMPONENTS, self.params(v))
        assert base.encode() == v["expected"]["signature_base"].encode()

    def test_signing_reproduces_vector_signature(self) -> None:
        """Ed25519 is deterministic: signing the base with the RFC's key gives the RFC's Signature."""
        v = load_b26()
        r = v["request"]
        key = load_pem_private_key(v["private_key_pem"].encode(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        base = signature_base(r["method"], r["target_uri"], r["headers"], self.COMPONENTS, self.params(v))
        out = format_signature_headers("sig-b26", self.COMPONENTS, self.params(v), key.sign(base.encode()))
        assert out["Signature"] == v["expected"]["Signature"]
        assert out["Signature-Input"] == v["expected"]["Signature-Input"]

    def test_verify_accepts_vector_request(self) -> None:
        """verify_request accepts the RFC's request with its Signature-Input and Signature."""
        v = load_b26()
        result = self.verify_vector(v)
        assert (result.keyid, result.created, result.label) == (v["key_id"], self.CREATED, "sig-b26")
        assert result.components == self.COMPONENTS
        assert result.signature == base64.b64decode(v["expected"]["Signature"].split(":")[1])

    def test_vector_date_changed_refused(self) -> None:
        """Changing a covered header of the RFC's request breaks its signature."""
        with pytest.raises(BadSignatureError):
            self.verify_vector(load_b26(), {"Date": "Tue, 20 Apr 2021 02:07:56 GMT"})

    def test_vector_sha512_content_digest_accepted(self) -> None:
        """The vector's Content-Digest (sha-512, RFC 9530 example) matches its body."""
        v = load_b26()
        verify_content_digest(v["request"]["headers"]["Content-Digest"], v["request"]["body"].encode())


class TestContentDigest:
    def test_rfc9530_sha256_example(self) -> None:
        """RFC 9530 §2 example: sha-256 of {"hello": "world"}."""
        assert (
            content_digest(b'{"hello": "world"}') == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        )

    def test_round_trip(self) -> None:
        """A digest made by content_digest verifies against the same body, the empty body included."""
        for body in (b"", BODY):
            verify_content_digest(content_digest(body), body)

    def test_sha512_accepted(self) -> None:
        """sha-512 digests are accepted."""
        digest = base64.b64encode(hashlib.sha512(BODY).digest()).decode()
        verify_content_digest(f"sha-512=:{digest}:", BODY)

    def test_missing_refused(self) -> None:
        """No Content-Digest field at all is refused."""
        with pytest.raises(ContentDigestError):
            verify_content_digest(None, BODY)

    def test_body_mismatch_refused(self) -> None:
        """A digest of another body is refused."""
        with pytest.raises(ContentDigestError):
            verify_content_digest(content_digest(b"other"), BODY)

    def test_only_unsupported_algorithms_refused(self) -> None:
        """md5 alone (deprecated by RFC 9530) is not enough: at least one supported algorithm is needed."""
        md5 = base64.b64encode(hashlib.md5(BODY).digest()).decode()  # noqa: S324 - the point of the test
        with pytest.raises(ContentDigestError):
            verify_content_digest(f"md5=:{md5}:", BODY)

    def test_unknown_algorithm_beside_supported_ignored(self) -> None:
        """An unknown algorithm next to a matching sha-256 is ignored."""
        verify_content_digest(f"unixsum=:AAAA:, {content_digest(BODY)}", BODY)

    def test_rfc9651_items_beside_supported_ignored(self) -> None:
        """An unknown algorithm whose value is an RFC 9651 Date or Display String is ignored like any other."""
        verify_content_digest(f'unixsum=@1, crc32c=%"x", {content_digest(BODY)}', BODY)

    def test_one_wrong_supported_digest_refused(self) -> None:
        """A matching sha-256 does not excuse a mismatching sha-512 in the same field."""
        wrong = base64.b64encode(hashlib.sha512(b"other").digest()).decode()
        with pytest.raises(ContentDigestError):
            verify_content_digest(f"{content_digest(BODY)}, sha-512=:{wrong}:", BODY)

    @pytest.mark.parametrize(
        "header",
        [
            "",
            "sha-256",
            "sha-256=abc",
            'sha-256="X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="',
            "sha-256=:not base64!:",
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
            "SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-256=:AAAA:",
            "sha-256=(:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:)",
            "sha-256=@1",
            'sha-256=%"X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="',
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-512=\u00e9",
        ],
    )
    def test_malformed_refused(self, header: str) -> None:
        """Malformed fields, wrong member types, upper-case keys and duplicate algorithms are refused."""
        with pytest.raises(ContentDigestError):
            verify_content_digest(header, b'{"hello": "world"}')


class TestSignatureParams:
    def test_default_order(self) -> None:
        """Without an explicit order, parameters serialize as created, keyid, alg, nonce, expires, tag."""
        p = SignatureParams(tag="t", expires=2, nonce="n", alg="ed25519", keyid="k", created=1)
        assert p.serialize() == ';created=1;keyid="k";alg="ed25519";nonce="n";expires=2;tag="t"'

    def test_explicit_order_kept(self) -> None:
        """A verifier keeps the sender's order, because it is part of what was signed."""
        p = SignatureParams(created=1, keyid="k", order=("keyid", "created"))
        assert p.serialize() == ';keyid="k";created=1'

    def test_string_escaping(self) -> None:
        """Quotes and backslashes in strings are escaped as RFC 8941 §4.1.6 says."""
        assert SignatureParams(keyid='a"b\\c').serialize() == ';keyid="a\\"b\\\\c"'

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"created": -1},
            {"created": True},
            {"created": 10**15},
            {"keyid": "é"},
            {"keyid": "a\nb"},
            {"created": 1, "order": ("created", "keyid")},
            {"created": 1, "keyid": "k", "order": ("created",)},
        ],
    )
    def test_invalid_refused(self, kwargs: dict[str, Any]) -> None:
        """Unserializable values and an order that does not match the present parameters raise ValueError."""
        with pytest.raises(ValueError, match=r"."):
            SignatureParams(**kwargs)

    def test_fields_are_the_rfc_parameters(self) -> None:
        """The dataclass fields are exactly the RFC 9421 §2.3 parameters (plus ``order``)."""
        names = {f.name for f in fields(SignatureParams)} - {"order"}
        assert names == {"created", "expires", "nonce", "alg", "keyid", "tag"}


def _outcome(serialize: Callable[[Any], str], value: Any) -> str | type[ValueError]:
    """What ``serialize`` makes of ``value``: its output, or ValueError if it refuses it."""
    try:
        return serialize(value)
    except ValueError:
        return ValueError


class _Int(enum.IntEnum):
    SEVEN = 7


class _Str(str):  # http_sf serializes a str subclass from its value, not its __str__
    def __str__(self) -> str:
        return "overridden"


_MAX_INT = 999_999_999_999_999
_PRINTABLE = "".join(map(chr, range(0x20, 0x7F)))


class TestFastSerializers:
    """The fast sf-string and sf-integer serializers agree with ``http_sf.ser``, the reference."""

    TABLE = (
        "", "k", '"', "\\", '"\\"', 'a"b\\c', _PRINTABLE, _PRINTABLE * 300, "x" * 100_000, "ed25519",
        "@method", "content-digest", " ", "~",
        "\x00", "\t", "\n", "\r", "\x1f", "\x7f", "\x80", "é", "\u2028", "\ud800", "\U0001f600", "ok\n",
        0, 1, -1, 42, _MAX_INT, -_MAX_INT, _MAX_INT + 1, -_MAX_INT - 1, 10**16, -(10**16), 10**100,
        True, False, _Int.SEVEN, _Str("a\"b"), _Str("é"), b"\x00\xff", 1.5,
    )

    @pytest.mark.parametrize("value", TABLE, ids=lambda v: repr(v)[:30])
    def test_table_agrees_with_http_sf(self, value: Any) -> None:
        """Same output, or both refuse with ValueError, over the edge cases of RFC 8941 §4.1.4 and §4.1.6."""
        assert _outcome(_ser_bare, value) == _outcome(http_sf.ser, value)
        if type(value) is str:
            assert _outcome(_sf_string, value) == _outcome(http_sf.ser, value)
        if type(value) is int:
            assert _outcome(_sf_integer, value) == _outcome(http_sf.ser, value)

    def test_seeded_random_sample_agrees(self) -> None:
        """A fixed random sample of near-printable strings and integers near the 15-digit limit agree."""
        rng = random.Random(9421)
        alphabet = _PRINTABLE + '"\\' * 10 + "\x00\x1f\x7f\x80é"
        for _ in range(2000):
            text = "".join(rng.choices(alphabet, k=rng.randrange(40)))
            number = rng.choice([1, -1]) * rng.randrange(_MAX_INT - 1000, _MAX_INT + 1000)
            for value in (text, number, rng.randrange(-(10**17), 10**17)):
                assert _outcome(_ser_bare, value) == _outcome(http_sf.ser, value)

    @settings(max_examples=500, deadline=None)
    @given(value=st.text() | st.text(alphabet=st.sampled_from(_PRINTABLE)) | st.text(st.sampled_from('ab"\\')))
    def test_strings_agree(self, value: str) -> None:
        """Any string: the regex check and escaping give what http_sf's character-by-character check gives."""
        assert _outcome(_sf_string, value) == _outcome(http_sf.ser, value)

    @settings(max_examples=500, deadline=None)
    @given(value=st.integers() | st.integers(-_MAX_INT - 9, -_MAX_INT + 9) | st.integers(_MAX_INT - 9, _MAX_INT + 9))
    def test_integers_agree(self, value: int) -> None:
        """Any integer, including both sides of the ±999,999,999,999,999 limit."""
        assert _outcome(_sf_integer, value) == _outcome(http_sf.ser, value)

    def test_bool_is_not_an_integer(self) -> None:
        """http_sf writes a bool as an sf-boolean; the fast integer path refuses it rather than write 1."""
        assert http_sf.ser(True) == _ser_bare(True) == "?1"
        with pytest.raises(ValueError, match="bool"):
            _sf_integer(True)

    def test_params_serialized_once(self) -> None:
        """SignatureParams serializes at construction and reuses the result (it is frozen)."""
        p = SignatureParams(created=1, keyid='k"\\', nonce="n")
        assert p.serialize() is p.serialize()
        expected = "".join(f";{name}={http_sf.ser(getattr(p, name))}" for name in ("created", "keyid", "nonce"))
        assert p.serialize() == expected


class TestSignatureBase:
    PARAMS = SignatureParams(created=1, keyid="k")

    def base(
        self, components: tuple[str, ...], target: str = TARGET, method: str = "POST", **headers: str
    ) -> str:
        return signature_base(method, target, headers, components, self.PARAMS)

    def lines(self, components: tuple[str, ...], target: str, method: str = "POST") -> list[str]:
        return self.base(components, target, method).split("\n")[:-1]

    def test_derived_components(self) -> None:
        """@authority lower-cases and keeps a non-default port; @scheme lower-cases; others are verbatim."""
        comps = ("@method", "@target-uri", "@authority", "@scheme", "@path", "@query")
        target = "HTTPS://Hub.Example.ORG:8443/v1/Push%2F?a=B&c"
        assert self.lines(comps, target) == [
            '"@method": POST',
            f'"@target-uri": {target}',
            '"@authority": hub.example.org:8443',
            '"@scheme": https',
            '"@path": /v1/Push%2F',
            '"@query": ?a=B&c',
        ]

    @pytest.mark.parametrize(
        ("target", "authority"),
        [
            ("https://h.example:443/", "h.example"),
            ("http://h.example:80/", "h.example"),
            ("https://h.example:80/", "h.example:80"),
            ("https://h.example:/", "h.example"),
            ("https://[2001:DB8::1]:443/", "[2001:db8::1]"),
            ("http://127.0.0.1:8080/", "127.0.0.1:8080"),
        ],
    )
    def test_authority_default_port_omitted(self, target: str, authority: str) -> None:
        """RFC 9110 §4.2.3 normalization: an empty or default port is omitted."""
        assert self.lines(("@authority",), target) == [f'"@authority": {authority}']

    def test_empty_path_and_query(self) -> None:
        """An empty path is "/" and an absent query is "?" (RFC 9421 §2.2.6, §2.2.7)."""
        assert self.lines(("@path", "@query"), "https://h.example") == ['"@path": /', '"@query": ?']

    def test_header_fields_case_insensitive_and_trimmed(self) -> None:
        """Header names are looked up case-insensitively; values lose surrounding whitespace."""
        base = signature_base(
            "GET", TARGET, {"X-Thing": " \tvalue  with inner \t"}, ("x-thing",), self.PARAMS
        )
        assert base.split("\n")[0] == '"x-thing": value  with inner'

    def test_empty_components(self) -> None:
        """Covering nothing still yields the @signature-params line."""
        assert self.base(()) == '"@signature-params": ();created=1;keyid="k"'

    @pytest.mark.parametrize(
        "components",
        [
            ("@method", "@method"),
            ("@request-target",),
            ("@query-param",),
            ("@status",),
            ("@signature-params",),
            ("Content-Type",),
            ('"content-type"',),
            ("",),
            ("x-absent",),
        ],
    )
    def test_bad_components_refused(self, components: tuple[str, ...]) -> None:
        """Repeated, unsupported, upper-case, quoted, empty and absent components are refused."""
        with pytest.raises(SignatureMalformedError):
            signature_base("POST", TARGET, {"content-type": "x"}, components, self.PARAMS)

    def test_components_as_string_refused(self) -> None:
        """A single string is not a sequence of components (it would be read letter by letter)."""
        with pytest.raises(SignatureMalformedError):
            signature_base("POST", TARGET, {}, "@method", self.PARAMS)

    @pytest.mark.parametrize("value", ["a\nb", "a\r\nb", "a\x00b", "caf\u00e9", "a\x7fb"])
    def test_header_injection_refused(self, value: str) -> None:
        """A header value that would add a line to the base, or is not ASCII, is refused."""
        with pytest.raises(SignatureMalformedError):
            signature_base("POST", TARGET, {"x-h": value}, ("x-h",), self.PARAMS)

    def test_obsolete_line_folding_unfolded(self) -> None:
        """obs-fold (CRLF then whitespace) becomes one space, as RFC 9421 §2.1 says."""
        base = signature_base("POST", TARGET, {"x-h": "a\r\n  b"}, ("x-h",), self.PARAMS)
        assert base.split("\n")[0] == '"x-h": a b'

    def test_duplicate_header_refused(self) -> None:
        """A covered field given twice in different case is ambiguous and refused."""
        with pytest.raises(SignatureMalformedError):
            signature_base("POST", TARGET, {"Date": "a", "date": "b"}, ("date",), self.PARAMS)

    @pytest.mark.parametrize("target", [
        "/v1/push", "hub.example.org/v1/push", "ftp://hub.example.org/", "https://hub.example.org/v1/push#frag",
        "https://user:pw@hub.example.org/", "https:///v1/push", "https://hub.example.org:44x3/",
        "https://hub example.org/", "https://hub.example.org/%zz", "https://hub.example.org/caf\u00e9",
        "https://[::g]/", "https://[::1/", "",
    ])
    def test_bad_target_uri_refused(self, target: str) -> None:
        """Relative, non-http, fragment, userinfo, host-less, bad-port and unencoded URIs are refused."""
        with pytest.raises(SignatureMalformedError):
            self.base(("@target-uri",), target)

    @pytest.mark.parametrize("method", ["", "PO ST", "POST\n"])
    def test_bad_method_refused(self, method: str) -> None:
        """A method that is not an HTTP token is refused."""
        with pytest.raises(SignatureMalformedError):
            self.base(("@method",), method=method)


class TestSignRequest:
    def test_headers_returned(self) -> None:
        """sign_request returns exactly Content-Digest, Signature-Input and Signature."""
        added = sign_request("POST", TARGET, BASE_HEADERS, BODY, private_key=KEY, keyid=KEYID, created=NOW)
        assert set(added) == {"Content-Digest", "Signature-Input", "Signature"}
        assert added["Content-Digest"] == content_digest(BODY)

    def test_signature_input_format(self) -> None:
        """The default signature covers method, target URI and digest, with created, keyid and alg."""
        added = sign_request("POST", TARGET, {}, BODY, private_key=KEY, keyid=KEYID, created=NOW)
        assert added["Signature-Input"] == (
            f'sig1=("@method" "@target-uri" "content-digest");created={NOW};keyid="{KEYID}";alg="ed25519"'
        )
        assert re.fullmatch(r"sig1=:[A-Za-z0-9+/]{86}==:", added["Signature"])

    def test_nonce_and_label(self) -> None:
        """A nonce is appended to the parameters; the label is used for both fields."""
        added = sign_request(
            "POST", TARGET, {}, BODY, private_key=KEY, keyid=KEYID, created=NOW, label="push", nonce="n-1"
        )
        assert added["Signature-Input"].startswith('push=("@method"')
        assert added["Signature-Input"].endswith(';alg="ed25519";nonce="n-1"')
        assert added["Signature"].startswith("push=:")

    def test_deterministic(self) -> None:
        """Ed25519 signing is deterministic: the same request signs the same way."""
        assert signed() == signed()

    def test_extra_components_covered(self) -> None:
        """Callers may cover more, e.g. content-type, and the result verifies when required."""
        headers = signed(components=(*DEFAULT_COMPONENTS, "content-type"))
        result = verify(headers, required=(*DEFAULT_COMPONENTS, "content-type"))
        assert result.components == (*DEFAULT_COMPONENTS, "content-type")

    @pytest.mark.parametrize("name", ["Content-Digest", "signature", "Signature-Input"])
    def test_existing_generated_header_refused(self, name: str) -> None:
        """Headers that sign_request generates must not be present already (no duplicate fields)."""
        with pytest.raises(ValueError, match="already contain"):
            sign_request("POST", TARGET, {name: "x"}, BODY, private_key=KEY, keyid=KEYID, created=NOW)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"label": "Sig1"},
            {"label": ""},
            {"keyid": "k\u00e9y"},
            {"nonce": "a\nb"},
            {"created": -5},
            {"components": ("@method", "x-absent")},
        ],
    )
    def test_invalid_arguments_refused(self, kwargs: dict[str, Any]) -> None:
        """Invalid labels, keyids, nonces, times and components raise ValueError."""
        args: dict[str, Any] = {"private_key": KEY, "keyid": KEYID, "created": NOW, **kwargs}
        with pytest.raises(ValueError, match=r"."):
            sign_request("POST", TARGET, {}, BODY, **args)

    def test_bad_target_raises_value_error(self) -> None:
        """A target URI that cannot be signed raises ValueError on the signing side."""
        with pytest.raises(ValueError, match="target URI"):
            sign_request("POST", "/relative", {}, BODY, private_key=KEY, keyid=KEYID, created=NOW)


class TestVerifyRequest:
    def test_valid_request_accepted(self) -> None:
        """A request signed by a known key, fresh and untouched, verifies; the result says who and when."""
        headers = signed(nonce="n-1")
        result = verify(headers)
        assert (result.keyid, result.created, result.label) == (KEYID, NOW, "sig1")
        assert (result.components, result.nonce) == (DEFAULT_COMPONENTS, "n-1")
        assert result.signature == base64.b64decode(headers["Signature"].split(":")[1])

    def test_aiohttp_style_headers_accepted(self) -> None:
        """Works on a CIMultiDictProxy (aiohttp's request.headers) with lower-cased names."""
        headers = CIMultiDictProxy(CIMultiDict({k.lower(): v for k, v in signed().items()}))
        assert verify(headers).keyid == KEYID

    def test_body_swapped_after_signing_refused(self) -> None:
        """Another body under the signed Content-Digest is refused."""
        with pytest.raises(ContentDigestError):
            verify(signed(), body=b'{"envelopes":[]}')

    def test_digest_recomputed_for_swapped_body_refused(self) -> None:
        """Swapping the body and its Content-Digest together breaks the signature over the digest."""
        headers = {**signed(), "Content-Digest": content_digest(b"evil")}
        with pytest.raises(BadSignatureError):
            verify(headers, body=b"evil")

    def test_method_changed_refused(self) -> None:
        """A signed POST replayed as PUT is refused."""
        with pytest.raises(BadSignatureError):
            verify(signed(), method="PUT")

    @pytest.mark.parametrize("target", [
        "https://hub.example.org/v1/admin", "https://other-hub.example.org/v1/push",
        "https://hub.example.org/v1/push?member=tr", "http://hub.example.org/v1/push", "https://hub.example.org:8443/v1/push",
    ])
    def test_target_changed_refused(self, target: str) -> None:
        """A request signed for one URI is refused at another path, host, query, scheme or port."""
        with pytest.raises(BadSignatureError):
            verify(signed(), target=target)

    def test_stale_created_refused(self) -> None:
        """A signature created more than max_skew seconds ago is refused."""
        with pytest.raises(SignatureExpiredError):
            verify(signed(created=NOW - 301))

    def test_created_from_future_refused(self) -> None:
        """A signature created more than max_skew seconds ahead is refused."""
        with pytest.raises(SignatureFromFutureError):
            verify(signed(created=NOW + 301))

    def test_skew_edges_accepted(self) -> None:
        """Exactly max_skew seconds either way is still accepted; max_skew is configurable."""
        verify(signed(created=NOW - 300))
        verify(signed(created=NOW + 300))
        verify(signed(created=NOW - 1000), max_skew=1000)
        with pytest.raises(SignatureExpiredError):
            verify(signed(created=NOW - 11), max_skew=10)

    def test_expires_passed_refused(self) -> None:
        """A signature whose expires has passed (beyond the skew) is refused."""
        headers = {**BASE_HEADERS, "Content-Digest": content_digest(BODY)}

        def with_expires(expires: int) -> dict[str, str]:
            params = SignatureParams(created=NOW, keyid=KEYID, alg="ed25519", expires=expires)
            base = signature_base("POST", TARGET, headers, DEFAULT_COMPONENTS, params)
            return {
                **headers,
                **format_signature_headers("sig1", DEFAULT_COMPONENTS, params, KEY.sign(base.encode())),
            }

        with pytest.raises(SignatureExpiredError):
            verify(with_expires(NOW - 301))
        assert verify(with_expires(NOW)).keyid == KEYID

    def test_unknown_key_refused(self) -> None:
        """A keyid the resolver does not know is refused."""
        with pytest.raises(UnknownKeyError):
            verify(signed(keyid="not-a-member"))

    def test_signed_by_other_key_refused(self) -> None:
        """A signature by one member's key claiming another member's keyid is refused."""
        with pytest.raises(BadSignatureError):
            verify(signed(key=OTHER_KEY, keyid=KEYID))

    def test_keyid_swapped_refused(self) -> None:
        """Editing keyid in Signature-Input (to blame another member) breaks the signature."""
        with pytest.raises(BadSignatureError):
            verify(edited("Signature-Input", KEYID, OTHER_KEYID))

    def test_created_refreshed_refused(self) -> None:
        """Editing created to make an old signature look fresh breaks the signature."""
        with pytest.raises(BadSignatureError):
            verify(edited("Signature-Input", str(NOW - 3600), str(NOW), created=NOW - 3600))

    def test_uncovered_digest_refused(self) -> None:
        """A signature that does not cover content-digest leaves the body unauthenticated: refused."""
        with pytest.raises(SignatureCoverageError):
            verify(signed(components=("@method", "@target-uri")))

    def test_uncovered_target_refused(self) -> None:
        """A signature that does not cover the target could be replayed at another endpoint: refused."""
        with pytest.raises(SignatureCoverageError):
            verify(signed(components=("@method", "content-digest")))

    def test_path_and_authority_instead_of_target_needs_policy(self) -> None:
        """Coverage is exact: @path + @authority satisfy a verifier only if it requires those."""
        headers = signed(components=("@method", "@authority", "@path", "@query", "content-digest"))
        with pytest.raises(SignatureCoverageError):
            verify(headers)
        verify(headers, required=("@method", "@authority", "@path", "@query", "content-digest"))

    def test_missing_signature_refused(self) -> None:
        """An unsigned request is refused as missing its signature."""
        with pytest.raises(SignatureMissingError):
            verify({**BASE_HEADERS, "Content-Digest": content_digest(BODY)})

    @pytest.mark.parametrize("drop", ["Signature", "Signature-Input"])
    def test_half_signature_refused(self, drop: str) -> None:
        """Signature without Signature-Input (or the reverse) is refused."""
        headers = signed()
        del headers[drop]
        with pytest.raises(SignatureMalformedError):
            verify(headers)

    def test_covered_digest_header_removed_refused(self) -> None:
        """Dropping the covered Content-Digest field is refused."""
        headers = signed()
        del headers["Content-Digest"]
        with pytest.raises(SignatureMalformedError):
            verify(headers)

    def test_alg_downgrade_refused(self) -> None:
        """alg naming anything but ed25519 is refused before any key is used."""
        with pytest.raises(SignatureMalformedError):
            verify(edited("Signature-Input", '"ed25519"', '"hmac-sha256"'))

    def test_signature_truncated_refused(self) -> None:
        """A signature of the wrong length is a bad signature, not a crash."""
        headers = signed()
        headers["Signature"] = "sig1=:" + base64.b64encode(b"\x00" * 63).decode() + ":"
        with pytest.raises(BadSignatureError):
            verify(headers)

    def test_label_selection(self) -> None:
        """With two signatures, the verifier names the label; without a label it refuses to guess."""
        a = signed(label="hub")
        b = signed(label="proxy", key=OTHER_KEY, keyid=OTHER_KEYID)
        headers = {
            **a,
            "Signature-Input": f"{a['Signature-Input']}, {b['Signature-Input']}",
            "Signature": f"{a['Signature']}, {b['Signature']}",
        }
        with pytest.raises(SignatureMalformedError):
            verify(headers)
        assert verify(headers, label="proxy").keyid == OTHER_KEYID
        assert verify(headers, label="hub").keyid == KEYID
        with pytest.raises(SignatureMissingError):
            verify(headers, label="absent")

    def test_mismatched_labels_refused(self) -> None:
        """Signature-Input and Signature with different labels are refused."""
        with pytest.raises(SignatureMalformedError):
            verify(edited("Signature", "sig1=", "sig2="))

    def test_repeated_signature_header_lines_refused(self) -> None:
        """Signature given on two header lines is refused rather than picking one."""
        headers = CIMultiDict(signed())
        headers.add("Signature", headers["Signature"])
        with pytest.raises(SignatureMalformedError):
            verify(CIMultiDictProxy(headers))

    def test_parameter_order_preserved(self) -> None:
        """Parameters in another order than ours still verify: the sender's order is what was signed."""
        params = SignatureParams(alg="ed25519", keyid=KEYID, created=NOW, order=("alg", "keyid", "created"))
        headers = {**BASE_HEADERS, "Content-Digest": content_digest(BODY)}
        base = signature_base("POST", TARGET, headers, DEFAULT_COMPONENTS, params)
        headers.update(format_signature_headers("sig1", DEFAULT_COMPONENTS, params, KEY.sign(base.encode())))
        assert headers["Signature-Input"].endswith(f';alg="ed25519";keyid="{KEYID}";created={NOW}')
        assert verify(headers).created == NOW

    def test_insignificant_whitespace_accepted(self) -> None:
        """Whitespace RFC 8941 allows around members does not change what is verified."""
        headers = signed()
        headers["Signature-Input"] = "  " + headers["Signature-Input"].replace('" "', '"   "') + "  "
        assert verify(headers).keyid == KEYID

    def test_negative_skew_refused(self) -> None:
        """A negative max_skew is a programming error."""
        with pytest.raises(ValueError, match="max_skew"):
            verify(signed(), max_skew=-1)


GOOD_INPUT = f'sig1=("@method" "@target-uri" "content-digest");created={NOW};keyid="{KEYID}"'


class TestHostileInput:
    @pytest.mark.parametrize(
        "value",
        [
            "sig1",
            "sig1=",
            "sig1=(",
            'sig1=("@method"',
            'sig1=("@method" "@target-uri" "content-digest";created=1',
            'sig1="@method"',
            'sig1=("@method" @target-uri)',
            "sig1=(:AAAA:)",
            "sig1=(1 2)",
            'sig1=("@method"x)',
            GOOD_INPUT + ",",
            GOOD_INPUT + ", " + GOOD_INPUT,
            GOOD_INPUT.replace("sig1", "Sig1"),
            GOOD_INPUT.replace("sig1", "1sig"),
            GOOD_INPUT.replace(f"created={NOW}", f'created="{NOW}"'),
            GOOD_INPUT.replace(f"created={NOW}", "created=-1"),
            GOOD_INPUT.replace(f"created={NOW}", f"created={NOW}.5"),
            GOOD_INPUT.replace(f"created={NOW}", "created=1234567890123456"),
            GOOD_INPUT.replace(f"created={NOW}", "created"),
            GOOD_INPUT.replace(f";created={NOW}", ""),
            GOOD_INPUT.replace(f';keyid="{KEYID}"', ""),
            GOOD_INPUT.replace(f'keyid="{KEYID}"', f"keyid={KEYID}"),
            GOOD_INPUT.replace(f'keyid="{KEYID}"', "keyid=:AAAA:"),
            GOOD_INPUT.replace(f'keyid="{KEYID}"', 'keyid="a\\nb"'),
            GOOD_INPUT.replace(f'keyid="{KEYID}"', 'keyid="caf\u00e9"'),
            GOOD_INPUT.replace(f'keyid="{KEYID}"', f'keyid="{KEYID}";keyid="x"'),
            GOOD_INPUT + ";created=1",
            GOOD_INPUT + ';unknown="x"',
            GOOD_INPUT + ";alg=ed25519",
            GOOD_INPUT.replace('"@method"', '"@method";req'),
            GOOD_INPUT.replace('"content-digest"', '"content-digest";sf'),
            GOOD_INPUT.replace('"content-digest"', '"content-digest";key="sha-256"'),
            GOOD_INPUT.replace('"@method"', '"@METHOD"'),
            GOOD_INPUT.replace('"@method"', '"@request-target"'),
            GOOD_INPUT.replace('"@method"', '"@signature-params"'),
            GOOD_INPUT.replace('"@method"', '"@target-uri"'),
            GOOD_INPUT.replace('"@method"', '"content type"'),
            GOOD_INPUT.replace('"@method"', '"\\"x"'),
            "sig1=()" + ';created=1;keyid="k"' * 2,
            "\u0000",
            "sig1=?2",
            "sig1=-",
            "sig1=1.2345",
            "sig1=1.",
            "sig1=1234567890123.1",
            'sig1="unterminated',
            'sig1="bad \\q escape"',
            GOOD_INPUT.replace(f"created={NOW}", f"created=@{NOW}"),
            GOOD_INPUT.replace(f'keyid="{KEYID}"', f'keyid=%"{KEYID}"'),
            GOOD_INPUT.replace('"@method"', '%"@method"'),
            f"sig1=@{NOW}",
        ],
    )
    def test_malformed_signature_input_refused(self, value: str) -> None:
        """Truncated, mistyped, duplicated, unsupported and out-of-range Signature-Input is refused."""
        headers = with_input(signed(), value)
        with pytest.raises(SignatureMalformedError):
            verify(headers, required=())

    @pytest.mark.parametrize(
        "value",
        [
            "sig1",
            "sig1=",
            "sig1=:",
            "sig1=:AAAA",
            "sig1=:AA!A:",
            "sig1=:=AAA:",
            "sig1=:AA=A:",
            "sig1=:A===:",
            "sig1=:A:",
            'sig1="AAAA"',
            "sig1=(:AAAA:)",
            "sig1=:AAAA:;p=1",
            "sig1=AAAA",
        ],
    )
    def test_malformed_signature_refused(self, value: str) -> None:
        """A Signature member that is not one clean byte sequence is refused."""
        headers = {**signed(), "Signature": value}
        with pytest.raises(SignatureMalformedError):
            verify(headers)

    @pytest.mark.parametrize("value", ["", "   "])
    def test_empty_fields_are_missing(self, value: str) -> None:
        """Empty Signature-Input and Signature fields count as no signature."""
        with pytest.raises(SignatureMissingError):
            verify({**signed(), "Signature-Input": value, "Signature": value})

    def test_unpadded_signature_accepted(self) -> None:
        """RFC 8941 §4.2.7: parsers should accept a byte sequence without its "=" padding."""
        headers = signed()
        headers["Signature"] = headers["Signature"].replace("==:", ":")
        assert verify(headers).keyid == KEYID

    def test_rfc9651_items_in_unread_members_ignored(self) -> None:
        """http_sf parses RFC 9651 Dates and Display Strings; in a signature the verifier does not read they pass.

        Where a value is used they are refused (see test_malformed_signature_input_refused).
        """
        headers = signed()
        headers["Signature-Input"] += f', other=("@method");created=@{NOW};keyid=%"x"'
        headers["Signature"] += f", other=@{NOW}"
        assert verify(headers, label="sig1").keyid == KEYID
        with pytest.raises(SignatureMalformedError):
            verify(headers)

    def test_huge_field_linear(self) -> None:
        """A very long field fails quickly and cleanly (no quadratic parse, no crash)."""
        headers = with_input(signed(), 'sig1=("' + "a" * 200_000)
        with pytest.raises(SignatureMalformedError):
            verify(headers)

    @settings(max_examples=300, deadline=None)
    @given(
        signature_input=st.text(
            alphabet=st.sampled_from('sig1=()"@;:,?*-. abcdkye0123456789\\\t\n\u00e9'), max_size=80
        ),
        signature=st.text(alphabet=st.sampled_from("sig1=:;()AQbcd+/= ,-0"), max_size=40),
    )
    def test_fuzzed_fields_raise_only_typed_errors(self, signature_input: str, signature: str) -> None:
        """Arbitrary Signature-Input and Signature values raise HttpSignatureError subclasses, never else."""
        headers = {**signed(), "Signature-Input": signature_input, "Signature": signature}
        with pytest.raises(HttpSignatureError):
            verify(headers)

    @settings(max_examples=300, deadline=None)
    @given(data=st.data())
    def test_mutated_signature_input_never_crashes(self, data: st.DataObject) -> None:
        """One-character edits of a valid Signature-Input verify (same meaning) or raise typed errors."""
        headers = signed()
        value = headers["Signature-Input"]
        i = data.draw(st.integers(0, len(value)))
        ch = data.draw(st.sampled_from(' ()";=,:?*-.\\@a1\t'))
        mode = data.draw(st.sampled_from(["insert", "replace", "delete"]))
        if mode == "insert":
            value = value[:i] + ch + value[i:]
        elif mode == "replace":
            value = value[:i] + ch + value[i + 1 :]
        else:
            value = value[:i] + value[i + 1 :]
        with contextlib.suppress(HttpSignatureError):
            verify(with_input(headers, value))


class TestReplayCache:
    def test_replayed_request_refused(self) -> None:
        """The same signed request accepted once is refused the second time."""
        cache = ReplayCache()
        headers = signed()
        first = verify(headers)
        cache.check_and_remember(first.keyid, first.signature, first.created, NOW)
        again = verify(headers, now=NOW + 10)
        with pytest.raises(ReplayedSignatureError):
            cache.check_and_remember(again.keyid, again.signature, again.created, NOW + 10)

    def test_reencoded_signature_replay_refused(self) -> None:
        """Re-encoding the Signature (dropping base64 padding) does not make a replay look new."""
        cache = ReplayCache()
        headers = signed()
        first = verify(headers)
        cache.check_and_remember(first.keyid, first.signature, first.created, NOW)
        headers["Signature"] = headers["Signature"].replace("==:", ":")
        again = verify(headers)
        with pytest.raises(ReplayedSignatureError):
            cache.check_and_remember(again.keyid, again.signature, again.created, NOW)

    def test_signature_from_before_a_restart_refused(self) -> None:
        """A cache started at ``since`` has not seen earlier signatures: one created before is refused as
        expired (it may be a replay of a request the previous process accepted); one created since is taken."""
        cache = ReplayCache(since=NOW)
        with pytest.raises(SignatureExpiredError, match="before this verifier started"):
            cache.check_and_remember("a", b"old", NOW - 1, NOW + 5)
        cache.check_and_remember("a", b"new", NOW, NOW + 5)

    def test_new_signature_accepted(self) -> None:
        """A fresh signature by the same key (another created) is not a replay."""
        cache = ReplayCache()
        for created in (NOW, NOW + 1):
            r = verify(signed(created=created), now=NOW + 1)
            cache.check_and_remember(r.keyid, r.signature, r.created, NOW + 1)
        assert len(cache) == 2

    def test_same_signature_other_keyid_distinct(self) -> None:
        """Entries are per (keyid, signature)."""
        cache = ReplayCache()
        cache.check_and_remember("a", b"sig", NOW, NOW)
        cache.check_and_remember("b", b"sig", NOW, NOW)
        with pytest.raises(ReplayedSignatureError):
            cache.check_and_remember("a", b"sig", NOW, NOW)

    def test_replay_at_window_edge_refused(self) -> None:
        """Up to the last second the skew check would accept it, a replay is still caught."""
        cache = ReplayCache(window=300)
        cache.check_and_remember("a", b"sig", NOW, NOW - 300)
        with pytest.raises(ReplayedSignatureError):
            cache.check_and_remember("a", b"sig", NOW, NOW + 300)

    def test_outside_window_refused(self) -> None:
        """The cache refuses what it could not vouch for: created outside now ± window."""
        cache = ReplayCache(window=300)
        with pytest.raises(SignatureExpiredError):
            cache.check_and_remember("a", b"sig", NOW - 301, NOW)
        with pytest.raises(SignatureFromFutureError):
            cache.check_and_remember("a", b"sig", NOW + 301, NOW)
        assert len(cache) == 0

    def test_entries_evicted_after_window(self) -> None:
        """Memory holds only the window: old entries go as time passes."""
        cache = ReplayCache(window=300)
        for i in range(1000):
            cache.check_and_remember("a", i.to_bytes(4, "big"), NOW + i, NOW + i)
            assert len(cache) <= 301
        cache.check_and_remember("a", b"last", NOW + 2000, NOW + 2000)
        assert len(cache) == 1

    def test_negative_window_refused(self) -> None:
        """A negative window is a programming error."""
        with pytest.raises(ValueError, match="window"):
            ReplayCache(window=-1)


class TestErrors:
    def test_hierarchy_and_reasons(self) -> None:
        """Every error is an HttpSignatureError with its own kebab-case reason slug."""
        classes = [
            SignatureMissingError,
            SignatureMalformedError,
            SignatureCoverageError,
            SignatureExpiredError,
            SignatureFromFutureError,
            UnknownKeyError,
            BadSignatureError,
            ContentDigestError,
            ReplayedSignatureError,
        ]
        reasons = [c.reason for c in classes]
        assert all(issubclass(c, HttpSignatureError) for c in classes)
        assert len(set(reasons)) == len(reasons)
        assert all(re.fullmatch(r"[a-z]+(-[a-z0-9]+)*", r) for r in [*reasons, HttpSignatureError.reason])

    def test_message_only_constructor(self) -> None:
        """Errors are raised with one message argument, so the base can be re-parented later."""
        with pytest.raises(SignatureExpiredError) as info:
            verify(signed(created=NOW - 1000))
        assert len(info.value.args) == 1
        assert "ago" in info.value.args[0]


@dataclass
class _LibRequest:
    """The message object http-message-signatures expects (requests-like)."""

    method: str
    url: str
    headers: dict[str, str]


class TestInteroperability:
    """Both directions against the http-message-signatures package (a project dependency)."""

    def test_library_verifies_our_signature(self) -> None:
        """A request signed by sign_request verifies with http-message-signatures."""
        hms = pytest.importorskip("http_message_signatures")
        request = _LibRequest("POST", TARGET, signed())
        verifier = hms.HTTPMessageVerifier(
            signature_algorithm=hms.algorithms.ED25519,
            key_resolver=hms.MappingKeyResolver(public_keys={KEYID: KEY.public_key()}, private_keys={}),
        )
        (result,) = verifier.verify(request, max_age=None, require_components=DEFAULT_COMPONENTS, body=BODY)
        assert (result.parameters["keyid"], result.body) == (KEYID, BODY)

    def test_we_verify_library_signature(self) -> None:
        """A request signed by http-message-signatures verifies with verify_request."""
        hms = pytest.importorskip("http_message_signatures")
        request = _LibRequest("POST", TARGET, dict(BASE_HEADERS))
        signer = hms.HTTPMessageSigner(
            signature_algorithm=hms.algorithms.ED25519,
            key_resolver=hms.MappingKeyResolver(public_keys={}, private_keys={KEYID: KEY}),
        )
        signer.sign(
            request,
            key_id=KEYID,
            created=datetime.datetime.fromtimestamp(NOW, datetime.UTC),
            label="sig1",
            nonce="abc",
            covered_component_ids=DEFAULT_COMPONENTS,
            body=BODY,
        )
        result = verify(request.headers)
        assert (result.keyid, result.created, result.nonce) == (KEYID, NOW, "abc")
        with pytest.raises(ContentDigestError):
            verify(request.headers, body=b"other")
