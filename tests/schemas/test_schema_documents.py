"""The schema documents under schemas/ and their examples.

Every schema is a valid Draft 2020-12 document with a versioned $id that matches its path; every valid
example passes; every invalid example fails with exactly the one error its directory's expected.json
names (instance pointer and keyword), under the reference validator (jsonschema) and under the compiled
one (jsonschema-rs). Examples whose manifest keyword starts with "rule:" pass the schema and are left to
the semantic rules layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import pytest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.support import paths

ROOT = paths.ROOT
SCHEMAS = ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"
ID_BASE = "https://schemas.ipdn.network/"

SCHEMA_FILES = sorted(SCHEMAS.glob("*/v[0-9]*.json"))
KINDS = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) if EXAMPLES.is_dir() else []
# Example sets: a kind's own directory holds v1's; a later version's (what it adds) are under <kind>/v<N>/.
SETS = [f"{kind}/v1" for kind in KINDS] + sorted(
    f"{kind}/{p.name}" for kind in KINDS for p in (EXAMPLES / kind).glob("v[0-9]*") if p.is_dir())


def _dir(schema: str) -> Path:
    """schemas/examples/<kind> for v1, schemas/examples/<kind>/v<N> for a later version."""
    kind, version = schema.split("/")
    return EXAMPLES / kind if version == "v1" else EXAMPLES / kind / version


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _schema_id(path: Path) -> str:
    """schemas/<name>/v<N>.json has $id https://schemas.ipdn.network/<name>/v<N>."""
    return f"{ID_BASE}{path.parent.name}/{path.stem}"


def _registry() -> Registry:
    return Registry().with_resources(
        (_schema_id(p), DRAFT202012.create_resource(_load(p))) for p in SCHEMA_FILES
    )


def _py_validator(schema: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"{ID_BASE}{schema}"}, registry=_registry())


def _rs_registry() -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry([(_schema_id(p), _load(p)) for p in SCHEMA_FILES])


def _pointer(parts: Any) -> str:
    """RFC 6901 pointer for a sequence of keys and indices ("" for the root)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _keyword(schema_path: Any, leaf: str) -> str:
    """The failing keyword of a jsonschema error. jsonschema reports an error under propertyNames by the
    subschema's own keyword (pattern); the manifest names propertyNames, at the object's pointer."""
    return "propertyNames" if "propertyNames" in list(schema_path) else leaf


def _py_errors(schema: str, body: Any) -> set[tuple[str, str]]:
    return {
        (_pointer(e.absolute_path), _keyword(e.absolute_schema_path, str(e.validator)))
        for e in _py_validator(schema).iter_errors(body)
    }


def _rs_errors(schema: str, body: Any) -> set[tuple[str, str]]:
    wrapper = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": f"{ID_BASE}{schema}"}
    validator = jsonschema_rs.validator_for(wrapper, registry=_rs_registry())
    # jsonschema-rs names the keyword in the error kind (propertyNames included).
    return {(_pointer(e.instance_path), str(e.kind.name)) for e in validator.iter_errors(body)}


def _valid_examples() -> list[Any]:
    return [
        pytest.param(schema, p, id=f"{schema}/{p.stem}")
        for schema in SETS
        for p in sorted((_dir(schema) / "valid").glob("*.json"))
    ]


def _invalid_examples() -> list[Any]:
    out = []
    for schema in SETS:
        manifest = _load(_dir(schema) / "invalid" / "expected.json")
        for name, expected in sorted(manifest.items()):
            out.append(pytest.param(schema, _dir(schema) / "invalid" / name, expected, id=f"{schema}/{name}"))
    return out


class TestSchemaDocuments:
    def test_schemas_found(self) -> None:
        """The common definitions and both record kinds are present, and each kind has examples."""
        assert {p.parent.name for p in SCHEMA_FILES} >= {"common", "cultural-event", "capacity-programme"}
        assert set(KINDS) >= {"cultural-event", "capacity-programme"}

    @pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.parent.name)
    def test_schema_is_valid_draft_2020_12(self, path: Path) -> None:
        """Each schema document is itself valid against the Draft 2020-12 metaschema."""
        schema = _load(path)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)

    @pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.parent.name)
    def test_schema_id_is_versioned_and_matches_path(self, path: Path) -> None:
        """A schema's $id names its kind and version exactly as its path does, so envelopes can pin it."""
        assert _load(path)["$id"] == _schema_id(path)

    @pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.parent.name)
    def test_schema_avoids_unportable_features(self, path: Path) -> None:
        """No \\d, \\w or \\s in patterns (Unicode-aware in some engines, ASCII in others), patterns are
        anchored, and no $dynamicRef or unevaluatedProperties, so the compiled and the reference validator
        agree."""
        text = path.read_text(encoding="utf-8")
        assert "$dynamicRef" not in text
        assert "unevaluatedProperties" not in text

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                pattern = node.get("pattern")
                if isinstance(pattern, str):
                    assert not any(c in pattern for c in ("\\d", "\\w", "\\s", "\\D", "\\W", "\\S")), pattern
                    assert pattern.startswith("^"), pattern
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(_load(path))

    @pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.parent.name)
    def test_schema_compiles_with_jsonschema_rs(self, path: Path) -> None:
        """The compiled validator accepts every document (references resolve through the registry)."""
        jsonschema_rs.validator_for(
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": _schema_id(path)},
            registry=_rs_registry(),
        )


