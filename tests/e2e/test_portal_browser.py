"""The portal (node/partners/portal.py, views.py) in a real browser (Debian's chromium, headless), as a visitor of
KR's node sees the records QA published: home, the list with filters (type, audience, member, country...) and search
in Arabic and English, the month calendar, the agenda, the operator's page, a member page, an event's and a
programme's pages, a 404; at 390 px and 1280 px, in ar and en: nothing wider than the window,
``html[lang]``/``html[dir]`` right, axe-core finds no violation of any impact; the month a grid of weeks on the
desktop and a list of days on the phone. QA's portal is branded (name, colours): its top bar wears them. Screenshots
of the Arabic phone and English desktop views go to docs/images/portal-*.png.

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
SHOWN = {"home", "list-search", "event", "programme", "member", "calendar", "agenda", "about"}
ABOUT = {"en": "# About this portal\n\nKR's node shows **every member's** events and programmes.\n\n"
               "| Contact | Where |\n|---|---|\n| [Write to us](mailto:portal@kr.example) | Seoul |\n",
         "ar": "# عن هذه البوابة\n\nتعرض عقدة كوريا فعاليات **جميع الأعضاء** وبرامجهم.\n"}
BRAND = {"IPDN_NODE_PORTAL_NAME": "Katara Exchange", "IPDN_NODE_PORTAL_COLOUR": "#123456",
         "IPDN_NODE_PORTAL_ACCENT": "#6b3f00"}


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
    (tmp_path / "KR" / "about.md").write_text(ABOUT["en"], encoding="utf-8")
    (tmp_path / "KR" / "about.ar.md").write_text(ABOUT["ar"], encoding="utf-8")
    try:
        f.start("hub")
        f.start("QA", env=BRAND)
        f.start("KR", env={"IPDN_NODE_PORTAL_PAGE": "about.md"})
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
                         ("list-filtered-more", "/events?type=concert&audience=public&status=cancelled&language=ko"
                                                "&from=2027-03-01&to=2027-03-31"),
                         ("calendar", "/calendar?month=2027-03"), ("calendar-filtered",
                                                                    "/calendar?month=2027-01&audience=diplomats"),
                         ("agenda", "/agenda?from=2027-03-01"), ("about", "/about"),
                         ("members", "/members"), ("member", "/members/QA"), ("event", f"/events/{event}"),
                         ("programme", f"/events/{programme}"), ("missing", "/events/QA:nope")]
                for name, path in pages:
                    for width in WIDTHS:
                        page.set_viewport_size({"width": width, "height": 844 if width < 800 else 900})
                        page.goto(kr + path + ("&" if "?" in path else "?") + f"lang={lang}")
                        _check(page, name, lang, width, problems)
                        if name in ("list-search", "list-filtered-more"):  # the concert only
                            found = page.locator("ul.cards h3 a").evaluate_all("(as) => as.map(a => a.href)")
                            assert [h.rsplit("/", 1)[1] for h in found] == [concert], (name, lang, found)
                        if name == "calendar":
                            _month_layout(page, width, concert, lang)
                        if name == "agenda":  # by day, each day named in the reader's language
                            heading = page.locator("section.agenda-day h3").first.inner_text()
                            assert heading.startswith("الاثنين" if lang == "ar" else "Monday"), heading
                        if name == "about":
                            assert page.locator("article.operator h1").inner_text() == ABOUT[lang].split("\n")[0][2:]
                            assert page.locator("footer a[href='/about']").count() == 1
                # The filter form works without script: choose, submit, land on the filtered list.
                page.goto(kr + f"/events?lang={lang}")
                page.select_option("#f-kind", "capacity-programme")
                with page.expect_navigation():
                    page.click("form.filters button[type=submit]")
                assert "kind=capacity-programme" in page.url
                assert page.locator("ul.cards li").count() == 3
                # Type and audience too, and the month keeps what was chosen.
                page.select_option("#f-kind", "")
                page.select_option("#f-type", "screening")
                page.select_option("#f-audience", "invited")
                with page.expect_navigation():
                    page.click("form.filters button[type=submit]")
                assert "type=screening" in page.url and "audience=invited" in page.url
                assert page.locator("ul.cards li").count() == 1
                with page.expect_navigation():
                    page.click("nav.views a[href^='/calendar']")
                assert "type=screening" in page.url and "audience=invited" in page.url
                feed = page.locator("section.subscribe a[type='application/feed+json']").get_attribute("href")
                assert "type=screening" in feed and "audience=invited" in feed
                # QA's portal wears its brand: name and colours.
                page.goto(f.url("QA") + f"/?lang={lang}")
                assert page.locator("header.top .brand").inner_text().strip() == "Katara Exchange"
                colour = page.locator("header.top").evaluate("(e) => getComputedStyle(e).backgroundColor")
                assert colour == "rgb(18, 52, 86)", colour
                _check(page, "home-branded", lang, 1280, problems)
                page.close()
    finally:
        f.close()
    assert problems == [], "\n".join(problems)


def _month_layout(page: Any, width: int, concert: str, lang: str) -> None:
    """A grid of weeks on the desktop; on the phone the days that hold something, one under another. The concert
    (18 March) is on its day."""
    days = page.locator("ol.days")
    columns = days.evaluate("(e) => getComputedStyle(e).gridTemplateColumns").split()
    weekdays = page.locator("ul.weekdays")
    day = page.locator("li.day", has=page.locator(f"a[href='/events/{concert}']"))
    assert day.locator("time").first.get_attribute("datetime") == "2027-03-18", lang
    if width >= 800:
        assert len(columns) == 7 and weekdays.is_visible(), (width, columns)
        assert page.locator("li.day.empty").first.is_visible()
    else:
        assert len(columns) == 1 and not weekdays.is_visible(), (width, columns)
        assert not page.locator("li.day.empty").first.is_visible()
