"""Languages of the pages: which one a request asks for, which way it is written, which text of a language map to
show (the catalogues: test_catalogues.py)."""

import pytest
from aiohttp.test_utils import make_mocked_request

from federation.server.ui.i18n import choose_language, direction, pick


@pytest.mark.parametrize(("headers", "query", "expected"), [
    ({"Accept-Language": "ar-QA,ar;q=0.9,en;q=0.5"}, "", "ar"),
    ({"Accept-Language": "ko-KR, en;q=0.4, ar;q=0.3"}, "", "en"),
    ({"Accept-Language": "fr"}, "", "en"),
    ({"Accept-Language": "en;q=0.2, ar;q=0.8"}, "", "ar"),
    ({"Accept-Language": "ar"}, "?lang=en", "en"),
    ({"Cookie": "lang=ar"}, "", "ar"),
    ({"Accept-Language": "ar;q=0"}, "", "en"),
])
def test_choose_language(headers: dict[str, str], query: str, expected: str) -> None:
    req = make_mocked_request("GET", "/" + query, headers=headers)
    assert choose_language(req, ["en", "ar"]) == expected


@pytest.mark.parametrize(("tag", "expected"), [("ar", "rtl"), ("ar-QA", "rtl"), ("en", "ltr"), ("fa_IR", "rtl"),
                                               ("az-Arab", "rtl"), ("ku-Latn", "ltr"), ("he", "rtl"), ("ko", "ltr")])
def test_direction(tag: str, expected: str) -> None:
    assert direction(tag) == expected


@pytest.mark.parametrize(("lang", "expected"), [
    ("ar", ("ar", "نص")), ("pt-BR", ("pt", "texto")), ("zh", ("zh-Hant", "文字")), ("ko", ("en", "text")),
    (None, ("en", "text")),
])
def test_pick_prefers_the_language_then_its_primary_then_english(lang: str | None, expected: tuple[str, str]) -> None:
    texts = {"zh-Hant": "文字", "en": "text", "ar": "نص", "pt": "texto"}
    assert pick(texts, lang) == expected
    assert pick({}, "en") is None
