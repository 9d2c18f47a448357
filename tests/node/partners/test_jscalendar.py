"""JSCalendar (RFC 8984) of events and programmes (node/partners/jscalendar.py), negotiated on the record API.

Every sample record (both kinds; recurring, online, cancelled, postponed, across a daylight-saving change) is
read back from the node twice, as its iCalendar (parsed with ``icalendar``, recurrences expanded with
``recurring-ical-events``) and as JSCalendar (checked against RFC 8984's rules, below, recurrences expanded with
``dateutil``), and the two must say the same: uid, sequence, start, end, time zone, occurrences, status, titles,
organiser and place.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import jsonschema
import pytest
import recurring_ical_events
from aiohttp.test_utils import TestClient
from dateutil import rrule

from node.app import create_app
from node.appkeys import CONFIG, SERVICE
from node.config import NodeConfig
from node.partners.feeds import ICS_PATH, render_calendar
from node.partners.jscalendar import MEDIA_TYPE, duration
from node.partners.negotiation import best
from node.records.service import NodeService
from tests.support.factories import example_bodies, example_paths

RECORDS = "/api/v1/records"
PROBLEM = "application/problem+json"

# -- RFC 8984's rules as a JSON Schema -----------------------------------------------------------------------

ID = "^[A-Za-z0-9_-]{1,255}$"  # §1.4.1
UTC_DATE_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]*[1-9])?Z$"  # §1.4.4
LOCAL_DATE_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]*[1-9])?$"  # §1.4.4
_SEC, _MIN = r"[0-9]+(\.[0-9]*[1-9])?S", r"[0-9]+M"
_TIME = rf"T([0-9]+H({_MIN}({_SEC})?)?|{_MIN}({_SEC})?|{_SEC})"
DURATION = rf"^P([0-9]+D({_TIME})?|{_TIME}|[0-9]+W)$"  # §1.4.6: no years or months
VENDOR = "^[A-Za-z0-9.-]+:"  # §3.3: vendor-specific properties carry a domain name and a colon


def _type(name: str, required: list[str], props: dict[str, Any], *, vendor: bool = True) -> dict[str, Any]:
    """An RFC 8984 object: ``@type`` the name, the required properties, only the RFC's properties (and vendor
    ones)."""
    return {"type": "object", "required": ["@type", *required], "additionalProperties": False,
            "properties": {"@type": {"const": name}, **props}, "patternProperties": {VENDOR: {}} if vendor else {}}


def _id_map(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "minProperties": 1, "propertyNames": {"pattern": ID}, "additionalProperties": schema}


_STR: dict[str, Any] = {"type": "string"}
_BOOL_SET = {"type": "object", "minProperties": 1, "additionalProperties": {"const": True}}
LINK = _type("Link", ["href"], {"href": {"type": "string", "format": "uri"}, "cid": _STR, "contentType": _STR,
                                "size": {"type": "integer", "minimum": 0}, "rel": _STR,
                                "display": {"enum": ["badge", "graphic", "fullsize", "thumbnail"]}, "title": _STR})
LOCATION = _type("Location", [], {"name": _STR, "description": _STR, "locationTypes": _BOOL_SET,
                                  "relativeTo": {"enum": ["start", "end"]}, "timeZone": _STR,
                                  "coordinates": {"type": "string", "pattern": r"^geo:-?[0-9.]+,-?[0-9.]+$"},
                                  "links": _id_map(LINK)})
VIRTUAL_LOCATION = _type("VirtualLocation", ["uri"], {"name": _STR, "description": _STR,
                                                      "uri": {"type": "string", "format": "uri"},
                                                      "features": _BOOL_SET})
PARTICIPANT = _type("Participant", ["roles"], {
    "name": _STR, "email": {"type": "string", "format": "email"}, "description": _STR,
    "sendTo": {"type": "object", "minProperties": 1, "propertyNames": {"pattern": "^[A-Za-z0-9]+$"},
               "additionalProperties": {"type": "string", "format": "uri"}},
    "kind": {"enum": ["individual", "group", "location", "resource"]},
    "roles": {**_BOOL_SET, "propertyNames": {"enum": ["owner", "attendee", "optional", "informational", "chair",
                                                       "contact"]}},
    "links": _id_map(LINK)})
N_DAY = _type("NDay", ["day"], {"day": {"enum": ["mo", "tu", "we", "th", "fr", "sa", "su"]},
                                "nthOfPeriod": {"type": "integer", "not": {"const": 0}}}, vendor=False)
_INTS: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"type": "integer"}}
RECURRENCE_RULE = _type("RecurrenceRule", ["frequency"], {
    "frequency": {"enum": ["yearly", "monthly", "weekly", "daily", "hourly", "minutely", "secondly"]},
    "interval": {"type": "integer", "minimum": 1}, "rscale": _STR, "skip": {"enum": ["omit", "backward", "forward"]},
    "firstDayOfWeek": {"enum": ["mo", "tu", "we", "th", "fr", "sa", "su"]},
    "byDay": {"type": "array", "minItems": 1, "items": N_DAY},
    "byMonth": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[0-9]+L?$"}},
    **{k: _INTS for k in ("byMonthDay", "byYearDay", "byWeekNo", "byHour", "byMinute", "bySecond", "bySetPosition")},
    "count": {"type": "integer", "minimum": 1}, "until": {"type": "string", "pattern": LOCAL_DATE_TIME}},
    vendor=False)
EVENT = _type("Event", ["uid", "updated", "start"], {  # §4 (common), §5.1 (Event)
    "uid": {"type": "string", "minLength": 1}, "prodId": _STR,
    "created": {"type": "string", "pattern": UTC_DATE_TIME}, "updated": {"type": "string", "pattern": UTC_DATE_TIME},
    "sequence": {"type": "integer", "minimum": 0}, "title": _STR, "description": _STR,
    "descriptionContentType": {"type": "string", "pattern": "^text/"}, "showWithoutTime": {"type": "boolean"},
    "locations": _id_map(LOCATION), "virtualLocations": _id_map(VIRTUAL_LOCATION), "links": _id_map(LINK),
    "locale": {"type": "string", "pattern": "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"}, "keywords": _BOOL_SET,
    "recurrenceRules": {"type": "array", "minItems": 1, "items": RECURRENCE_RULE},
    "freeBusyStatus": {"enum": ["free", "busy"]}, "privacy": {"enum": ["public", "private", "secret"]},
    "participants": _id_map(PARTICIPANT),
    "localizations": {"type": "object", "propertyNames": {"pattern": "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"},
                      "additionalProperties": {"type": "object", "minProperties": 1,
                                               "propertyNames": {"pattern": "^[A-Za-z@][A-Za-z0-9/_-]*$"}}},
    "timeZone": {"type": ["string", "null"]}, "start": {"type": "string", "pattern": LOCAL_DATE_TIME},
    "duration": {"type": "string", "pattern": DURATION}, "status": {"enum": ["confirmed", "cancelled", "tentative"]},
})
GROUP = _type("Group", ["uid", "updated", "entries"], {  # §5.3
    "uid": {"type": "string", "minLength": 1}, "prodId": _STR, "title": _STR, "source": {"type": "string",
                                                                                         "format": "uri"},
    "updated": {"type": "string", "pattern": UTC_DATE_TIME}, "entries": {"type": "array", "items": EVENT}})


def rfc8984(doc: dict[str, Any]) -> None:
    """Raises if ``doc`` breaks a rule of RFC 8984 checked here, or names a time zone that does not exist."""
    jsonschema.validate(doc, GROUP if doc.get("@type") == "Group" else EVENT,
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    for obj in doc.get("entries", [doc]):
        for zone in [obj.get("timeZone"), *(x.get("timeZone") for x in obj.get("locations", {}).values())]:
            if zone is not None:
                ZoneInfo(zone)  # §4.7.1: an IANA time zone name
        for tag, patch in obj.get("localizations", {}).items():
            assert tag != obj.get("locale"), "the main language is not a localization of itself"
            for pointer in patch:  # §1.4.9: a patch names properties the object has
                head, *rest = pointer.split("/")
                assert head in obj, pointer
                if rest:
                    assert rest[0] in obj[head], pointer


# -- helpers -------------------------------------------------------------------------------------------------------


def example(kind: str, name: str) -> dict[str, Any]:
    (path,) = [p for p in example_paths(kind) if name in p.name]
    return dict(json.loads(path.read_text(encoding="utf-8")))


def samples() -> dict[str, tuple[str, dict[str, Any]]]:
    """The examples of both kinds, and variants the examples lack: online only, a weekly rule with an UNTIL date
    that crosses Budapest's change to summer time, and an event that spans that night."""
    out = {f"event-{i}": ("cultural-event", b) for i, b in enumerate(example_bodies("cultural-event"))}
    out |= {f"programme-{i}": ("capacity-programme", b) for i, b in enumerate(example_bodies("capacity-programme"))}
    online = example("cultural-event", "website-launch")
    online.update(attendance_mode="online", status="scheduled")
    del online["venue"]
    out["online"] = ("cultural-event", online)
    weekly = example("cultural-event", "film-evenings")
    weekly.update(status="scheduled", recurrence="FREQ=WEEKLY;UNTIL=20200402;BYDAY=TH")
    weekly.pop("previous_start", None)
    out["weekly-until"] = ("cultural-event", weekly)
    night = example("cultural-event", "film-evenings")
    night.update(status="scheduled", start="2020-03-28T20:00:00+01:00", end="2020-03-29T21:00:00+02:00")
    for key in ("previous_start", "recurrence"):
        night.pop(key, None)
    out["dst-night"] = ("cultural-event", night)
    return out


