"""The portal's filters complete, the month calendar, the agenda and the operator's page (node/partners/portal.py,
views.py, about.py; docs/adr/0025): every class of filter alone and combined answers the same records in the list,
the record API and every feed its subscribe links name; occurrences on their local days across month boundaries,
zones and recurrences; caching, hreflang, the sitemap; the operator's page sanitised. SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import html as html_lib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import feedparser
import icalendar
import pytest
from aiohttp.test_utils import TestClient

from node.app import create_app
from node.appkeys import SERVICE
from node.config import NodeConfig
from node.partners.feeds import TAG_PREFIX
from node.records.service import NodeService
from tests.support.factories import example_bodies
from tests.support.portal import get, publish_examples

BEFORE = datetime(2019, 12, 1, tzinfo=UTC)


async def _client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    return await aiohttp_client(create_app(config, sync=False))


@pytest.fixture
async def client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    return await _client(aiohttp_client, config)


@pytest.fixture
async def published(client: TestClient) -> dict[str, str]:
    service: NodeService = client.app[SERVICE]
    ids = await publish_examples(service)
    service.clock = lambda: BEFORE
    return ids


def record_links(html: str) -> list[str]:
    """The record ids the page links to, in order (each card or occurrence once per link)."""
    return re.findall(r'<a href="/events/([A-Z]{2}:[^"/]+)">', html)


def hrefs(html: str) -> list[str]:
    return [html_lib.unescape(h) for h in re.findall(r'href="([^"]+)"', html)]


def names(ids: dict[str, str], found: set[str]) -> set[str]:
    by_id = {v: k for k, v in ids.items()}
    return {by_id.get(r, r) for r in found}


# -- every class of filter, alone and combined ---------------------------------------------------------------

EVENTS = {"Sixth", "High-Level", "Youth", "Launch", "Bridges", "An", "Hungarian"}
FILTER_CASES = [
    # one class at a time
    ("kind=capacity-programme", {"Social-p", "Cultural-p", "Public-p"}),
    ("origin=QA&kind=cultural-event", EVENTS),
    ("country=HU", {"Sixth", "High-Level", "Youth", "Launch", "Bridges", "Hungarian", "Social-p", "Cultural-p"}),
    ("type=workshop", {"Youth"}),
    ("type=training", {"Social-p"}),
    ("audience=public", {"Launch", "Bridges", "An"}),
    ("audience=diplomats", {"Sixth", "High-Level", "Launch", "Hungarian", "Public-p"}),
    ("from=2020-03-01&to=2020-03-31", {"An", "Social-p", "Hungarian"}),
    ("language=hu", {"Hungarian"}),
    ("status=open", {"Cultural-p"}),
    ("tag=photography", {"Bridges"}),
    ("q=Photography", {"Bridges"}),
    ("q=الموسيقى", {"An"}),
    # two or more classes
    ("type=workshop&audience=youth", {"Youth"}),
    ("kind=capacity-programme&audience=artists", {"Cultural-p"}),
    ("country=KR&status=cancelled", {"An"}),
    ("language=ko&audience=professionals", {"Sixth", "Cultural-p"}),
    ("from=2020-03-01&to=2020-03-31&kind=cultural-event&audience=invited", {"Hungarian"}),
    ("q=diplomacy&type=webinar", {"Public-p"}),
    ("q=الموسيقى&status=completed", set()),
    ("tag=youth&kind=cultural-event", {"Youth"}),
    ("status=open&country=TR", {"Cultural-p"}),
    ("kind=cultural-event&origin=QA&country=HU&type=screening&audience=diplomats&language=en&status=rescheduled"
     "&tag=film&from=2020-03-01&to=2020-03-31&q=film", {"Hungarian"}),
]


async def _feed_ids(client: TestClient, href: str) -> set[str]:
    resp = await client.get(href[href.index("/api/"):])
    assert resp.status == 200, (href, await resp.text())
    data = await resp.read()
    if "/feed.json" in href:
        return {i["_ipdn"]["record_id"] for i in json.loads(data)["items"]}
    if "/atom.xml" in href:
        return {e.id.removeprefix(TAG_PREFIX) for e in feedparser.parse(data).entries}
    return {str(e["X-IPDN-RECORD-ID"]) for e in icalendar.Calendar.from_ical(data).walk("VEVENT")}


@pytest.mark.parametrize(("query", "wanted"), FILTER_CASES, ids=[q for q, _ in FILTER_CASES])
async def test_every_filter_class_answers_alike_in_the_list_the_api_and_the_feeds(
        client: TestClient, published: dict[str, str], query: str, wanted: set[str]) -> None:
    html, _ = await get(client, f"/events?lang=en&{query}")
    assert names(published, set(record_links(html))) == wanted, "list"
    # The record API, with its name for the title language.
    params = [("lang" if k == "language" else k, v) for k, v in parse_qsl(query)]
    api = await (await client.get("/api/v1/records", params=[*params, ("limit", "100")])).json()
    assert names(published, {i["record_id"] for i in api["items"]}) == wanted, "API"
    # Every subscribe link carries the whole selection, and its feed answers the same records.
    links = [h for h in hrefs(html) if "/api/v1/feeds/" in h]
    kinds = {"feed.json", "atom.xml"} | ({"events.ics"} if not wanted or wanted & EVENTS else set())
    assert {h.split("?")[0].rsplit("/", 1)[1] for h in links} >= kinds
    for href in links:
        carried = dict(parse_qsl(urlsplit(href).query))
        assert {k: v for k, v in parse_qsl(query) if k != "kind" or "events.ics" not in href}.items() <= carried.items()
        expected = wanted & EVENTS if "events.ics" in href else wanted
        assert names(published, await _feed_ids(client, href)) == expected, href


async def test_type_and_audience_are_localized_choices(client: TestClient, published: dict[str, str]) -> None:
    html, _ = await get(client, "/events?lang=ar&type=screening&audience=invited")
    assert '<option value="screening" selected>عرض سينمائي</option>' in html
    assert '<option value="invited" selected>المدعوون</option>' in html
    assert re.search(r'<label for="f-type">[^<]+</label>', html) and re.search(r'<label for="f-audience">', html)
    for value in ("fellowship", "journalists", "civil-servants", "general-assembly"):  # both kinds' vocabularies
        assert f'<option value="{value}"' in html
    en, _ = await get(client, "/events?lang=en")
    assert '<option value="screening">Screening</option>' in en and ">Civil servants</option>" in en


@pytest.mark.parametrize("query", ["type=dance", "audience=cats", "kind=book", "from=soon", "origin=Qatar",
                                   "language=not a tag"])
async def test_an_unknown_choice_is_an_html_400(client: TestClient, query: str) -> None:
    for path in ("/events", "/calendar", "/agenda"):
        _html, resp = await get(client, f"{path}?{query}", status=400)
        assert resp.content_type == "text/html" and resp.headers["Cache-Control"] == "no-store", path


async def test_the_feeds_refuse_what_they_cannot_read(client: TestClient) -> None:
    for query in ("from=soon", "country=Qatar", "language=not a tag", "q=" + "x" * 501):
        resp = await client.get(f"/api/v1/feeds/feed.json?{query}")
        assert resp.status == 400 and resp.content_type == "application/problem+json", query
    assert (await client.get("/api/v1/feeds/atom.xml?type=dance")).status == 200  # unknown: matches nothing


# -- the month -------------------------------------------------------------------------------------------------


def days(html: str) -> dict[str, list[tuple[str, str]]]:
    """Each day of the calendar with something on it: (record id, the occurrence's datetime)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for day, body in re.findall(r'<li class="day col-\d[^"]*">\s*<h3><time datetime="([\d-]+)">(.*?)</ul>\s*</li>',
                                html, re.S):
        out[day] = re.findall(r'<a href="/events/([^"]+)">.*?<time datetime="([^"]+)"', body, re.S)
    return out


