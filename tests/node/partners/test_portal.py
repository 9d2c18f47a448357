"""The portal (node/partners/portal.py, docs/adr/0025): home, the filtered and searched list with the API's cursor,
member pages, record pages of both kinds with their history, badge and downloads, 404/410 pages, caching (ETag,
304, Vary), hreflang, sitemap, robots, branding and the switch that turns it off."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from icalendar import Calendar
from lxml import etree

from federation.protocol.envelope import Envelope
from federation.protocol.errors import ConfigError
from node.app import create_app
from node.appkeys import SERVICE
from node.config import NodeConfig
from node.records.service import NodeService
from tests.support.factories import example_bodies
from tests.support.portal import get, publish_examples

BEFORE = datetime(2019, 12, 1, tzinfo=UTC)  # before every example's dates: all of them are coming up


async def _client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    return await aiohttp_client(create_app(config, sync=False))


@pytest.fixture
async def client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    return await _client(aiohttp_client, config)


@pytest.fixture
async def published(client: TestClient) -> dict[str, str]:
    """Every example of both kinds published by QA (their origins in the examples do not matter here), keyed by
    the English title's first word; then the clock set before them all."""
    service: NodeService = client.app[SERVICE]
    ids = await publish_examples(service)
    service.clock = lambda: BEFORE
    return ids


def links(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html)


async def test_home_shows_what_is_coming_soonest_first(client: TestClient, published: dict[str, str]) -> None:
    html, resp = await get(client, "/?lang=en")
    assert resp.content_type == "text/html" and 'lang="en" dir="ltr"' in html
    events = html[html.index('id="h-events"'):html.index('id="h-programmes"')]
    shown = re.findall(r'href="/events/(QA:[^"]+)"', events)
    assert shown and shown[0] == published["Sixth"]  # the general assembly starts first (2020-01-20 09:00)
    assert published["Social-p"] not in events and published["Social-p"] in html  # programmes in their own list


async def test_home_in_arabic_is_right_to_left(client: TestClient, published: dict[str, str]) -> None:
    html, resp = await get(client, "/", **{"Accept-Language": "ar"})
    assert 'lang="ar" dir="rtl"' in html and "الفعاليات القادمة" in html
    assert "Accept-Language" in resp.headers["Vary"]
    assert re.search(r'<link rel="alternate" hreflang="ar" href="http[^"]+/\?lang=ar">', html)
    assert re.search(r'<link rel="alternate" hreflang="x-default" href="http[^"]+/">', html)


@pytest.mark.parametrize(("query", "wanted", "unwanted"), [
    ("kind=capacity-programme", ["Social-p", "Cultural-p"], ["Sixth"]),
    ("status=cancelled", ["An"], ["Sixth", "Bridges"]),
    ("country=KR", ["An", "Sixth"], ["Hungarian"]),
    ("language=hu", ["Hungarian"], ["Sixth"]),
    # The weekly film evenings start in February; their last two (5 and 12 March) are in March.
    ("from=2020-03-01&to=2020-03-31", ["An", "Social-p", "Hungarian"], ["Sixth"]),
    ("from=2020-03-13&to=2020-03-31", ["An"], ["Hungarian"]),
    ("q=Photography", ["Bridges"], ["Sixth"]),
    ("q=" + "الموسيقى", ["An"], ["Sixth"]),
])
async def test_list_filters_and_search(client: TestClient, published: dict[str, str], query: str,
                                       wanted: list[str], unwanted: list[str]) -> None:
    html, _ = await get(client, f"/events?lang=en&{query}")
    for key in wanted:
        assert f'href="/events/{published[key]}"' in html, key
    for key in unwanted:
        assert f'href="/events/{published[key]}"' not in html, key


async def test_list_filters_by_member(client: TestClient, published: dict[str, str]) -> None:
    html, _ = await get(client, "/events?origin=KR")
    assert "/events/QA:" not in html.replace('href="/events/QA:', "")  # none of KR's: QA published them all
    html, _ = await get(client, "/events?origin=QA")
    assert all(f'href="/events/{rid}"' in html for rid in list(published.values())[:5])


