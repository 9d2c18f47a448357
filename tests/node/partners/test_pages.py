"""Public event pages (node/partners/pages.py): schema.org Event JSON-LD and a readable, safe HTML page.

Pages are read back with ``html.parser`` (the elements, their ``lang``/``dir``, the text) and the JSON-LD
block with ``json.loads``; when ``pyld`` is installed the block is also expanded as JSON-LD (with the
schema.org context given locally: no network), which checks the language value objects are well formed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from datetime import datetime
from html.parser import HTMLParser
from typing import Any

import icalendar
import pytest
import recurring_ical_events
from aiohttp.test_utils import TestClient

from node.app import create_app
from node.appkeys import CONFIG, SERVICE
from node.config import NodeConfig
from node.partners.pages import direction, event_schedule
from node.records.service import NodeService
from tests.support.factories import example_bodies, example_paths

PROBLEM = "application/problem+json"
SCHEMA = "https://schema.org/"


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Element | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element] = []
        self.text = ""

    def all_text(self) -> str:
        return self.text + "".join(c.all_text() for c in self.children)

    def iter(self) -> list[Element]:
        return [self] + [e for c in self.children for e in c.iter()]

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        return [e for e in self.iter() if e.tag == tag and all(e.attrs.get(k) == v for k, v in attrs.items())]

    def ancestors(self) -> list[Element]:
        out, e = [], self.parent
        while e is not None:
            out.append(e)
            e = e.parent
        return out


VOID = {"meta", "link", "br", "img", "hr", "input"}


class Tree(HTMLParser):
    """A small DOM: enough to find elements, their attributes, text and ancestors."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {}, None)
        self.cur = self.root
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        e = Element(tag, dict(attrs), self.cur)
        self.cur.children.append(e)
        if tag not in VOID:
            self.cur = e

    def handle_endtag(self, tag: str) -> None:
        e: Element | None = self.cur
        while e is not None and e.tag != tag:
            e = e.parent
        if e is not None and e.parent is not None:
            self.cur = e.parent

    def handle_data(self, data: str) -> None:
        # text after a child goes to the parent's text too: order is not needed by these tests
        self.cur.text += data

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        return self.root.find_all(tag, **attrs)


def example(name: str) -> dict[str, Any]:
    (path,) = [p for p in example_paths("cultural-event") if name in p.name]
    return dict(json.loads(path.read_text(encoding="utf-8")))


def jsonld_of(tree: Tree) -> dict[str, Any]:
    (script,) = tree.find_all("script", type="application/ld+json")
    return dict(json.loads(script.text))


def values(lang_values: list[dict[str, str]]) -> dict[str, str]:
    return {v["@language"]: v["@value"] for v in lang_values}


def texts_of(doc: dict[str, Any], key: str = "name", lang: str = "en") -> dict[str, str]:
    """A text's languages in the JSON-LD: the page's one (a plain string) and the others (``alternateName``)."""
    return {lang: doc[key], **values(doc.get("alternateName", []) if key == "name" else [])}


# Google Search Central, "Event (Event) structured data"
# (https://developers.google.com/search/docs/appearance/structured-data/event): required and recommended properties.
GOOGLE_REQUIRED = ("name", "startDate", "location")
GOOGLE_REQUIRED_LOCATION = {"Place": ("address",), "VirtualLocation": ("url",)}
GOOGLE_RECOMMENDED = ("description", "endDate", "eventAttendanceMode", "eventStatus", "image", "offers", "organizer",
                      "performer", "previousStartDate")
GOOGLE_RECOMMENDED_NESTED = {"location": ("name",), "offers": ("availability", "price", "priceCurrency", "url",
                                                                "validFrom"),
                             "organizer": ("name", "url"), "performer": ("name",)}
# What no v1 record can say (neither schema has performers, prices, availability or a sale start): never invented.
NOT_IN_RECORDS = {"performer", "offers.availability", "offers.price", "offers.priceCurrency", "offers.validFrom"}


