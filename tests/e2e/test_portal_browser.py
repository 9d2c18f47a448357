"""The portal (node/partners/portal.py) in a real browser (Debian's chromium, headless), as a visitor of KR's node
sees the records QA published: home, the list with filters and search in Arabic and English, a member page, an
event's and a programme's pages, a 404; at 390 px and 1280 px, in ar and en: nothing wider than the window,
``html[lang]``/``html[dir]`` right, axe-core finds no violation of any impact. Screenshots of the Arabic phone and
English desktop views go to docs/images/portal-*.png.

A hub and two nodes run as real processes on loopback ports; QA publishes every example, dated seven years later so
that they are coming up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.browser import SCREENSHOTS, axe_violations, chromium
from tests.support.factories import example_bodies
from tests.support.harness import Federation
from tests.support.pages import overflow

WIDTHS = (390, 1280)
SHOWN = {"home", "list-search", "event", "programme", "member"}


def _later(body: dict[str, Any]) -> dict[str, Any]:
    """The example seven years on: 2020 -> 2027 in every date."""
    return dict(json.loads(json.dumps(body, ensure_ascii=False).replace('"2020-', '"2027-')))


def _check(page: Any, name: str, lang: str, width: int, problems: list[str]) -> None:
    where = f"{name} ({lang}, {width} px)"
    assert page.locator("html").get_attribute("lang") == lang, where
    assert page.locator("html").get_attribute("dir") == ("rtl" if lang == "ar" else "ltr"), where
    if (wide := overflow(page)) is not None:
        problems.append(f"{where}: {wide['scroll']} px wide in {wide['inner']}: {wide['culprits']}")
    for v in axe_violations(page):
        problems.append(f"{where}: axe {v['id']} ({v['impact']}): {v['help']} {[n['target'] for n in v['nodes']][:4]}")
    if name in SHOWN and ((width == 390 and lang == "ar") or (width == 1280 and lang == "en")):
        page.screenshot(path=str(SCREENSHOTS / f"portal-{name}-{lang}-{width}.png"), full_page=width == 390)


def test_portal_in_a_browser_at_phone_and_desktop_widths(tmp_path: Path) -> None:
    f = Federation(tmp_path, ["QA", "KR"]).init()
    problems: list[str] = []
    try:
        f.start_all()
        ids = {}
        for kind in ("cultural-event", "capacity-programme"):
            for body in example_bodies(kind):
                ids[body["title"]["en"]] = f.publish("QA", kind, _later(body))["record_id"]
        for rid in ids.values():
            f.wait_record("KR", rid)
        kr = f.url("KR")
        event = next(r for t, r in ids.items() if t.startswith("Sixth"))
        programme = next(r for t, r in ids.items() if t.startswith("Cultural Management"))
        concert = next(r for t, r in ids.items() if t.startswith("An Evening of Korean"))
        with chromium() as browser:
            for lang in ("ar", "en"):
                page = browser.new_page(viewport={"width": 390, "height": 844},
                                        locale="ar-QA" if lang == "ar" else "en-GB")
                page.set_default_timeout(15_000)
                search = "الموسيقى" if lang == "ar" else "music"
                pages = [("home", "/"), ("list", "/events"), ("list-search", f"/events?q={search}"),
                         ("list-filtered", "/events?kind=capacity-programme&country=TR"),
                         ("members", "/members"), ("member", "/members/QA"), ("event", f"/events/{event}"),
                         ("programme", f"/events/{programme}"), ("missing", "/events/QA:nope")]
                for name, path in pages:
                    for width in WIDTHS:
                        page.set_viewport_size({"width": width, "height": 844 if width < 800 else 900})
                        page.goto(kr + path + ("&" if "?" in path else "?") + f"lang={lang}")
                        _check(page, name, lang, width, problems)
                        if name == "list-search":  # full text, in the reader's language: the concert only
                            found = page.locator("ul.cards h3 a").evaluate_all("(as) => as.map(a => a.href)")
                            assert [h.rsplit("/", 1)[1] for h in found] == [concert], (lang, found)
                # The filter form works without script: choose, submit, land on the filtered list.
                page.goto(kr + f"/events?lang={lang}")
                page.select_option("#f-kind", "capacity-programme")
                with page.expect_navigation():
                    page.click("form.filters button[type=submit]")
                assert "kind=capacity-programme" in page.url
                assert page.locator("ul.cards li").count() == 3
                page.close()
    finally:
        f.close()
    assert problems == [], "\n".join(problems)
