"""Partner feeds: iCalendar of cultural events, JSON Feed 1.1 and Atom of recent records.

Read-only, no token, from any node:

- ``GET /api/v1/feeds/events.ics``: iCalendar (RFC 5545, ``text/calendar``) of every cultural event
  (tombstones omitted, cancelled events kept);
- ``GET /api/v1/feeds/feed.json``: JSON Feed 1.1 (``application/feed+json``) of the ``limit`` (default
  50) most recently changed records of both kinds, tombstones included, newest first;
- ``GET /api/v1/feeds/atom.xml``: the same as Atom (RFC 4287, ``application/atom+xml``).

Query parameters (all optional): ``origin`` (member code), ``status`` (comma-separated record statuses),
``lang`` (preferred BCP 47 language of titles and descriptions: that language, then English, then
the record's first); the two news feeds also take ``kind`` and ``limit``. Every feed also takes the portal list's
filters by the same names (``country``, ``type``, ``audience``, ``language`` (a language of the title), ``tag``,
``from``, ``to``, ``q``), so a subscribe link carries the list's selection as it is (docs/adr/0025). An unreadable
value is a 400 ``bad-query`` problem.

Identity is stable across versions, so partners update rather than duplicate: the iCalendar ``UID`` is
``<origin>-<rest of the record id>@ipdn.network`` and ``SEQUENCE`` the record version; the JSON Feed item
``id`` is the record id; the Atom entry ``id`` is ``tag:ipdn.network,2020:<record_id>``. A deletion
(a signed tombstone, kept forever) is an item of its own in the news feeds (``_ipdn.op: "delete"``, an
Atom category ``deleted``) and drops the event from the calendar; a cancelled event stays in the
calendar with ``STATUS:CANCELLED``.

Every link for a record leads people to its page on the portal, ``/events/<record_id>`` (text/html): the
iCalendar ``URL``, the JSON Feed item ``url``, the Atom entry's first ``alternate``; the JSON Feed's
``home_page_url`` and the Atom feed's HTML alternate are the portal's list (docs/adr/0027). The record's API item
(``application/json``) and its envelope download (``application/jose+json``) follow as second links with their
media types (iCalendar ``LINK``, ``_ipdn.links``, Atom links). What people read carries no hashes: the calendar's
``DESCRIPTION`` is the description and the page, the news items' text a short footer ending with the page.

Every format carries what a partner needs to verify an item itself: the envelope hash
(``X-IPDN-ENVELOPE-HASH``, ``_ipdn.hash``, ``ipdn:hash``), the whole envelope in the news feeds
(``_ipdn.envelope``, ``ipdn:envelope``) and the URLs of the record's API item and envelope
everywhere. Every format states the record's rights statement URI (``X-IPDN-RIGHTS``, the news items'
footer, ``_ipdn.rights``, Atom ``rights`` and ``link rel="license"``).

Responses carry a strong ``ETag`` derived from what they are made of (the records' ids and envelope
hashes, the query, the base URL, the rendering revision and library versions), so an ``If-None-Match``
that matches is answered 304 before anything is rendered; ``Cache-Control: public, max-age=300``.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import json
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web
from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from icalendar import Calendar, Event, vCalAddress
from lxml import etree

from federation.protocol.envelope import parse_time
from federation.server.ui.i18n import pick  # one language-map chooser for every page and feed
from node.appkeys import CONFIG, SERVICE
from node.config import NodeConfig
from node.errors import BadQueryError
from node.partners.answers import BoundedCache
from node.records.filters import RecordFilter
from node.records.occurrences import rrule
from node.records.service import REASON_FIELD, REASON_STATUSES, NodeService
from node.store.records import StoredRecord

log = logging.getLogger("ipdn.node.feeds")

PREFIX = "/api/v1/feeds"
ICS_PATH, JSON_FEED_PATH, ATOM_PATH = f"{PREFIX}/events.ics", f"{PREFIX}/feed.json", f"{PREFIX}/atom.xml"
LIST_PATH = "/events"  # the portal's list (node/partners/portal.py); its record pages are under it
JSON_TYPE, HTML_TYPE, JOSE_TYPE = "application/json", "text/html", "application/jose+json"

UID_DOMAIN = "ipdn.network"
TAG_PREFIX = "tag:ipdn.network,2020:"  # RFC 4151 tag URIs: stable Atom ids
IPDN_NS = "https://schemas.ipdn.network/feeds/v1"  # the Atom extension elements' namespace
OP_SCHEME = "https://schemas.ipdn.network/feeds/v1/op"  # the Atom category scheme for "deleted"
ENVELOPE_REL = "https://schemas.ipdn.network/feeds/v1/envelope"  # a link to the signed envelope (a download)
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
EVENT_KIND = "cultural-event"
CACHE_CONTROL = "public, max-age=300"
DEFAULT_LIMIT = 50
RENDER_CACHE_BYTES = 16 * 1024 * 1024  # renderings kept for partners that poll without If-None-Match
# Part of every ETag: bump it whenever the same records would be rendered differently.
FORMAT_REVISION = "2"

_ORIGIN_RE = re.compile(r"[A-Z]{2}")
_LANG_RE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")

# RFC 5545 §3.8.1.11 knows three event statuses; the record's own status travels as X-IPDN-STATUS.
_ICAL_STATUS = {"scheduled": "CONFIRMED", "rescheduled": "CONFIRMED", "moved-online": "CONFIRMED",
                "completed": "CONFIRMED", "postponed": "TENTATIVE", "cancelled": "CANCELLED"}
# Link relations that name the event's (or programme's) own web page, best first.
_PAGE_RELS = ("website", "programme", "event", "registration")


def _library_versions() -> str:
    out = []
    for name in ("icalendar", "feedgen", "tzdata"):
        try:
            out.append(f"{name}={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{name}=-")
    return ",".join(out)


_LIBRARIES = _library_versions()


# -- query -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedQuery:
    """What a partner asked for, checked."""

    kind: str | None = None
    origin: str | None = None
    statuses: frozenset[str] | None = None
    lang: str | None = None
    limit: int = DEFAULT_LIMIT
    selection: tuple[tuple[str, str], ...] = ()  # the portal list's other filters, by their names (SELECTION)

    def key(self) -> list[Any]:
        return [self.kind, self.origin, sorted(self.statuses) if self.statuses is not None else None,
                self.lang.lower() if self.lang else None, self.limit, self.selection]

    def store_filters(self) -> dict[str, Any]:
        """The selection as keywords of :meth:`NodeService.list_records` (checked by :func:`parse_query`)."""
        s = dict(self.selection)
        days = {name: date.fromisoformat(s[name]) if name in s else None for name in ("from", "to")}
        return {"country": s.get("country"), "type_": s.get("type"), "audience": s.get("audience"),
                "lang": s.get("language"), "tag": s.get("tag"), "q": s.get("q"), "date_from": days["from"],
                "date_to": days["to"]}

    def canonical(self) -> str:
        """The query in a canonical form (``?kind=...&origin=...``; empty for none): part of the Atom feed id."""
        pairs = [("kind", self.kind), ("origin", self.origin),
                 ("status", ",".join(sorted(self.statuses)) if self.statuses is not None else None),
                 ("lang", self.lang.lower() if self.lang else None),
                 ("limit", str(self.limit) if self.limit != DEFAULT_LIMIT else None), *self.selection]
        text = "&".join(f"{k}={quote(v, safe=',')}" for k, v in pairs if v)
        return f"?{text}" if text else ""


def _statuses(service: NodeService, kinds: Iterable[str]) -> set[str]:
    """Every status a record of ``kinds`` can have, by the schemas the node holds."""
    wanted = set(kinds)
    out: set[str] = set()
    for sid, kind in service.schemas.kind_of.items():
        if kind in wanted:
            out.update(service.schemas.documents[sid].get("properties", {}).get("status", {}).get("enum", []))
    return out


SELECTION = ("country", "type", "audience", "language", "tag", "from", "to", "q")  # the portal list's names
MAX_Q = 500


def parse_selection(query: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The portal list's filters in a feed's query, checked as the list checks them (SELECTION's order, blanks out).

    Raises:
        BadQueryError: a value that cannot be read.
    """
    values = {name: (query.get(name) or "").strip() for name in SELECTION}
    f = RecordFilter.parse({"country": values["country"], "type": values["type"], "audience": values["audience"],
                            "lang": values["language"], "tag": values["tag"]})
    values["country"] = (f.country or "").upper()
    for name in ("from", "to"):
        try:
            values[name] = date.fromisoformat(values[name]).isoformat() if values[name] else ""
        except ValueError as e:
            raise BadQueryError(f"{name} is a day (YYYY-MM-DD)") from e
    if len(values["q"]) > MAX_Q or "\x00" in values["q"]:
        raise BadQueryError(f"q is at most {MAX_Q} characters")
    return tuple((name, value) for name, value in values.items() if value)


