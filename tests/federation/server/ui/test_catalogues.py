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

import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from babel.messages import pofile
from jinja2 import nodes

from federation.protocol.governance.documents import DOCUMENT_TYPES
from federation.protocol.schemas import default_schemas
from federation.server.ui.i18n import SHARED_LOCALE, Catalog
from federation.server.ui.templates import SHARED_TEMPLATES, template_env
from node.staff.forms import FormBuilder, Names
from tests.support.paths import ROOT

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
    """Text and people-facing attribute values of a template's HTML with its jinja2 parts taken out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.skip = 0  # inside <code>, <script>, <style>: not words

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("code", "script", "style", "pre"):
            self.skip += 1
        self.found += [f"{tag}[{k}]={v}" for k, v in attrs if k in PEOPLE_ATTRIBUTES and v and _wordy(v)]
        if tag == "input" and dict(attrs).get("type") in ("submit", "button") and _wordy(dict(attrs).get("value")):
            self.found.append(f"input[value]={dict(attrs)['value']}")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("code", "script", "style", "pre") and self.skip:
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        data = re.sub(r'[\w-]+="[^"]*"', "", data)  # attributes a macro writes into its caller's tag
        if not self.skip and _wordy(data):
            self.found.append(data.strip())


def _wordy(text: str | None) -> bool:
    """Letters left once the allowed words are taken out."""
    if not text:
        return False
    for word in ALLOWED_WORDS:
        text = text.replace(word, "")
    return any(unicodedata.category(c).startswith("L") for c in text)


def _html_without_jinja(env: jinja2.Environment, source: str) -> str:
    """The template's own HTML: each ``{{ … }}`` becomes a placeholder, statements and comments go."""
    out, depth = [], 0
    for _line, kind, value in env.lex(source):
        if kind == "data" and depth == 0:
            out.append(value)
        elif kind == "variable_begin":
            depth += 1
            out.append("\x00")
        elif kind in ("block_begin",):
            depth += 1
        elif kind in ("variable_end", "block_end"):
            depth -= 1
    return "".join(out)


def templates() -> list[tuple[str, Path]]:
    found = [(domain, p) for domain, (directory, _) in DOMAINS.items() for p in sorted(directory.rglob("*.html"))]
    return found + [(domain, p) for p in sorted(SHARED_TEMPLATES.glob("*.html")) for domain in SHARED_USERS]


@pytest.mark.parametrize(("domain", "path"), templates(), ids=lambda x: x if isinstance(x, str) else x.name)
def test_no_words_outside_the_catalogue(domain: str, path: Path) -> None:
    """Every word a template shows comes from the catalogue: none in its text or people-facing attributes."""
    env = template_env(path.parent, Catalog(DOMAINS[domain][1], domain))
    parser = _Literals()
    parser.feed(_html_without_jinja(env, path.read_text(encoding="utf-8")))
    assert parser.found == [], f"{path.relative_to(ROOT)}: words outside the catalogue: {parser.found}"


@pytest.mark.parametrize(("domain", "path"), templates(), ids=lambda x: x if isinstance(x, str) else x.name)
def test_every_key_a_template_names_exists(domain: str, path: Path) -> None:
    """``_("key")`` and ``ngettext("key", …)`` name a message of the domain; ``pgettext("family", "value")`` one
    of the domain or of ``common``."""
    catalog = Catalog(DOMAINS[domain][1], domain)
    env = template_env(path.parent, catalog)
    tree = env.parse(path.read_text(encoding="utf-8"))
    missing = []
    for call in tree.find_all(nodes.Call):
        name = getattr(call.node, "name", None)
        args = [a.value for a in call.args if isinstance(a, nodes.Const)]
        if name in ("_", "gettext", "ngettext") and args and args[0] not in catalog.keys:
            missing.append(args[0])
        if name == "pgettext" and len(args) == 2 and catalog.translator("en").pgettext(*args) == args[1]:
            missing.append(f"{args[0]}:{args[1]}")
    assert not missing, f"{path.relative_to(ROOT)} names messages its catalogue lacks: {missing}"


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
    """The reason slugs PROTOCOL §6 lists (the back-quoted ones in its tables, as tests/test_protocol_document.py)."""
    text = (ROOT / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    start = text.index("\n## 6. Reasons\n")
    section = text[start:text.index("\n## ", start + 1)]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return {s for row in rows for s in re.findall(r"`([a-z][a-z0-9]*(?:-[a-z0-9]+)*)`", row)}


def _schema_enum(kind: str, field: str) -> set[str]:
    text = (ROOT / "schemas" / kind / "v1.json").read_text(encoding="utf-8")
    return set(re.search(rf'"{field}":\s*{{[^}}]*?"enum":\s*\[([^\]]*)\]', text, re.S).group(1)
               .replace('"', "").replace(" ", "").replace("\n", "").split(","))


@pytest.mark.parametrize(("family", "values"), [
    ("reason", _reasons()),
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
    needs one: federation/server/ui/locale/*/LC_MESSAGES/common.po)."""
    cats = {lang: read(SHARED_LOCALE, "common", lang) for lang in LANGUAGES}
    missing = sorted(f"{lang}:{v}" for v in values for lang in LANGUAGES
                     if not (m := cats[lang].get(v, context=family)) or not m.string)
    assert not missing, f"{family} values without a label: {missing}"
