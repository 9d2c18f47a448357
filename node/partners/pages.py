"""The portal's record pages (either kind), with schema.org Event JSON-LD for search engines and partners.

``GET /events/{record_id}`` (read-only, no token) answers a page (``node/partners/templates/event.html``) in the
portal's frame (node/partners/portal.py):

- a ``<script type="application/ld+json">`` block: a schema.org ``Event`` (an ``EducationEvent`` for a programme:
  status, attendance mode, ``Place`` and/or ``VirtualLocation``, organisers, dates as published, RFC 3339 with
  offset, ``eventSchedule`` for a recurring event, ``offers`` from registration), its name and description one
  string in the page's language, the other titles ``alternateName`` values with their language, ``license`` the
  record's rights statement URI (PROTOCOL.md §9);
- the text in every language of the record, each section with its ``lang`` and ``dir`` (Arabic,
  Persian, Hebrew, Urdu and other right-to-left scripts are ``rtl``), every value escaped (jinja2
  autoescape) and isolated (``<bdi>``, ``dir``), so neither markup nor bidirectional controls in a
  title reach beyond it;
- a "verified" badge saying what this node checked (the signature and by which key, the schema, the version's
  place in the hub's log), the versions held, the envelope for download (``/events/{id}/envelope.json``), an
  event's ``.ics`` (``/events/{id}/calendar.ics``), share links and the publisher's feeds.

Unknown ids are a 404 page, a deleted record a 410 page that still names the id and the tombstone's hash.
Responses carry a strict ``Content-Security-Policy`` (``default-src 'none'``, the portal's stylesheet, no script:
the JSON-LD block is data, which CSP does not execute), ``X-Content-Type-Options: nosniff`` and a strong ``ETag``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from icalendar import vRecur
from markupsafe import Markup

from federation.protocol.envelope import Envelope
from federation.server.ui import formats
from federation.server.ui.i18n import direction, pick
from node.appkeys import CONFIG, SERVICE
from node.config import NodeConfig
from node.errors import RecordNotFoundError
from node.partners import portal
from node.partners.answers import cached
from node.partners.feeds import FORMAT_REVISION, record_path, record_url, render_calendar
from node.partners.feeds import page_url as record_page_url
from node.records.filters import RecordFilter
from node.records.service import REASON_FIELD, REASON_STATUSES, NodeService
from node.store.records import RecordVersion, StoredRecord

EVENT_KIND = "cultural-event"
EVENT_PATH = "/events/{record_id}"
SCHEMA = "https://schema.org/"
HTML_TYPE = "text/html"
CACHE_CONTROL = "public, max-age=300"
# Part of every ETag: bump it whenever the same record would be rendered differently.
PAGE_REVISION = "5"

EVENT_STATUS = {
    "scheduled": "EventScheduled", "completed": "EventScheduled", "postponed": "EventPostponed",
    "rescheduled": "EventRescheduled", "cancelled": "EventCancelled", "moved-online": "EventMovedOnline",
}
ATTENDANCE_MODE = {"offline": "OfflineEventAttendanceMode", "online": "OnlineEventAttendanceMode",
                   "mixed": "MixedEventAttendanceMode"}
PROGRAMME_STATUS = {"cancelled": "EventCancelled", "postponed": "EventPostponed"}  # the others: EventScheduled
FORMAT_MODE = {"in-person": "offline", "online": "online", "hybrid": "mixed"}  # a programme's format
NOTICE_STATUSES = ("cancelled", "postponed", "rescheduled", "moved-online")  # a banner above the event's texts
UI_LANGUAGES = portal.UI_LANGUAGES

_catalog = portal.catalog
# Where people share a page (the names are the services' own, in no language).
SHARE = (("WhatsApp", "https://wa.me/?text={text}%20{url}"), ("Telegram", "https://t.me/share/url?url={url}&text={text}"),
         ("X", "https://x.com/intent/post?url={url}&text={text}"),
         ("LinkedIn", "https://www.linkedin.com/sharing/share-offsite/?url={url}"),
         ("Facebook", "https://www.facebook.com/sharer/sharer.php?u={url}"))


def language_values(texts: Any, *, besides: str | None = None) -> list[dict[str, str]]:
    """A language map as JSON-LD value objects, one per language (the map's order), but ``besides``."""
    if not isinstance(texts, Mapping):
        return []
    return [{"@language": tag, "@value": text} for tag, text in texts.items()
            if isinstance(text, str) and tag != besides]


def _isolated(text: str) -> str:
    """Plain text (a ``<title>``) wrapped in FSI ... PDI: its bidirectional controls end with it."""
    return f"\u2068{text}\u2069"


def _safe_url(url: Any) -> str | None:
    """An http(s) URL, else None (the schemas allow no other; a page never links ``javascript:``)."""
    if not isinstance(url, str):
        return None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in ("http", "https") else None


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


# -- JSON-LD --------------------------------------------------------------------------------------------


def attendance_mode(body: Mapping[str, Any]) -> str | None:
    """The record's attendance mode, or inferred: a venue is offline, an online URL online, both mixed."""
    mode = body.get("attendance_mode")
    if mode in ATTENDANCE_MODE:
        return str(mode)
    venue, online = bool(body.get("venue")), bool(body.get("online_url"))
    if body.get("status") == "moved-online" and online:
        return "online"
    return "mixed" if venue and online else "offline" if venue else "online" if online else None


class _Texts:
    """The record's texts for one page: one string in the page's language (search engines read one per page),
    the other languages beside it as language-tagged values (``alternateName``)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang

    def one(self, texts: Any) -> tuple[str, str] | None:
        return pick(texts, self.lang) if isinstance(texts, Mapping) else None

    def named(self, target: dict[str, Any], texts: Any, key: str = "name") -> None:
        """``target[key]`` the text in the page's language; the others as ``alternateName`` (names only)."""
        if chosen := self.one(texts):
            target[key] = chosen[1]
            if key == "name" and (others := language_values(texts, besides=chosen[0])):
                target["alternateName"] = others


def _place(venue: Mapping[str, Any], t: _Texts) -> dict[str, Any]:
    address: dict[str, Any] = {"@type": "PostalAddress"}
    t.named(address, venue.get("address"), "streetAddress")
    t.named(address, venue.get("city"), "addressLocality")
    if venue.get("postal_code"):
        address["postalCode"] = venue["postal_code"]
    if venue.get("country"):
        address["addressCountry"] = venue["country"]
    place: dict[str, Any] = {"@type": "Place"}
    t.named(place, venue.get("name"))
    place["address"] = address
    geo = venue.get("geo")
    if isinstance(geo, Mapping) and "lat" in geo and "lon" in geo:
        place["geo"] = {"@type": "GeoCoordinates", "latitude": geo["lat"], "longitude": geo["lon"]}
    return place


def _organization(inst: Mapping[str, Any], t: _Texts) -> dict[str, Any]:
    org: dict[str, Any] = {"@type": "Organization"}
    t.named(org, inst.get("name"))
    if url := _safe_url(inst.get("url")):
        org["url"] = url
    if inst.get("identifier"):
        org["identifier"] = inst["identifier"]
    if inst.get("country"):
        org["address"] = {"@type": "PostalAddress", "addressCountry": inst["country"]}
    return org


_FREQUENCY = {"YEARLY": "P{}Y", "MONTHLY": "P{}M", "WEEKLY": "P{}W", "DAILY": "P{}D", "HOURLY": "PT{}H",
              "MINUTELY": "PT{}M", "SECONDLY": "PT{}S"}
_WEEKDAYS = {"MO": "Monday", "TU": "Tuesday", "WE": "Wednesday", "TH": "Thursday", "FR": "Friday",
             "SA": "Saturday", "SU": "Sunday"}


def _local(value: str | datetime, zone: str) -> datetime:
    """An RFC 3339 time in the record's zone (as published when the zone is unknown here)."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:  # a floating UNTIL: already local
        return when
    try:
        return when.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        return when


def _duration(span: timedelta) -> str:
    """An ISO 8601 duration of whole seconds: ``PT2H30M``."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time_part = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time_part}" if time_part else "" if days else "T0S")


