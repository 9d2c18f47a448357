"""Record schemas: loading, validation (fast path and reference), and the semantic rules of each kind.

Two validators give one verdict. The hot path compiles every schema with jsonschema-rs (about 200x
faster than pure Python here, docs/ARCHITECTURE.md, where the time goes); ``jsonschema`` stays as the
reference implementation, and tests prove both agree on every example and on generated documents. JSON Schema regular
expressions are ECMA-262 (2020-12 §6.4); Python's ``re`` differs in that ``$`` also matches before a
final newline, so the reference translates ``$`` to ``\\Z`` to keep the spec's meaning.

Rules JSON Schema cannot state (an end after the start, a time zone that exists) run after the
schema, in both paths, and report keyword ``rule:<name>``.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import referencing
import referencing.jsonschema

import schemas as _schemas_pkg
from federation.protocol.errors import UnknownSchemaError

SCHEMA_ROOT = _schemas_pkg.ROOT
_ID_RE = re.compile(r"https://schemas\.ipdn\.network/([a-z][a-z0-9-]*)/v([0-9]+)")


@dataclass(frozen=True, slots=True)
class Issue:
    """One reason a body is invalid: RFC 6901 pointer into the body, failing keyword, plain words."""

    pointer: str
    keyword: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "keyword": self.keyword, "message": self.message}


def pointer(path: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


# -- semantic rules ----------------------------------------------------------------------------------


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _rule_timezone(body: dict[str, Any]) -> Iterator[Issue]:
    tz = body.get("timezone")
    if isinstance(tz, str) and tz not in _zones():
        yield Issue("/timezone", "rule:unknown-timezone", f"{tz!r} is not an IANA time zone")


def _ordered(body: dict[str, Any], start: str, end: str, parse: Callable[[str], Any]) -> Iterator[Issue]:
    a, b = body.get(start), body.get(end)
    if isinstance(a, str) and isinstance(b, str):
        try:
            before = parse(b) < parse(a)
        except (ValueError, TypeError):
            return  # the schema already reports a malformed value
        if before:
            yield Issue(f"/{end}", "rule:end-before-start", f"{end} {b} is before {start} {a}")


def _event_rules(body: dict[str, Any]) -> Iterator[Issue]:
    yield from _rule_timezone(body)
    yield from _ordered(body, "start", "end", datetime.fromisoformat)


def _programme_rules(body: dict[str, Any]) -> Iterator[Issue]:
    yield from _rule_timezone(body)
    yield from _ordered(body, "start_date", "end_date", date.fromisoformat)


RULES: dict[str, Callable[[dict[str, Any]], Iterator[Issue]]] = {
    "cultural-event": _event_rules,
    "capacity-programme": _programme_rules,
}


# -- the reference validator's ECMA-262 regex semantics -------------------------------------------------


def ecma_to_python(pattern: str) -> str:
    """Translate the one ECMA-262/Python difference our schemas can hit: ``$`` means end of input."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        out.append(r"\Z" if c == "$" and not in_class else c)
        i += 1
    return "".join(out)


def _ecma_pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, "string") and not re.search(ecma_to_python(patrn), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")


_ReferenceValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _ecma_pattern}
)


def _keyword(error: Any) -> str:
    """The failing keyword, named as the reference names it (a bad property name is propertyNames)."""
    name = getattr(error.kind, "name", None)
    return str(name) if name else str(error.schema_path[-1])


# -- the schema set --------------------------------------------------------------------------------------