class TestExamples:
    @pytest.mark.parametrize(("schema", "path"), _valid_examples())
    def test_valid_example_passes(self, schema: str, path: Path) -> None:
        """A valid example body has no schema error under either validator."""
        body = _load(path)
        assert _py_errors(schema, body) == set()
        assert _rs_errors(schema, body) == set()

    @pytest.mark.parametrize(("schema", "path", "expected"), _invalid_examples())
    def test_invalid_example_fails_as_listed(self, schema: str, path: Path, expected: dict[str, str]) -> None:
        """An invalid example fails with exactly its manifest's pointer and keyword; a rule:* example
        passes the schema (the semantic rules layer refuses it)."""
        body = _load(path)
        rule = expected["keyword"].startswith("rule:")
        want = set() if rule else {(expected["pointer"], expected["keyword"])}
        errors = list(_py_validator(schema).iter_errors(body))
        assert len(errors) == len(want), [e.message for e in errors]
        assert _py_errors(schema, body) == want
        assert _rs_errors(schema, body) == want

    @pytest.mark.parametrize("schema", SETS)
    def test_manifest_lists_every_invalid_example(self, schema: str) -> None:
        """Every invalid example is in expected.json and every entry there has a file."""
        directory = _dir(schema) / "invalid"
        manifest = _load(directory / "expected.json")
        files = {p.name for p in directory.glob("*.json")} - {"expected.json"}
        assert files == set(manifest)
        for entry in manifest.values():
            assert set(entry) == {"pointer", "keyword", "reason"}
            assert entry["pointer"] == "" or entry["pointer"].startswith("/")

    @pytest.mark.parametrize("kind", KINDS)
    def test_enough_examples(self, kind: str) -> None:
        """Each kind has several valid examples and at least a dozen schema-level invalid ones."""
        valid = list((EXAMPLES / kind / "valid").glob("*.json"))
        manifest = _load(EXAMPLES / kind / "invalid" / "expected.json")
        schema_level = [e for e in manifest.values() if not e["keyword"].startswith("rule:")]
        assert len(valid) >= 3
        assert len(schema_level) >= 12


class TestLaterVersions:
    """A later version of a record schema (PROTOCOL.md §4): the one before with additions, so a body the older
    version accepts, the newer accepts too, and the newer's own examples need what it adds (ADR 0031)."""

    @pytest.mark.parametrize("schema", [s for s in SETS if not s.endswith("/v1")])
    def test_examples_of_what_the_version_adds(self, schema: str) -> None:
        """Each later version has valid examples the version before refuses (they use what it adds) and invalid
        ones of its additions."""
        kind, version = schema.split("/")
        before = f"{kind}/v{int(version[1:]) - 1}"
        valid = sorted((_dir(schema) / "valid").glob("*.json"))
        assert len(valid) >= 3 and len(_load(_dir(schema) / "invalid" / "expected.json")) >= 5
        for path in valid:
            assert _py_errors(before, _load(path)) == {("", "additionalProperties")}, path.name

    @pytest.mark.parametrize("schema", [s for s in SETS if not s.endswith("/v1")])
    def test_every_body_of_the_version_before_still_valid(self, schema: str) -> None:
        """Every valid example of every earlier version passes the later one unchanged (nothing was tightened)."""
        kind, version = schema.split("/")
        for n in range(1, int(version[1:])):
            for path in sorted((_dir(f"{kind}/v{n}") / "valid").glob("*.json")):
                assert _py_errors(schema, _load(path)) == set(), path.name
                assert _rs_errors(schema, _load(path)) == set(), path.name

    def test_cultural_event_v2_is_v1_plus_status_reason(self) -> None:
        """cultural-event/v2 = v1 with one optional property (status_reason) and one rule about it; v1 untouched."""
        v1, v2 = _load(SCHEMAS / "cultural-event" / "v1.json"), _load(SCHEMAS / "cultural-event" / "v2.json")
        assert set(v2["properties"]) - set(v1["properties"]) == {"status_reason"}
        assert {k: v for k, v in v2["properties"].items() if k != "status_reason"} == v1["properties"]
        assert v2["required"] == v1["required"] and v2["allOf"][:-1] == v1["allOf"]
        assert v2["allOf"][-1]["if"] == {"required": ["status_reason"]}
