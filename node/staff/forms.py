"""Record forms built from the JSON Schemas, and the way back: pure functions, no I/O.

A form is a tree of :class:`Field` made from a record kind's schema at render time, so a new schema
version needs no new template (docs/adr: authoring forms from the schema). ``$ref`` is resolved
against the schema set (``common/v1`` definitions by absolute URI). Widgets follow the schema:

- a language map (an object whose property names are language tags) -> one input per authoring
  language, each with ``lang`` and ``dir`` (right to left for Arabic and the other RTL scripts),
  a textarea when the text may run over lines;
- an object -> a fieldset; an array of objects -> a repeatable group (the items held plus one
  blank, each removable); an array of strings -> repeated inputs; an array of an enum -> checkboxes;
  an array of countries -> a multiple picker;
- an enum -> a select; a country -> a select of country names; a time zone -> a select grouped by country,
  the node's own first (node/staff/zones.py);
- a rights statement -> a licence picker (node/staff/licences.py: Creative Commons or "all rights reserved",
  in plain words, the node's preset chosen; another URI may be typed);
- a recurrence rule -> a builder (weekly on days, monthly on a day, until a day or a number of times: the RRULE
  written by node/staff/recurrence.py, and shown in words; a rule it cannot say is edited as text);
- a date-time -> ``datetime-local`` in the record's own time zone (its ``timezone`` field); the offset
  is worked out from the zone at that local time, so summer time is right;
- integers and numbers -> number inputs, booleans -> checkboxes, other strings -> text inputs.

Every field has a dotted *path* (``organizers.0.name.en``): the form's input names, the columns of
a bulk-import CSV (node/staff/bulk.py) and the place a schema error is shown all use it. A widget made of several
inputs (the licence picker, the recurrence builder) names its own inputs ``<path>._<control>``;
:meth:`FormBuilder.parse` turns them back into the field's one value (a value posted under ``<path>`` itself is
taken as it is).
:func:`flatten` and :func:`unflatten` turn a body into paths and back, typed by the schema.
:func:`plain_message` turns a validator issue (RFC 6901 pointer, keyword) into plain words naming the
field ("Organizers 1 › Name (Arabic) must not be blank").
"""

from __future__ import annotations

import json
import math
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from babel import Locale, UnknownLocaleError

from federation.protocol.schemas import Issue, SchemaSet
from federation.server.ui.formats import format_date, format_time, zone_name
from federation.server.ui.i18n import direction
from node.staff import licences, recurrence, zones

# common/v1 definitions with their own widget
COMMON_DEFS = {"countryCode": "country", "timeZone": "timezone", "rights": "licence", "rrule": "recurrence"}
# Region codes that are no country (continents, the EU, unknown, private use).
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "ZZ", "XA", "XB"})
TIMEZONE_FIELD = "timezone"