async def test_a_month_shows_each_occurrence_on_its_local_day(client: TestClient, published: dict[str, str]) -> None:
    film = published["Hungarian"]
    html, resp = await get(client, "/calendar?month=2020-02&lang=en")
    assert resp.headers["Cache-Control"] == "public, max-age=60" and "<h1>Calendar: February 2020</h1>" in html
    feb = days(html)
    assert {d: [t for r, t in v if r == film] for d, v in feb.items()} == {
        f"2020-02-{n:02d}": [f"2020-02-{n:02d}T19:00:00+01:00"] for n in (6, 13, 20, 27)}
    assert html.count('<li class="day') == 29  # every day of a leap February, empty ones too (hidden on a phone)
    assert re.search(r'<li class="day empty col-6[^"]*" aria-hidden="true"><span class="number">1</span>', html)
    march = days((await get(client, "/calendar?month=2020-03&lang=en"))[0])
    assert [r for r, _ in march["2020-03-05"]] == [film] and [r for r, _ in march["2020-03-12"]] == [film]
    assert published["Social-p"] in dict(march["2020-03-01"]) and published["An"] in dict(march["2020-03-18"])
    assert "2020-03-02" not in march  # a programme of days is shown once, on its first day in the month
    may, _ = await get(client, "/calendar?month=2020-05&lang=en")
    assert published["Bridges"] in dict(days(may)["2020-05-01"]) and "continues" in may  # began in April