def parse_query(query: Mapping[str, str], service: NodeService, config: NodeConfig, *,
                events_only: bool) -> FeedQuery:
    """Check the query parameters of a feed request.

    Raises:
        BadQueryError: a value that cannot be read (400 ``bad-query``).
    """
    kind: str | None = EVENT_KIND if events_only else (query.get("kind") or None)
    if kind is not None and kind not in service.schemas.latest:
        raise BadQueryError(f"kind is one of {', '.join(sorted(service.schemas.latest))}")
    origin = (query.get("origin") or "").strip().upper() or None
    if origin is not None and not _ORIGIN_RE.fullmatch(origin):
        raise BadQueryError("origin is a member's ISO 3166-1 alpha-2 code such as QA")
    lang = (query.get("lang") or "").strip() or None
    if lang is not None and (len(lang) > 35 or not _LANG_RE.fullmatch(lang)):
        raise BadQueryError("lang is a BCP 47 language tag such as ar, en or zh-Hant")
    statuses = None
    if query.get("status"):
        statuses = frozenset(s.strip() for s in query["status"].split(",") if s.strip())
        # Any status of any kind: with ``kind`` given, another kind's status simply matches nothing (as the
        # OpenAPI document says), rather than refusing a query the document allows.
        known = _statuses(service, [EVENT_KIND] if events_only else list(service.schemas.latest))
        if not events_only:
            known.add("deleted")
        unknown = sorted(s for s in statuses if s not in known)
        if unknown or not statuses:
            raise BadQueryError(f"status is a comma-separated list of {', '.join(sorted(known))}"
                                f" (not {', '.join(unknown) or 'empty'})")
    limit = DEFAULT_LIMIT
    if not events_only and query.get("limit"):
        try:
            limit = int(query["limit"])
        except ValueError as e:
            raise BadQueryError("limit is an integer") from e
        if not 1 <= limit <= config.max_page_size:
            raise BadQueryError(f"limit is between 1 and {config.max_page_size}")
    return FeedQuery(kind=kind, origin=origin, statuses=statuses, lang=lang, limit=limit,
                     selection=parse_selection(query))


