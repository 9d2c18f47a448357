"""RFC 8785 canonical bytes: every case of the vendored JCS vectors (tests/vectors/jcs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from federation.protocol import strictjson
from federation.protocol.canonical import canonical_bytes
from federation.protocol.errors import InputError

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