def event_schedule(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """A recurring event's schema.org ``Schedule`` from its RRULE (read by icalendar): how often (``repeatFrequency``
    with the rule's interval), on which days (``byDay``: schema.org days, or the iCalendar form such as ``1MO``
    for an ordinal, which schema.org allows), ``byMonth``/``byMonthDay``, ``repeatCount`` or the last day
    (``endDate``), from the first occurrence's local day and times in ``scheduleTimezone``. None for a one-off
    event or a rule icalendar cannot read (the page then shows the first occurrence only, as the calendar does)."""
    if not isinstance(body.get("recurrence"), str) or not isinstance(body.get("start"), str):
        return None
    try:
        rule = vRecur.from_ical(body["recurrence"])
        freq = str(rule["FREQ"][0])
        interval = int(rule.get("INTERVAL", [1])[0])
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    if freq not in _FREQUENCY:
        return None
    zone = str(body.get("timezone") or "UTC")
    start = _local(body["start"], zone)
    schedule: dict[str, Any] = {"@type": "Schedule", "repeatFrequency": _FREQUENCY[freq].format(interval),
                                "startDate": start.date().isoformat(), "startTime": start.time().isoformat()}
    if isinstance(body.get("end"), str):
        end = _local(body["end"], zone)
        schedule["endTime"] = end.time().isoformat()
        schedule["duration"] = _duration(end - start)
    days = [str(d) for d in rule.get("BYDAY", [])]
    if days:
        schedule["byDay"] = [SCHEMA + _WEEKDAYS[d] if d in _WEEKDAYS else d for d in days]
    for part, prop in (("BYMONTH", "byMonth"), ("BYMONTHDAY", "byMonthDay")):
        if rule.get(part):
            schedule[prop] = [int(v) for v in rule[part]]
    if rule.get("COUNT"):
        schedule["repeatCount"] = int(rule["COUNT"][0])
    if rule.get("UNTIL"):
        until = rule["UNTIL"][0]
        if isinstance(until, datetime):
            until = _local(until, zone).date()
        schedule["endDate"] = until.isoformat()
    schedule["scheduleTimezone"] = zone
    return schedule


def _offer(value: Any) -> dict[str, Any] | None:
    """How to take part (an event's registration, a programme's application) as a schema.org ``Offer``: its page
    and deadline. The records carry no price and no availability: none is invented."""
    if not isinstance(value, Mapping) or not (url := _safe_url(value.get("url"))):
        return None
    offer: dict[str, Any] = {"@type": "Offer", "url": url}
    if value.get("deadline"):
        offer["validThrough"] = value["deadline"]
    return offer


def event_jsonld(rec: StoredRecord, page_url: str, api_url: str, lang: str = "en") -> dict[str, Any]:
    """The schema.org ``Event`` of a cultural-event record, or the ``EducationEvent`` of a capacity programme
    (``rec.body`` is not None), in the page's language ``lang`` (node/partners/pages.py, PROTOCOL §9.1)."""
    body: Mapping[str, Any] = rec.body or {}
    is_event = rec.kind == EVENT_KIND
    t = _Texts(lang)
    status = body.get("status", "scheduled")
    doc: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Event" if is_event else "EducationEvent",
        "@id": page_url + "#event",
        "url": page_url,
        "identifier": rec.record_id,
    }
    t.named(doc, body.get("title"))
    t.named(doc, body.get("description"), "description")
    doc["inLanguage"] = list(body.get("languages") or body.get("title") or [])
    doc["startDate"] = body.get("start") or body.get("start_date")
    if end := body.get("end") or body.get("end_date"):
        doc["endDate"] = end
    if schedule := event_schedule(body):
        doc["eventSchedule"] = schedule
    doc["eventStatus"] = SCHEMA + (EVENT_STATUS if is_event else PROGRAMME_STATUS).get(status, "EventScheduled")
    if body.get("previous_start") and status in ("rescheduled", "postponed"):
        doc["previousStartDate"] = body["previous_start"]
    mode = attendance_mode(body) if is_event else FORMAT_MODE.get(str(body.get("format")))
    if mode:
        doc["eventAttendanceMode"] = SCHEMA + ATTENDANCE_MODE[mode]
    locations: list[dict[str, Any]] = []
    if isinstance(body.get("venue"), Mapping) and mode != "online":
        locations.append(_place(body["venue"], t))
    if (online := _safe_url(body.get("online_url"))) and mode != "offline":
        locations.append({"@type": "VirtualLocation", "url": online})
    if locations:
        doc["location"] = locations[0] if len(locations) == 1 else locations
    people = body.get("organizers") if is_event else [body.get("provider")]
    doc["organizer"] = [_organization(o, t) for o in people or [] if isinstance(o, Mapping)]
    if partners := [_organization(o, t) for o in body.get("partners", []) if isinstance(o, Mapping)]:
        doc["sponsor"] = partners
    images = [i for i in body.get("images", []) if isinstance(i, Mapping) and _safe_url(i.get("url"))]
    if images:
        doc["image"] = []
        for i in images:
            image: dict[str, Any] = {"@type": "ImageObject", "contentUrl": i["url"], "url": i["url"]}
            t.named(image, i.get("alt"), "caption")
            if i.get("rights"):
                image["license"] = i["rights"]
            doc["image"].append(image)
    if isinstance(body.get("is_accessible_for_free"), bool):  # no v1 field says so yet
        doc["isAccessibleForFree"] = body["is_accessible_for_free"]
    if audience := body.get("audience") or body.get("target_audience"):
        doc["audience"] = [{"@type": "Audience", "audienceType": a} for a in audience]
    if isinstance(body.get("seats"), int):
        doc["maximumAttendeeCapacity"] = body["seats"]
    if keywords := [*body.get("topics", []), *body.get("tags", [])]:
        doc["keywords"] = keywords
    if offer := _offer(body.get("registration") or body.get("application")):
        doc["offers"] = offer
    # No performer: neither v1 schema names performers (docs/operating-node.md).
    if body.get("rights"):
        doc["license"] = body["rights"]
    doc["subjectOf"] = {"@type": "DigitalDocument", "url": api_url, "encodingFormat": "application/json",
                        "description": f"The signed record (envelope hash {rec.hash})"}
    return doc


