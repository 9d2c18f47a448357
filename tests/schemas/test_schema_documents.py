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


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _schema_id(path: Path) -> str:
    """schemas/<name>/v<N>.json has $id https://schemas.ipdn.network/<name>/v<N>."""
    return f"{ID_BASE}{path.parent.name}/{path.stem}"


def _registry() -> Registry:
    return Registry().with_resources(
        (_schema_id(p), DRAFT202012.create_resource(_load(p))) for p in SCHEMA_FILES
    )


def _py_validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"{ID_BASE}{kind}/v1"}, registry=_registry())


def _rs_registry() -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry([(_schema_id(p), _load(p)) for p in SCHEMA_FILES])


def _pointer(parts: Any) -> str:
    """RFC 6901 pointer for a sequence of keys and indices ("" for the root)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _keyword(schema_path: Any, leaf: str) -> str:
    """The failing keyword of a jsonschema error. jsonschema reports an error under propertyNames by the
    subschema's own keyword (pattern); the manifest names propertyNames, at the object's pointer."""
    return "propertyNames" if "propertyNames" in list(schema_path) else leaf


def _py_errors(kind: str, body: Any) -> set[tuple[str, str]]:
    return {
        (_pointer(e.absolute_path), _keyword(e.absolute_schema_path, str(e.validator)))
        for e in _py_validator(kind).iter_errors(body)
    }


def _rs_errors(kind: str, body: Any) -> set[tuple[str, str]]:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": f"{ID_BASE}{kind}/v1"}
    validator = jsonschema_rs.validator_for(schema, registry=_rs_registry())
    # jsonschema-rs names the keyword in the error kind (propertyNames included).
    return {(_pointer(e.instance_path), str(e.kind.name)) for e in validator.iter_errors(body)}


def _valid_examples() -> list[Any]:
    return [
        pytest.param(kind, p, id=f"{kind}/{p.stem}")
        for kind in KINDS
        for p in sorted((EXAMPLES / kind / "valid").glob("*.json"))
    ]


def _invalid_examples() -> list[Any]:
    out = []
    for kind in KINDS:
        manifest = _load(EXAMPLES / kind / "invalid" / "expected.json")
        for name, expected in sorted(manifest.items()):
            out.append(pytest.param(kind, EXAMPLES / kind / "invalid" / name, expected, id=f"{kind}/{name}"))
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
    @pytest.mark.parametrize(("kind", "path"), _valid_examples())
    def test_valid_example_passes(self, kind: str, path: Path) -> None:
        """A valid example body has no schema error under either validator."""
        body = _load(path)
        assert _py_errors(kind, body) == set()
        assert _rs_errors(kind, body) == set()

    @pytest.mark.parametrize(("kind", "path", "expected"), _invalid_examples())
    def test_invalid_example_fails_as_listed(self, kind: str, path: Path, expected: dict[str, str]) -> None:
        """An invalid example fails with exactly its manifest's pointer and keyword; a rule:* example
        passes the schema (the semantic rules layer refuses it)."""
        body = _load(path)
        rule = expected["keyword"].startswith("rule:")
        want = set() if rule else {(expected["pointer"], expected["keyword"])}
        errors = list(_py_validator(kind).iter_errors(body))
        assert len(errors) == len(want), [e.message for e in errors]
        assert _py_errors(kind, body) == want
        assert _rs_errors(kind, body) == want

    @pytest.mark.parametrize("kind", KINDS)
    def test_manifest_lists_every_invalid_example(self, kind: str) -> None:
        """Every invalid example is in expected.json and every entry there has a file."""
        directory = EXAMPLES / kind / "invalid"
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