# -- selecting records -----------------------------------------------------------------------------------


async def _scan(service: NodeService, config: NodeConfig, q: FeedQuery) -> AsyncIterator[StoredRecord]:
    """Every record of the query's kind, origin and selection, in listing order (update time, record id)."""
    cursor: str | None = None
    while True:
        items, cursor = await service.list_records(kind=q.kind, origin=q.origin, cursor=cursor,
                                                   limit=config.max_page_size, **q.store_filters())
        for rec in items:
            yield rec
        if cursor is None:
            return


def _wanted(rec: StoredRecord, q: FeedQuery) -> bool:
    # A version signed by a key revoked after the fact is kept but not verified: the feeds, which cannot say so,
    # leave it out (PROTOCOL.md §9, docs/adr/0019); the record API carries it with its warning.
    return rec.key_warning is None and (q.statuses is None or rec.status in q.statuses)


async def calendar_records(service: NodeService, config: NodeConfig, q: FeedQuery) -> list[StoredRecord]:
    """The events for the calendar: no tombstones, one per record id, in listing order."""
    out: dict[str, StoredRecord] = {}
    async for rec in _scan(service, config, q):
        out.pop(rec.record_id, None)  # changed while we listed: it comes again, later; keep that one
        if rec.op == "put" and rec.body is not None and _wanted(rec, q):
            out[rec.record_id] = rec
    return list(out.values())


async def recent_records(service: NodeService, config: NodeConfig, q: FeedQuery) -> list[StoredRecord]:
    """The ``q.limit`` most recently changed records (tombstones included), newest first.

    The listing only goes forward from the oldest, so this keeps a window of the last ``limit``
    records seen (memory bounded by ``limit``; reading is linear in the records held).
    """
    window: OrderedDict[str, StoredRecord] = OrderedDict()
    async for rec in _scan(service, config, q):
        window.pop(rec.record_id, None)
        if _wanted(rec, q):
            window[rec.record_id] = rec
            if len(window) > q.limit:
                window.popitem(last=False)
    return list(reversed(window.values()))


# -- shared helpers --------------------------------------------------------------------------------------


def _text(texts: Any, lang: str | None) -> str | None:
    chosen = pick(texts, lang) if isinstance(texts, dict) else None
    return chosen[1] if chosen else None


def record_url(base: str, record_id: str) -> str:
    """The record's item in the node's JSON API (with its envelope)."""
    return f"{base}/api/v1/records/{quote(record_id, safe='')}"


def record_path(record_id: str) -> str:
    """The path of the record's page on the portal (either kind; a tombstone's is a 410 page)."""
    return f"{LIST_PATH}/{record_id}"  # ids are [A-Z]{2}:[A-Za-z0-9._-]+ (common/v1): nothing to escape


def page_url(base: str, record_id: str) -> str:
    """The record's page for people (text/html): what every feed links a record to (docs/adr/0027)."""
    return base + record_path(record_id)


def envelope_url(base: str, record_id: str) -> str:
    """The signed envelope of the record's current version, as a download (``application/jose+json``)."""
    return page_url(base, record_id) + "/envelope.json"


def list_url(base: str, q: FeedQuery) -> str:
    """The portal's list with the feed's filters that it understands (kind, member, one status, the selection)."""
    params = [("kind", q.kind), ("origin", q.origin),
              ("status", next(iter(q.statuses)) if q.statuses is not None and len(q.statuses) == 1 else None),
              *q.selection]
    text = "&".join(f"{k}={quote(v, safe='')}" for k, v in params if v)
    return f"{base}{LIST_PATH}?{text}" if text else base + LIST_PATH