def google_gaps(doc: dict[str, Any], body: dict[str, Any]) -> list[str]:
    """The Google properties the JSON-LD lacks although the record has what they say."""
    has = {"image": bool(body.get("images")), "offers": bool(body.get("registration") or body.get("application")),
           "previousStartDate": body.get("status") in ("rescheduled", "postponed") and "previous_start" in body,
           "description": bool(body.get("description")), "endDate": bool(body.get("end") or body.get("end_date"))}
    gaps = [p for p in GOOGLE_REQUIRED if not doc.get(p)]
    locations = doc.get("location") if isinstance(doc.get("location"), list) else [doc.get("location") or {}]
    for place in locations:
        gaps += [f"location.{p}" for p in GOOGLE_REQUIRED_LOCATION.get(place.get("@type"), ("@type",))
                 if not place.get(p)]
        if place.get("@type") == "Place":
            gaps += [f"location.{p}" for p in GOOGLE_RECOMMENDED_NESTED["location"] if not place.get(p)]
    gaps += [p for p in GOOGLE_RECOMMENDED if p not in NOT_IN_RECORDS and has.get(p, True) and not doc.get(p)]
    for key in ("offers", "organizer"):
        for item in doc.get(key) if isinstance(doc.get(key), list) else [doc[key]] if key in doc else []:
            sources = body.get("organizers") or [body.get("provider")] if key == "organizer" else [{"url": 1}]
            source = sources[0] or {}
            gaps += [f"{key}.{p}" for p in GOOGLE_RECOMMENDED_NESTED[key]
                     if f"{key}.{p}" not in NOT_IN_RECORDS and not item.get(p) and (p != "url" or source.get("url"))]
    return gaps


@pytest.fixture
async def client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    """QA's node (create_app registers the page routes)."""
    return await aiohttp_client(create_app(config, sync=False))


@pytest.fixture
def service(client: TestClient) -> NodeService:
    return client.app[SERVICE]


async def publish(service: NodeService, body: dict[str, Any], kind: str = "cultural-event") -> str:
    return (await service.create(kind, body)).payload.record_id


async def page(client: TestClient, record_id: str, status: int = 200, **params: str) -> tuple[Tree, Any]:
    resp = await client.get(f"/events/{record_id}", params=params)
    text = await resp.text()
    assert resp.status == status, text
    return Tree(text), resp


