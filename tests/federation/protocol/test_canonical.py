"""RFC 8785 canonical bytes: every case of the vendored JCS vectors (tests/vectors/jcs)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.protocol import strictjson
from federation.protocol.canonical import canonical_bytes, is_canonical, is_canonical_reference
from federation.protocol.errors import InputError, StrictJsonError

CASES = ["arrays", "french", "structures", "unicode", "values", "weird"]


class TestCanonicalBytes:
    @pytest.mark.parametrize("name", CASES)
    def test_jcs_vector(self, vectors: Path, name: str) -> None:
        """input/X.json canonicalizes to exactly output/X.json (and outhex/X.txt)."""
        value = strictjson.loads((vectors / "jcs" / "input" / f"{name}.json").read_bytes())
        expected = (vectors / "jcs" / "output" / f"{name}.json").read_bytes()
        hexed = bytes.fromhex((vectors / "jcs" / "outhex" / f"{name}.txt").read_text().replace(" ", "").strip())
        assert canonical_bytes(value) == expected == hexed

    def test_all_vectors_covered(self, vectors: Path) -> None:
        """No vector file is silently skipped."""
        assert sorted(p.stem for p in (vectors / "jcs" / "input").glob("*.json")) == CASES

    def test_canonical_bytes_parse_back_equal(self) -> None:
        """Canonical bytes are themselves strict JSON with the same value."""
        v = {"b": [1, 2.5, "ع"], "a": {"z": None, "é": True}}
        assert strictjson.loads(canonical_bytes(v)) == v == json.loads(canonical_bytes(v))

    def test_non_finite_float_refused(self) -> None:
        """JCS cannot represent NaN; the error is typed."""
        with pytest.raises(InputError):
            canonical_bytes({"x": float("nan")})


# JSON values as strict intake yields them: safe integers, finite floats of every magnitude, any text (astral
# characters and controls included, in names too).
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4), max_leaves=12)


def _encodings(value: object) -> list[bytes]:
    """The value's JCS bytes and other encodings of it a producer might write."""
    return [canonical_bytes(value), json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(),
            json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode(),
            json.dumps(value, sort_keys=True).encode(), json.dumps(value, indent=1).encode(), *_orjson(value)]


def _orjson(value: object) -> list[bytes]:
    """What the fast path itself writes, sorted and not: it must not take its own forms for RFC 8785's."""
    try:
        return [orjson.dumps(value, option=orjson.OPT_SORT_KEYS), orjson.dumps(value)]
    except TypeError:  # a lone surrogate or an integer beyond 64 bits: nothing to compare
        return []


class TestIsCanonical:
    """One record, one byte string: is_canonical's fast path (orjson) agrees with rfc8785 (the reference)."""

    @given(_VALUES)
    @settings(max_examples=400, deadline=None)
    def test_fast_path_agrees_with_reference(self, value: object) -> None:
        for data in _encodings(value):
            try:  # a float such as 2.0**53 reads back as an integer outside the I-JSON range
                parsed = strictjson.loads(data, strictjson.JsonLimits(max_depth=64))
            except StrictJsonError:
                continue
            assert is_canonical(data, parsed) == is_canonical_reference(data, parsed) == (
                data == canonical_bytes(parsed)), data

    @pytest.mark.parametrize("name", CASES)
    def test_jcs_vectors(self, vectors: Path, name: str) -> None:
        """Each vector's output is canonical; its input (other layouts, escapes, number forms) is not."""
        raw = (vectors / "jcs" / "input" / f"{name}.json").read_bytes()
        value = strictjson.loads(raw)
        expected = (vectors / "jcs" / "output" / f"{name}.json").read_bytes()
        assert is_canonical(expected, strictjson.loads(expected))
        assert not is_canonical(raw, value)

    @pytest.mark.parametrize("data", [
        rb'{"a":1.0}', rb'{"a":1E+21}', rb'{"a":1e-05}', rb'{"a":-0.0}', rb'{"a":25.0}', rb'{"a":"\u00e9"}',
        rb'{"a":"\/"}', rb'{"b":1,"a":2}', rb'{"a":[1, 2]}', rb'{"a":"\u001F"}', rb'{"\ud83d\ude00":1,"\uffff":2}',
    ])
    def test_second_encodings_refused(self, data: bytes) -> None:
        """Number forms, escapes, order and spaces that RFC 8785 does not write."""
        value = strictjson.loads(data)
        assert not is_canonical(data, value)
        assert is_canonical(canonical_bytes(value), value)

    @pytest.mark.parametrize("value", [
        {"lat": 25.3601, "lon": -51.5257, "xs": [0.5, 1234.5, 0.0001], "n": 7},
        {"note": "v1.5] and 2e+5} in text", "x": 1.5},
        {"tiny": 1e-05, "huge": 1.5e300, "whole": 25.0, "neg": -0.0},
    ], ids=["plain-floats", "look-alikes-in-strings", "floats-rfc8785-writes-otherwise"])
    def test_floats_decided_like_rfc8785(self, value: dict[str, object]) -> None:
        """The fast path's float scan: plain floats, look-alikes inside strings, and the forms it leaves to
        rfc8785 all get rfc8785's verdict on the canonical bytes and on the standard encoder's."""
        for data in (canonical_bytes(value), json.dumps(value, separators=(",", ":"), sort_keys=True).encode()):
            parsed = strictjson.loads(data)
            assert is_canonical(data, parsed) == (data == canonical_bytes(parsed))

    def test_astral_member_names_in_utf16_order(self) -> None:
        """U+FFFF sorts before U+1F600 by code point, after it in UTF-16 (RFC 8785 §3.2.3)."""
        value = {"\uffff": 1, "\U0001f600": 2}
        data = canonical_bytes(value)
        assert data.index("\U0001f600".encode()) < data.index("\uffff".encode())
        assert is_canonical(data, value)
        assert not is_canonical(json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
                                .encode(), value)
