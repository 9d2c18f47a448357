"""The message catalogues (gettext ``.po``, federation/server/ui/i18n.py): every page's words come from them, and
they are complete in English and Arabic.

- every domain has the same messages in ``en`` and ``ar``, none empty or fuzzy, every plural form written, the
  same ``%(name)s`` placeholders in both;
- no template holds a word outside the catalogue: templates are read with jinja2's lexer (expressions and
  statements taken out) and the HTML left is parsed; its text and its people-facing attributes (title,
  placeholder, aria-label, alt, label) must hold no letters but the allowed non-linguistic tokens;
- every key a template names exists in its domain, every family value it looks up in ``common``;
- every field the authoring form shows has help in plain words (``help.<name>``, ``help.<parent>.<name>``);
- the protocol's words have labels: every reason of PROTOCOL §6, record kinds, member statuses and roles,
  governance documents, event statuses and attendance modes.
"""

from __future__ import annotations

import json
import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import jsonschema
import pytest
from babel.messages import pofile
from jinja2 import nodes

from federation.protocol.governance.documents import DOCUMENT_TYPES
from federation.protocol.schemas import default_schemas
from federation.server.ui.i18n import SHARED_LOCALE, Catalog
from federation.server.ui.templates import SHARED_TEMPLATES, template_env
from node.staff.forms import FormBuilder, Names
from tests.support.paths import ROOT
from tests.support.reasons import emitted, listed

# Each family of pages: its templates and its catalogue (directory, domain).
DOMAINS = {
    "hub": (ROOT / "federation/hub/dashboard/templates", ROOT / "federation/hub/dashboard/locale"),
    "status": (ROOT / "node/status/templates", ROOT / "node/status/locale"),
    "staff": (ROOT / "node/staff/templates", ROOT / "node/staff/locale"),
    "public": (ROOT / "node/partners/templates", ROOT / "node/partners/locale"),
}
# The shared frame (federation/server/ui/templates) is rendered by the hub's and the status page's catalogues.
SHARED_USERS = ("hub", "status")
LANGUAGES = ("en", "ar")
# Words that are not in any one language: each language's name written in itself (the language switch), the
# network's name.
ALLOWED_WORDS = {"English", "العربية", "IPDN"}
PEOPLE_ATTRIBUTES = ("title", "placeholder", "aria-label", "alt", "label")


def po_files() -> list[Path]:
    return sorted(p for package in ("federation", "node") for p in ROOT.glob(f"{package}/**/locale/*/LC_MESSAGES/*.po"))


def domains() -> list[tuple[Path, str]]:
    return sorted({(p.parents[2], p.stem) for p in po_files()})


def read(directory: Path, domain: str, lang: str) -> pofile.Catalog:
    with (directory / lang / "LC_MESSAGES" / f"{domain}.po").open("rb") as f:
        return pofile.read_po(f, locale=lang, domain=domain)


def test_every_domain_is_found() -> None:
    assert {d for _, d in domains()} == {*DOMAINS, "common"}


@pytest.mark.parametrize(("directory", "domain"), domains(), ids=lambda x: str(x) if isinstance(x, str) else "")
def test_catalogue_complete_in_english_and_arabic(directory: Path, domain: str) -> None:
    """Both languages have every message, translated (no empty, no fuzzy entry), each plural form written (six
    in Arabic), with the same placeholders."""
    cats = {lang: read(directory, domain, lang) for lang in LANGUAGES}
    ids = {lang: {(m.id if isinstance(m.id, str) else m.id[0], m.context) for m in cat if m.id}
           for lang, cat in cats.items()}
    assert ids["en"] == ids["ar"], f"{domain}: only in en {ids['en'] - ids['ar']}, only in ar {ids['ar'] - ids['en']}"
    assert cats["ar"].num_plurals == 6
    problems = []
    for m in cats["ar"]:
        if not m.id:
            continue
        en = cats["en"].get(m.id, context=m.context)
        texts = {"en": en.string, "ar": m.string}
        for lang, text in texts.items():
            forms = text if isinstance(text, tuple) else (text,)
            want = (cats[lang].num_plurals if isinstance(m.id, tuple) else 1)
            if len(forms) != want or not all(forms):
                problems.append(f"{lang} {m.context or ''} {m.id}: not every form translated")
            if (en if lang == "en" else m).fuzzy:
                problems.append(f"{lang} {m.id}: fuzzy")
        names = {lang: set(re.findall(r"%\((\w+)\)s", "".join(t if isinstance(t, tuple) else (t,)))) - {"num"}
                 for lang, t in texts.items()}
        if names["en"] != names["ar"]:
            problems.append(f"{m.id}: placeholders en {names['en']} ar {names['ar']}")
    assert not problems, "\n".join(problems)