# -- names in the UI's language ------------------------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """Labels and messages in one UI language: field labels from the catalog (``field.<name>``), else
    the property name in plain words; language and country names from CLDR (Babel)."""

    lang: str
    gettext: Callable[..., str]
    ngettext: Callable[..., str] | None = None  # (key, n, **values): the plural form for n (CLDR)

    @property
    def _locale(self) -> Locale:
        return _locale(self.lang)

    def field(self, name: str) -> str:
        try:
            return self.gettext(f"field.{name}")
        except KeyError:
            return name.replace("_", " ").capitalize()

    def help(self, path: str) -> str:
        """A field's help in plain words: the catalogue's ``help.<parent>.<name>`` (a name whose meaning depends
        on where it stands: a venue's name, a registration's url), else ``help.<name>``; "" when none."""
        parts = [p for p in split(path) if not p.isdigit()]
        keys = [f"help.{'.'.join(parts[-2:])}", f"help.{parts[-1]}"] if parts else []
        for key in keys:
            if _has(self, key):
                return self.gettext(key)
        return ""

    def option(self, value: str) -> str:
        """An enum value in words (catalog ``value.<value>``, else the value with spaces)."""
        try:
            return self.gettext(f"value.{value}")
        except KeyError:
            return value.replace("-", " ").replace("_", " ").capitalize()

    def language_name(self, tag: str) -> str:
        """The language's name in the UI language (CLDR), or the tag itself."""
        name = self._locale.languages.get(tag.replace("-", "_")) or self._locale.languages.get(tag.split("-")[0])
        return str(name) if name else tag

    def language(self, tag: str) -> str:
        """The name with the tag, as on a language tab: ``Arabic (ar)``."""
        name = self.language_name(tag)
        return f"{name} ({tag})" if name != tag else tag

    def country(self, code: str) -> str:
        return str(self._locale.territories.get(code, code))

    def countries(self) -> list[tuple[str, str]]:
        return _countries(self.lang)

    def message(self, key: str, **values: Any) -> str:
        return self.gettext(key, **values)

    def plural(self, key: str, n: int, **values: Any) -> str:
        """The message ``key`` in the plural form for ``n`` (``%(num)s``)."""
        return self.ngettext(key, n, **values) if self.ngettext else self.gettext(key, num=n, **values)

    def zone(self, name: str) -> str:
        """A time zone as a reader says it: "Qatar Time", "توقيت قطر"."""
        return zone_name(name, self.lang)

    def licence(self, uri: str) -> str:
        """A rights statement in words with its short name, or its URI when the picker does not offer it."""
        known = licences.BY_URI.get(uri)
        return f"{self.gettext(known.message)} ({known.code})" if known else uri


