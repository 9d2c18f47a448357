"""Partner feeds (node/partners/feeds.py): iCalendar of events, JSON Feed 1.1 and Atom of recent records.

Every format is read back with independent parsers: the iCalendar with ``icalendar`` and ``vobject``
(and its recurrences expanded with ``recurring-ical-events``), the Atom feed with ``feedparser``, the
JSON Feed against the JSON Feed 1.1 rules (a JSON Schema below; feedparser 6 reads no JSON Feed).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import feedparser
import icalendar
import jsonschema
import pytest
import recurring_ical_events
import vobject
from aiohttp.test_utils import TestClient
from vobject.icalendar import TimezoneComponent

import node.partners.feeds
from federation.protocol.envelope import Envelope
from federation.protocol.registry import SignedRegistry
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import verify_envelope
from node.app import create_app
from node.appkeys import CONFIG, SERVICE
from node.config import NodeConfig
from node.partners.feeds import (
    ATOM_PATH,
    CACHE_CONTROL,
    ENVELOPE_REL,
    ICS_PATH,
    JSON_FEED_PATH,
    RenderCache,
    atom_id,
    event_uid,
    pick,
    register_routes,
)
from node.records.service import NodeService
from tests.support.factories import Member, example_bodies, example_paths

PROBLEM = "application/problem+json"
RIGHTS = "https://creativecommons.org/licenses/by/4.0/"


def example(kind: str, name: str) -> dict[str, Any]:
    """The valid example of ``kind`` whose file name contains ``name``."""
    (path,) = [p for p in example_paths(kind) if name in p.name]
    return dict(json.loads(path.read_text(encoding="utf-8")))


@pytest.fixture
async def client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    """QA's node (create_app registers the feed routes)."""
    return await aiohttp_client(create_app(config, sync=False))


@pytest.fixture
def service(client: TestClient) -> NodeService:
    """The node's service, with a clock one second further at each call: update order is unambiguous."""
    svc = client.app[SERVICE]
    start, ticks = datetime.now(UTC), itertools.count()
    svc.clock = lambda: start + timedelta(seconds=next(ticks))
    return svc


async def publish(service: NodeService, body: dict[str, Any], kind: str = "cultural-event") -> Envelope:
    return await service.create(kind, body)


async def get_text(client: TestClient, path: str, **params: str) -> str:
    resp = await client.get(path, params=params)
    assert resp.status == 200, await resp.text()
    return await resp.text()


async def calendar(client: TestClient, **params: str) -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(await get_text(client, ICS_PATH, **params))


def vevents(cal: icalendar.Calendar) -> dict[str, icalendar.Event]:
    """The calendar's events by UID."""
    return {str(ev["UID"]): ev for ev in cal.walk("VEVENT")}


async def json_feed(client: TestClient, **params: str) -> dict[str, Any]:
    return dict(json.loads(await get_text(client, JSON_FEED_PATH, **params)))


async def atom(client: TestClient, **params: str) -> Any:
    parsed = feedparser.parse(await get_text(client, ATOM_PATH, **params))
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed


def verifies(envelope: Any, registry: SignedRegistry) -> Envelope:
    """The envelope as a partner checks it: signature, key, schema (PROTOCOL.md §5)."""
    result = verify_envelope(json.dumps(envelope).encode(), keys=registry.registry.member_keys().get,
                             schemas=default_schemas(), now=datetime.now(UTC) + timedelta(minutes=1))
    assert result.ok and result.envelope is not None, result.failures
    return result.envelope


# The JSON Feed 1.1 rules (https://jsonfeed.org/version/1.1) that a reader relies on, as a JSON Schema:
# the version URL, a title, items with string ids and content, RFC 3339 dates, and extensions only
# under names that start with an underscore.
RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
AUTHOR = {"type": "object", "properties": {"name": {"type": "string"}, "url": {"type": "string"},
                                           "avatar": {"type": "string"}},
          "anyOf": [{"required": ["name"]}, {"required": ["url"]}], "additionalProperties": False,
          "patternProperties": {"^_": {}}}
JSON_FEED_1_1: dict[str, Any] = {
    "type": "object",
    "required": ["version", "title", "items"],
    "properties": {
        "version": {"const": "https://jsonfeed.org/version/1.1"},
        "title": {"type": "string", "minLength": 1},
        **{k: {"type": "string", "pattern": "^https?://"} for k in ("home_page_url", "feed_url", "next_url",
                                                                    "icon", "favicon")},
        "description": {"type": "string"}, "user_comment": {"type": "string"}, "language": {"type": "string"},
        "expired": {"type": "boolean"}, "authors": {"type": "array", "items": AUTHOR},
        "items": {"type": "array", "items": {
            "type": "object",
            "required": ["id"],
            "anyOf": [{"required": ["content_text"]}, {"required": ["content_html"]}],
            "properties": {
                "id": {"type": "string", "minLength": 1},
                **{k: {"type": "string", "pattern": "^https?://"} for k in ("url", "external_url", "image",
                                                                            "banner_image")},
                **{k: {"type": "string"} for k in ("title", "content_text", "content_html", "summary", "language")},
                **{k: {"type": "string", "pattern": RFC3339} for k in ("date_published", "date_modified")},
                "tags": {"type": "array", "items": {"type": "string"}},
                "authors": {"type": "array", "items": AUTHOR},
                "attachments": {"type": "array"},
            },
            "additionalProperties": False,
            "patternProperties": {"^_": {"type": "object"}},
        }},
    },
    "additionalProperties": False,
    "patternProperties": {"^_": {"type": "object"}},
}


