"""Languages of the operator, staff and partner pages: which one a request asks for, which way it is written,
which text of a language map to show, and the UI messages per language.

- **Language**: ``?lang=`` (remembered in a cookie), else the browser's ``Accept-Language``; ``direction``
  says whether a language tag is written right to left.
- **Message catalogues** are gettext ``.po`` files (Babel), one domain per family of pages beside its templates
  (``locale/<lang>/LC_MESSAGES/<domain>.po``), with CLDR plural rules; :func:`install` gives them to jinja2.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2
import jinja2.runtime
from aiohttp import web
from babel import messages as babel_messages
from babel import support
from babel.messages import mofile, pofile

from federation.server.ui.sessions import set_cookie

# Primary language subtags written right to left (a script subtag, when present, decides instead).
RTL_LANGUAGES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ku", "ps", "sd", "ug", "ur", "yi"})
RTL_SCRIPTS = frozenset({"arab", "hebr", "syrc", "thaa", "nkoo", "adlm", "rohg", "samr", "mand"})
_SCRIPT_RE = re.compile(r"[A-Za-z]{4}")
LANG_COOKIE = "lang"


def direction(tag: str) -> str:
    """``rtl`` or ``ltr`` for a BCP 47 language tag."""
    subtags = tag.lower().replace("_", "-").split("-")
    script = next((s for s in subtags[1:] if _SCRIPT_RE.fullmatch(s)), None)
    if script is not None:
        return "rtl" if script in RTL_SCRIPTS else "ltr"
    return "rtl" if subtags[0] in RTL_LANGUAGES else "ltr"


def choose_language(request: web.Request, supported: Iterable[str]) -> str:
    """``?lang=``, else the ``lang`` cookie, else the best of ``Accept-Language``, else the first supported."""
    options = list(supported)
    for asked in (request.query.get("lang"), request.cookies.get(LANG_COOKIE)):
        if asked in options:
            return asked
    return negotiate(None, request.headers.get("Accept-Language", ""), options)


def negotiate(asked: str | None, accept_language: str, supported: Iterable[str]) -> str:
    """The supported language ``asked`` names (its primary subtag: ``ar-QA`` is ``ar``), else the best of an
    ``Accept-Language`` header, else the first supported."""
    options = list(supported)
    if asked and (primary := asked.lower().split("-")[0]) in options:
        return primary
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in options and q > 0:
            ranked.append((-q, i, primary))
    return sorted(ranked)[0][2] if ranked else options[0]


def pick(texts: Mapping[str, str] | None, lang: str | None) -> tuple[str, str] | None:
    """(language tag, text) from a language map: ``lang``, then English, then the map's first entry.

    Tags compare case-insensitively; a tag also matches its primary language (``zh`` finds ``zh-Hant``,
    ``pt-BR`` finds ``pt``), the bare primary tag first.
    """
    if not texts:
        return None
    for want in ([lang] if lang else []) + ["en"]:
        ranked = [(rank, i, tag) for i, tag in enumerate(texts) if (rank := _match(tag, want)) is not None]
        if ranked:
            tag = min(ranked)[2]
            return tag, texts[tag]
    tag = next(iter(texts))
    return tag, texts[tag]


def _match(tag: str, want: str) -> int | None:
    """How well ``tag`` serves a reader of ``want``: 0 the same tag, 1 its primary language, 2 a sibling."""
    t, w = tag.lower(), want.lower()
    primary = w.split("-")[0]
    if t == w:
        return 0
    if t == primary:
        return 1
    return 2 if t.split("-")[0] == primary else None


def remember_language(response: web.StreamResponse, request: web.Request, supported: Iterable[str]) -> None:
    """Keep a supported ``?lang=`` choice in the language cookie for a year."""
    asked = request.query.get("lang")
    if asked is not None and asked in set(supported):
        set_cookie(response, request, LANG_COOKIE, asked, max_age=365 * 86400)


class Translator:
    """The messages of one catalogue in one language (English filling any gap), formatted with ``%(name)s``
    placeholders; plural forms by the language's CLDR rule (Arabic has six)."""

    def __init__(self, catalog: Catalog, lang: str) -> None:
        self.catalog, self.lang = catalog, lang
        self.translations = catalog.translations.get(lang) or catalog.translations["en"]
        self.rtl = direction(lang) == "rtl"

    def gettext(self, key: str, **values: Any) -> str:
        """The message ``key`` (a KeyError names a key missing from the English catalogue)."""
        if key not in self.catalog.keys:
            raise KeyError(f"no UI message {key!r} in the {self.catalog.domain!r} catalogue")
        text = self.message(key)
        return text % values if values else text  # asked without values (is there such a key?): as written

    def ngettext(self, key: str, n: int, **values: Any) -> str:
        """The message ``key`` in the plural form for ``n`` (``%(num)s`` is ``n``)."""
        if key not in self.catalog.keys:
            raise KeyError(f"no UI message {key!r} in the {self.catalog.domain!r} catalogue")
        return self.plural(key, n) % {"num": n, **values}

    def message(self, key: str) -> str:
        """The text of ``key`` with its placeholders still in, each a bidi isolate in a right-to-left language."""
        return self._isolated(self.translations.gettext(key))

    def plural(self, key: str, n: int) -> str:
        return self._isolated(self.translations.ngettext(key, key, n))

    def _isolated(self, text: str) -> str:
        # An id, a URL, a code or a Latin name put into an Arabic sentence would take the sentence's direction
        # ("//:http", an id's last character after the next word): first-strong isolates keep each value in
        # its own direction, as ICU MessageFormat does with its arguments.
        return _PLACEHOLDER.sub("\u2068\\g<0>\u2069", text) if self.rtl else text

    def pgettext(self, context: str, value: str) -> str:
        """A value of a family (``op``, ``status``, a refusal ``reason``...) in words; an unknown value as is."""
        return str(self.translations.pgettext(context, value))


