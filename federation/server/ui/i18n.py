"""Languages of the operator, staff and partner pages: which one a request asks for, which way it is written,
which text of a language map to show, and the UI messages per language.

- **Language**: ``?lang=`` (remembered in a cookie), else the browser's ``Accept-Language``; ``direction``
  says whether a language tag is written right to left.
- **Message catalogs** are JSON files ``{"key": {"en": "...", "ar": "..."}}`` beside the templates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

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
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(request.headers.get("Accept-Language", "").split(",")):
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


class Catalog:
    """UI messages per language; a key missing in one language falls back to English."""

    def __init__(self, path: Path) -> None:
        self.messages: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))

    def languages(self) -> set[str]:
        return {lang for texts in self.messages.values() for lang in texts}

    def gettext(self, lang: str) -> Any:
        def _(key: str, **values: Any) -> str:
            texts = self.messages.get(key)
            if texts is None:
                raise KeyError(f"no UI message {key!r}")
            text = texts.get(lang) or texts["en"]
            return text.format(**values) if values else text
        return _
