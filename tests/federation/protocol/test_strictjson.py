"""Strict JSON intake: every ambiguity two parsers could read differently is refused, with a reason."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.protocol import strictjson
from federation.protocol.errors import StrictJsonError
from tests.support import paths


def reason_of(data: bytes, limits: strictjson.JsonLimits = strictjson.DEFAULT_LIMITS) -> str:
    with pytest.raises(StrictJsonError) as e:
        strictjson.loads(data, limits)
    return e.value.reason


class TestLoads:
    def test_plain_document_parses(self) -> None:
        """A well-formed document with Arabic text comes back as Python values."""
        assert strictjson.loads('{"t":{"ar":"مؤتمر","en":"x"},"n":[1,2.5,null,true]}'.encode()) == {
            "t": {"ar": "مؤتمر", "en": "x"}, "n": [1, 2.5, None, True]}

    def test_duplicate_key_smuggling_refused(self) -> None:
        """Two members with one name could be read as either value by different verifiers."""
        assert reason_of(b'{"status":"scheduled","status":"cancelled"}') == "duplicate-key"

    def test_duplicate_key_in_nested_object_refused(self) -> None:
        """Duplicates are found at any depth, not only at the top."""
        assert reason_of(b'{"a":[{"b":1,"b":1}]}') == "duplicate-key"

    @pytest.mark.parametrize("doc", [b"[NaN]", b"[Infinity]", b"[-Infinity]", b"[1e400]"])
    def test_non_finite_numbers_refused(self, doc: bytes) -> None:
        """NaN and infinities are not JSON numbers (RFC 8259 §6) and cannot be canonicalized."""
        assert reason_of(doc) in ("non-finite-number", "number-out-of-range")

    def test_integer_beyond_ijson_range_refused(self) -> None:
        """2**53+1 would silently become 2**53 in a JavaScript verifier (RFC 7493 §2.2)."""
        assert reason_of(b"[9007199254740993]") == "number-out-of-range"

    @pytest.mark.parametrize("doc", [b'["\xff"]', b'["\xc0\xaf"]', b'["\xed\xa0\x80"]', b'["caf\xe9"]'])
    def test_invalid_utf8_refused(self, doc: bytes) -> None:
        """Invalid, overlong and surrogate-encoding UTF-8 are refused before parsing."""
        assert reason_of(doc) == "invalid-utf8"

    @pytest.mark.parametrize("doc", [b'["\\ud800"]', b'{"\\udfff":1}', b'["a\\ud83d"]'])
    def test_lone_surrogate_escape_refused(self, doc: bytes) -> None:
        """An escaped unpaired surrogate is not a Unicode string (RFC 8785 §3.2.2.2)."""
        assert reason_of(doc) == "lone-surrogate"

    def test_paired_surrogate_escape_accepted(self) -> None:
        """A correctly paired escape is an ordinary character."""
        assert strictjson.loads(b'["\\ud83d\\ude00"]') == ["\U0001f600"]

    def test_nesting_bomb_refused(self) -> None:
        """Deep nesting past the limit is refused, however deep (no RecursionError escapes)."""
        assert reason_of(b"[" * 33 + b"]" * 33) == "too-deep"
        assert reason_of(b"[" * 100_000 + b"]" * 100_000, strictjson.JsonLimits(max_bytes=10**6)) == "too-deep"

    def test_nesting_at_limit_accepted(self) -> None:
        """Exactly max_depth levels is fine."""
        assert strictjson.loads(b"[" * 32 + b"]" * 32) is not None

    def test_oversized_document_refused(self) -> None:
        """Size is checked before anything is parsed."""
        assert reason_of(b'"' + b"a" * 100 + b'"', strictjson.JsonLimits(max_bytes=50)) == "too-large"

    def test_byte_order_mark_refused(self) -> None:
        """RFC 8259 §8.1: a BOM must not be added to networked JSON."""
        assert reason_of(b'\xef\xbb\xbf{"a":1}') == "bom"

    @pytest.mark.parametrize("doc", [b"", b"{", b'{"a":1} x', b"[1,]", b"{'a':1}"])
    def test_malformed_json_refused(self, doc: bytes) -> None:
        """Anything that is not one JSON text is refused as malformed."""
        assert reason_of(doc) == "malformed-json"


class TestIdentifiers:
    @pytest.mark.parametrize("ch", ["\u202e", "\u2066", "\u200f", "\u061c"])
    def test_bidi_override_in_identifier_refused(self, ch: str) -> None:
        """Trojan Source: a bidi control makes two different ids render alike."""
        with pytest.raises(StrictJsonError) as e:
            strictjson.check_identifier("record_id", f"QA:abc{ch}def")
        assert e.value.reason == "bidi-in-identifier"

    def test_plain_identifier_accepted(self) -> None:
        """Ordinary ids pass."""
        strictjson.check_identifier("record_id", "QA:ga6-2020")


def outcome(parse: Callable[[bytes], Any], data: bytes) -> Any:
    """What a parser makes of ``data``: its refusal reason, or the value with every number's exact type."""
    try:
        return typed(parse(data))
    except StrictJsonError as e:
        return ("refused", e.reason)