async def test_list_pages_with_the_api_cursor(aiohttp_client: Any, config: NodeConfig) -> None:
    client = await _client(aiohttp_client, dataclasses.replace(config, portal_page_size=4))
    service: NodeService = client.app[SERVICE]
    ids = [(await service.create("cultural-event", b)).payload.record_id for b in example_bodies("cultural-event")]
    seen: list[str] = []
    path: str | None = "/events?kind=cultural-event"
    while path:
        html, _ = await get(client, path)
        seen += re.findall(r'<h3><a href="/events/([^"]+)"', html)
        nxt = re.search(r'<a rel="next" href="([^"]+)"', html)
        path = nxt.group(1).replace("&amp;", "&") if nxt else None
    assert seen == ids  # every record once, in the API's order
    api = await (await client.get("/api/v1/records", params={"kind": "cultural-event", "limit": "4"})).json()
    assert api["next_cursor"] and "kind=cultural-event" in html  # the filters stay in the links


async def test_list_subscribe_links_carry_the_filters(client: TestClient, published: dict[str, str]) -> None:
    html, _ = await get(client, "/events?lang=ar&kind=cultural-event&origin=QA&status=cancelled&q=x")
    hrefs = [h.replace("&amp;", "&") for h in links(html)]
    ics = next(h for h in hrefs if "/api/v1/feeds/events.ics" in h)
    assert "origin=QA" in ics and "status=cancelled" in ics and "lang=ar" in ics
    feed = next(h for h in hrefs if "/api/v1/feeds/feed.json" in h)
    assert "kind=cultural-event" in feed and "origin=QA" in feed
    for h in (ics, feed, next(h for h in hrefs if "atom.xml" in h)):
        resp = await client.get(h[h.index("/api/"):])
        assert resp.status == 200, h


async def test_bad_filter_is_an_html_400(client: TestClient) -> None:
    html, resp = await get(client, "/events?from=yesterday", status=400)
    assert resp.content_type == "text/html" and "from is a day" in html


async def test_member_page_from_the_registry(client: TestClient, published: dict[str, str]) -> None:
    html, _ = await get(client, "/members/QA?lang=en")
    assert f'href="/events/{published["Sixth"]}"' in html and "Qatar" in html
    assert 'href="/events?origin=QA"' in html
    html, _ = await get(client, "/members")
    assert 'href="/members/QA"' in html and 'href="/members/KR"' in html
    await get(client, "/members/ZZ", status=404)
    resp = await client.get("/members/qa", allow_redirects=False)
    assert resp.status == 301 and resp.headers["Location"] == "/members/QA"


async def test_programme_record_page_with_history_badge_and_downloads(client: TestClient,
                                                                      published: dict[str, str]) -> None:
    service: NodeService = client.app[SERVICE]
    rid = published["Cultural-p"]
    body = dict((await service.get(rid)).body or {})
    body["seats"] = 12
    await service.update(rid, body)
    html, _ = await get(client, f"/events/{rid}?lang=en")
    assert "Cultural Management Fellowship" in html and "Capacity programme" in html
    history = html[html.index('id="h-history"'):]
    assert history.count("<tr>") == 3  # the head and two versions
    assert "Verified" in html and "capacity-programme/v1" in html
    assert "Not yet in the hub" in html  # an own version the hub has not logged
    env_resp = await client.get(f"/events/{rid}/envelope.json")
    assert env_resp.status == 200 and env_resp.content_type == "application/jose+json"
    env = Envelope.from_bytes(await env_resp.read())
    assert env.payload.version == 2 and env.hash == (await service.get(rid)).hash
    assert f'href="/events/{rid}/calendar.ics"' in html  # a programme's days go in a calendar too, all-day
    resp = await client.get(f"/events/{rid}/calendar.ics")
    assert resp.status == 200 and resp.content_type == "text/calendar"
    (days,) = Calendar.from_ical(await resp.read()).walk("VEVENT")
    assert days["DTSTART"].dt.isoformat() == body["start_date"] and not hasattr(days["DTSTART"].dt, "hour")


async def test_event_add_to_calendar_and_share(client: TestClient, published: dict[str, str]) -> None:
    rid = published["Sixth"]
    html, _ = await get(client, f"/events/{rid}?lang=ar")
    assert f'href="/events/{rid}/calendar.ics"' in html and "https://wa.me/?text=" in html
    resp = await client.get(f"/events/{rid}/calendar.ics")
    assert resp.status == 200 and resp.content_type == "text/calendar"
    assert "attachment" in resp.headers["Content-Disposition"]
    (event,) = Calendar.from_ical(await resp.read()).walk("VEVENT")
    assert str(event["DTSTART"].dt.isoformat()).startswith("2020-01-20T09:00:00")