def script_json(doc: Any) -> Markup:
    """JSON safe inside ``<script>``: ``<``, ``>`` and ``&`` as ``\\u`` escapes (no ``</script>``, no ``<!--``)."""
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    # Safe by construction: no <, > or & is left for the HTML parser to see inside the script element.
    return Markup(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))  # noqa: S704


# -- the page ----------------------------------------------------------------------------------------------


def _sections(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    titles: Mapping[str, str] = body.get("title") or {}
    descriptions: Mapping[str, str] = body.get("description") or {}
    tags = list(titles) + [t for t in descriptions if t not in titles]
    first_title = next(iter(titles.values()), "")
    return [{"lang": tag, "dir": direction(tag), "title": titles.get(tag, first_title),
             "paragraphs": _paragraphs(descriptions.get(tag, ""))} for tag in tags]


def _localized(texts: Any, lang: str | None) -> tuple[str, str] | tuple[None, None]:
    chosen = pick(texts, lang) if isinstance(texts, Mapping) else None
    return chosen if chosen else (None, None)


def _bdi(lang: str | None, text: str) -> Markup:
    return Markup('<bdi lang="{}" dir="{}">{}</bdi>').format(lang or "und", direction(lang or "en"), text)


def page_model(rec: StoredRecord, *, base: str, lang: str | None = None, ui: str = "en") -> dict[str, Any]:
    """What the template shows of ``rec`` (a tombstone when ``rec.body`` is None): its texts in ``lang`` first,
    the page's own words in ``ui``."""
    words = _catalog.translator(ui)
    is_event = rec.kind == EVENT_KIND
    api_url = record_url(base, rec.record_id)
    page: dict[str, Any] = {
        "record_id": rec.record_id, "origin": rec.origin, "version": rec.version, "hash": rec.hash,
        "issued_at": rec.issued_at, "api_url": api_url, "gone": rec.body is None, "rights": None,
        "kind": rec.kind, "is_event": is_event,
    }
    if rec.body is None:
        return {**page, "document_title": _isolated(words.gettext("page.withdrawn-title", record=rec.record_id))}
    body = rec.body
    sections = _sections(body)
    if lang:
        chosen = pick({s["lang"]: "" for s in sections}, lang)
        sections.sort(key=lambda s: s["lang"] != (chosen[0] if chosen else None))
    first = sections[0] if sections else {"lang": "en", "dir": "ltr", "title": rec.record_id}
    status = str(body.get("status", "scheduled"))
    title = first["title"]
    if status in NOTICE_STATUSES:
        label = words.pgettext("event-status" if is_event else "status", status)
        title = words.gettext("page.title-status", status=label, title=title)
    venue = None
    if isinstance(v := body.get("venue"), Mapping):
        # Each part isolated in its own language; joined by the reader's comma (node/partners/templates/event.html).
        parts = [_bdi(*texts) for k in ("name", "address", "city") if (texts := _localized(v.get(k), lang))[1]]
        if isinstance(country := v.get("country"), str) and country:
            parts.append(_bdi(ui, str(formats.locale(ui).territories.get(country, country))))
        venue = {"parts": parts}
    organizers = []
    for o in body.get("organizers", []) + ([body["provider"]] if isinstance(body.get("provider"), Mapping) else []):
        o_lang, o_name = _localized(o.get("name"), lang)
        organizers.append({"name": o_name, "lang": o_lang, "url": _safe_url(o.get("url"))})
    images = []
    for i in body.get("images", []):
        if url := _safe_url(i.get("url")):
            alt_lang, alt = _localized(i.get("alt"), lang)
            images.append({"url": url, "alt": alt or url, "lang": alt_lang or "en"})
    mode = attendance_mode(body)
    # Why plans changed (cultural-event/v2 status_reason), in the reader's language if given in it.
    reason_lang, reason = _localized(body.get(REASON_FIELD), lang or ui) if status in REASON_STATUSES else (None, None)
    return {
        **page, "sections": sections, "status": status,
        "notice": status in (NOTICE_STATUSES if is_event else ("cancelled", "postponed")),
        "document_title": _isolated(title),
        "start": body.get("start"), "end": body.get("end"), "timezone": body.get("timezone"),
        "previous_start": body.get("previous_start") if status in ("rescheduled", "postponed") else None,
        "reason": {"lang": reason_lang, "dir": direction(reason_lang), "text": reason} if reason_lang else None,
        "attendance": mode, "venue": venue,
        "online_url": _safe_url(body.get("online_url")), "organizers": organizers, "images": images,
        "languages": [_bdi(ui, _language_name(t, ui)) for t in body.get("languages") or [] if isinstance(t, str)],
        "rights": _safe_url(body.get("rights")),
        "type": body.get("event_type") or body.get("programme_type"), "format": body.get("format"),
        "start_date": body.get("start_date"), "end_date": body.get("end_date"), "seats": body.get("seats"),
        "audience": [words.pgettext("audience", a) for a in body.get("audience") or body.get("target_audience") or []],
        "countries": [_bdi(ui, str(formats.locale(ui).territories.get(c, c)))
                      for c in body.get("participating_countries") or body.get("eligible_countries") or []],
        "eligible": not is_event, "topics": [str(t) for t in body.get("topics") or []],
        "tags": [str(t) for t in body.get("tags") or []],
        "signup": _signup(body.get("registration") or body.get("application")), "notice_key":
            f"notice.{status}" if is_event else f"notice-programme.{status}",
    }


def _signup(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping) or not (url := _safe_url(value.get("url"))):
        return None
    return {"url": url, "deadline": value.get("deadline")}


def _language_name(tag: str, ui: str) -> str:
    loc = formats.locale(ui)
    return str(loc.languages.get(tag.replace("-", "_")) or loc.languages.get(tag.split("-")[0]) or tag)


def verification(rec: StoredRecord, versions: Sequence[RecordVersion], service: NodeService) -> dict[str, Any]:
    """What this node checked of the version shown, for the "verified" badge: the signature (by which key of which
    member), the schema, and where the hub's log holds it (None: not yet logged, an own version on its way)."""
    env = Envelope.from_bytes(rec.envelope)
    logged = next((v for v in versions if v.hash == rec.hash), None)
    return {"verified": rec.key_warning is None, "warning": rec.key_warning, "kid": env.kid,
            "schema": env.payload.schema, "position": logged.position if logged else None,
            "logged_at": logged.logged_at if logged else None,
            "hub": service.registry.registry.hub_url}


def share_links(url: str, title: str) -> list[dict[str, str]]:
    """Plain links to each service's own share page (no script of theirs on ours), and an e-mail."""
    text, link = quote(title, safe=""), quote(url, safe="")
    return [{"name": name, "key": "", "href": pattern.format(url=link, text=text)} for name, pattern in SHARE] + [
        {"name": "", "key": "page.share-email", "href": f"mailto:?subject={text}&body={link}"}]


def render_event_page(rec: StoredRecord, *, base: str, lang: str | None = None, ui: str = "en",
                      reader: portal.Reader | None = None, config: NodeConfig | None = None,
                      versions: Sequence[RecordVersion] = (), service: NodeService | None = None) -> str:
    """The HTML page of a record (either kind) or of its tombstone, in the reader's language ``ui``."""
    page = page_model(rec, base=base, lang=lang, ui=ui)
    page_url = record_page_url(base, rec.record_id)
    jsonld = None
    if rec.body is not None:  # in the language the page's texts come first in
        jsonld = script_json(event_jsonld(rec, page_url, page["api_url"], lang or ui))
    extra: dict[str, Any] = {}
    if reader is not None and config is not None and service is not None:
        extra = portal.frame(reader, config, alternates=reader.alternates(), versions=list(reversed(versions)),
                             check=verification(rec, versions, service),
                             share=share_links(page_url, page["document_title"].strip("\u2068\u2069")),
                             page_url=page_url, origin_name=portal.member_names(service, ui).get(rec.origin),
                             subscribe=portal.subscribe_links(portal.ListQuery(
                                 RecordFilter(origin=rec.origin), None, None, None, None), ui, base, ()))
    else:
        reader = portal.Reader(ui, True, record_path(rec.record_id), (), base)
        extra = {"lang": ui, "dir": direction(ui), "reader": reader, "brand": None, "portal": False,
                 "alternates": [], "versions": [], "check": None, "share": [], "page_url": page_url,
                 "origin_name": None, "subscribe": []}
    return portal.env.get_template("event.html").render(page=page, jsonld=jsonld, **extra)


# -- HTTP -------------------------------------------------------------------------------------------------


def _text_lang(request: web.Request) -> str | None:
    lang = request.query.get("lang") or None
    if lang is not None and not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*", lang):
        lang = None
    return lang


async def _record(request: web.Request) -> StoredRecord | None:
    """The record named by the path, if it is one the portal shows (either kind)."""
    try:
        rec = await request.app[SERVICE].get(request.match_info["record_id"])
    except RecordNotFoundError:
        return None
    return rec if rec.kind in portal.KINDS else None


async def event_page(request: web.Request) -> web.StreamResponse:
    service: NodeService = request.app[SERVICE]
    config: NodeConfig = request.app[CONFIG]
    rec = await _record(request)
    if rec is None:
        return portal.not_found(request, record_id=request.match_info["record_id"])
    lang = _text_lang(request)
    base = config.public_base  # never the request's Host: the page is cached publicly
    # The page's words: ?lang= when the catalogue has it, else Accept-Language (never a cookie: the page is
    # cached publicly, and Vary names what it depends on).
    reader = portal.Reader.of(request)
    versions = await service.versions(rec.record_id)
    etag = portal.etag_of("record", PAGE_REVISION, rec.hash, rec.key_warning, base, lang or "", reader.ui,
                          portal.Brand.of(config).revision(), [(v.hash, v.position) for v in versions],
                          service.registry.registry.version)
    return portal.respond(request, reader, etag, lambda: render_event_page(
        rec, base=base, lang=lang, ui=reader.ui, reader=reader, config=config, versions=versions, service=service),
        status=410 if rec.body is None else 200, cache_control=CACHE_CONTROL)


async def event_calendar(request: web.Request) -> web.StreamResponse:
    """The record as an iCalendar file of one event ("add to calendar"; a programme's days all-day)."""
    service: NodeService = request.app[SERVICE]
    rec = await _record(request)
    if rec is None:
        return portal.not_found(request, record_id=request.match_info["record_id"])
    if rec.body is None:
        return portal.not_found(request, gone=True, record_id=rec.record_id)
    base, lang = request.app[CONFIG].public_base, _text_lang(request)
    body = await asyncio.to_thread(render_calendar, [rec], member=service.member, base=base, lang=lang)
    name = rec.record_id.replace(":", "-")
    # The ETag names this rendering: the version, the texts' language and the calendar's own revision.
    etag = portal.etag_of("ics", FORMAT_REVISION, rec.hash, base, lang or "")
    return web.Response(body=body, content_type="text/calendar", charset="utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name}.ics"', "Cache-Control": CACHE_CONTROL,
        "ETag": etag, "X-Content-Type-Options": "nosniff"})


async def envelope_download(request: web.Request) -> web.StreamResponse:
    """The signed envelope of the current version, byte for byte (``ipdn verify`` checks it offline)."""
    rec = await _record(request)
    if rec is None:
        return portal.not_found(request, record_id=request.match_info["record_id"])
    name = rec.record_id.replace(":", "-")
    return web.Response(body=rec.envelope, content_type="application/jose+json", headers={
        "Content-Disposition": f'attachment; filename="{name}-v{rec.version}.jws.json"',
        "Cache-Control": CACHE_CONTROL, "ETag": f'"{rec.hash[:32]}"', "X-Content-Type-Options": "nosniff"})


def register_routes(app: web.Application) -> None:
    """Add the record page (``GET /events/{record_id}``) and its downloads to ``app``."""
    app.router.add_get(EVENT_PATH + "/calendar.ics", event_calendar)
    app.router.add_get(EVENT_PATH + "/envelope.json", envelope_download)
    app.router.add_get(EVENT_PATH, cached(event_page))