class TestJsonLd:
    @pytest.mark.parametrize("body", example_bodies("cultural-event"), ids=lambda b: b["title"].get("en", "")[:30])
    async def test_every_example_has_the_required_event_properties(self, client: TestClient, service: NodeService,
                                                                   body: dict[str, Any]) -> None:
        """Each valid example is an Event with name, startDate, location, status, attendance mode, organizer."""
        rid = await publish(service, body)
        doc = jsonld_of((await page(client, rid))[0])
        assert doc["@context"] == "https://schema.org" and doc["@type"] == "Event"
        assert texts_of(doc) == body["title"] and doc["description"] == body["description"]["en"]
        assert doc["startDate"] == body["start"] and doc.get("endDate") == body.get("end")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)", doc["startDate"])
        assert doc["location"] and doc["eventStatus"].startswith(SCHEMA)
        assert doc["eventAttendanceMode"].startswith(SCHEMA)
        assert [texts_of(o) for o in doc["organizer"]] == [o["name"] for o in body["organizers"]]
        assert all(o["@type"] == "Organization" for o in doc["organizer"])
        assert doc["license"] == body["rights"]
        assert doc["identifier"] == rid and doc["url"].endswith(f"/events/{rid}")
        assert doc["inLanguage"] == body.get("languages", list(body["title"]))
        assert google_gaps(doc, body) == []

    @pytest.mark.parametrize("body", example_bodies("capacity-programme"), ids=lambda b: b["title"]["en"][:30])
    async def test_every_programme_is_an_education_event(self, client: TestClient, service: NodeService,
                                                         body: dict[str, Any]) -> None:
        """A capacity programme is a schema.org EducationEvent (an Event): its days, format as attendance mode,
        provider as organizer, application as offer, seats as capacity; Google's properties as for events."""
        doc = jsonld_of((await page(client, await publish(service, body, "capacity-programme"), lang="en"))[0])
        assert doc["@type"] == "EducationEvent" and texts_of(doc) == body["title"]
        assert (doc["startDate"], doc.get("endDate")) == (body["start_date"], body.get("end_date"))
        mode = {"in-person": "Offline", "online": "Online", "hybrid": "Mixed"}[body["format"]]
        assert doc["eventAttendanceMode"] == f"{SCHEMA}{mode}EventAttendanceMode"
        assert texts_of(doc["organizer"][0]) == body["provider"]["name"]
        if "application" in body:
            assert doc["offers"]["url"] == body["application"]["url"]
        assert doc.get("maximumAttendeeCapacity") == body.get("seats")
        assert google_gaps(doc, body) == []

    async def test_one_name_per_page_in_its_language(self, client: TestClient, service: NodeService) -> None:
        """name, description, place and organiser names are one string in the page's language (?lang= for the
        texts, else the reader's); the other languages are alternateName values with their language."""
        body = example("weekly")
        rid = await publish(service, body)
        for params, lang in (({"lang": "hu"}, "hu"), ({"lang": "ar"}, "ar"), ({}, "en")):
            doc = jsonld_of((await page(client, rid, **params))[0])
            assert doc["name"] == body["title"][lang] and doc["description"] == body["description"][lang]
            assert texts_of(doc, lang=lang) == body["title"]
            assert doc["location"]["name"] == body["venue"]["name"][lang]
            assert doc["location"]["address"]["streetAddress"] == body["venue"]["address"][lang]
            assert doc["organizer"][0]["name"] == body["organizers"][0]["name"][lang]

    async def test_recurring_event_has_its_schedule(self, client: TestClient, service: NodeService) -> None:
        """A weekly event's eventSchedule says what its RRULE says, and agrees with the occurrences a calendar
        application expands from the same record's iCalendar (recurring_ical_events)."""
        body = example("weekly")
        rid = await publish(service, body)
        schedule = jsonld_of((await page(client, rid))[0])["eventSchedule"]
        assert schedule == {"@type": "Schedule", "repeatFrequency": "P1W", "byDay": [SCHEMA + "Thursday"],
                            "repeatCount": 6, "startDate": "2020-02-06", "startTime": "19:00:00",
                            "endTime": "21:30:00", "duration": "PT2H30M", "scheduleTimezone": "Europe/Budapest"}
        resp = await client.get(f"/events/{rid}/calendar.ics")
        cal = icalendar.Calendar.from_ical(await resp.read())
        occurrences = recurring_ical_events.of(cal).between(datetime(2020, 1, 1), datetime(2021, 1, 1))
        starts = [o["DTSTART"].dt for o in occurrences]
        assert len(starts) == schedule["repeatCount"]
        assert {s.strftime("%A") for s in starts} == {"Thursday"} and starts[0].date().isoformat() == "2020-02-06"
        assert {s.time().isoformat() for s in starts} == {schedule["startTime"]}
        assert {str(s.tzinfo) for s in starts} == {schedule["scheduleTimezone"]}

    async def test_calendar_download_etag_names_its_rendering(self, client: TestClient, service: NodeService) -> None:
        """The one-event .ics in another text language is another rendering: another ETag (a cache keeps both)."""
        rid = await publish(service, example("weekly"))
        en, ar = [await client.get(f"/events/{rid}/calendar.ics", params=params) for params in ({}, {"lang": "ar"})]
        assert await en.read() != await ar.read() and en.headers["ETag"] != ar.headers["ETag"]
        assert "ORGANIZER" not in (await en.text())  # the record has no contact e-mail

    @pytest.mark.parametrize(("rule", "expected"), [
        ("FREQ=MONTHLY;INTERVAL=2;BYDAY=1MO;UNTIL=20201231T225959Z",
         {"repeatFrequency": "P2M", "byDay": ["1MO"], "endDate": "2020-12-31"}),
        ("FREQ=DAILY;COUNT=3", {"repeatFrequency": "P1D", "repeatCount": 3}),
        ("FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=21", {"repeatFrequency": "P1Y", "byMonth": [3], "byMonthDay": [21]}),
    ])
    def test_schedule_of_other_rules(self, rule: str, expected: dict[str, Any]) -> None:
        """Interval, ordinal days (iCalendar's form, which schema.org's byDay allows), months, month days, UNTIL as
        the last local day."""
        schedule = event_schedule({"recurrence": rule, "start": "2020-03-02T19:00:00+01:00",
                                   "timezone": "Europe/Budapest"})
        assert schedule is not None and {k: schedule[k] for k in expected} == expected

    async def test_registration_is_the_offer(self, client: TestClient, service: NodeService) -> None:
        """An event's registration is its Offer: the page to register on and the deadline as validThrough."""
        body = example("youth")
        doc = jsonld_of((await page(client, await publish(service, body)))[0])
        offer = {"@type": "Offer", "url": body["registration"]["url"]}
        if "deadline" in body["registration"]:
            offer["validThrough"] = body["registration"]["deadline"]
        assert doc["offers"] == offer

    async def test_cancelled_event_is_event_cancelled(self, client: TestClient, service: NodeService) -> None:
        """A cancelled event's eventStatus is EventCancelled."""
        doc = jsonld_of((await page(client, await publish(service, example("cancelled"))))[0])
        assert doc["eventStatus"] == SCHEMA + "EventCancelled"

    async def test_rescheduled_event_has_previous_start_date(self, client: TestClient, service: NodeService) -> None:
        """A rescheduled event is EventRescheduled with previousStartDate from previous_start."""
        body = example("weekly")
        assert body["status"] == "rescheduled"
        doc = jsonld_of((await page(client, await publish(service, body)))[0])
        assert doc["eventStatus"] == SCHEMA + "EventRescheduled"
        assert doc["previousStartDate"] == body["previous_start"]

    async def test_postponed_event_is_event_postponed(self, client: TestClient, service: NodeService) -> None:
        """A postponed event is EventPostponed."""
        doc = jsonld_of((await page(client, await publish(service, example("postponed"))))[0])
        assert doc["eventStatus"] == SCHEMA + "EventPostponed"

    async def test_online_event_has_virtual_location(self, client: TestClient, service: NodeService) -> None:
        """An online event (no venue) is at a VirtualLocation, attended online, even without attendance_mode."""
        body = example("conference")
        for key in ("venue", "attendance_mode"):
            body.pop(key, None)
        body.update(online_url="https://ipdn.network/live/conference", status="moved-online")
        doc = jsonld_of((await page(client, await publish(service, body)))[0])
        assert doc["location"] == {"@type": "VirtualLocation", "url": "https://ipdn.network/live/conference"}
        assert doc["eventAttendanceMode"] == SCHEMA + "OnlineEventAttendanceMode"
        assert doc["eventStatus"] == SCHEMA + "EventMovedOnline"

    async def test_mixed_event_has_place_and_virtual_location(self, client: TestClient,
                                                              service: NodeService) -> None:
        """A mixed event has a Place (PostalAddress with locality and country, geo) and a VirtualLocation."""
        body = example("website-launch")
        doc = jsonld_of((await page(client, await publish(service, body)))[0])
        place, virtual = doc["location"]
        assert doc["eventAttendanceMode"] == SCHEMA + "MixedEventAttendanceMode"
        assert place["@type"] == "Place" and texts_of(place) == body["venue"]["name"]
        assert place["address"]["@type"] == "PostalAddress"
        assert place["address"]["addressLocality"] == body["venue"]["city"]["en"]
        assert place["address"]["streetAddress"] == body["venue"]["address"]["en"]
        assert place["address"]["addressCountry"] == "QA"
        assert place["geo"] == {"@type": "GeoCoordinates", "latitude": 25.3601, "longitude": 51.5257}
        assert virtual == {"@type": "VirtualLocation", "url": body["online_url"]}
        assert doc["image"][0]["contentUrl"] == body["images"][0]["url"]
        assert doc["image"][0]["caption"] == body["images"][0]["alt"]["en"]
        assert doc["endDate"] == body["end"]

    @pytest.mark.parametrize(("venue", "online", "mode"), [(True, False, "Offline"), (False, True, "Online"),
                                                           (True, True, "Mixed")])
    async def test_attendance_mode_inferred(self, client: TestClient, service: NodeService, venue: bool,
                                            online: bool, mode: str) -> None:
        """Without attendance_mode: a venue is offline, an online URL online, both mixed."""
        body = example("website-launch")
        del body["attendance_mode"]
        if not venue:
            del body["venue"]
        if not online:
            del body["online_url"]
        doc = jsonld_of((await page(client, await publish(service, body)))[0])
        assert doc["eventAttendanceMode"] == f"{SCHEMA}{mode}EventAttendanceMode"

    async def test_expands_as_json_ld(self, client: TestClient, service: NodeService) -> None:
        """The block expands as JSON-LD (pyld, schema.org context given locally): one name as a plain string, the
        other languages kept per value in alternateName."""
        jsonld = pytest.importorskip("pyld.jsonld")

        def loader(url: str, options: Any = None) -> dict[str, Any]:
            assert url.rstrip("/") in ("https://schema.org", "http://schema.org")
            return {"contextUrl": None, "documentUrl": url,
                    "document": {"@context": {"@vocab": SCHEMA, "url": {"@id": SCHEMA + "url", "@type": "@id"}}}}

        body = example("website-launch")
        doc = jsonld_of((await page(client, await publish(service, body)))[0])
        (event,) = jsonld.expand(doc, {"documentLoader": loader})
        assert event["@type"] == [SCHEMA + "Event"]
        assert event[SCHEMA + "name"] == [{"@value": body["title"]["en"]}]
        assert [(v["@language"], v["@value"]) for v in event[SCHEMA + "alternateName"]] == [("ar", body["title"]["ar"])]
        assert event[SCHEMA + "eventStatus"] == [{"@value": SCHEMA + "EventScheduled"}]
        # Compacted again with schema.org as the default vocabulary, the document is the one served.
        again = jsonld.compact(event, {"@vocab": SCHEMA}, {"documentLoader": loader})
        assert again["name"] == doc["name"] and again["endDate"] == doc["endDate"]


