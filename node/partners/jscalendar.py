"""JSCalendar (RFC 8984, ``application/jscalendar+json``): events and programmes as calendar objects in JSON.

The record API speaks it by content negotiation (docs/adr/0028), on the URLs partners already hold:

- ``GET /api/v1/records/{id}`` with ``Accept: application/jscalendar+json`` (or ``?format=jscalendar``, for clients
  that cannot set headers): the record as one JSCalendar ``Event``; a deleted record is a 410 problem
  (``record-deleted``): JSCalendar has no tombstone;
- ``GET /api/v1/records?<the read API's filters>&format=jscalendar`` (or the header): the page as a ``Group``
  whose ``entries`` are its events and programmes (tombstones left out), ``limit`` and ``cursor`` as for JSON; the
  next page is the ``Link: <...>; rel="next"`` header and ``ipdn.network:nextCursor``.

Both answers carry ``Vary: Accept`` (the JSON representation lives at the same URL), an ETag of their own and
the record API's ``Cache-Control``.

The mapping (PROTOCOL.md §9). ``uid`` is the iCalendar UID (``QA-ga6@ipdn.network``), so the same record is the
same object in both formats; ``sequence`` the version; ``updated`` the version's issued_at. ``title`` and
``description`` are the English text (else the record's first), ``locale`` its language, and every other language
a ``localizations`` patch of ``title``, ``description`` and the venue's name. An event is ``start`` (local time)
+ ``timeZone`` + ``duration`` (days nominal, the rest exact: the end it names is the record's ``end`` even across
a daylight-saving change); a programme is its days: ``showWithoutTime``, midnight of the first day, ``P<n>D``.
``recurrence`` (an RRULE) becomes ``recurrenceRules`` (``until`` in the event's own time zone, as RFC 8984 §4.3.3
reads it). ``status``: ``cancelled``, ``tentative`` (postponed) or ``confirmed``; the record's own status in
``ipdn.network:status``. The venue is a ``Location`` (name, address, ``geo:`` coordinates); the online page a
``VirtualLocation``; the organisers (a programme's provider) ``Participant``s with ``roles: {"owner"}``, the first
with the contact's e-mail, the partners ``informational``. ``links``: the record's page (text/html), its API item
(application/json), the envelope download (application/jose+json), the record's own links and images. ``keywords``
from tags (and a programme's topics). Vendor properties (``ipdn.network:*``) carry the record id, kind, status,
event or programme type, previous start, rights statement and envelope hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from icalendar import vRecur

from federation.protocol.envelope import parse_time
from federation.server.ui.i18n import pick
from federation.server.web import Problem
from node.partners import negotiation
from node.partners.feeds import (
    ENVELOPE_REL,
    HTML_TYPE,
    JOSE_TYPE,
    JSON_TYPE,
    envelope_url,
    event_uid,
    page_url,
    record_url,
)
from node.store.records import StoredRecord

MEDIA_TYPE = "application/jscalendar+json"
OFFERS = {"json": JSON_TYPE, "jscalendar": MEDIA_TYPE}  # ?format=<name>; the first is the default
VENDOR = "ipdn.network:"  # RFC 8984 §3.3: vendor properties are prefixed with a domain the vendor controls
# Part of every JSCalendar ETag: bump it whenever the same records would be mapped differently.
REVISION = "1"

# RFC 8984 §5.1.3 knows three statuses; the record's own status travels as ipdn.network:status.
_STATUS = {"cancelled": "cancelled", "postponed": "tentative"}
_FREQUENCIES = ("yearly", "monthly", "weekly", "daily", "hourly", "minutely", "secondly")
# RRULE parts (RFC 5545 §3.3.10) and their RFC 8984 §4.3.3 names; BYDAY, UNTIL, FREQ and WKST are read apart.
_NUMBER_LISTS = {"BYMONTHDAY": "byMonthDay", "BYYEARDAY": "byYearDay", "BYWEEKNO": "byWeekNo", "BYHOUR": "byHour",
                 "BYMINUTE": "byMinute", "BYSECOND": "bySecond", "BYSETPOS": "bySetPosition"}


def wanted(request: web.Request) -> bool:
    """Whether the request asks for JSCalendar rather than the record API's JSON.

    Raises:
        BadQueryError: a ``format`` other than ``json`` or ``jscalendar``.
    """
    return negotiation.choose(request, OFFERS) == MEDIA_TYPE


# -- values ----------------------------------------------------------------------------------------------------


def utc_date_time(when: datetime) -> str:
    """An RFC 8984 §1.4.4 UTCDateTime: ``Z``, and fractional seconds only when they are not zero (§1.4.3)."""
    text = when.astimezone(UTC).replace(tzinfo=None).isoformat()
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text + "Z"


def local_date_time(when: datetime) -> str:
    """An RFC 8984 §1.4.4 LocalDateTime: the wall-clock time, no offset."""
    text = when.replace(tzinfo=None).isoformat()
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def duration(span: timedelta) -> str:
    """An RFC 8984 §1.4.6 Duration of a non-negative ``span``: ``P<d>D`` and/or ``T<h>H<m>M<s>S`` (never years or
    months, which the grammar does not have); ``PT0S`` for none."""
    seconds = int(span.total_seconds())
    if seconds < 0:
        raise ValueError("a duration is not negative")
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}H" if hours else ""
    if minutes or (hours and secs):  # the grammar has no hours followed by seconds: PT1H0M5S
        clock += f"{minutes}M"
    if secs:
        clock += f"{secs}S"
    if not days and not clock:
        return "PT0S"
    return "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "")


def _nominal_span(start: datetime, end: datetime, zone: tzinfo) -> str:
    """The duration from ``start`` to ``end`` as RFC 8984 reads it in ``zone``: whole days on the wall clock, then
    the exact time left (so a day that crosses a daylight-saving change still ends at the record's ``end``)."""
    s, e = start.astimezone(zone), end.astimezone(zone)
    days = (e.replace(tzinfo=None) - s.replace(tzinfo=None)).days
    while days > 0:
        middle = (s.replace(tzinfo=None) + timedelta(days=days)).replace(tzinfo=zone)
        rest = e.astimezone(UTC) - middle.astimezone(UTC)
        if rest >= timedelta(0):
            return duration(timedelta(days=days) + rest)
        days -= 1
    return duration(e.astimezone(UTC) - s.astimezone(UTC))


def _zone(name: Any) -> tzinfo | None:
    try:
        return ZoneInfo(str(name)) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def recurrence_rule(value: str, zone: tzinfo) -> dict[str, Any]:
    """An RFC 5545 RRULE value as an RFC 8984 ``RecurrenceRule``; ``until`` in ``zone`` (a date UNTIL is the end of
    that day there, a UTC UNTIL its local time: the same instants the iCalendar feed gives).

    Raises:
        ValueError: not an RRULE icalendar can read, or a frequency RFC 8984 does not know.
    """
    rule = vRecur.from_ical(value)
    frequency = str(rule["FREQ"][0]).lower()
    if frequency not in _FREQUENCIES:
        raise ValueError(f"frequency {frequency!r}")
    out: dict[str, Any] = {"@type": "RecurrenceRule", "frequency": frequency}
    if rule.get("INTERVAL") and int(rule["INTERVAL"][0]) != 1:
        out["interval"] = int(rule["INTERVAL"][0])
    if rule.get("RSCALE"):
        out["rscale"] = str(rule["RSCALE"][0]).lower()
    if rule.get("SKIP"):
        out["skip"] = str(rule["SKIP"][0]).lower()
    if rule.get("WKST"):
        out["firstDayOfWeek"] = str(rule["WKST"][0]).lower()
    if rule.get("BYDAY"):
        days = []
        for text in rule["BYDAY"]:
            text = str(text)
            nday: dict[str, Any] = {"@type": "NDay", "day": text[-2:].lower()}
            if text[:-2]:
                nday["nthOfPeriod"] = int(text[:-2])
            days.append(nday)
        out["byDay"] = days
    if rule.get("BYMONTH"):
        out["byMonth"] = [str(m) for m in rule["BYMONTH"]]  # strings: RFC 8984 allows a leap month ("5L")
    for part, name in _NUMBER_LISTS.items():
        if rule.get(part):
            out[name] = [int(n) for n in rule[part]]
    if rule.get("COUNT"):
        out["count"] = int(rule["COUNT"][0])
    if rule.get("UNTIL"):
        until = rule["UNTIL"][0]
        if not isinstance(until, datetime):
            until = datetime.combine(until, time(23, 59, 59))
        until = until.replace(tzinfo=zone) if until.tzinfo is None else until.astimezone(zone)
        out["until"] = local_date_time(until)
    return out


def _links(rec: StoredRecord, body: Mapping[str, Any], base: str) -> dict[str, dict[str, Any]]:
    links: dict[str, dict[str, Any]] = {
        "page": {"@type": "Link", "href": page_url(base, rec.record_id), "rel": "alternate",
                 "contentType": HTML_TYPE},
        "record": {"@type": "Link", "href": record_url(base, rec.record_id), "rel": "alternate",
                   "contentType": JSON_TYPE},
        "envelope": {"@type": "Link", "href": envelope_url(base, rec.record_id), "rel": ENVELOPE_REL,
                     "contentType": JOSE_TYPE},
    }
    for i, link in enumerate(x for x in body.get("links", []) if isinstance(x, dict) and x.get("url")):
        item = {"@type": "Link", "href": str(link["url"]), "rel": "related"}
        title = pick(link.get("title"), None)
        if title:
            item["title"] = title[1]
        links[f"link{i + 1}"] = item
    for i, image in enumerate(x for x in body.get("images", []) if isinstance(x, dict) and x.get("url")):
        item = {"@type": "Link", "href": str(image["url"]), "rel": "enclosure", "display": "graphic"}
        alt = pick(image.get("alt"), None)
        if alt:
            item["title"] = alt[1]
        links[f"image{i + 1}"] = item
    for key in ("registration", "application"):
        if isinstance(body.get(key), dict) and body[key].get("url"):
            links[key] = {"@type": "Link", "href": str(body[key]["url"]), "rel": "related", "title": key}
    return links


def _participants(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The organisers (a programme's provider) as owners, the first with the contact's e-mail (the iCalendar
    ORGANIZER); the partners as informational participants."""
    owners = body.get("organizers") or ([body["provider"]] if isinstance(body.get("provider"), dict) else [])
    contact: Mapping[str, Any] = body["contact"] if isinstance(body.get("contact"), dict) else {}
    out: dict[str, dict[str, Any]] = {}
    people = [(o, "owner") for o in owners if isinstance(o, dict)]
    people += [(p, "informational") for p in body.get("partners", []) if isinstance(p, dict)]
    for i, (inst, role) in enumerate(people):
        person: dict[str, Any] = {"@type": "Participant", "roles": {role: True}}
        name = pick(inst.get("name"), None)
        if name:
            person["name"] = name[1]
        if i == 0 and contact.get("email"):
            person["email"] = str(contact["email"])
            person["sendTo"] = {"imip": f"mailto:{contact['email']}"}
        if inst.get("url"):
            person["links"] = {"web": {"@type": "Link", "href": str(inst["url"]), "rel": "about"}}
        out[f"{role}{i + 1}"] = person
    return out


def _location(venue: Mapping[str, Any]) -> dict[str, Any]:
    place: dict[str, Any] = {"@type": "Location"}
    name = pick(venue.get("name"), None)
    if name:
        place["name"] = name[1]
    address = pick(venue.get("address"), None)
    city = pick(venue.get("city"), None)
    where = [address[1]] if address else [x for x in (city[1] if city else None, venue.get("country")) if x]
    if venue.get("postal_code") and address:
        where.append(str(venue["postal_code"]))
    if where:
        place["description"] = ", ".join(where)
    if isinstance(venue.get("geo"), dict):
        place["coordinates"] = f"geo:{float(venue['geo']['lat'])},{float(venue['geo']['lon'])}"
    return place


def _online(body: Mapping[str, Any]) -> bool:
    return (body.get("attendance_mode") == "online" or body.get("format") == "online"
            or body.get("status") == "moved-online")


# -- objects ---------------------------------------------------------------------------------------------------


def event(rec: StoredRecord, base: str, member: str) -> dict[str, Any]:
    """The record (either kind) as an RFC 8984 ``Event``.

    Raises:
        KeyError, ValueError, TypeError: a tombstone, or a body without the times an event needs (another schema
            version).
    """
    body = rec.body
    if body is None:
        raise ValueError("a tombstone has no calendar object")
    obj: dict[str, Any] = {"@type": "Event", "uid": event_uid(rec.record_id),
                           "prodId": f"-//IPDN Exchange//member node {member}//EN",
                           "updated": utc_date_time(parse_time(rec.issued_at)), "sequence": rec.version}
    title, text = pick(body.get("title"), None), pick(body.get("description"), None)
    if title:
        obj["title"] = title[1]
        obj["locale"] = title[0]
    if text:
        obj["description"] = text[1]
        obj["descriptionContentType"] = "text/plain"
    zone_name = body.get("timezone")
    zone = _zone(zone_name)
    if body.get("start"):  # an event: its times
        start = datetime.fromisoformat(body["start"])
        if zone is None:  # a zone this node does not know: the instants are right in UTC
            zone = UTC
            zone_name = "Etc/UTC"
        obj["start"] = local_date_time(start.astimezone(zone))
        obj["timeZone"] = str(zone_name)
        if body.get("end"):
            obj["duration"] = _nominal_span(start, datetime.fromisoformat(body["end"]), zone)
        if body.get("recurrence"):
            obj["recurrenceRules"] = [recurrence_rule(str(body["recurrence"]), zone)]
    else:  # a programme: its days
        first = date.fromisoformat(body["start_date"])
        last = date.fromisoformat(body.get("end_date") or body["start_date"])
        obj["start"] = local_date_time(datetime.combine(first, time()))
        obj["timeZone"] = str(zone_name) if zone is not None else None  # floating days without a zone
        obj["showWithoutTime"] = True
        obj["duration"] = duration(timedelta(days=(last - first).days + 1))
    obj["status"] = _STATUS.get(rec.status, "confirmed")
    obj["privacy"] = "public"
    if isinstance(body.get("venue"), dict):
        obj["locations"] = {"venue": {**_location(body["venue"]),
                                      **({"timeZone": str(zone_name)} if zone_name and zone is not UTC else {})}}
    if body.get("online_url"):
        obj["virtualLocations"] = {"online": {"@type": "VirtualLocation", "uri": str(body["online_url"]),
                                              **({"name": "online"} if _online(body) else {})}}
    participants = _participants(body)
    if participants:
        obj["participants"] = participants
    obj["links"] = _links(rec, body, base)
    keywords = [str(t) for t in [*body.get("tags", []), *body.get("topics", [])] if isinstance(t, str)]
    if keywords:
        obj["keywords"] = dict.fromkeys(keywords, True)
    localizations = _localizations(body)
    if localizations:
        obj["localizations"] = localizations
    obj[VENDOR + "recordId"] = rec.record_id
    obj[VENDOR + "kind"] = rec.kind
    obj[VENDOR + "status"] = rec.status
    for key in ("event_type", "programme_type", "previous_start", "rights"):
        if body.get(key):
            obj[VENDOR + _camel(key)] = str(body[key])
    obj[VENDOR + "envelopeHash"] = rec.hash
    if rec.key_warning is not None:  # as the record API says it (PROTOCOL.md §9): kept, not verified
        obj[VENDOR + "warnings"] = [rec.key_warning]
    return obj


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.title() for w in rest)


def _localizations(body: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """RFC 8984 §4.6.1: each other language as a patch of the texts it has (``title``, ``description``, the
    venue's name)."""
    out: dict[str, dict[str, str]] = {}
    sources = [("title", body.get("title")), ("description", body.get("description"))]
    if isinstance(body.get("venue"), dict):
        sources.append(("locations/venue/name", body["venue"].get("name")))
    for pointer, texts in sources:
        if not isinstance(texts, dict):
            continue
        chosen = pick(texts, None)
        for tag, value in texts.items():
            if chosen and tag == chosen[0]:
                continue
            out.setdefault(tag, {})[pointer] = value
    return out


def group(records: Sequence[StoredRecord], *, base: str, member: str, source: str,
          next_cursor: str | None) -> dict[str, Any]:
    """A page of records as an RFC 8984 ``Group`` (tombstones, and bodies no event can be made of, left out)."""
    entries = []
    for rec in records:
        if rec.body is None:
            continue
        try:
            entries.append(event(rec, base, member))
        except (KeyError, ValueError, TypeError):
            continue
    h = hashlib.sha256(source.encode())
    for rec in records:
        h.update(rec.hash.encode())
    updated = max((parse_time(r.issued_at) for r in records), default=datetime(1970, 1, 1, tzinfo=UTC))
    return {"@type": "Group", "uid": f"urn:ipdn:group:{h.hexdigest()[:32]}", "updated": utc_date_time(updated),
            "prodId": f"-//IPDN Exchange//member node {member}//EN", "source": source,
            "title": f"IPDN Exchange: records at the {member} node", "entries": entries,
            VENDOR + "nextCursor": next_cursor}


# -- HTTP ------------------------------------------------------------------------------------------------------


def etag(parts: Sequence[Any]) -> str:
    """A strong validator of a JSCalendar answer (its records' hashes and statuses, the base URL, the next cursor)."""
    return '"jscal-' + hashlib.sha256(json.dumps([REVISION, *parts]).encode()).hexdigest()[:32] + '"'


def response(request: web.Request, doc: Callable[[], Any], tag: str, cache_control: str,
             headers: Mapping[str, str] | None = None) -> web.Response:
    """``doc()`` as JSCalendar with its ETag, ``Vary: Accept`` and CORS; 304 without a body when ``If-None-Match``
    names the ETag."""
    out = {"ETag": tag, "Cache-Control": cache_control, "Vary": "Accept", "Access-Control-Allow-Origin": "*",
           **(headers or {})}
    wanted_tags = {t.strip().removeprefix("W/") for t in request.headers.get("If-None-Match", "").split(",")}
    if tag in wanted_tags or "*" in wanted_tags:
        return web.Response(status=304, headers=out)
    body = json.dumps(doc(), ensure_ascii=False, separators=(",", ":")).encode()
    return web.Response(body=body, content_type=MEDIA_TYPE, charset="utf-8", headers=out)


def item_response(request: web.Request, rec: StoredRecord, *, base: str, member: str,
                  cache_control: str) -> web.Response:
    """One record as a JSCalendar ``Event``: a 410 problem for a tombstone, a 406 for a body no event is made of."""
    if rec.body is None:
        raise Problem(410, "record-deleted", f"{rec.record_id} was deleted: JSCalendar has no tombstone "
                                             "(the JSON representation carries it)")
    try:
        obj = event(rec, base, member)
    except (KeyError, ValueError, TypeError) as e:
        raise Problem(406, "not-representable", f"{rec.record_id} has no JSCalendar form here ({e})") from e
    return response(request, lambda: obj, etag([rec.hash, rec.status, base]), cache_control)