class SchemaSet:
    """Every schema this party holds, by ``$id``; record kinds map to their newest version."""

    def __init__(self, documents: dict[str, dict[str, Any]]) -> None:
        self.documents = documents
        self.latest: dict[str, str] = {}
        self.kind_of: dict[str, str] = {}
        self.versions: dict[str, list[str]] = {}  # each kind's record schemas, oldest first
        for sid in sorted(documents, key=lambda s: int(_ID_RE.fullmatch(s).group(2))):  # type: ignore[union-attr]
            kind = _ID_RE.fullmatch(sid).group(1)  # type: ignore[union-attr]
            if kind in RULES:
                self.kind_of[sid] = kind
                self.latest[kind] = sid
                self.versions.setdefault(kind, []).append(sid)
        self._fast_registry = jsonschema_rs.Registry(list(documents.items()))
        self._ref_registry: referencing.Registry[Any] = referencing.Registry().with_resources(
            (sid, referencing.jsonschema.DRAFT202012.create_resource(doc)) for sid, doc in documents.items()
        )
        self._fast: dict[str, Any] = {}
        self._ref: dict[str, Any] = {}

    @classmethod
    def load(cls, root: Path = SCHEMA_ROOT) -> SchemaSet:
        """Every ``<name>/v<N>.json`` under ``root`` (examples are not schemas)."""
        docs: dict[str, dict[str, Any]] = {}
        for path in sorted(root.glob("*/v*.json")):
            doc = json.loads(path.read_text(encoding="utf-8"))
            sid = doc.get("$id", "")
            if not _ID_RE.fullmatch(sid) or not sid.endswith(f"/{path.parent.name}/{path.stem}"):
                raise ValueError(f"{path}: $id {sid!r} does not match its path")
            docs[sid] = doc
        return cls(docs)

    def capped(self, newest: dict[str, str]) -> SchemaSet:
        """The same documents (every version is still verified), with ``latest`` held back to ``newest`` for the
        kinds it names: what a producer writes and its forms offer while the network still runs an older release
        (docs/adr/0031)."""
        out = SchemaSet(self.documents)
        for kind, sid in newest.items():
            if out.kind_of.get(sid) != kind:
                raise UnknownSchemaError(f"no record schema {sid!r} for kind {kind!r}")
            out.latest[kind] = sid
            out.versions[kind] = out.versions[kind][: out.versions[kind].index(sid) + 1]
        return out

    def pin(self, kind: str, body: Any) -> str:
        """The ``$id`` a producer pins for ``body``: the oldest version of ``kind`` up to ``latest`` that the body
        satisfies, so a receiver of an older release (which holds only the older versions) accepts every record
        that needs nothing newer (docs/adr/0031). A body no version accepts pins the newest, whose issues say why;
        a tombstone (``None``, checked against no schema) the oldest.

        Raises:
            UnknownSchemaError: ``kind`` is no record kind of this set.
        """
        newest = self.schema_id(kind)
        for sid in self.versions[self.kind_of[newest]]:
            if sid == newest or body is None or self._compiled(sid).is_valid(body):
                return sid
        return newest

    def schema_id(self, kind_or_id: str) -> str:
        """The pinned ``$id`` for a kind name (its newest version) or an ``$id`` this set holds.

        Raises:
            UnknownSchemaError: neither a known kind nor a known record schema $id.
        """
        sid = self.latest.get(kind_or_id, kind_or_id)
        if sid not in self.kind_of:
            raise UnknownSchemaError(f"no record schema {kind_or_id!r}")
        return sid

    def _compiled(self, sid: str) -> Any:
        v = self._fast.get(sid)
        if v is None:
            v = self._fast[sid] = jsonschema_rs.validator_for(
                self.documents[sid], registry=self._fast_registry, validate_formats=False
            )
        return v

    def validate(self, kind_or_id: str, body: Any) -> list[Issue]:
        """Every issue with ``body`` under its schema and its kind's rules (fast path); [] if valid."""
        sid = self.schema_id(kind_or_id)
        v = self._compiled(sid)
        if v.is_valid(body):
            issues = []
        else:
            issues = [Issue(pointer(e.instance_path), _keyword(e), e.message) for e in v.iter_errors(body)]
        return issues or list(RULES[self.kind_of[sid]](body))

    def rules(self, kind_or_id: str, body: Any) -> list[Issue]:
        """The kind's rules alone, whatever the schema says (a form reports them in the same round as the
        schema's issues, so nobody fixes one list to be shown another); none for a body that is no object."""
        return list(RULES[self.kind_of[self.schema_id(kind_or_id)]](body)) if isinstance(body, dict) else []

    def validate_reference(self, kind_or_id: str, body: Any) -> list[Issue]:
        """The same verdict through the pure-Python reference implementation."""
        sid = self.schema_id(kind_or_id)
        v = self._ref.get(sid)
        if v is None:
            v = self._ref[sid] = _ReferenceValidator(self.documents[sid], registry=self._ref_registry)
        issues = [Issue(pointer(e.absolute_path),
                        "propertyNames" if "propertyNames" in e.absolute_schema_path else str(e.validator), e.message)
                  for e in v.iter_errors(body)]
        return issues or list(RULES[self.kind_of[sid]](body))

    def guess_kind(self, body: Any) -> str | None:
        """The kind a bare body is written for, from its discriminating field (or None)."""
        if isinstance(body, dict):
            if "event_type" in body and "programme_type" not in body:
                return "cultural-event"
            if "programme_type" in body and "event_type" not in body:
                return "capacity-programme"
        return None


@cache
def default_schemas() -> SchemaSet:
    return SchemaSet.load()