async def test_the_month_takes_the_filters_and_names_the_views(client: TestClient,
                                                              published: dict[str, str]) -> None:
    html, _ = await get(client, "/calendar?month=2020-03&kind=capacity-programme&lang=en")
    assert set(record_links(html)) == {published["Social-p"]}
    links = hrefs(html)
    assert "/events?kind=capacity-programme&lang=en" in links and "/agenda?kind=capacity-programme&lang=en" in links
    assert "/calendar?month=2020-04&kind=capacity-programme&lang=en" in links  # the next month keeps them all
    feed = next(h for h in links if "/feed.json" in h)
    assert "kind=capacity-programme" in feed and "from=" not in feed  # a month is no filter of the feeds
    assert not any("events.ics" in h for h in links)  # programmes only: no event calendar to offer


async def test_a_month_in_arabic(client: TestClient, published: dict[str, str]) -> None:
    html, _ = await get(client, "/calendar?month=2020-02&lang=ar")
    assert 'lang="ar" dir="rtl"' in html and "فبراير 2020" in html and "الخميس، 6 فبراير 2020" in html
    assert "توقيت هنغاريا" in html  # the event's zone, named in Arabic
    assert re.search(r'<link rel="alternate" hreflang="en" href="http[^"]+/calendar\?month=2020-02&amp;lang=en">',
                     html)


async def test_this_month_by_default_and_bad_months(client: TestClient, published: dict[str, str]) -> None:
    client.app[SERVICE].clock = lambda: datetime(2020, 3, 10, tzinfo=UTC)
    html, _ = await get(client, "/calendar?lang=en")
    assert "March 2020" in html and published["An"] in record_links(html)
    for month in ("2020-13", "20-03", "0999-01", "march"):
        await get(client, f"/calendar?month={month}", status=400)
    html, _ = await get(client, "/calendar?month=9999-12&lang=en")
    assert "month=10000" not in html and "Next month" not in html and "Previous month" in html


@pytest.fixture
async def zoned(client: TestClient) -> dict[str, str]:
    """Events at the turn of January 2026 in three zones, and one daily at 22:00 in Mexico City over it."""
    service: NodeService = client.app[SERVICE]
    base = example_bodies("cultural-event")[5]
    out = {}
    for name, start, zone, rule in (
            ("doha", "2026-01-31T23:30:00+03:00", "Asia/Qatar", None),
            ("mexico", "2026-01-31T20:00:00-06:00", "America/Mexico_City", None),
            ("seoul", "2026-02-01T00:30:00+09:00", "Asia/Seoul", None),
            ("daily", "2026-01-30T22:00:00-06:00", "America/Mexico_City", "FREQ=DAILY;COUNT=3")):
        body = {**base, "start": start, "end": start, "timezone": zone, "status": "scheduled",
                "title": {"en": f"Turn of the month {name}"}}
        body.pop("previous_start", None)
        if rule:
            body["recurrence"] = rule
        out[name] = (await service.create("cultural-event", body)).payload.record_id
    return out


async def test_zones_and_recurrences_across_the_month_boundary(client: TestClient, zoned: dict[str, str]) -> None:
    jan = days((await get(client, "/calendar?month=2026-01&lang=en"))[0])
    feb = days((await get(client, "/calendar?month=2026-02&lang=en"))[0])
    assert {r for r, _ in jan["2026-01-31"]} == {zoned["doha"], zoned["mexico"], zoned["daily"]}
    assert {r for r, _ in jan["2026-01-30"]} == {zoned["daily"]}
    assert {r for r, _ in feb["2026-02-01"]} == {zoned["seoul"], zoned["daily"]}
    assert dict(feb["2026-02-01"])[zoned["daily"]] == "2026-02-01T22:00:00-06:00"
    assert set(feb) == {"2026-02-01"}