def test_arabic_plural_forms() -> None:
    """Arabic counts by CLDR's six forms: "3 مشكلات", never "3 مشكلة"; English has one and other."""
    staff = Catalog(DOMAINS["staff"][1], "staff")
    ar, en = staff.translator("ar"), staff.translator("en")
    assert "مشكلة واحدة" in ar.ngettext("form.errors", 1)
    assert "مشكلتين" in ar.ngettext("form.errors", 2)
    assert "3 مشكلات" in ar.ngettext("form.errors", 3) and "مشكلة" not in ar.ngettext("form.errors", 3)
    assert "11 مشكلةً" in ar.ngettext("form.errors", 11)
    assert "100 مشكلة " in ar.ngettext("form.errors", 100)
    assert en.ngettext("form.errors", 1) == "Please correct 1 problem before publishing:"
    assert en.ngettext("form.errors", 3) == "Please correct 3 problems before publishing:"


def test_catalogue_falls_back_to_english_and_names_missing_keys() -> None:
    staff = Catalog(DOMAINS["staff"][1], "staff")
    assert staff.translator("ko").gettext("list.title") == staff.translator("en").gettext("list.title")
    with pytest.raises(KeyError, match="nope"):
        staff.gettext("ar")("nope")
    assert staff.translator("ar").pgettext("reason", "bad-signature") == "التوقيع غير صحيح"
    assert staff.translator("ar").pgettext("reason", "a-reason-from-a-newer-peer") == "a-reason-from-a-newer-peer"


# -- templates -----------------------------------------------------------------------------------------------