class TestHtml:
    async def test_arabic_section_is_rtl(self, client: TestClient, service: NodeService) -> None:
        """Each language has a section with its lang and dir: Arabic rtl, English ltr; the page's own words and
        html[lang][dir] follow the reader (English by default)."""
        body = example("website-launch")
        tree, _ = await page(client, await publish(service, body))
        (html,) = tree.find_all("html")
        assert html.attrs == {"lang": "en", "dir": "ltr"}
        (ar,) = tree.find_all("section", lang="ar")
        (en,) = tree.find_all("section", lang="en", **{"class": "text"})
        assert ar.attrs["dir"] == "rtl" and en.attrs["dir"] == "ltr"
        assert body["title"]["ar"] in ar.all_text() and body["description"]["en"] in en.all_text()

    async def test_lang_query_puts_that_language_first(self, client: TestClient, service: NodeService) -> None:
        """?lang=en makes English the page's language and first section."""
        tree, _ = await page(client, await publish(service, example("website-launch")), lang="en")
        assert tree.find_all("html")[0].attrs == {"lang": "en", "dir": "ltr"}
        assert tree.find_all("section")[0].attrs["lang"] == "en"

    async def test_arabic_reader_gets_an_arabic_page(self, client: TestClient, service: NodeService) -> None:
        """?lang=ar (or Accept-Language: ar) gives a page in Arabic, right to left: its banner, labels and footer
        from the catalogue, the start in words in the event's own zone named (the machine value kept in
        <time datetime>), the venue's parts joined by the Arabic comma, each part isolated."""
        body = example("cancelled")
        rid = await publish(service, body)
        for params, headers in (({"lang": "ar"}, {}), ({}, {"Accept-Language": "ar-QA,ar;q=0.9,en;q=0.5"})):
            resp = await client.get(f"/events/{rid}", params=params, headers=headers)
            tree = Tree(await resp.text())
            assert tree.find_all("html")[0].attrs == {"lang": "ar", "dir": "rtl"}
            # Vary names Accept-Language when the language came from it (?lang= fixes it otherwise)
            assert ("Accept-Language" in resp.headers["Vary"]) == (not params)
        (notice,) = tree.find_all("p", role="status")
        assert "ملغاة" in notice.all_text() and "cancelled" not in notice.all_text().lower()
        facts = tree.find_all("section", **{"class": "facts"})[0]
        assert "التفاصيل" in facts.all_text() and "Details" not in facts.all_text()
        (start, *_) = facts.find_all("time")
        assert start.attrs["datetime"] == body["start"]
        assert "توقيت" in start.all_text() and "T" not in start.all_text()
        venue = [dd for dd in facts.find_all("dd") if dd.find_all("bdi") and "،" in dd.all_text()]
        assert venue and all(b.attrs.get("dir") for b in venue[0].find_all("bdi"))
        footer = tree.find_all("section", **{"class": "verify"})[0]
        assert "السجل" in footer.all_text() and footer.find_all("code")[0].attrs.get("dir") == "ltr"

    @pytest.mark.parametrize(("tag", "dir_"), [("ar", "rtl"), ("fa", "rtl"), ("he", "rtl"), ("ur", "rtl"),
                                               ("ar-QA", "rtl"), ("en", "ltr"), ("ko", "ltr"), ("tr", "ltr"),
                                               ("az-Arab", "rtl"), ("ur-Latn", "ltr"), ("zh-Hant", "ltr")])
    def test_direction_of_language_tags(self, tag: str, dir_: str) -> None:
        """Right-to-left languages (and Arabic or Hebrew scripts) are rtl, others ltr; a script subtag decides."""
        assert direction(tag) == dir_

    async def test_verification_hash_and_link(self, client: TestClient, service: NodeService) -> None:
        """The page shows the envelope hash and links to the record's API item, which has that envelope."""
        rid = await publish(service, example("general-assembly"))
        tree, _ = await page(client, rid)
        rec = await service.get(rid)
        (code,) = tree.find_all("code", **{"class": "hash"})
        assert code.all_text() == rec.hash
        (link,) = tree.find_all("a", **{"class": "verify-link"})
        href = link.attrs["href"]
        assert href == client.app[CONFIG].public_base + "/api/v1/records/" + rid.replace(":", "%3A")
        item = await (await client.get(href.removeprefix(client.app[CONFIG].public_base))).json()
        assert item["hash"] == rec.hash

    async def test_cancelled_event_clearly_marked(self, client: TestClient, service: NodeService) -> None:
        """A cancelled event has a status notice and 'Cancelled' in its title."""
        tree, _ = await page(client, await publish(service, example("cancelled")))
        (notice,) = tree.find_all("p", role="status")
        assert "cancelled" in notice.attrs["class"] and "Cancelled" in notice.all_text()
        assert "Cancelled" in tree.find_all("title")[0].all_text()

    async def test_security_headers(self, client: TestClient, service: NodeService) -> None:
        """A strict CSP (no script, styles only from the portal's own stylesheet, no inline style), nosniff, HTML in
        UTF-8."""
        tree, resp = await page(client, await publish(service, example("general-assembly")))
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.content_type == "text/html" and resp.charset == "utf-8"
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe" not in csp
        assert "style-src 'self';" in csp and not tree.find_all("style")
        assert [link.attrs["href"] for link in tree.find_all("link", rel="stylesheet")] == ["/portal.css"]

    async def test_etag_answers_304(self, client: TestClient, service: NodeService) -> None:
        """An If-None-Match with the page's ETag is answered 304, with the same security headers."""
        rid = await publish(service, example("general-assembly"))
        _, resp = await page(client, rid)
        again = await client.get(f"/events/{rid}", headers={"If-None-Match": resp.headers["ETag"]})
        assert again.status == 304 and again.headers["X-Content-Type-Options"] == "nosniff"