# -- the coming days -------------------------------------------------------------------------------------------


def agenda(html: str) -> list[tuple[str, list[str]]]:
    """(day, record ids) in the order shown."""
    return [(day, re.findall(r'<a href="/events/([^"]+)">', body)) for day, body in re.findall(
        r'<section class="agenda-day"[^>]*>\s*<h3 id="d-([\d-]+)">(.*?)</section>', html, re.S)]


async def test_the_agenda_groups_occurrences_by_day(client: TestClient, published: dict[str, str]) -> None:
    client.app[SERVICE].clock = lambda: datetime(2020, 2, 10, tzinfo=UTC)
    film, training = published["Hungarian"], published["Social-p"]
    html, resp = await get(client, "/agenda?lang=en")
    assert agenda(html) == [("2020-02-13", [film]), ("2020-02-20", [film]), ("2020-02-27", [film]),
                            ("2020-03-01", [training]), ("2020-03-05", [film])]  # 31 days: to 11 March
    assert "Thursday, February 13, 2020" in html
    assert "7:00\u202fPM – 9:30\u202fPM (Hungary Time)" in html  # CLDR's narrow space before PM
    assert resp.headers["Cache-Control"] == "public, max-age=60" and "ETag" in resp.headers
    later = next(h for h in hrefs(html) if h.startswith("/agenda?") and "from=2020-03-12" in h)
    assert agenda((await get(client, later))[0])[:2] == [("2020-03-12", [film]), ("2020-03-18", [published["An"]])]
    ar, _ = await get(client, "/agenda?lang=ar")
    assert "الخميس، 13 فبراير 2020" in ar and "توقيت هنغاريا" in ar and 'dir="rtl"' in ar


async def test_the_agenda_keeps_whole_days_and_ongoing_spans(aiohttp_client: Any, config: NodeConfig) -> None:
    client = await _client(aiohttp_client, dataclasses.replace(config, portal_agenda_max=2))
    service: NodeService = client.app[SERVICE]
    ids = await publish_examples(service)
    service.clock = lambda: datetime(2020, 1, 19, tzinfo=UTC)
    html, _ = await get(client, "/agenda?lang=en")
    shown = agenda(html)
    assert [d for d, _ in shown] == ["2020-01-20"]  # three that day: the whole day, though the page holds two
    assert set(shown[0][1]) == {ids["Sixth"], ids["High-Level"]} | set(shown[0][1])
    assert any("from=2020-01-21" in h for h in hrefs(html))  # the next page starts at the day left out
    html, _ = await get(client, "/agenda?from=2020-05-01&lang=en")
    assert agenda(html)[0] == ("2020-05-01", [ids["Bridges"]]) and "continues" in html


async def test_the_agenda_takes_the_filters(client: TestClient, published: dict[str, str]) -> None:
    html, _ = await get(client, "/agenda?from=2020-01-01&kind=capacity-programme&country=TR&lang=en")
    assert {r for _, rs in agenda(html) for r in rs} <= {published["Social-p"], published["Cultural-p"]}
    assert all(r != published["Hungarian"] for r in record_links(html))


async def test_views_are_cacheable_and_in_the_sitemap(client: TestClient, published: dict[str, str]) -> None:
    for path in ("/calendar?month=2020-02", "/agenda?from=2020-02-01"):
        _, resp = await get(client, path)
        again = await client.get(path, headers={"If-None-Match": resp.headers["ETag"]})
        assert again.status == 304, path
    _, before = await get(client, "/calendar?month=2020-02")
    await client.app[SERVICE].cancel(published["Hungarian"])
    _, after = await get(client, "/calendar?month=2020-02")
    assert after.headers["ETag"] != before.headers["ETag"]
    sitemap, _ = await get(client, "/sitemap.xml")
    assert "/calendar</loc>" in sitemap and "/agenda</loc>" in sitemap and "/about</loc>" not in sitemap


async def test_views_are_off_with_the_portal(aiohttp_client: Any, config: NodeConfig) -> None:
    client = await _client(aiohttp_client, dataclasses.replace(config, portal=False))
    for path in ("/calendar", "/agenda", "/about"):
        assert (await client.get(path)).status == 404, path


# -- share links ----------------------------------------------------------------------------------------------


