"""Record schemas through the protocol core: examples, the fast path against the reference, rules."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.protocol.errors import UnknownSchemaError
from federation.protocol.schemas import SchemaSet, default_schemas, ecma_to_python
from tests.support.factories import EXAMPLES, example_bodies, example_paths

KINDS = ("cultural-event", "capacity-programme")


def expected(kind: str) -> dict[str, dict[str, str]]:
    return json.loads((EXAMPLES / kind / "invalid" / "expected.json").read_text())


def invalid_cases() -> list[tuple[str, str, dict[str, str]]]:
    return [(kind, name, exp) for kind in KINDS for name, exp in sorted(expected(kind).items())]


@pytest.fixture(scope="module")
def schemas() -> SchemaSet:
    return default_schemas()


class TestExamples:
    def test_enough_examples(self) -> None:
        """At least 3 valid and 10 invalid examples per kind, each invalid one in the manifest."""
        for kind in KINDS:
            assert len(example_paths(kind)) >= 3
            invalid = {p.name for p in example_paths(kind, valid=False)} - {"expected.json"}
            assert len(invalid) >= 10 and invalid == set(expected(kind))

    @pytest.mark.parametrize("kind", KINDS)
    def test_valid_examples_pass_both_paths(self, schemas: SchemaSet, kind: str) -> None:
        """Every valid example is valid under the fast path and the reference."""
        for body in example_bodies(kind):
            assert schemas.validate(kind, body) == []
            assert schemas.validate_reference(kind, body) == []

    @pytest.mark.parametrize(("kind", "name", "exp"), invalid_cases(), ids=lambda v: v if isinstance(v, str) else "")
    def test_invalid_example_fails_for_its_reason(self, schemas: SchemaSet, kind: str, name: str,
                                                   exp: dict[str, str]) -> None:
        """Each invalid example fails with exactly its named pointer and keyword, on both paths."""
        body = json.loads((EXAMPLES / kind / "invalid" / name).read_text())
        for issues in (schemas.validate(kind, body), schemas.validate_reference(kind, body)):
            assert [(i.pointer, i.keyword) for i in issues] == [(exp["pointer"], exp["keyword"])]

    def test_kind_guessed_from_discriminator(self, schemas: SchemaSet) -> None:
        """Bare bodies say their kind through event_type or programme_type."""
        assert schemas.guess_kind(example_bodies("cultural-event")[0]) == "cultural-event"
        assert schemas.guess_kind(example_bodies("capacity-programme")[0]) == "capacity-programme"
        assert schemas.guess_kind({"title": {"en": "x"}}) is None

    def test_unknown_schema_refused(self, schemas: SchemaSet) -> None:
        """A schema id the set does not hold is a typed error, never a pass."""
        with pytest.raises(UnknownSchemaError):
            schemas.validate("https://schemas.ipdn.network/cultural-event/v7", {})


class TestEcmaRegex:
    @pytest.mark.parametrize(("pattern", "python"), [
        ("^[A-Z]{2}$", r"^[A-Z]{2}\Z"), (r"^a\$$", r"^a\$\Z"), ("^[$]x$", r"^[$]x\Z")])
    def test_dollar_means_end_of_input(self, pattern: str, python: str) -> None:
        """ECMA-262 '$' is end of input; Python's would also match before a final newline."""
        assert ecma_to_python(pattern) == python

    def test_trailing_newline_refused_by_both(self, schemas: SchemaSet) -> None:
        """'QA\\n' is not a country code on either path."""
        body = copy.deepcopy(example_bodies("cultural-event")[0])
        body["participating_countries"] = ["QA\n"]
        assert schemas.validate("cultural-event", body) and schemas.validate_reference("cultural-event", body)


# -- agreement on generated documents --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(["QA", "qa", "QA\n", "ar", "en-GB", "2020-01-20T09:00:00+03:00",
                                               "2020-01-20", "Asia/Qatar", "https://x.org/", "١٢", "scheduled"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_examples(draw: st.DrawFn) -> tuple[str, Any]:
    """A valid example with a few random edits: the documents most likely to split two validators."""
    kind = draw(st.sampled_from(KINDS))
    body = copy.deepcopy(draw(st.sampled_from(example_bodies(kind))))
    for _ in range(draw(st.integers(1, 3))):
        node: Any = body
        path = []
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
            path.append(key)
            node = node[key]
        if not path:
            continue
        parent = body
        for k in path[:-1]:
            parent = parent[k]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return kind, body


class TestFastPathAgreesWithReference:
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated_examples())
    def test_same_verdict_on_mutated_examples(self, case: tuple[str, Any]) -> None:
        """jsonschema-rs and jsonschema give the same verdict on edited examples.

        (How many errors each lists past the first may differ: both may stop descending early.)"""
        kind, body = case
        schemas = default_schemas()
        assert (schemas.validate(kind, body) == []) == (schemas.validate_reference(kind, body) == [])

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(KINDS), json_values)
    def test_same_verdict_on_arbitrary_json(self, kind: str, body: Any) -> None:
        """And on arbitrary JSON values."""
        schemas = default_schemas()
        assert (schemas.validate(kind, body) == []) == (schemas.validate_reference(kind, body) == [])


EVENT_V1 = "https://schemas.ipdn.network/cultural-event/v1"
EVENT_V2 = "https://schemas.ipdn.network/cultural-event/v2"


class TestPinnedVersion:
    """What a producer pins (docs/adr/0031): the oldest version that holds the body, so a receiver of the previous
    release, which holds only the older versions, accepts every record that needs nothing newer."""

    def test_oldest_version_that_holds_the_body(self, schemas: SchemaSet) -> None:
        """A v1 body pins v1 though v2 is the newest; a body with status_reason pins v2; a body no version accepts
        pins the newest (its issues say why); a tombstone the oldest."""
        body = example_bodies("cultural-event")[5]
        assert schemas.latest["cultural-event"] == EVENT_V2
        assert schemas.pin("cultural-event", body) == EVENT_V1
        assert schemas.pin("cultural-event", {**body, "status_reason": {"en": "The hall is closed"}}) == EVENT_V2
        assert schemas.pin("cultural-event", {**body, "typo": 1}) == EVENT_V2
        assert schemas.pin("cultural-event", None) == EVENT_V1
        assert schemas.pin("capacity-programme", example_bodies("capacity-programme")[0]).endswith("/v1")

    def test_capped_set_writes_older_and_verifies_all(self, schemas: SchemaSet) -> None:
        """A set held back to v1 offers and pins v1 only, and still verifies v2 bodies pinned by others."""
        capped = schemas.capped({"cultural-event": EVENT_V1})
        body = {**example_bodies("cultural-event")[5], "status_reason": {"ar": "أُغلقت القاعة"}}
        assert capped.latest["cultural-event"] == EVENT_V1 and capped.pin("cultural-event", body) == EVENT_V1
        assert capped.validate("cultural-event", body) != [] and capped.validate(EVENT_V2, body) == []
        with pytest.raises(UnknownSchemaError):
            schemas.capped({"cultural-event": "https://schemas.ipdn.network/capacity-programme/v1"})