class TestAttacks:
    async def test_script_in_title_rendered_as_text(self, client: TestClient, service: NodeService) -> None:
        """A title <script>alert(1)</script> is text in the page: no script element but the JSON-LD."""
        body = example("general-assembly")
        body["title"] = {"en": "<script>alert(1)</script>", "ar": "<img src=x onerror=alert(1)>"}
        tree, resp = await page(client, await publish(service, body))
        raw = await resp.text()
        assert "<script>alert(1)" not in raw and "<img src=x" not in raw
        assert [s.attrs.get("type") for s in tree.find_all("script")] == ["application/ld+json"]
        assert not tree.find_all("img")
        assert "<script>alert(1)</script>" in tree.find_all("section", lang="en")[0].all_text()
        assert texts_of(jsonld_of(tree)) == body["title"]

    async def test_script_end_tag_in_description_cannot_leave_json_ld(self, client: TestClient,
                                                                      service: NodeService) -> None:
        """</script><script>... inside the JSON-LD stays data: escaped, and json.loads gives it back intact."""
        body = example("general-assembly")
        evil = "</script><script>alert(1)</script><!-- & -->"
        body["description"] = {"en": evil}
        tree, resp = await page(client, await publish(service, body))
        raw = await resp.text()
        block = raw.split('<script type="application/ld+json">', 1)[1].split("</script>", 1)[0]
        assert "<" not in block and ">" not in block
        assert jsonld_of(tree)["description"] == evil
        assert len(tree.find_all("script")) == 1

    async def test_bidi_override_in_title_isolated(self, client: TestClient, service: NodeService) -> None:
        """A right-to-left override in a title stays inside it: <bdi> in the body, FSI...PDI in <title>."""
        body = example("general-assembly")
        body["title"] = {"en": "Concert \u202egnp.exe"}
        tree, _ = await page(client, await publish(service, body))
        holders = [e for e in tree.root.iter() if "\u202e" in e.text]
        assert holders and all(e.tag in ("bdi", "title", "script") for e in holders)
        (title,) = tree.find_all("title")
        assert title.text.startswith("\u2068") and title.text.endswith("\u2069")
        hash_code = tree.find_all("code", **{"class": "hash"})[0]
        assert not any(a.tag == "bdi" for a in hash_code.ancestors())

    async def test_quote_in_title_cannot_break_attribute(self, client: TestClient, service: NodeService) -> None:
        """Quotes in an organiser's name cannot add attributes to its link."""
        body = example("general-assembly")
        body["organizers"] = [{"name": {"en": '" onmouseover="alert(1)'}, "url": "https://example.org/a\"b"}]
        tree, _ = await page(client, await publish(service, body), lang="en")
        links = [a for a in tree.find_all("a") if a.attrs.get("href", "").startswith("https://example.org")]
        assert links and all(set(a.attrs) <= {"href", "rel"} for a in links)