async def test_share_links_are_plain_links(client: TestClient, published: dict[str, str]) -> None:
    html, resp = await get(client, f"/events/{published['Sixth']}?lang=en")
    share = html[html.index('id="h-actions"'):html.index("</section>", html.index('id="h-actions"'))]
    assert "https://wa.me/?text=" in share and "mailto:?subject=" in share and ">E-mail</a>" in share
    assert re.findall(r"<script[^>]*>", html) == ['<script type="application/ld+json">']  # data, no script
    assert "script-src" not in resp.headers["Content-Security-Policy"]  # default-src 'none': none runs


# -- the operator's page --------------------------------------------------------------------------------------

ABOUT = """# About the Katara portal

This portal shows the **network's** events. <script>alert(1)</script>
<img src="x" onerror="alert(2)"> <a href="javascript:alert(3)">bad</a> <iframe src="https://evil.example"></iframe>
<form action="https://evil.example"><input name="password"></form><p style="position:fixed" onclick="x()">Styled</p>

| Contact | Where |
|---|---|
| [Write to us](mailto:portal@katara.example) | Doha |
"""


@pytest.fixture
def about_config(config: NodeConfig, tmp_path: Path) -> NodeConfig:
    (tmp_path / "about.md").write_text(ABOUT, encoding="utf-8")
    (tmp_path / "about.ar.md").write_text("# عن بوابة كتارا\n\nتعرض هذه البوابة فعاليات الشبكة.\n", encoding="utf-8")
    return dataclasses.replace(config, portal_page=str(tmp_path / "about.md"))


async def test_the_operator_page_in_each_language_linked_from_every_footer(aiohttp_client: Any,
                                                                          about_config: NodeConfig) -> None:
    client = await _client(aiohttp_client, about_config)
    html, resp = await get(client, "/about?lang=en")
    assert "<h1>About the Katara portal</h1>" in html and "<strong>network's</strong>" in html
    assert '<a href="mailto:portal@katara.example" rel="noopener noreferrer">Write to us</a>' in html
    assert "<table>" in html and resp.headers["Cache-Control"] == "public, max-age=300"
    ar, _ = await get(client, "/about?lang=ar")
    assert '<article class="operator" lang="ar" dir="rtl">' in ar and "<h1>عن بوابة كتارا</h1>" in ar
    home, _ = await get(client, "/?lang=en")
    assert '<a href="/about">About the Katara portal</a>' in home
    home_ar, _ = await get(client, "/?lang=ar")
    assert '<a href="/about">عن بوابة كتارا</a>' in home_ar
    sitemap, _ = await get(client, "/sitemap.xml")
    assert "/about</loc>" in sitemap


async def test_stored_xss_in_the_operator_page_is_sanitised(aiohttp_client: Any, about_config: NodeConfig) -> None:
    """Script, handlers, javascript: links, frames, forms and inline styles in the operator's file never reach the
    page (nh3); the CSP would stop a script anyway, but the page does not rely on it."""
    client = await _client(aiohttp_client, about_config)
    html, _ = await get(client, "/about?lang=en")
    article = html[html.index('<article class="operator"'):html.index("</article>")]
    for bad in ("<script", "onerror", "onclick", "javascript:", "<iframe", "<form", "<input", "style="):
        assert bad not in article, bad
    assert '<img src="x">' in article and "Styled" in article


async def test_the_operator_page_changes_every_etag_and_may_be_html(aiohttp_client: Any, about_config: NodeConfig,
                                                                   tmp_path: Path) -> None:
    _, before = await get(await _client(aiohttp_client, about_config), "/?lang=en")
    (tmp_path / "about.md").write_text("# About us\n\nNew text.\n", encoding="utf-8")
    html, after = await get(await _client(aiohttp_client, about_config), "/?lang=en")
    assert before.headers["ETag"] != after.headers["ETag"] and '<a href="/about">About us</a>' in html
    page = tmp_path / "page.html"
    page.write_text("<p>No heading here.</p><script>x</script>", encoding="utf-8")
    client2 = await _client(aiohttp_client, dataclasses.replace(about_config, portal_page=str(page)))
    html, _ = await get(client2, "/about?lang=en")
    assert "<h1>About this portal</h1>" in html and "<p>No heading here.</p>" in html and "<script>x" not in html


async def test_no_operator_page_is_a_404(client: TestClient) -> None:
    _html, resp = await get(client, "/about", status=404)
    assert resp.content_type == "text/html"
    home, _ = await get(client, "/")
    assert 'href="/about"' not in home