def typed(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: typed(x) for k, x in v.items()}
    if isinstance(v, list):
        return [typed(x) for x in v]
    if isinstance(v, float):
        return ("float", v.hex())  # tells -0.0 from 0.0
    return (type(v).__name__, v)


def _member(key: Any, value: Any) -> str:
    return f"{json.dumps(key)}:{value}"


_scalars = (st.none() | st.booleans() | st.integers(-(2**60), 2**60)
            | st.floats(allow_nan=False, allow_infinity=False).map(repr)
            | st.sampled_from(["1e400", "-1e400", "1E308", "1e-400", "9007199254740993", "-0", "-0.0", "01", "1.",
                               "2e+5", "1.0e0001", "NaN", "Infinity", "12345678901234567890"])
            | st.text(max_size=8).map(json.dumps)
            | st.text(max_size=8).map(lambda s: json.dumps(s, ensure_ascii=False))
            | st.sampled_from(['"\\ud800"', '"\\ud83d\\ude00"', '"\\u0061"', '"\\/"', '"\\x41"', '"a\tb"']))
_texts = st.recursive(
    _scalars.map(str),
    lambda inner: (st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
                   | st.lists(st.tuples(st.sampled_from(["a", "b", "\u0061", "é", "k"]) | st.text(max_size=3), inner),
                              max_size=4).map(lambda ms: "{" + ",".join(_member(k, v) for k, v in ms) + "}")),
    max_leaves=12)


class TestFastPathAgreesWithReference:
    """``loads`` (jiter where it can) and ``loads_reference`` (the standard library with hooks) must give the same
    value or the same refusal for every input, or two nodes could read one signed document two ways."""

    @given(text=_texts, ws=st.sampled_from(["", " ", "\n", "\t", "\r\n", "\x0c", "\xa0"]))
    @settings(max_examples=1500, deadline=None)
    def test_generated_documents(self, text: str, ws: str) -> None:
        data = (ws + text + ws).encode()
        assert outcome(strictjson.loads, data) == outcome(strictjson.loads_reference, data)

    @given(text=_texts, ws=st.sampled_from(["", " ", "\n"]))
    @settings(max_examples=1500, deadline=None)
    def test_a_document_accepted_parses_again_the_same(self, text: str, ws: str) -> None:
        """``loads_accepted`` (a node parsing again what its verify worker accepted) gives ``loads``'s value."""
        data = (ws + text + ws).encode()
        try:
            value = strictjson.loads(data)
        except StrictJsonError:
            return
        assert typed(strictjson.loads_accepted(data)) == typed(value)

    @given(text=_texts, at=st.integers(min_value=0), byte=st.integers(0, 255))
    @settings(max_examples=1500, deadline=None)
    def test_mutated_documents(self, text: str, at: int, byte: int) -> None:
        data = bytearray(text.encode())
        data[at % len(data)] = byte
        assert outcome(strictjson.loads, bytes(data)) == outcome(strictjson.loads_reference, bytes(data))

    @pytest.mark.parametrize("path", sorted((paths.CORPUS / "cases").iterdir()),
                             ids=lambda p: p.name)
    def test_bad_input_corpus(self, path: Path) -> None:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        limits = strictjson.JsonLimits(max_bytes=64 * 1024 * 1024)
        assert outcome(lambda d: strictjson.loads(d, limits), data) == outcome(
            lambda d: strictjson.loads_reference(d, limits), data)

    def test_signed_envelopes(self) -> None:
        """The documents the hot path sees most: envelopes and their payloads, built from the schema examples."""
        from tests.support.factories import Member, example_bodies

        qa = Member("QA")
        for body in example_bodies("cultural-event") + example_bodies("capacity-programme"):
            env = qa.publish(body)
            for data in (env.to_bytes(), env.jws.payload):
                assert outcome(strictjson.loads, data) == outcome(strictjson.loads_reference, data)