_PLACEHOLDER = re.compile(r"%\((?!num\))\w+\)s")  # a plural's count is digits, at home in any direction
SHARED_LOCALE = Path(__file__).resolve().parent / "locale"  # common.po: the protocol's words, for every page


class Catalog:
    """One domain's UI messages in every language it has: gettext catalogues
    ``<directory>/<lang>/LC_MESSAGES/<domain>.po``, compiled when loaded (no build step to forget), with the
    shared ``common`` domain (SHARED_LOCALE) behind them.

    A message id is a stable key (``list.col.title``); the English catalogue is the source text and the list of
    keys. A value of an enum family (a record kind, an operation, a member status, a refusal reason...) is looked
    up by family and value, ``pgettext("reason", "bad-signature")``, in the domain, then in ``common``.
    A language falls back to English message by message. docs/adr/0022-message-catalogues.md says why,
    docs/TRANSLATING.md how to add a language.
    """

    def __init__(self, directory: Path, domain: str) -> None:
        self.directory, self.domain = directory, domain
        self.po = _read(directory, domain)
        if "en" not in self.po:
            raise FileNotFoundError(f"no English catalogue {domain}.po under {directory}")
        common = _read(SHARED_LOCALE, "common") if (directory, domain) != (SHARED_LOCALE, "common") else {}
        self.translations: dict[str, support.Translations] = {}
        for lang in self.po:
            # The language's own messages, then English: each layer the domain, then common.
            layers = [(cat[code], name) for code in dict.fromkeys([lang, "en"])
                      for cat, name in ((self.po, domain), (common, "common")) if code in cat]
            chain = [_compiled(c, name) for c, name in layers]
            for before, after in itertools.pairwise(chain):
                before.add_fallback(after)
            self.translations[lang] = chain[0]
        self.keys = frozenset(m.id if isinstance(m.id, str) else m.id[0]
                              for m in self.po["en"] if m.id and not m.context)
        self._translators: dict[str, Translator] = {}

    def languages(self) -> set[str]:
        return set(self.translations)

    def translator(self, lang: str) -> Translator:
        if lang not in self._translators:
            self._translators[lang] = Translator(self, lang)
        return self._translators[lang]

    def gettext(self, lang: str) -> Callable[..., str]:
        return self.translator(lang).gettext


def _read(directory: Path, domain: str) -> dict[str, babel_messages.Catalog]:
    """The ``.po`` catalogues of a domain by language."""
    found = {}
    for path in sorted(directory.glob(f"*/LC_MESSAGES/{domain}.po")):
        lang = path.parent.parent.name
        with path.open("rb") as f:
            found[lang] = pofile.read_po(f, locale=lang, domain=domain)
    return found


def _compiled(catalog: babel_messages.Catalog, domain: str) -> support.Translations:
    """A ``.po`` catalogue compiled in memory (what ``pybabel compile`` writes as a ``.mo`` file)."""
    compiled = io.BytesIO()
    mofile.write_mo(compiled, catalog)
    compiled.seek(0)
    return support.Translations(compiled, domain=domain)


def install(env: jinja2.Environment, catalog: Catalog) -> None:
    """Give the templates ``_``/``gettext``, ``ngettext`` and ``pgettext`` (jinja2's i18n extension, new style:
    values are escaped, then put in with ``%(name)s``) in the language of the page being rendered (``lang``)."""

    @jinja2.pass_context
    def gettext(context: jinja2.runtime.Context, key: str) -> str:
        return catalog.translator(context["lang"]).message(_known(catalog, key))

    @jinja2.pass_context
    def ngettext(context: jinja2.runtime.Context, key: str, plural: str, n: int) -> str:
        return catalog.translator(context["lang"]).plural(_known(catalog, key), n)

    @jinja2.pass_context
    def pgettext(context: jinja2.runtime.Context, family: str, value: str) -> str:
        return catalog.translator(context["lang"]).pgettext(family, value)

    env.install_gettext_callables(gettext, ngettext, newstyle=True, pgettext=pgettext)  # type: ignore[attr-defined]


def _known(catalog: Catalog, key: str) -> str:
    if key not in catalog.keys:
        raise KeyError(f"no UI message {key!r} in the {catalog.domain!r} catalogue")
    return key