def event_uid(record_id: str) -> str:
    """The iCalendar UID of a record, stable across versions: ``QA:ga6`` is ``QA-ga6@ipdn.network``.

    Only URL-unreserved characters, and no percent-encoding (some parsers decode ``%3A`` on reading,
    icalendar before 7 among them). The colon of a record id always follows its two-letter origin, so
    the UID still names exactly one record: ``uid[:2] + ":" + uid[3:uid.rindex("@")]``.
    """
    return f"{record_id[:2]}-{record_id[3:]}@{UID_DOMAIN}"


def atom_id(record_id: str) -> str:
    return TAG_PREFIX + record_id


def _web_page(body: Mapping[str, Any]) -> str | None:
    """The record's own web page: a link by relation, any link, its registration, its online page."""
    links = [x for x in body.get("links", []) if isinstance(x, dict) and x.get("url")]
    for rel in _PAGE_RELS:
        for link in links:
            if link.get("rel") == rel:
                return str(link["url"])
    if links:
        return str(links[0]["url"])
    for key in ("registration", "application"):
        if isinstance(body.get(key), dict) and body[key].get("url"):
            return str(body[key]["url"])
    url = body.get("online_url")
    return str(url) if url else None


def _venue_text(venue: Any, lang: str | None) -> str | None:
    if not isinstance(venue, dict):
        return None
    name, address = _text(venue.get("name"), lang), _text(venue.get("address"), lang)
    if address:
        parts = [address] if name and name in address else [name, address]
    else:
        parts = [name, _text(venue.get("city"), lang), venue.get("country")]
    return ", ".join(p for p in parts if p) or None


def _where(body: Mapping[str, Any], lang: str | None) -> str | None:
    """Where to go: the online page for an online (or moved-online) event, else the venue."""
    online = body.get("online_url")
    if online and (body.get("status") == "moved-online" or body.get("attendance_mode") == "online"
                   or body.get("format") == "online"):
        return str(online)
    return _venue_text(body.get("venue"), lang) or (str(online) if online else None)