class TestErrors:
    async def test_unknown_id_is_404_page(self, client: TestClient) -> None:
        """An unknown id is a 404 HTML page (in the reader's language) naming the id."""
        resp = await client.get("/events/QA:0000", headers={"Accept-Language": "ar"})
        text = await resp.text()
        assert resp.status == 404 and resp.content_type == "text/html", text
        assert 'lang="ar" dir="rtl"' in text and "QA:0000" in text
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]

    async def test_programme_has_its_page(self, client: TestClient, service: NodeService) -> None:
        """A capacity programme has a record page too (its JSON-LD an EducationEvent)."""
        body = example_bodies("capacity-programme")[0]
        rid = await publish(service, body, kind="capacity-programme")
        tree, _ = await page(client, rid, lang="en")
        assert body["title"]["en"] in tree.root.all_text() and jsonld_of(tree)["@type"] == "EducationEvent"
        assert "Capacity programme" in tree.root.all_text()

    async def test_tombstone_is_410_page_with_id(self, client: TestClient, service: NodeService) -> None:
        """A deleted event is a 410 HTML page naming the id and the tombstone's hash, no JSON-LD."""
        rid = await publish(service, example("general-assembly"))
        tombstone = await service.delete(rid)
        tree, resp = await page(client, rid, status=410)
        assert resp.headers["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" in resp.headers
        text = tree.root.all_text()
        assert rid in text and tombstone.hash in text and "Withdrawn" in text
        assert not tree.find_all("script")

    async def test_update_changes_page(self, client: TestClient, service: NodeService) -> None:
        """An update (here a cancellation) shows on the page: the ETag changes with the envelope."""
        rid = await publish(service, example("general-assembly"))
        _, first = await page(client, rid)
        await service.cancel(rid)
        tree, second = await page(client, rid)
        assert first.headers["ETag"] != second.headers["ETag"]
        assert jsonld_of(tree)["eventStatus"] == SCHEMA + "EventCancelled"


def test_examples_unchanged_by_rendering() -> None:
    """Rendering does not mutate bodies (copies compared)."""
    from node.partners.pages import event_jsonld
    from node.store.records import StoredRecord

    rec = StoredRecord("QA:x", "QA", "cultural-event", 1, "put", "completed", None,
                       json.dumps(example("website-launch")), "h", 1, "t", None, b"")  # type: ignore[arg-type]
    before = copy.deepcopy(rec.body)  # decoded once, then the same object on every use
    event_jsonld(rec, "https://n/events/QA:x", "https://n/api/v1/records/QA%3Ax")
    assert rec.body == before


async def test_host_header_cannot_poison_cached_links(aiohttp_client: Any, config: NodeConfig) -> None:
    """A forged ``Host: evil.example`` is answered, but every absolute link in the publicly cached page comes from
    the node's ``public_url`` (or its default base URL), never from the request (docs/THREAT-MODEL.md)."""
    for public_url, base in (("https://ipdn.qa.example/", "https://ipdn.qa.example"), ("", config.public_base)):
        client = await aiohttp_client(create_app(dataclasses.replace(config, public_url=public_url), sync=False))
        record_id = await publish(client.app[SERVICE], example_bodies("cultural-event")[0])
        resp = await client.get(f"/events/{record_id}", headers={"Host": "evil.example", "X-Forwarded-Host":
                                                                 "evil.example"})
        text = await resp.text()
        assert resp.status == 200 and "public" in resp.headers["Cache-Control"]
        assert "evil.example" not in text and not any("evil.example" in v for v in resp.headers.values())
        assert f"{base}/events/" in text
        await client.close()