class TestCalendar:
    async def test_one_vevent_per_event_with_stable_uid(self, client: TestClient, service: NodeService) -> None:
        """Every cultural event is one VEVENT (capacity programmes are not events); UID is the URL-safe
        record id at ipdn.network, SEQUENCE the version, X-IPDN-ENVELOPE-HASH the envelope hash."""
        envs = [await publish(service, body) for body in example_bodies("cultural-event")]
        await publish(service, example_bodies("capacity-programme")[0], "capacity-programme")
        events = vevents(await calendar(client))
        assert set(events) == {event_uid(e.payload.record_id) for e in envs}
        for env in envs:
            ev = events[event_uid(env.payload.record_id)]
            uid = str(ev["UID"])
            assert uid == env.payload.record_id.replace(":", "-", 1) + "@ipdn.network"
            assert uid[:2] + ":" + uid[3:uid.rindex("@")] == env.payload.record_id
            assert ev["SEQUENCE"] == 1 and str(ev["X-IPDN-ENVELOPE-HASH"]) == env.hash
            assert str(ev["X-IPDN-RECORD-ID"]) == env.payload.record_id
            issued = datetime.fromisoformat(env.payload.issued_at)
            assert ev.decoded("DTSTAMP") == ev.decoded("LAST-MODIFIED") == issued.replace(microsecond=0)

    async def test_served_as_calendar_and_cacheable(self, client: TestClient, service: NodeService,
                                                    event: dict[str, Any]) -> None:
        """text/calendar in UTF-8, public for five minutes, with an ETag; no token needed; HEAD too."""
        await publish(service, event)
        resp = await client.get(ICS_PATH)
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/calendar; charset=utf-8"
        assert resp.headers["Cache-Control"] == CACHE_CONTROL == "public, max-age=300" and resp.headers["ETag"]
        text = await resp.text()
        assert text.startswith("BEGIN:VCALENDAR\r\n") and "\r\nVERSION:2.0\r\n" in text
        assert "PRODID:-//IPDN Exchange//member node QA//EN" in text
        head = await client.head(ICS_PATH)
        assert head.status == 200 and head.headers["ETag"] == resp.headers["ETag"]

    async def test_times_in_the_records_zone_with_vtimezone(self, client: TestClient, service: NodeService) -> None:
        """DTSTART/DTEND carry TZID = the record's IANA zone at the right local time, and each zone used has
        a VTIMEZONE block (checked by vobject, which builds the zones from those blocks alone)."""
        envs = {name: await publish(service, example("cultural-event", name))
                for name in ("01-general", "05-photography", "07-hungarian")}
        text = await get_text(client, ICS_PATH)
        assert "DTSTART;TZID=Asia/Qatar:20200120T090000\r\n" in text
        assert "DTSTART;TZID=Europe/Istanbul:20200415T100000\r\n" in text
        assert "DTSTART;TZID=Europe/Budapest:20200206T190000\r\n" in text
        cal = icalendar.Calendar.from_ical(text)
        assert {str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")} == {"Asia/Qatar", "Europe/Istanbul",
                                                                     "Europe/Budapest"}
        assert cal.get_missing_tzids() == set()
        parsed = {ev.uid.value: ev for ev in vobject.readOne(text).vevent_list}
        for name, offset in (("01-general", 3), ("05-photography", 3), ("07-hungarian", 1)):
            env = envs[name]
            ev = parsed[event_uid(env.payload.record_id)]
            body = example("cultural-event", name)
            assert TimezoneComponent.pickTzid(ev.dtstart.value.tzinfo) == body["timezone"]
            assert ev.dtstart.value.utcoffset() == timedelta(hours=offset)
            assert ev.dtstart.value == datetime.fromisoformat(body["start"])
            assert ev.dtend.value == datetime.fromisoformat(body["end"])

    async def test_instant_kept_when_offset_differs_from_zone(self, client: TestClient, service: NodeService,
                                                              event: dict[str, Any]) -> None:
        """A start written in UTC (or another offset) is shown at the same instant in the record's zone."""
        body = {**event, "start": "2020-01-20T06:00:00Z", "end": "2020-01-22T15:00:00.250Z"}
        await publish(service, body)
        text = await get_text(client, ICS_PATH)
        assert "DTSTART;TZID=Asia/Qatar:20200120T090000\r\n" in text
        assert "DTEND;TZID=Asia/Qatar:20200122T180000\r\n" in text

    async def test_utc_zone_needs_no_vtimezone(self, client: TestClient, service: NodeService,
                                               event: dict[str, Any]) -> None:
        """An event in the UTC zone is written in UTC (Z) and needs no VTIMEZONE."""
        await publish(service, {**event, "timezone": "UTC", "start": "2020-01-20T09:00:00+03:00",
                                "end": "2020-01-20T10:00:00+03:00"})
        text = await get_text(client, ICS_PATH)
        assert "DTSTART:20200120T060000Z\r\n" in text and "VTIMEZONE" not in text

    async def test_multi_day_event(self, client: TestClient, service: NodeService) -> None:
        """The three-day General Assembly spans 20 January 09:00 to 22 January 18:00, Doha time."""
        env = await publish(service, example("cultural-event", "01-general"))
        ev = vevents(await calendar(client))[event_uid(env.payload.record_id)]
        start, end = ev.decoded("DTSTART"), ev.decoded("DTEND")
        assert start == datetime(2020, 1, 20, 9, tzinfo=ZoneInfo("Asia/Qatar"))
        assert end == datetime(2020, 1, 22, 18, tzinfo=ZoneInfo("Asia/Qatar"))
        assert end - start == timedelta(days=2, hours=9) and "RRULE" not in ev
        days = {o.start.date() for o in recurring_ical_events.of(await calendar(client)).between(
            date(2020, 1, 21), date(2020, 1, 22))}
        assert days == {date(2020, 1, 20)}  # one occurrence, seen on the days it covers

    async def test_weekly_recurrence_expands(self, client: TestClient, service: NodeService) -> None:
        """The Hungarian film evenings (FREQ=WEEKLY;COUNT=6;BYDAY=TH) expand to six Thursdays at 19:00
        Budapest time, each 2.5 hours, with recurring-ical-events and with vobject."""
        env = await publish(service, example("cultural-event", "07-hungarian"))
        text = await get_text(client, ICS_PATH)
        assert "RRULE:FREQ=WEEKLY;COUNT=6;BYDAY=TH\r\n" in text
        uid = event_uid(env.payload.record_id)
        occurrences = sorted(recurring_ical_events.of(icalendar.Calendar.from_ical(text)).between(
            date(2020, 1, 1), date(2021, 1, 1)), key=lambda o: o.start)
        budapest = ZoneInfo("Europe/Budapest")
        assert [o.start for o in occurrences] == [datetime(2020, m, d, 19, tzinfo=budapest) for m, d in
                                                  ((2, 6), (2, 13), (2, 20), (2, 27), (3, 5), (3, 12))]
        assert all(str(o["UID"]) == uid and o.end - o.start == timedelta(hours=2, minutes=30) for o in occurrences)
        assert {o.start.weekday() for o in occurrences} == {3}  # Thursday
        assert {o.start.utcoffset() for o in occurrences} == {timedelta(hours=1)}
        ev = vobject.readOne(text).vevent
        assert [d.astimezone(UTC) for d in ev.getrruleset()] == [o.start.astimezone(UTC) for o in occurrences]

    @pytest.mark.parametrize(("until", "written"), [("20200312", "20200312T225959Z"),
                                                    ("20200312T190000", "20200312T180000Z"),
                                                    ("20200312T180000Z", "20200312T180000Z")])
    async def test_recurrence_until_in_utc(self, client: TestClient, service: NodeService, until: str,
                                           written: str) -> None:
        """An UNTIL given as a date or a local time is written in UTC (RFC 5545 §3.3.10, DTSTART has a zone):
        a date means the end of that day in the event's zone, a local time is read in that zone."""
        body = {**example("cultural-event", "07-hungarian"), "recurrence": f"FREQ=WEEKLY;UNTIL={until};BYDAY=TH"}
        await publish(service, body)
        text = await get_text(client, ICS_PATH)
        assert f"RRULE:FREQ=WEEKLY;UNTIL={written};BYDAY=TH\r\n" in text
        starts = [o.start for o in recurring_ical_events.of(icalendar.Calendar.from_ical(text)).between(
            date(2020, 1, 1), date(2021, 1, 1))]
        assert len(starts) == 6 and max(starts) == datetime(2020, 3, 12, 19, tzinfo=ZoneInfo("Europe/Budapest"))

    async def test_unreadable_recurrence_shows_first_occurrence(self, client: TestClient, service: NodeService,
                                                                event: dict[str, Any]) -> None:
        """A rule that fits the schema's pattern but is no RRULE: the event stays, without RRULE, with the
        rule as given in X-IPDN-RECURRENCE."""
        rid = (await publish(service, {**event, "recurrence": "FREQ=WEEKLY;BYDAY=XX"})).payload.record_id
        ev = vevents(await calendar(client))[event_uid(rid)]
        assert "RRULE" not in ev and str(ev["X-IPDN-RECURRENCE"]) == "FREQ=WEEKLY;BYDAY=XX"

    async def test_update_bumps_sequence(self, client: TestClient, service: NodeService,
                                         event: dict[str, Any]) -> None:
        """An update at the origin keeps the UID, raises SEQUENCE to the new version and changes the ETag."""
        env = await publish(service, event)
        rid, uid = env.payload.record_id, event_uid(env.payload.record_id)
        first = await client.get(ICS_PATH)
        moved = {**event, "title": {**event["title"], "en": "Sixth General Assembly (new hall)"},
                 "start": "2020-01-20T10:00:00+03:00"}
        updated = await service.update(rid, moved)
        second = await client.get(ICS_PATH)
        ev = vevents(icalendar.Calendar.from_ical(await second.text()))[uid]
        assert ev["SEQUENCE"] == 2 and str(ev["SUMMARY"]) == "Sixth General Assembly (new hall)"
        assert ev.decoded("DTSTART") == datetime(2020, 1, 20, 10, tzinfo=ZoneInfo("Asia/Qatar"))
        assert str(ev["X-IPDN-ENVELOPE-HASH"]) == updated.hash
        assert first.headers["ETag"] != second.headers["ETag"]

    async def test_cancellation_keeps_event_as_cancelled(self, client: TestClient, service: NodeService,
                                                         event: dict[str, Any]) -> None:
        """Cancelling is an update: the event stays, with STATUS:CANCELLED and the next SEQUENCE."""
        rid = (await publish(service, {**event, "status": "scheduled"})).payload.record_id
        before = vevents(await calendar(client))[event_uid(rid)]
        assert str(before["STATUS"]) == "CONFIRMED"
        await service.cancel(rid)
        ev = vevents(await calendar(client))[event_uid(rid)]
        assert str(ev["STATUS"]) == "CANCELLED" and ev["SEQUENCE"] == 2
        assert str(ev["X-IPDN-STATUS"]) == "cancelled"
        assert vobject.readOne(await get_text(client, ICS_PATH)).vevent.status.value == "CANCELLED"

    async def test_statuses_map_to_rfc5545(self, client: TestClient, service: NodeService) -> None:
        """postponed is TENTATIVE, cancelled CANCELLED, the others CONFIRMED; X-IPDN-STATUS keeps the record's."""
        names = {"01-general": ("completed", "CONFIRMED"), "05-photography": ("postponed", "TENTATIVE"),
                 "06-korean": ("cancelled", "CANCELLED"), "07-hungarian": ("rescheduled", "CONFIRMED")}
        uids = {name: event_uid((await publish(service, example("cultural-event", name))).payload.record_id)
                for name in names}
        events = vevents(await calendar(client))
        for name, (status, ical) in names.items():
            assert (str(events[uids[name]]["X-IPDN-STATUS"]), str(events[uids[name]]["STATUS"])) == (status, ical)
        assert str(events[uids["07-hungarian"]]["X-IPDN-PREVIOUS-START"]) == "2020-02-05T19:00:00+01:00"

    async def test_deleted_event_left_out(self, client: TestClient, service: NodeService,
                                          event: dict[str, Any]) -> None:
        """A tombstone has no place in a calendar: the event disappears (the news feeds show the deletion)."""
        kept = await publish(service, event)
        gone = await publish(service, event)
        await service.delete(gone.payload.record_id)
        assert set(vevents(await calendar(client))) == {event_uid(kept.payload.record_id)}

    async def test_title_in_chosen_language(self, client: TestClient, service: NodeService) -> None:
        """lang picks SUMMARY and DESCRIPTION (with LANGUAGE); English without it or when missing; the other
        titles follow as X-IPDN-TITLE with their language."""
        body = example("cultural-event", "01-general")
        uid = event_uid((await publish(service, body)).payload.record_id)
        ev = vevents(await calendar(client, lang="ar"))[uid]
        assert str(ev["SUMMARY"]) == body["title"]["ar"] and ev["SUMMARY"].params["LANGUAGE"] == "ar"
        assert str(ev["DESCRIPTION"]).startswith(body["description"]["ar"])
        others = ev["X-IPDN-TITLE"]
        assert {(o.params["LANGUAGE"], str(o)) for o in others} == {
            (tag, text) for tag, text in body["title"].items() if tag != "ar"}
        for params in ({}, {"lang": "hu"}):
            ev = vevents(await calendar(client, **params))[uid]
            assert str(ev["SUMMARY"]) == body["title"]["en"] and ev["SUMMARY"].params["LANGUAGE"] == "en"

    async def test_arabic_text_intact(self, client: TestClient, service: NodeService) -> None:
        """Arabic titles and long Arabic descriptions, folded at 75 octets, come back byte for byte through
        both parsers (no UTF-8 sequence split by folding)."""
        body = example("cultural-event", "04-exchange")
        uid = event_uid((await publish(service, body)).payload.record_id)
        raw = (await (await client.get(ICS_PATH, params={"lang": "ar"})).read())
        assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
        text = raw.decode("utf-8")
        ev = vevents(icalendar.Calendar.from_ical(text))[uid]
        assert str(ev["SUMMARY"]) == body["title"]["ar"]
        assert str(ev["DESCRIPTION"]).split("\n\n")[0] == body["description"]["ar"]
        other = vobject.readOne(text).vevent
        assert other.summary.value == body["title"]["ar"] and other.summary.params["LANGUAGE"] == ["ar"]
        assert other.description.value.split("\n\n")[0] == body["description"]["ar"]
        assert "الحي الثقافي كتارا، الدوحة، قطر" in other.location.value

    async def test_details_for_people_machine_data_in_x_properties(self, client: TestClient, service: NodeService,
                                                                  config: NodeConfig) -> None:
        """LOCATION, GEO, ORGANIZER (mailto: with CN), CONTACT and CATEGORIES from the record; URL the record's page
        on the portal, the API item a LINK with its media type (RFC 9253), the organiser's site a related LINK;
        DESCRIPTION the text and the page, nothing else; hash, envelope, record id and rights in X-IPDN-*."""
        body = example("cultural-event", "01-general")
        rid = (await publish(service, body)).payload.record_id
        text = await get_text(client, ICS_PATH)
        ev = vevents(icalendar.Calendar.from_ical(text))[event_uid(rid)]
        page = f"{config.public_base}/events/{rid}"
        assert str(ev["LOCATION"]) == "Katara Cultural Village, Doha, Qatar"
        assert (ev["GEO"].latitude, ev["GEO"].longitude) == (25.3601, 51.5257)
        assert str(ev["URL"]) == page
        links = {(str(x.params["LINKREL"]), str(x.params["FMTTYPE"])): str(x) for x in ev["LINK"]}
        api = f"{config.public_base}/api/v1/records/{rid.replace(':', '%3A')}"
        assert links == {("alternate", "application/json"): api, ("related", "text/html"): "https://ipdn.network/ga6"}
        assert str(ev["ORGANIZER"]) == "mailto:secretariat@ipdn.network"
        assert ev["ORGANIZER"].params["CN"] == "Cultural Village Foundation (Katara)"
        assert "secretariat@ipdn.network" in str(ev["CONTACT"])
        assert [str(c) for c in ev["CATEGORIES"].cats] == body["tags"]
        assert str(ev["X-IPDN-RIGHTS"]) == RIGHTS and str(ev["X-IPDN-EVENT-TYPE"]) == "general-assembly"
        record = await service.get(rid)
        assert str(ev["X-IPDN-ENVELOPE-HASH"]) == record.hash and str(ev["X-IPDN-RECORD-ID"]) == rid
        assert str(ev["X-IPDN-ENVELOPE-URL"]) == f"{page}/envelope.json"
        other = vobject.readOne(text).vevent  # (icalendar before 7 decodes %3A when it reads)
        assert other.description.value == f"{body['description']['en']}\n\n{page}"
        assert record.hash not in other.description.value and "/api/" not in other.description.value
        assert other.categories.value == body["tags"] and other.x_ipdn_rights.value == RIGHTS

    async def test_organizer_without_email_left_out(self, client: TestClient, service: NodeService) -> None:
        """No contact e-mail: no ORGANIZER (a web site is no calendar address); CONTACT keeps what there is."""
        body = example("cultural-event", "01-general")
        body["contact"] = {"url": "https://ipdn.network/contact"}
        uid = event_uid((await publish(service, body)).payload.record_id)
        ev = vevents(await calendar(client))[uid]
        assert "ORGANIZER" not in ev and str(ev["CONTACT"]) == "https://ipdn.network/contact"

    async def test_online_event_located_online(self, client: TestClient, service: NodeService,
                                               event: dict[str, Any]) -> None:
        """An event moved online gives its online address as LOCATION."""
        body = {**event, "status": "moved-online", "online_url": "https://ipdn.network/live/ga6"}
        rid = (await publish(service, body)).payload.record_id
        ev = vevents(await calendar(client))[event_uid(rid)]
        assert str(ev["LOCATION"]) == "https://ipdn.network/live/ga6" and str(ev["STATUS"]) == "CONFIRMED"

    async def test_filters_by_origin_and_status(self, client: TestClient, service: NodeService, kr: Member,
                                                event: dict[str, Any]) -> None:
        """origin keeps one member's events (also those pulled from the hub); status a list of statuses."""
        own = await publish(service, {**event, "status": "scheduled"})
        cancelled = kr.publish({**event, "status": "cancelled"}, record_id="KR:gugak")
        await service.applier.apply_log(0, [(1, cancelled.to_dict())])
        assert set(vevents(await calendar(client))) == {event_uid(own.payload.record_id), event_uid("KR:gugak")}
        assert set(vevents(await calendar(client, origin="KR"))) == {event_uid("KR:gugak")}
        assert set(vevents(await calendar(client, origin="kr"))) == {event_uid("KR:gugak")}
        assert set(vevents(await calendar(client, status="cancelled"))) == {event_uid("KR:gugak")}
        assert len(vevents(await calendar(client, status="scheduled,cancelled"))) == 2
        assert vevents(await calendar(client, origin="TR")) == {}

    @pytest.mark.parametrize("params", [{"origin": "Qatar"}, {"status": "maybe"}, {"status": "deleted"},
                                        {"lang": "not a tag"}, {"status": ","}])
    async def test_bad_query_refused(self, client: TestClient, params: dict[str, str]) -> None:
        """A value that cannot be read is a 400 bad-query problem."""
        resp = await client.get(ICS_PATH, params=params)
        assert resp.status == 400 and resp.content_type == PROBLEM
        assert (await resp.json())["reason"] == "bad-query"

    async def test_empty_calendar_is_valid(self, client: TestClient) -> None:
        """No events: still a calendar both parsers read."""
        text = await get_text(client, ICS_PATH)
        assert vevents(icalendar.Calendar.from_ical(text)) == {}
        assert vobject.readOne(text).name == "VCALENDAR"

    async def test_not_modified(self, client: TestClient, service: NodeService, event: dict[str, Any]) -> None:
        """If-None-Match with the ETag (strong or weak, or among others) is a 304 without a body, with the
        validators; another ETag, another query or a change is a 200."""
        await check_conditional(client, service, ICS_PATH, lambda: publish(service, event))