@pytest.fixture
async def client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    return await aiohttp_client(create_app(config, sync=False))


@pytest.fixture
def service(client: TestClient) -> NodeService:
    svc = client.app[SERVICE]
    start, ticks = datetime(2026, 1, 5, 9, 0, tzinfo=UTC), itertools.count()
    svc.clock = lambda: start + timedelta(seconds=next(ticks))
    return svc


async def published(service: NodeService) -> dict[str, str]:
    """Every sample published: record ids by sample name."""
    return {name: (await service.create(kind, copy.deepcopy(body))).payload.record_id
            for name, (kind, body) in samples().items()}


def uid_of(record_id: str) -> str:
    return f"{record_id[:2]}-{record_id[3:]}@ipdn.network"


def js_start(obj: dict[str, Any]) -> datetime:
    """The JSCalendar start as an instant (a floating one read in UTC)."""
    naive = datetime.fromisoformat(obj["start"])
    return naive.replace(tzinfo=ZoneInfo(obj["timeZone"]) if obj.get("timeZone") else UTC)


def js_end(obj: dict[str, Any]) -> datetime:
    """start + duration as RFC 8984 §1.4.6 reads it: days and weeks on the wall clock, then exact time."""
    m = re.fullmatch(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", obj.get("duration", "PT0S"))
    assert m is not None
    weeks, days, hours, minutes, seconds = (int(x or 0) for x in m.groups())
    start = js_start(obj)
    wall = (start.replace(tzinfo=None) + timedelta(days=7 * weeks + days)).replace(tzinfo=start.tzinfo)
    return (wall.astimezone(UTC) + timedelta(hours=hours, minutes=minutes, seconds=seconds)).astimezone(start.tzinfo)


_DAYS = {"mo": rrule.MO, "tu": rrule.TU, "we": rrule.WE, "th": rrule.TH, "fr": rrule.FR, "sa": rrule.SA,
         "su": rrule.SU}
_FREQ = {"yearly": rrule.YEARLY, "monthly": rrule.MONTHLY, "weekly": rrule.WEEKLY, "daily": rrule.DAILY}


def js_occurrences(obj: dict[str, Any], until: datetime) -> list[datetime]:
    """The JSCalendar event's starts up to ``until``, by dateutil from the RecurrenceRule (no iCalendar text)."""
    start = js_start(obj)
    if not obj.get("recurrenceRules"):
        return [start]
    (rule,) = obj["recurrenceRules"]
    kw: dict[str, Any] = {"dtstart": start, "interval": rule.get("interval", 1)}
    if "count" in rule:
        kw["count"] = rule["count"]
    if "until" in rule:
        kw["until"] = datetime.fromisoformat(rule["until"]).replace(tzinfo=start.tzinfo)
    if "byDay" in rule:
        kw["byweekday"] = [_DAYS[d["day"]](d["nthOfPeriod"]) if "nthOfPeriod" in d else _DAYS[d["day"]]
                           for d in rule["byDay"]]
    for name, arg in (("byMonthDay", "bymonthday"), ("bySetPosition", "bysetpos")):
        if name in rule:
            kw[arg] = rule[name]
    if "byMonth" in rule:
        kw["bymonth"] = [int(m) for m in rule["byMonth"]]
    return [d for d in rrule.rrule(_FREQ[rule["frequency"]], **kw) if d <= until]


def ics_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


# -- the round trip ------------------------------------------------------------------------------------------------


async def test_jscalendar_and_icalendar_say_the_same_of_every_sample(client: TestClient,
                                                                     service: NodeService) -> None:
    ids = await published(service)
    resp = await client.get(RECORDS, params={"format": "jscalendar", "limit": "100"})
    assert resp.status == 200 and resp.content_type == MEDIA_TYPE
    group = await resp.json(content_type=None)
    rfc8984(group)
    by_uid = {e["uid"]: e for e in group["entries"]}
    assert set(by_uid) == {uid_of(rid) for rid in ids.values()}

    events_ics = icalendar.Calendar.from_ical(await (await client.get(ICS_PATH, params={"lang": "en"})).text())
    # Programmes are not in the events feed: the node's iCalendar renderer gives their days.
    programmes = [await service.get(rid) for name, rid in ids.items() if name.startswith("programme")]
    programmes_ics = icalendar.Calendar.from_ical(render_calendar(
        programmes, member="QA", base=client.app[CONFIG].public_base, lang="en"))
    vevents = {str(v["UID"]): v for cal in (events_ics, programmes_ics) for v in cal.walk("VEVENT")}
    assert set(vevents) == set(by_uid)
    horizon = datetime(2021, 1, 1, tzinfo=UTC)
    checked = set()
    for uid, ev in vevents.items():
        js = by_uid[uid]
        assert js["sequence"] == int(ev["SEQUENCE"])
        assert js["title"] == str(ev["SUMMARY"]) and js["locale"] == ev["SUMMARY"].params["LANGUAGE"]
        others = {x.params["LANGUAGE"]: str(x) for x in
                  (ev.get("X-IPDN-TITLE") if isinstance(ev.get("X-IPDN-TITLE"), list) else
                   [ev["X-IPDN-TITLE"]] if ev.get("X-IPDN-TITLE") else [])}
        assert {t: p["title"] for t, p in js.get("localizations", {}).items() if "title" in p} == others
        assert js["status"] == str(ev["STATUS"]).lower()
        assert js["ipdn.network:status"] == str(ev["X-IPDN-STATUS"])
        start, end = ev.decoded("DTSTART"), ev.decoded("DTEND")
        if js.get("showWithoutTime"):  # a programme: its days
            assert not isinstance(start, datetime) and not isinstance(end, datetime)
            assert js_start(js).date() == start and js_end(js).date() == end
            checked.add("days")
        else:
            assert js["timeZone"] == ev["DTSTART"].params["TZID"] == str(start.tzinfo)
            assert js_start(js) == start and js_end(js) == end
            occurrences = [o.decoded("DTSTART") for o in recurring_ical_events.of(events_ics).between(
                start - timedelta(days=1), horizon) if str(o["UID"]) == uid]
            assert js_occurrences(js, horizon) == occurrences, uid
            if "RRULE" in ev:
                assert len(occurrences) > 1
                checked.add("recurring")
        organizer = ev.get("ORGANIZER")
        owner = js["participants"]["owner1"]
        if organizer is not None:
            assert owner["sendTo"]["imip"] == str(organizer) and owner["name"] == organizer.params["CN"]
        if "GEO" in ev:
            lat, lon = ev.decoded("GEO")
            assert js["locations"]["venue"]["coordinates"] == f"geo:{lat},{lon}"
        assert {ln["href"] for ln in js["links"].values()} >= {str(ev["URL"])}
        if js["status"] == "cancelled":
            checked.add("cancelled")
        if "online" in js.get("virtualLocations", {}).get("online", {}).get("name", "") and "locations" not in js:
            checked.add("online")
    assert checked == {"days", "recurring", "cancelled", "online"}
    night = by_uid[uid_of(ids["dst-night"])]
    assert night["duration"] == "P1DT1H"  # a nominal day (23 hours that night), then the hour past 20:00
    assert js_end(night).astimezone(UTC) - js_start(night).astimezone(UTC) == timedelta(hours=24)


async def test_one_record_is_an_event_by_accept_or_format(client: TestClient, service: NodeService) -> None:
    rid = (await service.create("cultural-event", example("cultural-event", "website-launch"))).payload.record_id
    path = f"{RECORDS}/{rid}"
    by_header = await client.get(path, headers={"Accept": MEDIA_TYPE})
    by_query = await client.get(path, params={"format": "jscalendar"})
    for resp in (by_header, by_query):
        assert resp.status == 200 and resp.content_type == MEDIA_TYPE and resp.charset == "utf-8"
        assert resp.headers["Vary"] == "Accept" and resp.headers["Cache-Control"] == "public, max-age=300"
    doc = await by_header.json(content_type=None)
    assert doc == await by_query.json(content_type=None)
    rfc8984(doc)
    assert doc["uid"] == uid_of(rid) and doc["updated"].endswith("Z") and doc["ipdn.network:recordId"] == rid
    assert doc["localizations"]["ar"]["title"].startswith("إطلاق")
    assert doc["localizations"]["ar"]["locations/venue/name"] == "الحي الثقافي (كتارا)"
    assert doc["links"]["page"] == {"@type": "Link", "href": f"{client.app[CONFIG].public_base}/events/{rid}",
                                    "rel": "alternate", "contentType": "text/html"}
    # The JSON item stays the default (a browser's Accept too), and names what it varies on.
    for accept in (None, "application/json", "text/html,application/xhtml+xml,*/*;q=0.8",
                   f"{MEDIA_TYPE};q=0.5, application/json"):
        resp = await client.get(path, headers={"Accept": accept} if accept else {})
        assert resp.status == 200 and resp.content_type == "application/json", accept
        assert resp.headers["Vary"] == "Accept" and (await resp.json())["record_id"] == rid
        assert resp.headers["ETag"] != by_header.headers["ETag"]
    again = await client.get(path, headers={"Accept": MEDIA_TYPE, "If-None-Match": by_header.headers["ETag"]})
    assert again.status == 304
    bad = await client.get(path, params={"format": "ics"})
    assert bad.status == 400 and bad.content_type == PROBLEM and (await bad.json())["reason"] == "bad-query"


async def test_a_deleted_record_has_no_calendar_object(client: TestClient, service: NodeService) -> None:
    rid = (await service.create("cultural-event", example("cultural-event", "website-launch"))).payload.record_id
    await service.delete(rid)
    resp = await client.get(f"{RECORDS}/{rid}", params={"format": "jscalendar"})
    assert resp.status == 410 and resp.content_type == PROBLEM and (await resp.json())["reason"] == "record-deleted"
    page = await (await client.get(RECORDS, params={"format": "jscalendar"})).json(content_type=None)
    assert page["entries"] == []  # a tombstone is no entry (the JSON page and the stream carry it)


async def test_a_group_takes_the_read_filters_and_pages_by_link(client: TestClient, service: NodeService) -> None:
    ids = await published(service)
    resp = await client.get(RECORDS, params={"kind": "cultural-event", "status": "cancelled"},
                            headers={"Accept": MEDIA_TYPE})
    group = await resp.json(content_type=None)
    rfc8984(group)
    assert [e["ipdn.network:recordId"] for e in group["entries"]] == [ids["event-5"]]
    assert group["ipdn.network:nextCursor"] is None and "Link" not in resp.headers
    seen, url = [], f"{RECORDS}?format=jscalendar&limit=4"
    while url:
        resp = await client.get(url)
        page = await resp.json(content_type=None)
        rfc8984(page)
        seen += [e["ipdn.network:recordId"] for e in page["entries"]]
        link = resp.headers.get("Link")
        if link is None:
            break
        m = re.fullmatch(r'<([^>]+)>; rel="next"', link)
        assert m is not None and page["ipdn.network:nextCursor"] in m.group(1)
        url = m.group(1).removeprefix(client.app[CONFIG].public_base)
    assert sorted(seen) == sorted(ids.values())


def test_durations_follow_the_grammar() -> None:
    pattern = re.compile(DURATION)
    cases = {timedelta(0): "PT0S", timedelta(hours=1): "PT1H", timedelta(hours=1, seconds=5): "PT1H0M5S",
             timedelta(days=2): "P2D", timedelta(days=1, minutes=30): "P1DT30M", timedelta(seconds=59): "PT59S"}
    for span, text in cases.items():
        assert duration(span) == text and pattern.fullmatch(text)
    with pytest.raises(ValueError, match="negative"):
        duration(timedelta(seconds=-1))


def test_accept_negotiation() -> None:
    offers = ["application/json", MEDIA_TYPE]
    assert best(None, offers) == "application/json"
    assert best("application/*", offers) == "application/json"  # a tie goes to the default
    assert best(f"{MEDIA_TYPE}", offers) == MEDIA_TYPE
    assert best(f"application/json;q=0.1, {MEDIA_TYPE}", offers) == MEDIA_TYPE
    assert best(f"*/*;q=0.2, {MEDIA_TYPE};q=0", offers) == "application/json"
    assert best("text/html", offers) == "application/json"
    assert best("application/json;q=oops, " + MEDIA_TYPE + ";q=0.3", offers) == MEDIA_TYPE