def _people(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The institutions behind a record: an event's organizers, a programme's provider."""
    found = body.get("organizers") or ([body["provider"]] if isinstance(body.get("provider"), dict) else [])
    return [o for o in found if isinstance(o, dict)]


def _tags(body: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for t in [*body.get("tags", []), *body.get("topics", [])]:
        if isinstance(t, str) and t not in out:
            out.append(t)
    return out


def _reason(body: dict[str, Any], lang: str | None) -> str | None:
    """Why a cancelled, postponed, rescheduled or moved-online event changed (cultural-event/v2 ``status_reason``),
    in the feed's language (then English, then the first given)."""
    chosen = pick(body.get(REASON_FIELD), lang) if body.get("status") in REASON_STATUSES else None
    return chosen[1] if chosen else None


def _facts(rec: StoredRecord, lang: str | None, page: str) -> list[str]:
    """The footer under a news item's text, for people: when, where, status, how to take part, the rights
    statement and the record's page. Hashes and other machine data are in the feeds' own fields (``_ipdn``,
    ``ipdn:*``), not here."""
    body = rec.body or {}
    lines = []
    if body.get("start"):
        end = f" – {body['end']}" if body.get("end") else ""
        tz = f" ({body['timezone']})" if body.get("timezone") else ""
        lines.append(f"When: {body['start']}{end}{tz}")
    elif body.get("start_date"):
        end = f" – {body['end_date']}" if body.get("end_date") else ""
        lines.append(f"Dates: {body['start_date']}{end}")
    if body.get("recurrence"):
        lines.append(f"Repeats: {body['recurrence']}")
    where = _where(body, lang)
    if where:
        lines.append(f"Where: {where}")
    if rec.status and rec.status != "scheduled":
        lines.append(f"Status: {rec.status}")
    if reason := _reason(body, lang):
        lines.append(f"Reason: {reason}")
    if body.get("previous_start"):
        lines.append(f"Previously: {body['previous_start']}")
    if body.get("online_url") and where != body["online_url"]:
        lines.append(f"Online: {body['online_url']}")
    for key, label in (("registration", "Register"), ("application", "Apply")):
        if isinstance(body.get(key), dict) and body[key].get("url"):
            deadline = f" (deadline {body[key]['deadline']})" if body[key].get("deadline") else ""
            lines.append(f"{label}: {body[key]['url']}{deadline}")
    if body.get("rights"):  # what a reader may do with the text
        lines.append(f"Rights: {body['rights']}")
    lines.append(page)
    return lines


def _with_footer(text: str | None, footer: Sequence[str]) -> str:
    return "\n\n".join(p for p in (text, "\n".join(footer)) if p)


# -- iCalendar -------------------------------------------------------------------------------------------


def _zone(name: Any) -> tzinfo | None:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _vevent(rec: StoredRecord, base: str, lang: str | None) -> tuple[Event, datetime, datetime]:
    """One VEVENT, and the span of time it covers (for the VTIMEZONE blocks).

    Raises:
        KeyError, ValueError, TypeError: the body lacks what an event needs (another schema version).
    """
    body = rec.body or {}
    ev = Event()
    ev.add("uid", event_uid(rec.record_id))
    ev.add("sequence", rec.version)
    issued = parse_time(rec.issued_at)
    ev.add("dtstamp", issued)
    ev.add("last-modified", issued)
    if "start" not in body and body.get("start_date"):  # a programme: its days, all-day (RFC 5545 §3.6.1)
        first = date.fromisoformat(body["start_date"])
        last = date.fromisoformat(body.get("end_date") or body["start_date"])
        ev.add("dtstart", first)
        ev.add("dtend", last + timedelta(days=1))  # a DATE DTEND is the day after the last
        start, end = datetime.combine(first, time(), UTC), datetime.combine(last, time(), UTC)
        zone: tzinfo = _zone(body.get("timezone")) or UTC
    else:
        known = _zone(body["timezone"])
        if known is None:  # a zone newer than this node's database: the instants are right in UTC
            log.warning("%s: time zone %r unknown here; its times are given in UTC", rec.record_id, body["timezone"])
            ev.add("x-ipdn-timezone", str(body["timezone"]))
        zone = known or UTC
        start = datetime.fromisoformat(body["start"]).astimezone(zone)
        ev.add("dtstart", start)
        end = start
        if body.get("end"):
            end = datetime.fromisoformat(body["end"]).astimezone(zone)
            ev.add("dtend", end)
    if body.get("recurrence"):
        try:
            ev.add("rrule", rrule(body["recurrence"], zone))  # UNTIL in UTC (node/records/occurrences.py)
            end = max(end, start + timedelta(days=3650))  # the time zone blocks cover ten years of it
        except ValueError as e:  # the schema checks the rule's shape only: show the first occurrence, say so
            log.warning("%s: recurrence %r not readable (%s); only the first occurrence is shown",
                        rec.record_id, body["recurrence"], e)
            ev.add("x-ipdn-recurrence", str(body["recurrence"]))
    title = pick(body.get("title"), lang)
    if title:
        ev.add("summary", title[1], parameters={"LANGUAGE": title[0]})
        for tag, text in body["title"].items():  # one SUMMARY only (RFC 5545): the others alongside
            if tag != title[0]:
                ev.add("x-ipdn-title", text, parameters={"LANGUAGE": tag})
    url, page = record_url(base, rec.record_id), page_url(base, rec.record_id)
    # DESCRIPTION is for people: the text in the feed's language and the record's page (when, where and status
    # have fields of their own; what a machine needs is in the X-IPDN-* properties below).
    description = pick(body.get("description"), lang)
    text = description[1] if description else None
    if reason := _reason(body, lang):  # first, where a calendar's preview shows it: "Cancelled: <why>"
        line = f"{str(body['status']).replace('-', ' ').capitalize()}: {reason}"
        text = f"{line}\n\n{text}" if text else line
    ev.add("description", _with_footer(text, [page]), parameters={"LANGUAGE": description[0]} if description else {})
    where = _where(body, lang)
    if where:
        ev.add("location", where)
    venue = body.get("venue")
    if isinstance(venue, dict) and isinstance(venue.get("geo"), dict):
        ev.add("geo", (float(venue["geo"]["lat"]), float(venue["geo"]["lon"])))
    ev.add("url", page, parameters={"VALUE": "URI"})
    # The same record for machines, with its media type (RFC 9253 LINK); the organiser's own page beside it.
    ev.add("link", url, parameters={"VALUE": "URI", "LINKREL": "alternate", "FMTTYPE": JSON_TYPE})
    if website := _web_page(body):
        ev.add("link", website, parameters={"VALUE": "URI", "LINKREL": "related", "FMTTYPE": HTML_TYPE})
    _organizer(ev, body, lang)
    tags = _tags(body)
    if tags:
        ev.add("categories", tags)
    ev.add("class", "PUBLIC")
    ev.add("status", _ICAL_STATUS.get(rec.status, "CONFIRMED"))
    ev.add("x-ipdn-status", rec.status)
    if body.get("previous_start"):
        ev.add("x-ipdn-previous-start", str(body["previous_start"]))
    if body.get("event_type"):
        ev.add("x-ipdn-event-type", str(body["event_type"]))
    if body.get("rights"):
        ev.add("x-ipdn-rights", str(body["rights"]))
    ev.add("x-ipdn-record-id", rec.record_id)
    ev.add("x-ipdn-record", url)
    ev.add("x-ipdn-envelope-hash", rec.hash)
    ev.add("x-ipdn-envelope-url", envelope_url(base, rec.record_id))
    return ev, start, end


def _organizer(ev: Event, body: Mapping[str, Any], lang: str | None) -> None:
    """ORGANIZER, a calendar address (RFC 5545 §3.8.4.3: ``mailto:``), is the contact's e-mail, named (CN) by the
    first organiser; none without an e-mail (a web site is no calendar address). CONTACT from the contact block."""
    contact: dict[str, Any] = body["contact"] if isinstance(body.get("contact"), dict) else {}
    people = _people(body)
    if contact.get("email"):
        org = vCalAddress(f"mailto:{contact['email']}")
        name = _text(people[0].get("name"), lang) if people else _text(contact.get("name"), lang)
        if name:
            org.params["CN"] = name
        ev.add("organizer", org)
    reach = [_text(contact.get("name"), lang), contact.get("email"), contact.get("phone"), contact.get("url")]
    if any(reach):
        ev.add("contact", ", ".join(str(x) for x in reach if x))


def render_calendar(records: Iterable[StoredRecord], *, member: str, base: str, lang: str | None) -> bytes:
    """An RFC 5545 calendar: one VEVENT per record (an event at its times, a programme on its days) and a VTIMEZONE
    for every zone they use."""
    cal = Calendar()
    cal.add("prodid", f"-//IPDN Exchange//member node {member}//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"IPDN cultural events ({member} node)")
    cal.add("x-published-ttl", "PT5M")
    first, last = date.max, date.min
    for rec in records:
        try:
            ev, start, end = _vevent(rec, base, lang)
        except (KeyError, ValueError, TypeError) as e:  # a body this renderer cannot read: skip, say so
            log.warning("calendar: %s v%s left out: %r", rec.record_id, rec.version, e)
            continue
        cal.add_component(ev)
        first, last = min(first, start.date()), max(last, end.date())
    if first <= last:
        # Time zone rules from a day before the first event to a year after the last one.
        cal.add_missing_timezones(first_date=first - timedelta(days=1), last_date=last + timedelta(days=366))
    return bytes(cal.to_ical())


# -- JSON Feed 1.1 ---------------------------------------------------------------------------------------


def _machine_links(base: str, record_id: str) -> list[dict[str, str]]:
    """The record for machines, each link with its media type: the API item and the envelope download."""
    return [{"rel": "alternate", "type": JSON_TYPE, "href": record_url(base, record_id)},
            {"rel": ENVELOPE_REL, "type": JOSE_TYPE, "href": envelope_url(base, record_id)}]


def _json_item(rec: StoredRecord, base: str, lang: str | None) -> dict[str, Any]:
    url, page = record_url(base, rec.record_id), page_url(base, rec.record_id)
    ipdn = {"record_id": rec.record_id, "origin": rec.origin, "kind": rec.kind, "version": rec.version,
            "op": rec.op, "status": rec.status, "seq": rec.seq, "hash": rec.hash, "issued_at": rec.issued_at,
            "rights": None, "record": url, "links": _machine_links(base, rec.record_id),
            "envelope": json.loads(rec.envelope)}
    if rec.op == "delete" or rec.body is None:
        return {"id": rec.record_id, "url": page, "title": f"[deleted] {rec.record_id}",
                "content_text": f"{rec.record_id} was deleted by its origin {rec.origin} (version {rec.version}); "
                                "the signed tombstone is in _ipdn.envelope.",
                "date_modified": rec.issued_at, "_ipdn": ipdn}
    body = rec.body
    title = pick(body.get("title"), lang)
    description = pick(body.get("description"), lang)
    item: dict[str, Any] = {"id": rec.record_id, "url": page}
    if website := _web_page(body):  # "a page elsewhere" (JSON Feed 1.1): the organiser's own
        item["external_url"] = website
    item["title"] = title[1] if title else rec.record_id
    item["content_text"] = _with_footer(description[1] if description else None, _facts(rec, lang, page))
    item["date_modified"] = rec.issued_at
    if title:
        item["language"] = title[0]
    tags = _tags(body)
    if tags:
        item["tags"] = tags
    authors = [{k: v for k, v in (("name", _text(p.get("name"), lang)), ("url", p.get("url"))) if v}
               for p in _people(body)]
    if authors:
        item["authors"] = authors
    images = [i for i in body.get("images", []) if isinstance(i, dict) and i.get("url")]
    if images:
        item["image"] = images[0]["url"]
    ipdn["rights"] = body.get("rights")
    item["_ipdn"] = ipdn
    return item


def render_json_feed(records: Iterable[StoredRecord], *, member: str, base: str, self_url: str,
                     lang: str | None, home: str | None) -> bytes:
    """A JSON Feed 1.1 document; each item's ``_ipdn`` carries the record's envelope for verification.
    ``home`` is the portal's list of the same records (None: the operator turned the portal off)."""
    doc: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": f"IPDN Exchange: records at the {member} node",
        **({"home_page_url": home} if home else {}),
        "feed_url": self_url,
        "description": "Cultural events and capacity-building programmes of the International Public "
                       "Diplomacy Network, newest change first. Each item's _ipdn.envelope is the record's "
                       "signed envelope (docs/PROTOCOL.md §3): verify it with `ipdn verify` or any JOSE library.",
        "authors": [{"name": f"IPDN member node {member}"}],
        "_ipdn": {"member": member, "calendar": f"{base}{ICS_PATH}", "atom": f"{base}{ATOM_PATH}",
                  "records": f"{base}/api/v1/records"},
        "items": [_json_item(rec, base, lang) for rec in records],
    }
    if lang:
        doc["language"] = lang
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


# -- Atom ------------------------------------------------------------------------------------------------


class _IpdnFeed(BaseExtension):  # type: ignore[misc]
    """The ``ipdn`` namespace on the feed element."""

    def extend_ns(self) -> dict[str, str]:
        return {"ipdn": IPDN_NS}


class _IpdnEntry(BaseEntryExtension):  # type: ignore[misc]
    """What feedgen cannot write for an entry: links with their relation and type (feedgen 1.0 drops the
    attributes of entry links), among them an RFC 4946 ``rel="license"`` link to the rights statement;
    ``xml:lang`` on the title and content; and the record's identity, version, operation, envelope hash
    and envelope as ``ipdn:*`` elements."""

    def __init__(self) -> None:
        self.links: list[dict[str, str]] = []
        self.fields: dict[str, str] = {}
        self.title_lang: str | None = None
        self.content_lang: str | None = None

    def extend_atom(self, entry: Any) -> Any:
        # feedgen writes Atom elements without a namespace under a literal default xmlns: do the same.
        langs = {"title": self.title_lang, "content": self.content_lang}
        for child in entry:
            lang = langs.get(etree.QName(child).localname) if isinstance(child.tag, str) else None
            if lang:
                child.set("{http://www.w3.org/XML/1998/namespace}lang", lang)
        for link in self.links:
            etree.SubElement(entry, "link", **link)
        for name, value in self.fields.items():
            etree.SubElement(entry, f"{{{IPDN_NS}}}{name}").text = value
        return entry


def render_atom(records: Sequence[StoredRecord], *, member: str, base: str, self_url: str, feed_key: str,
                lang: str | None, home: str | None) -> bytes:
    """An Atom feed (RFC 4287) of the records, with stable tag ids and deletions marked; ``home`` is the portal's
    list of the same records (None: the portal is off)."""
    fg = FeedGenerator()
    fg.register_extension("ipdn", _IpdnFeed, _IpdnEntry, rss=False)
    fg.id(f"{TAG_PREFIX}node/{member}/atom{feed_key}")
    fg.title(f"IPDN Exchange: records at the {member} node")
    fg.subtitle("Cultural events and capacity-building programmes of the International Public Diplomacy "
                "Network, newest change first; each entry carries its signed envelope (ipdn:envelope).")
    fg.author({"name": f"IPDN member node {member}"})
    if home:
        fg.link(href=home, rel="alternate", type=HTML_TYPE)
    fg.link(href=self_url, rel="self", type="application/atom+xml")
    fg.link(href=f"{base}{JSON_FEED_PATH}", rel="alternate", type="application/feed+json")
    fg.generator("IPDN Exchange node")
    if lang:
        fg.language(lang)
    updated = max((parse_time(r.issued_at) for r in records), default=datetime(1970, 1, 1, tzinfo=UTC))
    fg.updated(updated)
    for rec in records:
        _atom_entry(fg.add_entry(order="append"), rec, base, lang)
    return bytes(fg.atom_str(pretty=False))


def _atom_entry(fe: Any, rec: StoredRecord, base: str, lang: str | None) -> None:
    page = page_url(base, rec.record_id)
    ext: _IpdnEntry = fe.ipdn
    fe.id(atom_id(rec.record_id))
    fe.updated(parse_time(rec.issued_at))
    # The page for people first (readers open the first alternate), then the same record for machines.
    ext.links.append({"rel": "alternate", "type": HTML_TYPE, "href": page})
    ext.links.extend(_machine_links(base, rec.record_id))
    body = rec.body
    if rec.op == "delete" or body is None:
        fe.title(f"[deleted] {rec.record_id}")
        fe.content(f"{rec.record_id} was deleted by its origin {rec.origin} (version {rec.version}); the signed "
                   "tombstone is in ipdn:envelope.", type="text")
        fe.category(term="deleted", scheme=OP_SCHEME, label="deleted")
    else:
        title = pick(body.get("title"), lang)
        description = pick(body.get("description"), lang)
        fe.title(title[1] if title else rec.record_id)
        fe.content(_with_footer(description[1] if description else None, _facts(rec, lang, page)), type="text")
        ext.title_lang = title[0] if title else None
        ext.content_lang = description[0] if description else None
        if website := _web_page(body):
            ext.links.append({"rel": "related", "type": HTML_TYPE, "href": website})
        for person in _people(body):
            name = _text(person.get("name"), lang)
            if name:
                fe.contributor({"name": name, **({"uri": person["url"]} if person.get("url") else {})})
        for tag in _tags(body):
            fe.category(term=tag)
        if body.get("rights"):
            fe.rights(str(body["rights"]))
            ext.links.append({"rel": "license", "href": str(body["rights"])})
    ext.fields = {"record_id": rec.record_id, "origin": rec.origin, "kind": rec.kind, "version": str(rec.version),
                  "op": rec.op, "status": rec.status, "hash": rec.hash, "issued_at": rec.issued_at,
                  "envelope": rec.envelope.decode("utf-8")}


# -- HTTP ------------------------------------------------------------------------------------------------


def _context(request: web.Request) -> tuple[NodeService, NodeConfig]:
    return request.app[SERVICE], request.app[CONFIG]


def _etag(fmt: str, url: str, q: FeedQuery, records: Sequence[StoredRecord], home: str | None = None) -> str:
    """A strong validator of the rendering: the same inputs always render the same bytes."""
    h = hashlib.sha256(json.dumps([FORMAT_REVISION, _LIBRARIES, fmt, url, q.key(), home]).encode())
    for rec in records:
        h.update(f"\n{rec.record_id} {rec.hash}".encode())
    return h.hexdigest()[:40]


def _not_modified(request: web.Request, etag: str) -> bool:
    """If-None-Match (weak comparison, RFC 9110 §13.1.2) names this representation, or is ``*``."""
    return any(t.value in (etag, "*") for t in request.if_none_match or ())


# The latest renderings by ETag (an ETag names exactly one rendering). Calendar applications poll without
# validators; rendering a large calendar is CPU work (icalendar needs about 0.7 ms per event), so the same answer is
# not made twice.
RenderCache = BoundedCache[str, bytes]
RENDER_CACHE = web.AppKey("feeds_render_cache", RenderCache)


async def _answer(request: web.Request, etag: str, content_type: str,
                  render: Callable[[], bytes]) -> web.Response:
    """304 if the partner holds this rendering; else the rendering (from the cache, or made in a worker
    thread so that a large calendar does not hold up the node's other requests and its sync loops)."""
    headers = {"Cache-Control": CACHE_CONTROL, "Access-Control-Allow-Origin": "*"}
    if _not_modified(request, etag):
        resp = web.Response(status=304, headers=headers)
    else:
        cache = request.app.get(RENDER_CACHE)
        body = cache.get(etag) if cache is not None else None
        if body is None:
            body = await asyncio.to_thread(render)
            if cache is not None:
                cache.put(etag, body)
        resp = web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)
    resp.etag = etag
    return resp