class _Literals(HTMLParser):
    """Text and people-facing attribute values of a template's HTML with its jinja2 parts taken out; each
    ``{{ … }}`` is a marker ``\x00n\x00`` whose expression is looked at when it lands where people read it."""

    def __init__(self, expressions: list[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.expressions = expressions
        self.found: list[str] = []
        self.skip = 0  # inside <code>, <script>, <style>: not words

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("code", "script", "style", "pre"):
            self.skip += 1
        for k, v in attrs:
            if k in PEOPLE_ATTRIBUTES and v:
                self._read(v, f"{tag}[{k}]=")
        if tag == "input" and dict(attrs).get("type") in ("submit", "button"):
            self._read(dict(attrs).get("value") or "", "input[value]=")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("code", "script", "style", "pre") and self.skip:
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        data = re.sub(r'[\w-]+="[^"]*"', "", data)  # attributes a macro writes into its caller's tag
        if not self.skip:
            self._read(data, "")

    def _read(self, text: str, where: str) -> None:
        """Words written in the template, and words written as string constants in the expressions shown here."""
        if _wordy(_MARKER.sub("", text)):
            self.found.append(where + _MARKER.sub("{{…}}", text).strip())
        for i in _MARKER.findall(text):
            self.found += [f"{where}{{{{ {self.expressions[int(i)]} }}}}: {c!r}"
                           for c in _shown_constants(self.expressions[int(i)]) if _wordy(c)]


_MARKER = re.compile("\x00(\\d+)\x00")
_PARSER = jinja2.Environment(extensions=["jinja2.ext.i18n"])  # noqa: S701 (parses templates, renders nothing)


def _shown_constants(expression: str) -> list[str]:
    """The string constants an expression can show as they are: ``{{ "Refused" }}``, ``{{ x or "none" }}``, ``{{
    "a" if c else "b" }}``; not a constant handed to a call or filter (a message key, a format), compared, or used
    as a key (``d["errors"]``)."""

    def shown(node: nodes.Node) -> list[str]:
        if isinstance(node, nodes.Const):
            return [node.value] if isinstance(node.value, str) else []
        if isinstance(node, nodes.CondExpr):
            return shown(node.expr1) + (shown(node.expr2) if node.expr2 is not None else [])
        if isinstance(node, (nodes.Or, nodes.And)):
            return shown(node.left) + shown(node.right)
        if isinstance(node, (nodes.Concat, nodes.List, nodes.Tuple)):
            return [c for n in node.nodes if not isinstance(n, nodes.Pair) for c in shown(n)]
        if isinstance(node, nodes.Filter) and node.node is not None:  # a default is shown when the value is not
            fallback = node.args[:1] if node.name in ("default", "d") else []
            return shown(node.node) + [c for a in fallback for c in shown(a)]
        return []

    output = _PARSER.parse("{{ " + expression + " }}").body[0]
    assert isinstance(output, nodes.Output)
    return [c for n in output.nodes for c in shown(n)]


def _wordy(text: str | None) -> bool:
    """Letters left once the allowed words are taken out."""
    if not text:
        return False
    for word in ALLOWED_WORDS:
        text = text.replace(word, "")
    return any(unicodedata.category(c).startswith("L") for c in text)


def _html_without_jinja(env: jinja2.Environment, source: str) -> tuple[str, list[str]]:
    """The template's own HTML, each ``{{ … }}`` a numbered marker (with the list of their expressions);
    statements and comments go."""
    out: list[str] = []
    expressions: list[str] = []
    depth, expression = 0, None
    for _line, kind, value in env.lex(source):
        if kind == "data" and depth == 0:
            out.append(value)
        elif kind == "variable_begin":
            depth += 1
            expression = []
        elif kind == "block_begin":
            depth += 1
        elif kind == "variable_end":
            depth -= 1
            out.append(f"\x00{len(expressions)}\x00")
            expressions.append("".join(expression or []).strip())
            expression = None
        elif kind == "block_end":
            depth -= 1
        elif expression is not None:
            expression.append(value)
    return "".join(out), expressions


def words_outside_the_catalogue(env: jinja2.Environment, source: str) -> list[str]:
    html, expressions = _html_without_jinja(env, source)
    parser = _Literals(expressions)
    parser.feed(html)
    parser.close()
    return parser.found


def unknown_keys(catalog: Catalog, env: jinja2.Environment, source: str) -> list[str]:
    """Keys the template names that its catalogue lacks: ``_("key")`` and ``ngettext("key", …)`` in the domain,
    ``pgettext("family", "value")`` in the domain or in ``common``."""
    missing = []
    for call in env.parse(source).find_all(nodes.Call):
        name = getattr(call.node, "name", None)
        args = [a.value for a in call.args if isinstance(a, nodes.Const)]
        if name in ("_", "gettext", "ngettext") and args and args[0] not in catalog.keys:
            missing.append(args[0])
        if name == "pgettext" and len(args) == 2 and catalog.translator("en").pgettext(*args) == args[1]:
            missing.append(f"{args[0]}:{args[1]}")
    return missing


def _referenced(source: str) -> set[str]:
    """The templates a template extends, imports or includes, by name."""
    tree = _PARSER.parse(source)
    found = set()
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        if isinstance(node.template, nodes.Const):
            found.add(node.template.value)
    return found


def shared_users() -> dict[str, set[str]]:
    """Each shared template (federation/server/ui/templates) and the domains whose pages use it, directly or
    through another shared template: each is checked against every catalogue it is rendered with."""
    shared = {p.name: p for p in SHARED_TEMPLATES.glob("*.html")}
    users: dict[str, set[str]] = {name: set() for name in shared}
    for domain, (directory, _) in DOMAINS.items():
        todo = [r for p in directory.rglob("*.html") for r in _referenced(p.read_text(encoding="utf-8"))]
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in shared and name not in seen:
                seen.add(name)
                todo += _referenced(shared[name].read_text(encoding="utf-8"))
        for name in seen:
            users[name].add(domain)
    return users


def templates() -> list[tuple[str, Path]]:
    found = [(domain, p) for domain, (directory, _) in DOMAINS.items() for p in sorted(directory.rglob("*.html"))]
    return found + [(domain, SHARED_TEMPLATES / name) for name, used in sorted(shared_users().items())
                    for domain in sorted(used)]


def _env(domain: str, path: Path) -> tuple[Catalog, jinja2.Environment]:
    catalog = Catalog(DOMAINS[domain][1], domain)
    return catalog, template_env(path.parent, catalog)


def test_every_template_family_is_checked() -> None:
    """Every directory of templates in the code is a family with its catalogue here (hub dashboard, status page,
    authoring pages, public portal) or the shared one, and every shared template is used and so checked: a new
    family of pages cannot escape the checks below."""
    found = {p.parent for package in ("federation", "node") for p in (ROOT / package).rglob("*.html")}
    families = {d for directory, _ in DOMAINS.values() for d in found if d.is_relative_to(directory)}
    assert found - families == {SHARED_TEMPLATES}, f"templates outside any family: {found - families}"
    unused = sorted(name for name, used in shared_users().items() if not used)
    assert not unused, f"shared templates no page uses (so checked against no catalogue): {unused}"
    assert shared_users()["page.html"] == set(DOMAINS)  # the skeleton of every page
    assert {"hub", "status"} <= shared_users()["frame.html"]


@pytest.mark.parametrize(("domain", "path"), templates(), ids=lambda x: x if isinstance(x, str) else x.name)
def test_no_words_outside_the_catalogue(domain: str, path: Path) -> None:
    """Every word a template shows comes from the catalogue: none in its text or people-facing attributes, none
    as a string constant shown by an expression."""
    _, env = _env(domain, path)
    found = words_outside_the_catalogue(env, path.read_text(encoding="utf-8"))
    assert found == [], f"{path.relative_to(ROOT)}: words outside the catalogue: {found}"


@pytest.mark.parametrize(("domain", "path"), templates(), ids=lambda x: x if isinstance(x, str) else x.name)
def test_every_key_a_template_names_exists(domain: str, path: Path) -> None:
    """``_("key")`` and ``ngettext("key", …)`` name a message of the domain; ``pgettext("family", "value")`` one
    of the domain or of ``common``."""
    catalog, env = _env(domain, path)
    missing = unknown_keys(catalog, env, path.read_text(encoding="utf-8"))
    assert not missing, f"{path.relative_to(ROOT)} names messages its catalogue lacks: {missing}"


# What a template may hold and what it may not: the checks above must find each of these.
LITERALS = [
    "<p>Refused</p>",
    '<p title="Refused">{{ _("k") }}</p>',
    '<img alt="Refused" src="x.png">',
    '<input type="submit" value="Send">',
    '<p>{{ "Refused" }}</p>',
    "<p>{{ x or 'none' }}</p>",
    '<p>{{ "yes" if x else _("k") }}</p>',
    '<td>{{ x|default("unknown") }}</td>',
    '<p aria-label="{{ \'Close\' }}">×</p>',
    "<p>مرفوض</p>",
]
NOT_LITERALS = [
    '<p class="{{ \'ok\' if x else \'bad\' }}">{{ _("k") }}</p>',
    "<p><code>bad-signature</code> {{ pgettext('reason', 'bad-signature') }}</p>",
    '<a href="{{ path(x, \'/edit\') }}" lang="en">English</a> <span lang="ar">العربية</span>',
    "<p>{{ x.get('failures', []) }} {{ d['errors'] }} {{ t|when(style='short') }} {{ n }} · – IPDN</p>",
    '<p>{% if lang == "en" %}{{ _("k") }}{% endif %}{# Not shown #}</p>',
]


@pytest.mark.parametrize("source", LITERALS)
def test_the_literal_check_finds_a_word_outside_the_catalogue(source: str) -> None:
    """The check is not vacuous: each synthetic template above holds a word outside the catalogue and is caught."""
    env = template_env(SHARED_TEMPLATES, Catalog(DOMAINS["hub"][1], "hub"))
    assert words_outside_the_catalogue(env, source), source


@pytest.mark.parametrize("source", NOT_LITERALS)
def test_the_literal_check_lets_codes_keys_and_markup_through(source: str) -> None:
    env = template_env(SHARED_TEMPLATES, Catalog(DOMAINS["hub"][1], "hub"))
    assert words_outside_the_catalogue(env, source) == [], source


def _one_per_family() -> list[tuple[str, Path]]:
    """The first template of each domain, and each shared template with each domain using it."""
    firsts = {}
    for domain, path in templates():
        if path.parent != SHARED_TEMPLATES:
            firsts.setdefault(domain, (domain, path))
    return list(firsts.values()) + [(d, p) for d, p in templates() if p.parent == SHARED_TEMPLATES]


@pytest.mark.parametrize(("domain", "path"), _one_per_family(), ids=lambda x: x if isinstance(x, str) else x.name)
def test_a_word_or_key_added_to_any_family_fails_the_checks(domain: str, path: Path) -> None:
    """A real template of every family (hub, status, staff, public and the shared ones), with a literal word and
    a key its catalogue lacks put in, fails the two checks above; as it is, it passes them."""
    catalog, env = _env(domain, path)
    source = path.read_text(encoding="utf-8")
    assert words_outside_the_catalogue(env, source) == [] and unknown_keys(catalog, env, source) == []
    marker = "{% block main %}" if "{% block main %}" in source else None
    added = '<p class="note">Refused by the hub</p>{{ _("no.such.key") }}'
    broken = source.replace(marker, marker + added, 1) if marker else source + added
    assert words_outside_the_catalogue(env, broken) == ["Refused by the hub"]
    assert unknown_keys(catalog, env, broken) == ["no.such.key"]


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", ["cultural-event", "capacity-programme"])
def test_every_field_of_the_form_has_help_in_plain_words(kind: str, lang: str) -> None:
    """Each field the authoring form shows (a repeated group's items share their group's) has a ``help.`` key in
    the staff catalogue: plain words, not the schema's description (that stays under "Technical details")."""
    staff = Catalog(DOMAINS["staff"][1], "staff")
    form = FormBuilder(default_schemas()).build(kind, {}, [], [lang], Names(lang, staff.gettext(lang)))
    shown = [f for top in form.fields for f in top.walk() if not f.path.split(".")[-1].isdigit()]
    assert len(shown) > 30
    missing = [f.path for f in shown if not f.help]
    assert not missing, f"{kind}: fields without a help.<name> key in {lang}: {missing}"
    jargon = [f.path for f in shown if re.search(r"BCP 47|RFC \d|WHATWG|IANA|ISO 3166|RRULE|URI\b", f.help)]
    assert not jargon, f"{kind}: help in jargon: {jargon}"


# -- the protocol's words ------------------------------------------------------------------------------------


def _reasons() -> set[str]:
    """Every reason a page may show: those PROTOCOL §6 lists, those the code emits (the pages' own too:
    tests/support/reasons.py reads both) and the status page's fallback for a refusal without one."""
    return listed() | set(emitted(protocol_only=False)) | {"rejected"}


def _schema_keywords() -> set[str]:
    """The validation keywords the record schemas use and the kinds' rules (``rule:<name>``): what a refused
    record's schema errors name."""
    validators = set(jsonschema.Draft202012Validator.VALIDATORS)
    used: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            used.update(k for k in node if k in validators and k not in ("properties", "items", "$ref"))
            for k, v in node.items():
                walk(v if k != "properties" or not isinstance(v, dict) else list(v.values()))
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for path in (ROOT / "schemas").glob("*/v*.json"):
        walk(json.loads(path.read_text(encoding="utf-8")))
    rules = set(re.findall(r'"(rule:[a-z-]+)"', (ROOT / "federation/protocol/schemas.py").read_text(encoding="utf-8")))
    return used | rules


def _schema_enum(kind: str, field: str) -> set[str]:
    text = (ROOT / "schemas" / kind / "v1.json").read_text(encoding="utf-8")
    return set(re.search(rf'"{field}":\s*{{[^}}]*?"enum":\s*\[([^\]]*)\]', text, re.S).group(1)
               .replace('"', "").replace(" ", "").replace("\n", "").split(","))


@pytest.mark.parametrize(("family", "values"), [
    ("reason", _reasons()),
    ("reason-explained", _reasons()),
    ("schema-keyword", _schema_keywords()),
    ("kind", {"cultural-event", "capacity-programme"}),
    ("op", {"put", "delete"}),
    ("member-status", {"applicant", "active", "suspended", "withdrawn"}),
    ("role", {"chair", "member", "observer"}),
    ("document", set(DOCUMENT_TYPES)),
    ("event-status", _schema_enum("cultural-event", "status")),
    ("attendance", _schema_enum("cultural-event", "attendance_mode")),
], ids=lambda x: x if isinstance(x, str) else "")
def test_protocol_words_have_labels(family: str, values: set[str]) -> None:
    """Every value of the family has a label in English and Arabic in ``common`` (a reason added to PROTOCOL §6
    or to the code needs two: its label, ``reason``, and the sentence pages show, ``reason-explained``, in
    federation/server/ui/locale/*/LC_MESSAGES/common.po; a schema keyword or rule its sentence)."""
    cats = {lang: read(SHARED_LOCALE, "common", lang) for lang in LANGUAGES}
    missing = sorted(f"{lang}:{v}" for v in values for lang in LANGUAGES
                     if not (m := cats[lang].get(v, context=family)) or not m.string)
    assert not missing, f"{family} values without a label: {missing}"