@cache
def _locale(lang: str) -> Locale:
    try:
        return Locale.parse(lang.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return Locale("en")


@cache
def _countries(lang: str) -> list[tuple[str, str]]:
    names = _locale(lang).territories
    codes = [c for c in names if isinstance(c, str) and len(c) == 2 and c.isalpha() and c not in _NOT_COUNTRIES]
    return sorted(((c, str(names[c])) for c in codes), key=lambda x: x[1])


@cache
def time_zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


# -- the schema, resolved ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A schema location with its ``$ref`` chain resolved; ``defn`` names the common definition if any."""

    schema: Mapping[str, Any]
    base: str  # the $id its local references resolve against
    defn: str | None = None


class Resolver:
    def __init__(self, schemas: SchemaSet) -> None:
        self.schemas = schemas

    def root(self, kind_or_id: str) -> Node:
        sid = self.schemas.schema_id(kind_or_id)
        return self.resolve(self.schemas.documents[sid], sid)

    def resolve(self, schema: Mapping[str, Any], base: str) -> Node:
        """Follow ``$ref`` (absolute, or local to ``base``); sibling keywords such as ``description``
        override the target's."""
        defn = None
        merged: dict[str, Any] = dict(schema)
        for _ in range(16):  # no schema of ours nests references deeper
            ref = merged.get("$ref")
            if not isinstance(ref, str):
                break
            uri, _, fragment = ref.partition("#")
            base = uri or base
            target: Any = self.schemas.documents[base]
            for part in (p for p in fragment.split("/") if p):
                target = target[part]
            if fragment.startswith("/$defs/"):
                defn = fragment.rsplit("/", 1)[1]
            rest = {k: v for k, v in merged.items() if k != "$ref"}
            merged = {**target, **rest}
        return Node(merged, base, defn)

    def child(self, node: Node, segment: str) -> Node | None:
        """The schema of ``segment`` (a property name, an array index or a language tag) under ``node``."""
        s = node.schema
        if s.get("type") == "array" or "items" in s:
            items = s.get("items")
            return self.resolve(items, node.base) if isinstance(items, Mapping) and segment.isdigit() else None
        props = s.get("properties")
        if isinstance(props, Mapping) and segment in props:
            return self.resolve(props[segment], node.base)
        extra = s.get("additionalProperties")
        if isinstance(extra, Mapping):
            return self.resolve(extra, node.base)
        return None

    def at(self, root: Node, path: Iterable[str]) -> Node | None:
        node: Node | None = root
        for segment in path:
            if node is None:
                return None
            node = self.child(node, segment)
        return node


def is_langmap(node: Node) -> bool:
    s = node.schema
    return s.get("type") == "object" and "propertyNames" in s and isinstance(s.get("additionalProperties"), Mapping)


def _is_long_text(s: Mapping[str, Any]) -> bool:
    """Running text (line breaks allowed): no single-line pattern, or room for more than a line."""
    return "pattern" not in s or int(s.get("maxLength", 0)) > 500


def _types(s: Mapping[str, Any]) -> set[str]:
    t = s.get("type")
    return {t} if isinstance(t, str) else set(t) if isinstance(t, list) else set()


# -- bodies as dotted paths ---------------------------------------------------------------------------------


def split(path: str) -> list[str]:
    return path.split(".") if path else []


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A body as ``{dotted path: text}`` (objects by key, arrays by index, booleans ``true``/``false``)."""
    out: dict[str, str] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    elif isinstance(value, bool):
        out[prefix] = "true" if value else "false"
    elif isinstance(value, int | float):
        out[prefix] = json.dumps(value)
    elif value is not None:
        out[prefix] = str(value)
    return out


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def coerce(text: str, node: Node | None) -> Any:
    """Text typed by the schema at its path; text that is not of that type stays text, so the schema names
    the error ("must be a whole number") instead of the value silently changing."""
    types = _types(node.schema) if node else set()
    t = text.strip()
    if "integer" in types and re.fullmatch(r"[+-]?[0-9]+", t):
        return int(t)
    if "number" in types and re.fullmatch(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?", t):
        number = int(t) if re.fullmatch(r"[+-]?[0-9]+", t) else float(t)
        return number if math.isfinite(number) else text  # no NaN or infinity: JSON has neither
    if "boolean" in types and t.lower() in _TRUE | _FALSE:
        return t.lower() in _TRUE
    return text


def unflatten(flat: Mapping[str, str], resolver: Resolver, root: Node) -> dict[str, Any]:
    """The body ``flat`` describes: blank values and empty groups left out, array items in index order
    (gaps closed), leaves typed by the schema (:func:`coerce`)."""
    tree: dict[str, Any] = {}
    for path, text in flat.items():
        if not isinstance(text, str) or not text.strip() or not path:
            continue
        parts = split(path)
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = coerce(text, resolver.at(root, parts))

    def build(value: Any, node: Node | None) -> Any:
        if not isinstance(value, dict):
            return value
        is_array = node is not None and (node.schema.get("type") == "array" or "items" in node.schema)
        if is_array and all(k.isdigit() for k in value):
            items = [build(value[k], resolver.child(node, k)) for k in sorted(value, key=int)]  # type: ignore[arg-type]
            return [i for i in items if i not in ({}, [], None)]
        out = {k: build(v, resolver.child(node, k) if node else None) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, [], None)}

    result = build(tree, root)
    return result if isinstance(result, dict) else {}


def issue_path(issue: Issue) -> str:
    """The dotted path an issue is about; for a missing property, the property's own path."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in issue.pointer.split("/")[1:]]
    if issue.keyword == "required":
        m = re.search(r"""^['"]([^'"]+)['"] is a required property""", issue.message)
        if m:
            parts.append(m.group(1))
    return ".".join(parts)


# -- plain words ---------------------------------------------------------------------------------------------


def label(path: str, names: Names, resolver: Resolver | None = None, root: Node | None = None) -> str:
    """A field's name for people: ``Organizers 1 › Name (Arabic)`` (a key of a language map is a language)."""
    out: list[str] = []
    node = root
    for part in split(path):
        parent = node
        node = resolver.child(parent, part) if resolver and parent else None
        if part.isdigit() and out:
            out[-1] = f"{out[-1]} {int(part) + 1}"
        elif parent is not None and is_langmap(parent) and out:
            out[-1] = f"{out[-1]} ({names.language_name(part)})"
        else:
            out.append(names.field(part))
    return " › ".join(out) if out else names.message("field.record")


def plain_message(issue: Issue, names: Names, root: Node | None = None, resolver: Resolver | None = None) -> str:
    """The issue in plain words, naming the field (the UI language's catalog ``err.<keyword>``)."""
    path = issue_path(issue)
    what = label(path, names, resolver, root)
    node = resolver.at(root, split(path)) if resolver and root else None
    s = node.schema if node else {}
    kw = issue.keyword
    if kw.startswith("rule:"):
        key = "err." + kw
        return names.message(key, field=what) if _has(names, key) else f"{what}: {issue.message}"
    if kw == "minProperties" and node is not None and is_langmap(node):
        return names.message("err.langmap-empty", field=what)
    if kw == "pattern" and node is not None and node.defn:
        key = f"err.pattern.{node.defn}"
        if _has(names, key):
            return names.message(key, field=what)
    values = {"field": what, "min": s.get("minLength", s.get("minItems", s.get("minimum", ""))),
              "max": s.get("maxLength", s.get("maxItems", s.get("maximum", "")))}
    key = f"err.{kw}"
    return names.message(key, **values) if _has(names, key) else names.message("err.other", field=what)


def _has(names: Names, key: str) -> bool:
    try:
        names.gettext(key)
    except KeyError:
        return False
    return True


# -- the form model ----------------------------------------------------------------------------------------


@dataclass
class Field:
    path: str
    widget: str  # langmap, text, textarea, select, country, countries, timezone, datetime, date, number,
    #              checkbox, checkboxes, group, repeat, list
    label: str
    help: str = ""  # in plain words, from the catalogue (Names.help)
    detail: str = ""  # the schema's description: the technical details, in English
    required: bool = False
    value: Any = ""
    options: list[tuple[str, str]] = field(default_factory=list)
    children: list[Field] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    long: bool = False
    inputs: list[dict[str, str]] = field(default_factory=list)  # langmap: one per language
    extra: dict[str, Any] = field(default_factory=dict)  # what a widget of several inputs shows (licence, ...)

    @property
    def id(self) -> str:
        return "f-" + re.sub(r"[^A-Za-z0-9_-]", "-", self.path.replace(".", "--"))

    def walk(self) -> Iterable[Field]:
        yield self
        for c in self.children:
            yield from c.walk()


@dataclass
class Form:
    kind: str
    schema_id: str
    langs: list[str]
    fields: list[Field]
    errors: list[tuple[str, str, str]]  # (path, field id to link to, message): the summary at the top
    timezone: str | None


def _get(body: Any, parts: list[str]) -> Any:
    for p in parts:
        if isinstance(body, Mapping):
            body = body.get(p)
        elif isinstance(body, list) and p.isdigit() and int(p) < len(body):
            body = body[int(p)]
        else:
            return None
    return body


def to_local(value: Any, tz: str | None) -> str:
    """An RFC 3339 time as the ``datetime-local`` text of it in zone ``tz`` (else its own offset)."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        when = datetime.fromisoformat(value)
        if tz in _zone_names() and when.tzinfo is not None:
            when = when.astimezone(zoneinfo.ZoneInfo(str(tz)))
    except ValueError:
        return value
    return when.strftime("%Y-%m-%dT%H:%M:%S" if when.second else "%Y-%m-%dT%H:%M")


def from_local(text: str, tz: str | None) -> str:
    """``datetime-local`` text in zone ``tz`` as RFC 3339 with that zone's offset at that time; text
    that is no local time (or without a known zone) is left for the schema to report."""
    text = text.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return text
    if when.tzinfo is None:
        if tz not in _zone_names():
            return text
        when = when.replace(tzinfo=zoneinfo.ZoneInfo(str(tz)))
    out = when.isoformat(timespec="seconds")
    return out.replace("+00:00", "Z") if tz == "UTC" else out


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(time_zones())


def _widget(node: Node) -> str:
    """The widget of a schema location (``array`` is refined by the builder, which looks at the items)."""
    s = node.schema
    types = _types(s)
    if node.defn in COMMON_DEFS:
        return COMMON_DEFS[node.defn]
    if is_langmap(node):
        return "langmap"
    if "enum" in s:
        return "select"
    if "array" in types:
        return "array"
    if "object" in types or "properties" in s:
        return "group"
    if s.get("format") == "date-time":
        return "datetime"
    if s.get("format") == "date":
        return "date"
    if types & {"integer", "number"}:
        return "number"
    if "boolean" in types:
        return "checkbox"
    return "textarea" if "string" in types and "pattern" not in s and int(s.get("maxLength", 0)) > 500 else "text"


class FormBuilder:
    """Builds :class:`Form` for a kind from its schema, a (possibly partial) body and its issues."""

    def __init__(self, schemas: SchemaSet, rights: str | None = None, country: str | None = None) -> None:
        """``rights``: the licence URI a new record's rights statement starts with (the node's preset, none: staff
        choose); ``country``: the node's own, whose time zones come first."""
        self.schemas = schemas
        self.resolver = Resolver(schemas)
        self.rights, self.country = rights, country

    def langs_of(self, kind_or_id: str, body: Any) -> list[str]:
        """The languages a body is written in (every language-map key), in first-seen order."""
        root = self.resolver.root(kind_or_id)
        found: list[str] = []
        for path in flatten(body):
            parts = split(path)
            parent = self.resolver.at(root, parts[:-1]) if len(parts) >= 2 else None
            if parent is not None and is_langmap(parent) and parts[-1] not in found:
                found.append(parts[-1])
        return found

    def build(self, kind_or_id: str, body: Mapping[str, Any], issues: Iterable[Issue], langs: list[str],
              names: Names) -> Form:
        sid = self.schemas.schema_id(kind_or_id)
        root = self.resolver.root(sid)
        tz = body.get(TIMEZONE_FIELD) if isinstance(body.get(TIMEZONE_FIELD), str) else None
        by_path: dict[str, list[str]] = {}
        summary: list[tuple[str, str, str]] = []
        for issue in issues:
            path = issue_path(issue)
            text = plain_message(issue, names, root, self.resolver)
            by_path.setdefault(path, []).append(text)
            summary.append((path, "", text))
        fields = self._fields(root, "", body, langs, names, tz, by_path)
        ids = {f.path: f.id for top in fields for f in top.walk()}
        linked = []
        for path, _, text in summary:
            target = path
            while target and target not in ids:  # the nearest field shown (a language input's map, ...)
                target = ".".join(split(target)[:-1])
            linked.append((path, ids.get(target, ""), text))
        return Form(self.schemas.kind_of[sid], sid, langs, fields, linked, tz)

    def _fields(self, node: Node, prefix: str, body: Any, langs: list[str], names: Names, tz: str | None,
                errors: dict[str, list[str]]) -> list[Field]:
        props = node.schema.get("properties")
        if not isinstance(props, Mapping):
            return []
        required = set(node.schema.get("required", []))
        out = []
        for name in props:
            path = f"{prefix}.{name}" if prefix else name
            child = self.resolver.resolve(props[name], node.base)
            out.append(self._field(child, path, name, name in required, body, langs, names, tz, errors))
        return out

    def _field(self, node: Node, path: str, name: str, required: bool, body: Any, langs: list[str],
               names: Names, tz: str | None, errors: dict[str, list[str]]) -> Field:
        s = node.schema
        value = _get(body, split(path))
        is_item = split(path)[-1].isdigit()  # an item of a repeated group: its group has the help
        f = Field(path=path, widget=_widget(node), label=names.field(name), required=required,
                  help="" if is_item else names.help(path), detail="" if is_item else str(s.get("description", "")),
                  errors=list(errors.get(path, [])))
        if f.widget == "langmap":
            texts = value if isinstance(value, Mapping) else {}
            f.long = _is_long_text(self.resolver.resolve(s["additionalProperties"], node.base).schema)
            shown = list(langs) + [k for k in texts if k not in langs]
            f.inputs = [{"lang": lang, "dir": direction(lang), "name": f"{path}.{lang}",
                         "language": names.language(lang), "value": str(texts.get(lang, "")),
                         "id": f"{f.id}--{re.sub(r'[^A-Za-z0-9]', '-', lang)}",
                         "errors": " ".join(errors.get(f"{path}.{lang}", []))} for lang in shown]
        elif f.widget == "group":
            f.children = self._fields(node, path, body, langs, names, tz, errors)
        elif f.widget == "array":
            items = self.resolver.resolve(s.get("items", {}), node.base)
            held = value if isinstance(value, list) else []
            if "enum" in items.schema:
                f.widget, f.value = "checkboxes", [str(v) for v in held]
                f.options = [(str(v), names.option(str(v))) for v in items.schema["enum"]]
            elif items.defn == "countryCode":
                f.widget, f.value, f.options = "countries", [str(v) for v in held], names.countries()
            elif _widget(items) in ("group", "langmap"):
                f.widget = "repeat"
                for i in range(len(held) + 1):  # the items held and one blank (filled in: one more next time)
                    item = self._field(items, f"{path}.{i}", name, False, body, langs, names, tz, errors)
                    item.label = f"{names.field(name)} {i + 1}"
                    f.children.append(item)
            else:
                f.widget = "list"
                f.children = [Field(path=f"{path}.{i}", widget=_widget(items), label=f"{names.field(name)} {i + 1}",
                                    value="" if i == len(held) else str(held[i]),
                                    errors=list(errors.get(f"{path}.{i}", [])))
                              for i in range(len(held) + 1)]
        elif f.widget == "select":
            f.value = "" if value is None else str(value)
            f.options = [(str(v), names.option(str(v))) for v in s["enum"]]
        elif f.widget == "country":
            f.value, f.options = str(value or ""), names.countries()
        elif f.widget == "timezone":
            groups = zones.grouped(names.lang, self.country)
            f.value = str(value or "")
            f.options = [z for g in groups for z in g.zones] + [(zones.UNIVERSAL, zones.UNIVERSAL)]
            f.extra = {"groups": [(g.name, list(g.zones)) for g in groups]
                       + [(names.message("tz.other"), [(zones.UNIVERSAL, zones.UNIVERSAL)])]}
        elif f.widget == "licence":
            # A new record starts with the node's preset; a picture's rights do not (a blank picture would be sent).
            f.value = str(value) if value is not None else (self.rights or "") if "." not in path else ""
            known = f.value in licences.BY_URI
            f.extra = {"choices": [(lc.uri, names.message(lc.message), lc.code) for lc in licences.LICENCES],
                       "other": bool(f.value) and not known, "typed": "" if known else f.value}
        elif f.widget == "recurrence":
            f.value = str(value or "")
            f.extra = self._recurrence(f.value, tz, names)
        elif f.widget == "datetime":
            f.value = to_local(value, tz)
        elif f.widget == "checkbox":
            f.value = value is True
        else:
            f.value = "" if value is None else flatten(value).get("", str(value))
        return f

    @staticmethod
    def _recurrence(rule: str, tz: str | None, names: Names) -> dict[str, Any]:
        """The builder's inputs for ``rule``: its choices when it can say the rule, else "another rule" with the
        text; the rule in words; the days of the week in the page's language."""
        rec = recurrence.read(rule, tz) if rule else None
        shown = rec or recurrence.Recurrence("")
        return {"freq": "" if not rule else rec.freq if rec else recurrence.CUSTOM,
                "interval": str(shown.interval), "days": list(shown.days),
                "monthday": "" if shown.monthday is None else str(shown.monthday),
                "until": shown.until.isoformat() if shown.until else "",
                "count": "" if shown.count is None else str(shown.count),
                "rule": rule if rule and rec is None else "", "was": rule,
                "words": recurrence.words(rule, names, tz) if rule else None,
                "weekdays": recurrence.day_names(names.lang)}

    # -- values in words ----------------------------------------------------------------------------------

    def words(self, root: Node, path: str, text: str, names: Names, zone: str | None,
              style: str = "long", cut: int | None = None) -> str:
        """A leaf's value as a person reads it, in the page's language: a choice by its label, a country and a
        language by name, a time in the record's zone (named) and a date in words (CLDR), a time zone by its name,
        a licence in words, a recurrence in words; other text as written (cut to ``cut`` characters)."""
        node = self.resolver.at(root, split(path))
        s = node.schema if node is not None else {}
        defn = node.defn if node is not None else None
        if "enum" in s:
            return names.option(text)
        if defn == "countryCode":
            return names.country(text)
        if defn == "languageTag":
            return names.language(text)
        if defn == "timeZone":
            return f"{names.zone(text)} ({text})" if text in zones.all_zones() and text != zones.UNIVERSAL else text
        if defn == "rights":
            return names.licence(text)
        if defn == "rrule":
            return recurrence.words(text, names, zone) or text
        if s.get("format") == "date-time":
            return format_time(text, names.lang, zone, style)
        if s.get("format") == "date":
            return format_date(text, names.lang, style)
        return text if cut is None or len(text) <= cut else text[:cut] + "…"

    def rules(self, kind_or_id: str, body: Mapping[str, Any]) -> list[Issue]:
        """What the form checks beyond the schema and the protocol's rules: a recurrence rule a calendar can expand
        (``rule:recurrence-*``, node/staff/recurrence.py)."""
        root = self.resolver.root(kind_or_id)
        zone = body.get(TIMEZONE_FIELD) if isinstance(body.get(TIMEZONE_FIELD), str) else None
        start = body.get("start") if isinstance(body.get("start"), str) else None
        out = []
        for name, value in body.items():
            node = self.resolver.child(root, name)
            if (node is not None and node.defn == "rrule" and isinstance(value, str)
                    and (wrong := recurrence.problem(value, start, zone)) is not None):
                out.append(Issue(f"/{name}", f"rule:recurrence-{wrong}", f"recurrence rule {value!r}: {wrong}"))
        return out

    # -- the way back ------------------------------------------------------------------------------------

    def parse(self, kind_or_id: str, post: Mapping[str, Any] | Iterable[tuple[str, str]]) -> dict[str, Any]:
        """A form's fields (name -> value; repeated names for multiple choices) as a record body.

        Date-times are read in the record's time zone; ``<path>._remove`` drops a repeated item;
        the form's own controls (names starting with ``_`` or ``csrf_token``) are ignored.
        """
        pairs = list(post.items()) if isinstance(post, Mapping) else list(post)
        root = self.resolver.root(kind_or_id)
        multi: dict[str, list[str]] = {}
        flat: dict[str, str] = {}
        removed: list[str] = []
        controls: dict[str, dict[str, list[str]]] = {}  # a widget's own inputs (<path>._<control>) by its path
        for name, value in pairs:
            if not isinstance(value, str) or name.startswith("_") or name == "csrf_token":
                continue
            if name.endswith("._remove"):
                removed.append(name.removesuffix("._remove"))
                continue
            path, _, control = name.rpartition(".")
            if path and control.startswith("_"):
                controls.setdefault(path, {}).setdefault(control, []).append(value)
                continue
            node = self.resolver.at(root, split(name))
            widget = _widget(node) if node else "text"
            if widget == "array":
                multi.setdefault(name, []).append(value)
            else:
                flat[name] = value
        for name, values in multi.items():
            for i, v in enumerate(values):
                flat[f"{name}.{i}"] = v
        tz = flat.get(TIMEZONE_FIELD, "").strip() or None
        for path, inputs in controls.items():
            node = self.resolver.at(root, split(path))
            widget = _widget(node) if node else ""
            if widget == "licence" and flat.get(path) == licences.OTHER:
                flat[path] = (inputs.get("_other") or [""])[0]
            elif widget == "recurrence" and path not in flat:
                flat[path] = recurrence.from_form(inputs, tz)
        flat = {k: v for k, v in flat.items() if not any(k == r or k.startswith(r + ".") for r in removed)}
        for name in list(flat):
            node = self.resolver.at(root, split(name))
            if node is not None and _widget(node) == "datetime":
                flat[name] = from_local(flat[name], tz)
            elif node is not None and _widget(node) == "checkbox":
                flat[name] = "true" if flat[name] else "false"
        return unflatten(flat, self.resolver, root)
