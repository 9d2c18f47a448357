"""Public HTML pages of cultural events, with schema.org Event JSON-LD for search engines and partners.

``GET /events/{record_id}`` (read-only, no token) answers a page (``node/partners/templates/event.html``):

- a ``<script type="application/ld+json">`` block: a schema.org ``Event`` (status, attendance mode,
  ``Place`` and/or ``VirtualLocation``, organisers, dates as published, RFC 3339 with offset), its
  name and description one JSON-LD value object per language (``{"@language": "ar", "@value": ...}``),
  ``license`` the record's rights statement URI;
- the text in every language of the record, each section with its ``lang`` and ``dir`` (Arabic,
  Persian, Hebrew, Urdu and other right-to-left scripts are ``rtl``), every value escaped (jinja2
  autoescape) and isolated (``<bdi>``, ``dir``), so neither markup nor bidirectional controls in a
  title reach beyond it;
- the envelope hash and the link to the record's API item (``/api/v1/records/{id}``, with the signed
  envelope) so a reader can verify what the page shows.

Unknown ids (and records of another kind) are a 404 problem; a deleted record is a 410 page that still
names the id and the tombstone's hash. Responses carry a strict ``Content-Security-Policy``
(``default-src 'none'``, the one stylesheet allowed by its hash, no script: the JSON-LD block is data,
which CSP does not execute), ``X-Content-Type-Options: nosniff`` and a strong ``ETag``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web
from markupsafe import Markup

from federation.server.ui import formats
from federation.server.ui.i18n import Catalog, direction, negotiate, pick
from federation.server.ui.templates import template_env
from node.appkeys import CONFIG, SERVICE
from node.errors import RecordNotFoundError
from node.partners.feeds import record_url
from node.records.service import NodeService
from node.store.records import StoredRecord

EVENT_KIND = "cultural-event"
EVENT_PATH = "/events/{record_id}"
SCHEMA = "https://schema.org/"
HTML_TYPE = "text/html"
CACHE_CONTROL = "public, max-age=300"
# Part of every ETag: bump it whenever the same record would be rendered differently.
PAGE_REVISION = "3"

EVENT_STATUS = {
    "scheduled": "EventScheduled", "completed": "EventScheduled", "postponed": "EventPostponed",
    "rescheduled": "EventRescheduled", "cancelled": "EventCancelled", "moved-online": "EventMovedOnline",
}
ATTENDANCE_MODE = {"offline": "OfflineEventAttendanceMode", "online": "OnlineEventAttendanceMode",
                   "mixed": "MixedEventAttendanceMode"}
NOTICE_STATUSES = ("cancelled", "postponed", "rescheduled", "moved-online")  # a banner above the event's texts
UI_LANGUAGES = ("en", "ar")  # the languages of node/partners/locale (public.po)

# The page's only stylesheet: CSP allows exactly these bytes (by hash), no quotes or angle brackets.
STYLE = (
    "body{font-family:system-ui,sans-serif;line-height:1.5;margin:0 auto;max-width:48rem;padding:1rem}"
    "section.text{margin-block:1.5rem}"
    ".notice{border:2px solid #b00;background:#fee;color:#600;padding:.5rem 1rem;font-size:1.2rem}"
    ".status.cancelled{color:#b00;font-weight:bold}"
    "dt{font-weight:bold}dd{margin-inline-start:1rem}"
    "footer{border-top:1px solid #ccc;margin-top:2rem;font-size:.9rem}"
    "code.hash{word-break:break-all}"
)
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (f"default-src 'none'; style-src '{STYLE_HASH}'; img-src 'none'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}

_catalog = Catalog(Path(__file__).resolve().parent / "locale", "public")
_env = template_env(Path(__file__).resolve().parent / "templates", _catalog)


def language_values(texts: Any) -> list[dict[str, str]]:
    """A language map as JSON-LD value objects, one per language (the map's order)."""
    if not isinstance(texts, Mapping):
        return []
    return [{"@language": tag, "@value": text} for tag, text in texts.items() if isinstance(text, str)]


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


def _place(venue: Mapping[str, Any]) -> dict[str, Any]:
    address: dict[str, Any] = {"@type": "PostalAddress"}
    if venue.get("address"):
        address["streetAddress"] = language_values(venue["address"])
    if venue.get("city"):
        address["addressLocality"] = language_values(venue["city"])
    if venue.get("postal_code"):
        address["postalCode"] = venue["postal_code"]
    if venue.get("country"):
        address["addressCountry"] = venue["country"]
    place: dict[str, Any] = {"@type": "Place", "name": language_values(venue.get("name")), "address": address}
    geo = venue.get("geo")
    if isinstance(geo, Mapping) and "lat" in geo and "lon" in geo:
        place["geo"] = {"@type": "GeoCoordinates", "latitude": geo["lat"], "longitude": geo["lon"]}
    return place


def _organization(inst: Mapping[str, Any]) -> dict[str, Any]:
    org: dict[str, Any] = {"@type": "Organization", "name": language_values(inst.get("name"))}
    if url := _safe_url(inst.get("url")):
        org["url"] = url
    if inst.get("identifier"):
        org["identifier"] = inst["identifier"]
    if inst.get("country"):
        org["address"] = {"@type": "PostalAddress", "addressCountry": inst["country"]}
    return org


def event_jsonld(rec: StoredRecord, page_url: str, api_url: str) -> dict[str, Any]:
    """The schema.org ``Event`` of a cultural-event record (``rec.body`` is not None)."""
    body: Mapping[str, Any] = rec.body or {}
    status = body.get("status", "scheduled")
    doc: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Event",
        "@id": page_url + "#event",
        "url": page_url,
        "identifier": rec.record_id,
        "name": language_values(body.get("title")),
    }
    if body.get("description"):
        doc["description"] = language_values(body["description"])
    doc["inLanguage"] = list(body.get("languages") or body.get("title") or [])
    doc["startDate"] = body.get("start")
    if body.get("end"):
        doc["endDate"] = body["end"]
    doc["eventStatus"] = SCHEMA + EVENT_STATUS.get(status, "EventScheduled")
    if body.get("previous_start") and status in ("rescheduled", "postponed"):
        doc["previousStartDate"] = body["previous_start"]
    if mode := attendance_mode(body):
        doc["eventAttendanceMode"] = SCHEMA + ATTENDANCE_MODE[mode]
    locations: list[dict[str, Any]] = []
    if isinstance(body.get("venue"), Mapping):
        locations.append(_place(body["venue"]))
    if online := _safe_url(body.get("online_url")):
        locations.append({"@type": "VirtualLocation", "url": online})
    if locations:
        doc["location"] = locations[0] if len(locations) == 1 else locations
    doc["organizer"] = [_organization(o) for o in body.get("organizers", []) if isinstance(o, Mapping)]
    if partners := [_organization(o) for o in body.get("partners", []) if isinstance(o, Mapping)]:
        doc["sponsor"] = partners
    images = [i for i in body.get("images", []) if isinstance(i, Mapping) and _safe_url(i.get("url"))]
    if images:
        doc["image"] = [{"@type": "ImageObject", "contentUrl": i["url"], "url": i["url"],
                         "caption": language_values(i.get("alt")), "license": i.get("rights")} for i in images]
    if isinstance(body.get("is_accessible_for_free"), bool):  # no v1 field says so yet
        doc["isAccessibleForFree"] = body["is_accessible_for_free"]
    if body.get("audience"):
        doc["audience"] = [{"@type": "Audience", "audienceType": a} for a in body["audience"]]
    if body.get("tags"):
        doc["keywords"] = list(body["tags"])
    if body.get("registration") and (reg := _safe_url(body["registration"].get("url"))):
        offer: dict[str, Any] = {"@type": "Offer", "url": reg}
        if body["registration"].get("deadline"):
            offer["validThrough"] = body["registration"]["deadline"]
        doc["offers"] = offer
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
    api_url = record_url(base, rec.record_id)
    page: dict[str, Any] = {
        "record_id": rec.record_id, "origin": rec.origin, "version": rec.version, "hash": rec.hash,
        "issued_at": rec.issued_at, "api_url": api_url, "gone": rec.body is None, "rights": None,
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
        title = words.gettext("page.title-status", status=words.pgettext("event-status", status), title=title)
    venue = None
    if isinstance(v := body.get("venue"), Mapping):
        # Each part isolated in its own language; joined by the reader's comma (node/partners/templates/event.html).
        parts = [_bdi(*texts) for k in ("name", "address", "city") if (texts := _localized(v.get(k), lang))[1]]
        if isinstance(country := v.get("country"), str) and country:
            parts.append(_bdi(ui, str(formats.locale(ui).territories.get(country, country))))
        venue = {"parts": parts}
    organizers = []
    for o in body.get("organizers", []):
        o_lang, o_name = _localized(o.get("name"), lang)
        organizers.append({"name": o_name, "lang": o_lang, "url": _safe_url(o.get("url"))})
    images = []
    for i in body.get("images", []):
        if url := _safe_url(i.get("url")):
            alt_lang, alt = _localized(i.get("alt"), lang)
            images.append({"url": url, "alt": alt or url, "lang": alt_lang or "en"})
    mode = attendance_mode(body)
    return {
        **page, "sections": sections, "status": status, "notice": status in NOTICE_STATUSES,
        "document_title": _isolated(title),
        "start": body.get("start"), "end": body.get("end"), "timezone": body.get("timezone"),
        "previous_start": body.get("previous_start") if status in ("rescheduled", "postponed") else None,
        "attendance": mode, "venue": venue,
        "online_url": _safe_url(body.get("online_url")), "organizers": organizers, "images": images,
        "languages": [_bdi(ui, _language_name(t, ui)) for t in body.get("languages") or [] if isinstance(t, str)],
        "rights": _safe_url(body.get("rights")),
    }


def _language_name(tag: str, ui: str) -> str:
    loc = formats.locale(ui)
    return str(loc.languages.get(tag.replace("-", "_")) or loc.languages.get(tag.split("-")[0]) or tag)


def render_event_page(rec: StoredRecord, *, base: str, lang: str | None = None, ui: str = "en") -> str:
    """The HTML page of an event record or of its tombstone, in the reader's language ``ui``."""
    page = page_model(rec, base=base, lang=lang, ui=ui)
    page_url = f"{base}/events/{quote(rec.record_id, safe=':')}"
    jsonld = None if rec.body is None else script_json(event_jsonld(rec, page_url, page["api_url"]))
    style = Markup(STYLE)  # noqa: S704  (a constant, allowed by its hash in the CSP)
    return _env.get_template("event.html").render(page=page, jsonld=jsonld, style=style, lang=ui,
                                                  dir=direction(ui))


# -- HTTP -------------------------------------------------------------------------------------------------


def _etag(rec: StoredRecord, base: str, lang: str | None, ui: str) -> str:
    key = json.dumps([PAGE_REVISION, rec.hash, base, lang or "", ui], separators=(",", ":"))
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


async def event_page(request: web.Request) -> web.StreamResponse:
    service: NodeService = request.app[SERVICE]
    record_id = request.match_info["record_id"]
    rec = await service.get(record_id)  # RecordNotFoundError: the app's 404 problem
    if rec.kind != EVENT_KIND:
        raise RecordNotFoundError(f"no event {record_id} (it is a {rec.kind} record)")
    lang = request.query.get("lang") or None
    if lang is not None and not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*", lang):
        lang = None
    base = request.app[CONFIG].public_base  # never the request's Host: the page is cached publicly
    # The page's words: ?lang= when the catalogue has it, else Accept-Language (never a cookie: the page is
    # cached publicly, and Vary names what it depends on).
    ui = negotiate(lang, request.headers.get("Accept-Language", ""), UI_LANGUAGES)
    etag = _etag(rec, base, lang, ui)
    headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": CACHE_CONTROL,
               "Vary": "Accept-Encoding, Accept-Language"}
    if rec.body is not None and etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(status=410 if rec.body is None else 200,
                        text=render_event_page(rec, base=base, lang=lang, ui=ui),
                        content_type=HTML_TYPE, charset="utf-8", headers=headers)


def register_routes(app: web.Application) -> None:
    """Add ``GET /events/{record_id}`` to ``app`` (whose SERVICE the node's cleanup context sets)."""
    app.router.add_get(EVENT_PATH, event_page)