async def test_unknown_and_deleted_records_are_html_404_and_410(client: TestClient,
                                                                 published: dict[str, str]) -> None:
    html, resp = await get(client, "/events/QA:nope", status=404, **{"Accept-Language": "ar"})
    assert resp.content_type == "text/html" and 'dir="rtl"' in html and "QA:nope" in html
    rid = published["Sixth"]
    tomb = await client.app[SERVICE].delete(rid)
    html, resp = await get(client, f"/events/{rid}", status=410)
    assert resp.content_type == "text/html" and tomb.hash in html


async def test_pages_are_cacheable_with_etag_and_304(client: TestClient, published: dict[str, str]) -> None:
    for path in ("/", "/events?kind=cultural-event", f"/events/{published['Sixth']}", "/members/QA", "/members"):
        _, resp = await get(client, path)
        assert resp.headers["Cache-Control"].startswith("public, max-age=")
        etag = resp.headers["ETag"]
        again = await client.get(path, headers={"If-None-Match": etag})
        assert again.status == 304 and again.headers["ETag"] == etag, path
        other = await client.get(path, headers={"If-None-Match": etag, "Accept-Language": "ar"})
        assert other.status == 200, path  # another language is another representation
    _, before = await get(client, "/events")
    await client.app[SERVICE].cancel(published["Sixth"])
    _, after = await get(client, "/events")
    assert before.headers["ETag"] != after.headers["ETag"]


async def test_sitemap_lists_record_pages_and_robots_points_at_it(client: TestClient,
                                                                  published: dict[str, str]) -> None:
    text, resp = await get(client, "/sitemap.xml")
    assert resp.content_type == "application/xml"
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    locs = [e.text or "" for e in etree.fromstring(text.encode()).findall("s:url/s:loc", ns)]
    assert {f"/events/{rid}" for rid in published.values()} <= {loc[loc.index("/events/"):]
                                                                for loc in locs if "/events/" in loc}
    robots, _ = await get(client, "/robots.txt")
    assert "Sitemap: http" in robots and "/sitemap.xml" in robots and "Disallow: /api/" in robots


async def test_portal_off_answers_404(aiohttp_client: Any, config: NodeConfig) -> None:
    client = await _client(aiohttp_client, dataclasses.replace(config, portal=False))
    for path in ("/", "/events", "/members", "/members/QA", "/sitemap.xml", "/robots.txt"):
        assert (await client.get(path)).status == 404, path
    rid = (await client.app[SERVICE].create("cultural-event", example_bodies("cultural-event")[0])).payload.record_id
    html, _ = await get(client, f"/events/{rid}")  # record pages stay: the feeds link to them
    assert 'href="/events"' not in html


async def test_branding(aiohttp_client: Any, config: NodeConfig) -> None:
    branded = dataclasses.replace(config, portal_name="Katara Exchange", portal_colour="#123456",
                                  portal_logo_url="https://cdn.katara.example/logo.svg")
    client = await _client(aiohttp_client, branded)
    html, resp = await get(client, "/")
    assert "Katara Exchange" in html and 'src="https://cdn.katara.example/logo.svg"' in html
    assert "img-src 'self' https://cdn.katara.example;" in resp.headers["Content-Security-Policy"]
    css, _ = await get(client, "/portal.css")
    assert css.startswith(":root{--brand:#123456;")
    for bad in ({"portal_colour": "red;}body{x:y"}, {"portal_logo_url": "javascript:alert(1)"},
                {"portal_logo_url": "https://x.example/a\"onerror=1"}):
        with pytest.raises(ConfigError):
            dataclasses.replace(config, **bad)


def test_feed_links_are_json_examples_unchanged() -> None:
    """The list's JSON link is the record API with the same filters (a guard on the names: ``language`` is the
    API's ``lang``)."""
    from node.partners.portal import ListQuery

    q = ListQuery.parse({"language": "ar", "origin": "qa", "from": "2020-01-01"})
    assert q.filters.lang == "ar" and q.filters.origin == "QA" and q.active() == {
        "origin": "QA", "language": "ar", "from": "2020-01-01"}
    json.dumps(q.active())