def _base(request: web.Request) -> str:
    """The node's configured public base URL: links never echo the request's Host (a forged Host would otherwise
    be cached for everyone; docs/THREAT-MODEL.md)."""
    return request.app[CONFIG].public_base


def _self_url(request: web.Request) -> str:
    """This feed's own URL: the public base URL, the path and the query as asked."""
    return _base(request) + str(request.rel_url)


async def events_ics(request: web.Request) -> web.Response:
    service, config = _context(request)
    q = parse_query(request.query, service, config, events_only=True)
    records = await calendar_records(service, config, q)
    base = _base(request)
    return await _answer(request, _etag("ics", base, q, records), "text/calendar",
                         lambda: render_calendar(records, member=service.member, base=base, lang=q.lang))


async def json_feed(request: web.Request) -> web.Response:
    service, config = _context(request)
    q = parse_query(request.query, service, config, events_only=False)
    records = await recent_records(service, config, q)
    base, self_url = _base(request), _self_url(request)
    home = list_url(base, q) if config.portal else None
    return await _answer(request, _etag("json", self_url, q, records, home), "application/feed+json",
                         lambda: render_json_feed(records, member=service.member, base=base, self_url=self_url,
                                                  lang=q.lang, home=home))


async def atom_feed(request: web.Request) -> web.Response:
    service, config = _context(request)
    q = parse_query(request.query, service, config, events_only=False)
    records = await recent_records(service, config, q)
    base, self_url = _base(request), _self_url(request)
    feed_key = q.canonical()
    home = list_url(base, q) if config.portal else None
    return await _answer(request, _etag("atom", self_url, q, records, home), "application/atom+xml",
                         lambda: render_atom(records, member=service.member, base=base, self_url=self_url,
                                             feed_key=feed_key, lang=q.lang, home=home))


def register_routes(app: web.Application) -> None:
    """Add the feed routes (GET, and HEAD with it) to the node's application, and their render cache."""
    app[RENDER_CACHE] = RenderCache(RENDER_CACHE_BYTES, len)
    app.router.add_get(ICS_PATH, events_ics)
    app.router.add_get(JSON_FEED_PATH, json_feed)
    app.router.add_get(ATOM_PATH, atom_feed)