async def check_conditional(client: TestClient, service: NodeService, path: str, change: Callable[[], Any]) -> None:
    await change()
    first = await client.get(path)
    etag = first.headers["ETag"]
    assert first.status == 200 and etag.startswith('"') and not etag.startswith("W/")
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        resp = await client.get(path, headers={"If-None-Match": header})
        assert resp.status == 304, header
        assert resp.headers["ETag"] == etag and resp.headers["Cache-Control"] == CACHE_CONTROL
        assert await resp.read() == b""
    assert (await client.get(path, headers={"If-None-Match": '"other"'})).status == 200
    assert (await client.get(path, params={"lang": "ar"}, headers={"If-None-Match": etag})).status == 200
    again = await client.get(path)
    assert again.headers["ETag"] == etag and await again.read() == await first.read()
    await change()
    changed = await client.get(path, headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag


class TestJsonFeed:
    async def test_is_json_feed_1_1(self, client: TestClient, service: NodeService) -> None:
        """The document follows JSON Feed 1.1 (every example of both kinds and a deletion in it), served
        as application/feed+json, cacheable."""
        for body in example_bodies("cultural-event"):
            await publish(service, body)
        rid = (await publish(service, example_bodies("capacity-programme")[0], "capacity-programme")).payload.record_id
        await service.delete(rid)
        resp = await client.get(JSON_FEED_PATH)
        assert resp.headers["Content-Type"] == "application/feed+json; charset=utf-8"
        assert resp.headers["Cache-Control"] == CACHE_CONTROL and resp.headers["ETag"]
        doc = json.loads(await resp.text())
        jsonschema.validate(doc, JSON_FEED_1_1)
        assert doc["feed_url"] == client.app[CONFIG].public_base + resp.url.path_qs and len(doc["items"]) == 8

    async def test_newest_change_first_with_stable_ids(self, client: TestClient, service: NodeService,
                                                       event: dict[str, Any]) -> None:
        """Items are the records, newest change first; id is the record id, date_modified its issued_at;
        an update moves the record to the top under the same id; limit caps the list."""
        a, b, c = [await publish(service, event) for _ in range(3)]
        updated = await service.update(a.payload.record_id, {**event, "status": "cancelled"})
        items = (await json_feed(client))["items"]
        assert [i["id"] for i in items] == [a.payload.record_id, c.payload.record_id, b.payload.record_id]
        assert items[0]["date_modified"] == updated.payload.issued_at
        assert items[0]["_ipdn"]["version"] == 2 and items[0]["_ipdn"]["status"] == "cancelled"
        assert items[0]["url"] == f"{client.app[CONFIG].public_base}/events/{a.payload.record_id}"
        for item in items:
            assert datetime.fromisoformat(item["date_modified"]).tzinfo is not None
        assert [i["id"] for i in (await json_feed(client, limit="2"))["items"]] == [a.payload.record_id,
                                                                                   c.payload.record_id]

    async def test_items_carry_verifiable_envelopes(self, client: TestClient, service: NodeService,
                                                    registry: SignedRegistry) -> None:
        """Each item's _ipdn has the envelope, which verifies and whose body is the record the item shows."""
        body = example("cultural-event", "03-youth")
        env = await publish(service, body)
        (item,) = (await json_feed(client))["items"]
        ipdn = item["_ipdn"]
        checked = verifies(ipdn["envelope"], registry)
        assert checked.hash == ipdn["hash"] == env.hash and checked.payload.body == body
        assert (ipdn["record_id"], ipdn["origin"], ipdn["kind"], ipdn["op"], ipdn["version"]) == (
            env.payload.record_id, "QA", "cultural-event", "put", 1)
        assert ipdn["rights"] == RIGHTS and f"Rights: {RIGHTS}" in item["content_text"]
        assert item["title"] == body["title"]["en"] and item["language"] == "en"
        assert item["tags"] == body["tags"] and item["external_url"] == body["registration"]["url"]
        assert item["content_text"].startswith(body["description"]["en"])
        assert "When: 2020-01-21T10:00:00+03:00 – 2020-01-21T16:00:00+03:00 (Asia/Qatar)" in item["content_text"]
        assert env.hash not in item["content_text"] and "/api/" not in item["content_text"]

    async def test_saved_feed_verifies_offline_with_ipdn_verify(self, client: TestClient, service: NodeService,
                                                                config: NodeConfig, tmp_path: Any,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
        """A partner saves the JSON Feed and runs `ipdn verify --registry` on it: every item verifies."""
        from federation.cli.main import main

        for name in ("01-general", "03-youth"):
            await publish(service, example("cultural-event", name))
        (tmp_path / "feed.json").write_text(json.dumps(await json_feed(client)))
        assert main(["verify", "--registry", str(config.registry_path), str(tmp_path / "feed.json")]) == 0
        assert capsys.readouterr().out.count(": OK QA") == 2

    async def test_deletion_is_an_item(self, client: TestClient, service: NodeService, event: dict[str, Any],
                                       registry: SignedRegistry) -> None:
        """A tombstone is shown as a deletion: same id, "[deleted]" title, _ipdn.op delete, and its envelope."""
        rid = (await publish(service, event)).payload.record_id
        tomb = await service.delete(rid)
        (item,) = (await json_feed(client))["items"]
        assert item["id"] == rid and item["title"] == f"[deleted] {rid}"
        assert (item["_ipdn"]["op"], item["_ipdn"]["version"], item["_ipdn"]["status"]) == ("delete", 2, "deleted")
        assert item["date_modified"] == tomb.payload.issued_at
        assert verifies(item["_ipdn"]["envelope"], registry).payload.op == "delete"
        jsonschema.validate(await json_feed(client), JSON_FEED_1_1)

    async def test_arabic_title_and_language(self, client: TestClient, service: NodeService) -> None:
        """lang=ar gives the Arabic title and description intact, with language ar."""
        body = example("capacity-programme", "01-social")
        await publish(service, body, "capacity-programme")
        doc = await json_feed(client, lang="ar")
        (item,) = doc["items"]
        assert item["title"] == body["title"]["ar"] and item["language"] == "ar" and doc["language"] == "ar"
        assert item["content_text"].startswith(body["description"]["ar"])
        assert item["authors"] == [{"name": body["provider"]["name"]["ar"], "url": body["provider"]["url"]}]
        assert item["tags"][:3] == body["tags"] and "digital diplomacy" in item["tags"]

    async def test_filters(self, client: TestClient, service: NodeService, kr: Member, event: dict[str, Any]) -> None:
        """kind, origin and status narrow the feed; bad values are 400 bad-query problems."""
        own = await publish(service, event)
        prog = await publish(service, example_bodies("capacity-programme")[0], "capacity-programme")
        await service.applier.apply_log(0, [(1, kr.publish(event, record_id="KR:ev").to_dict()),
                                    (2, kr.publish(None, record_id="KR:ev", version=2).to_dict())])
        ids = [i["id"] for i in (await json_feed(client))["items"]]
        assert set(ids) == {own.payload.record_id, prog.payload.record_id, "KR:ev"}
        assert [i["id"] for i in (await json_feed(client, kind="capacity-programme"))["items"]] == [
            prog.payload.record_id]
        assert [i["id"] for i in (await json_feed(client, origin="KR"))["items"]] == ["KR:ev"]
        assert [i["id"] for i in (await json_feed(client, status="deleted"))["items"]] == ["KR:ev"]
        for params in ({"kind": "recipe"}, {"limit": "0"}, {"limit": "many"}, {"limit": "100000"},
                       {"origin": "Q"}):
            resp = await client.get(JSON_FEED_PATH, params=params)
            assert resp.status == 400 and (await resp.json())["reason"] == "bad-query", params

    async def test_not_modified(self, client: TestClient, service: NodeService, event: dict[str, Any]) -> None:
        """ETag and If-None-Match as for the calendar."""
        await check_conditional(client, service, JSON_FEED_PATH, lambda: publish(service, event))


class TestAtomFeed:
    async def test_parsed_by_feedparser(self, client: TestClient, service: NodeService) -> None:
        """A well-formed Atom 1.0 feed: entry ids are tag URIs of the record ids, updated is issued_at,
        newest first; each entry's first alternate link is its page (text/html, what feedparser gives as
        entry.link), the record's API item a second alternate (application/json); the feed's own alternate
        is the portal's list."""
        envs = [await publish(service, body) for body in example_bodies("cultural-event")[:3]]
        resp = await client.get(ATOM_PATH)
        assert resp.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
        assert resp.headers["Cache-Control"] == CACHE_CONTROL and resp.headers["ETag"]
        parsed = feedparser.parse(await resp.text())
        assert not parsed.bozo and parsed.version == "atom10"
        assert parsed.feed.id == "tag:ipdn.network,2020:node/QA/atom"
        assert [e.id for e in parsed.entries] == [atom_id(e.payload.record_id) for e in reversed(envs)]
        assert parsed.entries[0].id == f"tag:ipdn.network,2020:{envs[-1].payload.record_id}"
        for entry, env in zip(parsed.entries, reversed(envs), strict=True):
            assert datetime(*entry.updated_parsed[:6], tzinfo=UTC) == datetime.fromisoformat(
                env.payload.issued_at).replace(microsecond=0)
            links = {(link.rel, link.type): link.href for link in entry.links}
            page = f"{client.app[CONFIG].public_base}/events/{env.payload.record_id}"
            assert entry.link == page == links["alternate", "text/html"]
            assert entry.links[0] == {"rel": "alternate", "type": "text/html", "href": page}
            assert links["alternate", "application/json"].endswith(env.payload.record_id.replace(":", "%3A"))
            assert links[ENVELOPE_REL, "application/jose+json"] == f"{page}/envelope.json"
            assert entry.ipdn_hash == env.hash and entry.ipdn_version == "1" and entry.ipdn_op == "put"
        assert parsed.feed.link == f"{client.app[CONFIG].public_base}/events"
        assert {link.rel for link in parsed.feed.links} >= {"self", "alternate"}

    async def test_rights_and_envelope(self, client: TestClient, service: NodeService,
                                       registry: SignedRegistry) -> None:
        """Each entry has the rights URI (rights and an RFC 4946 license link), its tags as categories and
        its envelope, which verifies."""
        body = example("cultural-event", "02-public")
        env = await publish(service, body)
        (entry,) = (await atom(client)).entries
        assert entry.rights == RIGHTS and {"rel": "license", "href": RIGHTS} in [
            {"rel": link.rel, "href": link.href} for link in entry.links]
        assert [t.term for t in entry.tags] == body["tags"]
        assert verifies(json.loads(entry.ipdn_envelope), registry).hash == env.hash
        assert entry.title == body["title"]["en"] and entry.content[0].value.startswith(body["description"]["en"])
        assert entry.title_detail.language == "en" and entry.content[0].language == "en"

    async def test_deletion_marked(self, client: TestClient, service: NodeService, event: dict[str, Any],
                                   registry: SignedRegistry) -> None:
        """A tombstone keeps the record's entry id with a "deleted" category and its envelope."""
        rid = (await publish(service, event)).payload.record_id
        await service.delete(rid)
        (entry,) = (await atom(client)).entries
        assert entry.id == atom_id(rid) and entry.title == f"[deleted] {rid}"
        assert [(t.term, t.scheme) for t in entry.tags] == [("deleted", "https://schemas.ipdn.network/feeds/v1/op")]
        assert entry.ipdn_op == "delete" and entry.ipdn_version == "2"
        assert verifies(json.loads(entry.ipdn_envelope), registry).payload.op == "delete"

    async def test_arabic_title_with_language(self, client: TestClient, service: NodeService) -> None:
        """lang=ar: the Arabic title and description intact, marked xml:lang="ar"."""
        body = example("cultural-event", "06-korean")
        await publish(service, body)
        parsed = await atom(client, lang="ar")
        (entry,) = parsed.entries
        assert entry.title == body["title"]["ar"] and entry.title_detail.language == "ar"
        assert entry.content[0].value.startswith(body["description"]["ar"]) and entry.content[0].language == "ar"
        assert parsed.feed.language == "ar" and entry.content[0].type == "text/plain"

    async def test_filtered_feed_has_its_own_id(self, client: TestClient, service: NodeService,
                                                event: dict[str, Any]) -> None:
        """A filtered feed is another feed: its id names the (canonical) query."""
        await publish(service, event)
        parsed = await atom(client, origin="qa", limit="10")
        assert parsed.feed.id == "tag:ipdn.network,2020:node/QA/atom?origin=QA&limit=10"

    async def test_not_modified(self, client: TestClient, service: NodeService, event: dict[str, Any]) -> None:
        """ETag and If-None-Match as for the calendar."""
        await check_conditional(client, service, ATOM_PATH, lambda: publish(service, event))


class TestLanguageChoice:
    @pytest.mark.parametrize(("texts", "lang", "expected"), [
        ({"ar": "عربي", "en": "English"}, "ar", "ar"),
        ({"ar": "عربي", "en": "English"}, None, "en"),
        ({"ar": "عربي", "en": "English"}, "ko", "en"),
        ({"tr": "Türkçe", "ar": "عربي"}, None, "tr"),
        ({"zh-Hant": "中文", "en": "English"}, "zh", "zh-Hant"),
        ({"pt-PT": "pt-PT", "pt": "pt", "en": "English"}, "pt-BR", "pt"),
        ({"EN-gb": "British", "ar": "عربي"}, None, "EN-gb"),
        ({"en": "English", "AR": "عربي"}, "ar", "AR"),
    ])
    def test_pick(self, texts: dict[str, str], lang: str | None, expected: str) -> None:
        """The asked language (case-insensitive, then its primary language or a sibling), then English,
        then the map's first entry."""
        assert pick(texts, lang) == (expected, texts[expected])

    def test_pick_nothing(self) -> None:
        """No map, no text."""
        assert pick(None, "ar") is None and pick({}, None) is None


class TestRoutes:
    def test_register_routes_adds_the_three_feeds(self, config: NodeConfig) -> None:
        """register_routes adds GET (and HEAD) for the three feed paths."""
        app = create_app(config, sync=False)
        before = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
        if ICS_PATH not in before:
            register_routes(app)
        routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
        for path in (ICS_PATH, JSON_FEED_PATH, ATOM_PATH):
            assert {("GET", path), ("HEAD", path)} <= routes

    async def test_feeds_of_a_node_that_received_everything(self, client: TestClient, service: NodeService,
                                                            kr: Member, registry: SignedRegistry) -> None:
        """A node holding only records pulled from the hub serves them in all three formats, each verifiable."""
        bodies = [copy.deepcopy(b) for b in example_bodies("cultural-event")]
        envs = [kr.publish(b, record_id=f"KR:e{i}") for i, b in enumerate(bodies)]
        report = await service.applier.apply_log(0, [(i + 1, e.to_dict()) for i, e in enumerate(envs)])
        assert report.applied == len(envs)
        assert set(vevents(await calendar(client))) == {event_uid(e.payload.record_id) for e in envs}
        items = (await json_feed(client))["items"]
        assert {i["_ipdn"]["hash"] for i in items} == {e.hash for e in envs}
        assert all(verifies(i["_ipdn"]["envelope"], registry) for i in items)
        assert len((await atom(client)).entries) == len(envs)



class TestRenderCache:
    def test_keeps_latest_within_bytes(self) -> None:
        """Renderings are kept by ETag up to the byte budget, least recently used out first; one larger
        than the budget is not kept."""
        cache = RenderCache(10, len)
        cache.put("a", b"aaaa")
        cache.put("b", b"bbbb")
        assert cache.get("a") == b"aaaa"  # a is now the most recently used
        cache.put("c", b"cccc")
        assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"aaaa", None, b"cccc")
        cache.put("big", b"x" * 11)
        assert cache.get("big") is None and cache.get("c") == b"cccc"

    async def test_same_calendar_rendered_once(self, client: TestClient, service: NodeService,
                                               event: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
        """Partners polling without If-None-Match get the kept rendering; a change renders anew."""
        calls: list[int] = []
        real = node.partners.feeds.render_calendar

        def counting(*args: Any, **kwargs: Any) -> bytes:
            calls.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(node.partners.feeds, "render_calendar", counting)
        await publish(service, event)
        first, second = await get_text(client, ICS_PATH), await get_text(client, ICS_PATH)
        assert first == second and len(calls) == 1
        await publish(service, event)
        await get_text(client, ICS_PATH)
        assert len(calls) == 2


# -- Host header injection (docs/THREAT-MODEL.md): links come from public_url, never from the request -------------


async def _forged_host(aiohttp_client: Any, config: NodeConfig, path: str) -> str:
    """``path`` asked with ``Host: evil.example`` of a node whose public_url is https://ipdn.qa.example, with one
    event published: the body, after checking that nothing in the answer names evil.example."""
    client = await aiohttp_client(create_app(dataclasses.replace(config, public_url="https://ipdn.qa.example"),
                                             sync=False))
    await publish(client.app[SERVICE], example_bodies("cultural-event")[0])
    resp = await client.get(path, params={"lang": "en"}, headers={"Host": "evil.example"})
    text = await resp.text()
    assert resp.status == 200 and "public" in resp.headers["Cache-Control"], text
    assert "evil.example" not in text and not any("evil.example" in v for v in resp.headers.values())
    return text


async def test_host_header_cannot_poison_ics_links(aiohttp_client: Any, config: NodeConfig) -> None:
    text = await _forged_host(aiohttp_client, config, ICS_PATH)
    assert len(icalendar.Calendar.from_ical(text).walk("VEVENT")) == 1 and "https://ipdn.qa.example/" in text


async def test_host_header_cannot_poison_json_feed_links(aiohttp_client: Any, config: NodeConfig) -> None:
    feed = json.loads(await _forged_host(aiohttp_client, config, JSON_FEED_PATH))
    assert feed["home_page_url"].startswith("https://ipdn.qa.example")
    assert feed["feed_url"] == f"https://ipdn.qa.example{JSON_FEED_PATH}?lang=en"
    assert all(item["url"].startswith("https://ipdn.qa.example/") for item in feed["items"])


async def test_host_header_cannot_poison_atom_links(aiohttp_client: Any, config: NodeConfig) -> None:
    parsed = feedparser.parse(await _forged_host(aiohttp_client, config, ATOM_PATH))
    assert not parsed.bozo
    assert parsed.feed.links and all(link.href.startswith("https://ipdn.qa.example/") for link in parsed.feed.links)
    assert any(link.href.startswith("https://ipdn.qa.example/api/v1/records/") for link in parsed.entries[0].links)
