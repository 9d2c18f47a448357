"""The network's portal, served by every node (each holds the whole network's records): public, server-rendered
HTML pages that work without JavaScript, in the reader's language (docs/adr/0025-portal-urls-and-caching.md).

- ``/``: what is coming up across the network (the next events and programmes, soonest first);
- ``/events``: every record of both kinds, with the read API's filters (kind, member, participating country,
  type, audience, status, title language, tag, dates) and full-text search, paged with the API's cursor;
  subscribe links carry the same filters to the ICS, JSON Feed and Atom URLs (which read them alike);
- ``/calendar`` and ``/agenda``: the same filters as a month and as the coming days (node/partners/views.py);
- ``/members`` and ``/members/{code}``: the member institutions, by the registry's names, and what each publishes;
- ``/events/{record_id}``: the record page (node/partners/pages.py), with its ``calendar.ics`` and
  ``envelope.json`` downloads;
- ``/sitemap.xml``, ``/robots.txt`` and ``/portal.css`` (the stylesheet, with the operator's colours).

The page's words come from the ``public`` catalogue in ``?lang=`` or else Accept-Language (then ``Vary:
Accept-Language``), never a cookie: pages are cached publicly (``Cache-Control: public, max-age=60``, a strong
ETag over what the page is made of, 304 to ``If-None-Match``). Links are built from the configured public base
URL, never the request's Host. The operator turns the portal off (``portal = false``: these routes answer 404;
record pages stay, feeds link to them) and brands it (name, logo, colours) in node.toml.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from xml.sax.saxutils import escape as xml_escape

from aiohttp import web
from markupsafe import Markup

from federation.protocol.registry import Member
from federation.server.ui import formats
from federation.server.ui.i18n import Catalog, direction, negotiate, pick
from federation.server.ui.templates import template_env
from node.appkeys import CONFIG, SERVICE
from node.config import NodeConfig
from node.errors import BadQueryError
from node.partners import about
from node.partners.answers import cached
from node.partners.feeds import ATOM_PATH, ICS_PATH, JSON_FEED_PATH, record_path
from node.records.filters import RecordFilter
from node.records.service import NodeService
from node.store.records import StoredRecord

EVENT_KIND, PROGRAMME_KIND = "cultural-event", "capacity-programme"
KINDS = (EVENT_KIND, PROGRAMME_KIND)
UI_LANGUAGES = ("en", "ar")  # the languages of node/partners/locale (public.po)
HTML_TYPE = "text/html"
LIST_CACHE = "public, max-age=60"
# Part of every portal ETag: bump it whenever the same records would be rendered differently.
PORTAL_REVISION = "1"
# Title languages offered by the list's language filter (any BCP 47 tag works in the URL).
FILTER_LANGUAGES = ("ar", "en", "fr", "es", "pt", "tr", "ko", "hu", "zh", "ms", "fil", "pt-MZ", "yo", "ha")
SITEMAP_MAX = 50_000  # URLs in one sitemap (sitemaps.org)
MAX_Q = 500

catalog = Catalog(Path(__file__).resolve().parent / "locale", "public")
env = template_env(Path(__file__).resolve().parent / "templates", catalog)
STYLESHEET = (Path(__file__).resolve().parent / "static" / "portal.css").read_text(encoding="utf-8")


def words(ui: str) -> Any:
    """The ``public`` catalogue's translator in ``ui``."""
    return catalog.translator(ui)


# -- the frame every portal page shares -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Brand:
    """The operator's branding (node.toml), checked by NodeConfig: colours are hex, the logo https or a path."""

    name: str
    logo: str
    colour: str
    accent: str
    page: str = ""  # the version of the operator's page (node/partners/about.py), which every footer links to

    @classmethod
    def of(cls, config: NodeConfig) -> Brand:
        return cls(config.portal_name.strip(), config.portal_logo_url, config.portal_colour, config.portal_accent,
                   about.revision(config, UI_LANGUAGES))

    def stylesheet(self) -> bytes:
        return (f":root{{--brand:{self.colour};--accent:{self.accent}}}\n" + STYLESHEET).encode()

    def csp(self) -> str:
        logo = urlsplit(self.logo)
        img = "'self'" + (f" {logo.scheme}://{logo.netloc}" if logo.scheme == "https" else "")
        return (f"default-src 'none'; style-src 'self'; img-src {img}; form-action 'self'; base-uri 'none'; "
                "frame-ancestors 'none'")

    def revision(self) -> str:
        return hashlib.sha256(json.dumps([self.name, self.logo, self.colour, self.accent, self.page]).encode()
                              ).hexdigest()[:16]


def security_headers(config: NodeConfig) -> dict[str, str]:
    return {"Content-Security-Policy": Brand.of(config).csp(), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "strict-origin-when-cross-origin", "X-Frame-Options": "DENY"}


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads: the page's language (``ui``), whether it came from ``?lang=`` (else Accept-Language), and the
    request's path and query (for the language switch and the hreflang alternates)."""

    ui: str
    asked: bool
    path: str
    query: tuple[tuple[str, str], ...]
    base: str

    @classmethod
    def of(cls, request: web.Request) -> Reader:
        asked = request.query.get("lang") or None
        ui = negotiate(asked, request.headers.get("Accept-Language", ""), UI_LANGUAGES)
        return cls(ui, asked in UI_LANGUAGES, request.path,
                   tuple((k, v) for k, v in request.query.items() if k != "lang"),
                   request.app[CONFIG].public_base)

    def url(self, *, absolute: bool = False, **changes: str | None) -> str:
        """This page's URL with ``changes`` to its query (None removes a parameter)."""
        query = dict(self.query)
        for k, v in changes.items():
            if v is None:
                query.pop(k, None)
            else:
                query[k] = v
        text = urlencode(list(query.items()))
        return (self.base if absolute else "") + self.path + (f"?{text}" if text else "")

    def alternates(self) -> list[dict[str, str]]:
        """hreflang alternates: one per UI language, and x-default (the language negotiated)."""
        return [{"hreflang": lang, "href": self.url(absolute=True, lang=lang)} for lang in UI_LANGUAGES] + [
            {"hreflang": "x-default", "href": self.url(absolute=True, lang=None)}]


def frame(reader: Reader, config: NodeConfig, **page: Any) -> dict[str, Any]:
    """What portal.html needs beside the page's own model."""
    operator_page = about.load(config, reader.ui) if config.portal else None
    return {"lang": reader.ui, "dir": direction(reader.ui), "reader": reader, "brand": Brand.of(config),
            "portal": config.portal, "about_title": (operator_page.title or words(reader.ui).gettext("about.title"))
            if operator_page else None, **page}


def etag_of(*parts: Any) -> str:
    return '"' + hashlib.sha256(json.dumps([PORTAL_REVISION, *parts], default=str).encode()).hexdigest()[:32] + '"'


def respond(request: web.Request, reader: Reader, etag: str, render: Callable[[], str], *, status: int = 200,
            cache_control: str = LIST_CACHE) -> web.Response:
    """The page with its validators; 304 (nothing rendered) when ``If-None-Match`` names it."""
    config = request.app[CONFIG]
    headers = {**security_headers(config), "ETag": etag, "Cache-Control": cache_control,
               "Vary": "Accept-Encoding" if reader.asked else "Accept-Encoding, Accept-Language"}
    if status == 200 and any(t.value in (etag.strip('"'), "*") for t in request.if_none_match or ()):
        return web.Response(status=304, headers=headers)
    return web.Response(status=status, text=render(), content_type=HTML_TYPE, charset="utf-8", headers=headers)


def not_found(request: web.Request, *, gone: bool = False, record_id: str | None = None) -> web.Response:
    """The portal's 404 (or 410) page, in the reader's language."""
    reader = Reader.of(request)
    config = request.app[CONFIG]
    page = frame(reader, config, gone=gone, record_id=record_id, alternates=[], title_key=
                 "missing.gone-title" if gone else "missing.title")
    headers = {**security_headers(config), "Cache-Control": "public, max-age=60",
               "Vary": "Accept-Encoding, Accept-Language"}
    return web.Response(status=410 if gone else 404, text=env.get_template("missing.html").render(**page),
                        content_type=HTML_TYPE, charset="utf-8", headers=headers)


# -- what a list shows of a record ----------------------------------------------------------------------------


def localized(texts: Any, lang: str) -> tuple[str, str] | tuple[None, None]:
    chosen = pick(texts, lang) if isinstance(texts, Mapping) else None
    return chosen if chosen else (None, None)


def member_names(service: NodeService, ui: str) -> dict[str, tuple[str, str]]:
    """Each member's name in the reader's language (the registry's names), by code: (language, name)."""
    out: dict[str, tuple[str, str]] = {}
    for m in service.registry.registry.members:
        tag, name = localized(m.names, ui)
        out[m.code] = (tag or "en", name or m.code)
    return out


def country_name(code: str, ui: str) -> str:
    return str(formats.locale(ui).territories.get(code.upper(), code.upper()))


def card(rec: StoredRecord, ui: str, members: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """One record as a list shows it: title (in the reader's language when written in it), kind, type, status,
    when, where, who published it."""
    body: Mapping[str, Any] = rec.body or {}
    tag, title = localized(body.get("title"), ui)
    venue: Mapping[str, Any] = body["venue"] if isinstance(body.get("venue"), Mapping) else {}
    city_lang, city = localized(venue.get("city"), ui)
    where = [(city_lang, city)] if city else []
    if isinstance(venue.get("country"), str):
        where.append((ui, country_name(venue["country"], ui)))
    kind = rec.kind
    return {
        "record_id": rec.record_id, "kind": kind, "href": record_path(rec.record_id),
        "title": title or rec.title or rec.record_id, "title_lang": tag or "und",
        "title_dir": direction(tag or ui), "status": rec.status, "origin": rec.origin,
        "origin_name": members.get(rec.origin, (ui, rec.origin)),
        "type": body.get("event_type") or body.get("programme_type"),
        "start": body.get("start"), "end": body.get("end"), "timezone": body.get("timezone"),
        "start_date": body.get("start_date"), "end_date": body.get("end_date"),
        "where": where, "gone": rec.body is None, "recurring": isinstance(body.get("recurrence"), str),
    }


CARD_CACHE = 20_000  # rendered cards kept (a few hundred bytes each)
_cards: OrderedDict[tuple[str, str, tuple[str, str] | None], Markup] = OrderedDict()


def cards(records: Iterable[StoredRecord], ui: str, members: Mapping[str, tuple[str, str]]) -> list[Markup]:
    """Each record's card as HTML, rendered once per version (its hash), language and publisher's name and then
    kept: a list page is then mostly a join (decoding a body and formatting its dates by CLDR is most of a card)."""
    out = []
    for rec in records:
        key = (rec.hash, ui, members.get(rec.origin))
        html = _cards.get(key)
        if html is None:
            html = Markup(env.get_template("card.html").render(lang=ui, c=card(rec, ui, members)))  # noqa: S704
            _cards[key] = html
            if len(_cards) > CARD_CACHE:
                _cards.popitem(last=False)
        out.append(html)
    return out


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The values the list's choices offer, from the schemas the node holds (both kinds, every version)."""

    statuses: tuple[str, ...]
    event_statuses: tuple[str, ...]
    types: tuple[str, ...]  # event types, then the programme types that are not also event types
    event_types: tuple[str, ...]
    audiences: tuple[str, ...]

    @classmethod
    def of(cls, service: NodeService) -> Vocabulary:
        found: dict[tuple[str, str], dict[str, None]] = {}
        for sid, kind in sorted(service.schemas.kind_of.items()):
            if kind not in KINDS:
                continue
            props = service.schemas.documents[sid].get("properties", {})
            for name, key in (("status", "status"), ("event_type", "type"), ("programme_type", "type"),
                              ("audience", "audience"), ("target_audience", "audience")):
                schema = props.get(name, {})
                values = schema.get("enum") or schema.get("items", {}).get("enum") or []
                found.setdefault((kind, key), {}).update(dict.fromkeys(values))

        def of(kind: str | None, key: str) -> tuple[str, ...]:
            kinds = KINDS if kind is None else (kind,)
            return tuple(dict.fromkeys(v for k in kinds for v in found.get((k, key), {})))

        return cls(of(None, "status"), of(EVENT_KIND, "status"), of(None, "type"), of(EVENT_KIND, "type"),
                   of(None, "audience"))


@cache
def _country_options(ui: str) -> tuple[tuple[str, str], ...]:
    names = formats.locale(ui).territories
    codes = [c for c in names if isinstance(c, str) and re.fullmatch(r"[A-Z]{2}", c)
             and c not in ("ZZ", "EU", "EZ", "UN", "QO", "XA", "XB")]
    return tuple(sorted(((c, str(names[c])) for c in codes), key=lambda p: p[1]))


@cache
def _country_options_html(ui: str) -> str:
    return "".join(str(Markup('<option value="{}">{}</option>').format(c, n)) for c, n in _country_options(ui))


def country_options(ui: str, selected: str | None) -> Markup:
    """The country filter's options in ``ui``, made once per language (250 of them on every list page)."""
    html = _country_options_html(ui)
    if selected and re.fullmatch(r"[A-Z]{2}", selected.upper()):
        code = selected.upper()
        html = html.replace(f'<option value="{code}">', f'<option value="{code}" selected>', 1)
    return Markup(html)  # noqa: S704  (built above from escaped parts)


@cache
def _language_options(ui: str) -> tuple[tuple[str, str], ...]:
    loc = formats.locale(ui)
    return tuple((t, str(loc.languages.get(t.replace("-", "_")) or loc.languages.get(t.split("-")[0]) or t))
                 for t in FILTER_LANGUAGES)


# -- the list -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The list page's filters, as the record API reads them (``language`` is the API's ``lang``: on the portal
    ``lang`` names the page's language)."""

    filters: RecordFilter
    date_from: date | None
    date_to: date | None
    q: str | None
    cursor: str | None

    @classmethod
    def parse(cls, query: Mapping[str, str], vocabulary: Vocabulary | None = None) -> ListQuery:
        """The filters of ``query``; with ``vocabulary``, a type or audience must be one it knows (a choice the form
        offers: a typed URL's typo is a 400 page, not an empty list)."""
        values = {k: (query.get(k) or "").strip() for k in ("kind", "origin", "country", "status", "tag", "type",
                                                          "audience")}
        values["lang"] = (query.get("language") or "").strip()
        if values["kind"] and values["kind"] not in KINDS:
            raise BadQueryError(f"kind is one of {', '.join(KINDS)}")
        if vocabulary is not None:
            for name, known in (("type", vocabulary.types), ("audience", vocabulary.audiences)):
                if values[name] and values[name] not in known:
                    raise BadQueryError(f"{name} is one of {', '.join(known)}")
        filters = RecordFilter.parse(values, kinds=KINDS)
        days = []
        for name in ("from", "to"):
            text = (query.get(name) or "").strip()
            try:
                days.append(date.fromisoformat(text) if text else None)
            except ValueError as e:
                raise BadQueryError(f"{name} is a day (YYYY-MM-DD)") from e
        search = (query.get("q") or "").strip() or None
        if search is not None and (len(search) > MAX_Q or "\x00" in search):
            raise BadQueryError(f"q is at most {MAX_Q} characters")
        return cls(filters, days[0], days[1], search, query.get("cursor") or None)

    def store_filters(self, *, dates: bool = True) -> dict[str, Any]:
        """The filters as keywords of :meth:`NodeService.list_records` (``dates``: with the list's from/to)."""
        f = self.filters
        return {"kind": f.kind, "origin": f.origin, "country": f.country, "lang": f.lang, "status": f.status,
                "tag": f.tag, "type_": f.type, "audience": f.audience, "q": self.q,
                "date_from": self.date_from if dates else None, "date_to": self.date_to if dates else None}

    def active(self) -> dict[str, str]:
        """The filters set, by their portal names."""
        out = self.filters.to_dict()
        if "lang" in out:
            out["language"] = out.pop("lang")
        if self.date_from:
            out["from"] = self.date_from.isoformat()
        if self.date_to:
            out["to"] = self.date_to.isoformat()
        if self.q:
            out["q"] = self.q
        return out


FEED_FILTERS = ("origin", "country", "type", "audience", "language", "tag", "from", "to", "q")  # besides kind, status


def subscribe_links(q: ListQuery, ui: str, base: str, event_statuses: Iterable[str] = (), *,
                    event_types: Iterable[str] | None = None, dates: bool = True) -> list[dict[str, str]]:
    """The feeds with the list's filters, by the same names (the feeds read them alike: node/partners/feeds.py), and
    the page's language as their ``lang``. The calendar (events only) is offered unless the filters name programmes
    only (their kind, a type or a status no event has). ``dates``: the list's from/to (a view's month is not)."""
    f = q.filters
    active = q.active()
    common = {k: active.get(k) for k in FEED_FILTERS if dates or k not in ("from", "to")} | {"lang": ui}
    feeds = {"kind": f.kind, "status": f.status, **common}
    links = []
    events_only_type = event_types is None or f.type is None or f.type in set(event_types)
    if f.kind in (None, EVENT_KIND) and events_only_type and (f.status is None or f.status in set(event_statuses)):
        ics = {**common, "status": f.status}
        links.append({"key": "subscribe.ics", "type": "text/calendar", "href": _with(base + ICS_PATH, ics)})
    links.append({"key": "subscribe.json", "type": "application/feed+json",
                  "href": _with(base + JSON_FEED_PATH, feeds)})
    links.append({"key": "subscribe.atom", "type": "application/atom+xml", "href": _with(base + ATOM_PATH, feeds)})
    return links


VIEWS = (("list", "/events"), ("calendar", "/calendar"), ("agenda", "/agenda"))


def filter_form(q: ListQuery, reader: Reader, members: Mapping[str, tuple[str, str]], vocabulary: Vocabulary, *,
                view: str) -> dict[str, Any]:
    """What the filter form (templates/filters.html) shows, on the list and on the calendar views: the choices in
    the reader's language (sorted by their words), the values chosen, and the same filters in the other views."""
    words_ = words(reader.ui)
    shown = dict.fromkeys(("kind", "origin", "country", "status", "language", "tag", "type", "audience", "from",
                           "to", "q"))
    kept = {k: v for k, v in q.active().items() if k not in ("from", "to")}
    return {
        "query": {**shown, **q.active()}, "view": view, "kinds": KINDS, "statuses": vocabulary.statuses,
        "members": sorted(members.items(), key=lambda m: m[1][1]),
        "countries": country_options(reader.ui, q.filters.country), "languages": _language_options(reader.ui),
        "types": sorted(vocabulary.types, key=lambda t: str(words_.pgettext("type", t))),
        "audiences": sorted(vocabulary.audiences, key=lambda a: str(words_.pgettext("audience", a))),
        "views": [{"key": f"views.{name}", "href": path + "?" + urlencode({**kept, "lang": reader.ui}),
                   "current": name == view} for name, path in VIEWS],
    }


def _with(url: str, params: Mapping[str, str | None]) -> str:
    text = urlencode([(k, v) for k, v in params.items() if v])
    return f"{url}?{text}" if text else url


async def list_page(request: web.Request) -> web.StreamResponse:
    service: NodeService = request.app[SERVICE]
    config: NodeConfig = request.app[CONFIG]
    reader = Reader.of(request)
    vocabulary = Vocabulary.of(service)
    try:
        q = ListQuery.parse(request.query, vocabulary)
        items, next_cursor = await service.list_records(**q.store_filters(), cursor=q.cursor,
                                                        limit=config.portal_page_size)
    except BadQueryError as e:
        return _bad_query(request, reader, str(e))
    items = [r for r in items if r.key_warning is None]
    etag = etag_of("list", reader.ui, reader.url(), config.public_base, Brand.of(config).revision(), next_cursor,
                   [(r.record_id, r.hash) for r in items], service.registry.registry.version)

    def render() -> str:
        members = member_names(service, reader.ui)
        page = frame(reader, config, alternates=reader.alternates(), cards=cards(items, reader.ui, members),
                     next_url=reader.url(cursor=next_cursor) if next_cursor else None,
                     first_url=reader.url(cursor=None) if q.cursor else None,
                     **filter_form(q, reader, members, vocabulary, view="list"),
                     subscribe=subscribe_links(q, reader.ui, config.public_base, vocabulary.event_statuses,
                                               event_types=vocabulary.event_types),
                     api_url=_with(config.public_base + "/api/v1/records", {
                         **{k: v for k, v in q.filters.to_dict().items()},
                         "from": q.active().get("from"), "to": q.active().get("to"), "q": q.q}))
        return env.get_template("list.html").render(**page)

    return respond(request, reader, etag, render)


def _bad_query(request: web.Request, reader: Reader, detail: str) -> web.Response:
    config = request.app[CONFIG]
    page = frame(reader, config, alternates=[], gone=False, record_id=None, title_key="missing.bad-query",
                 detail=detail)
    return web.Response(status=400, text=env.get_template("missing.html").render(**page), content_type=HTML_TYPE,
                        charset="utf-8", headers={**security_headers(config), "Cache-Control": "no-store"})


# -- home and members ----------------------------------------------------------------------------------------


async def home_page(request: web.Request) -> web.StreamResponse:
    service: NodeService = request.app[SERVICE]
    config: NodeConfig = request.app[CONFIG]
    reader = Reader.of(request)
    events = await service.upcoming(EVENT_KIND, config.portal_upcoming)
    programmes = await service.upcoming(PROGRAMME_KIND, config.portal_upcoming)
    today = service.clock().date().isoformat()
    etag = etag_of("home", reader.ui, reader.url(), config.public_base, Brand.of(config).revision(), today,
                   [(r.record_id, r.hash) for r in events + programmes], service.registry.registry.version)

    def render() -> str:
        members = member_names(service, reader.ui)
        page = frame(reader, config, alternates=reader.alternates(),
                     events=cards(events, reader.ui, members),
                     programmes=cards(programmes, reader.ui, members),
                     member_count=len(members))
        return env.get_template("home.html").render(**page)

    return respond(request, reader, etag, render)


def _member(service: NodeService, code: str) -> Member | None:
    return next((m for m in service.registry.registry.members if m.code == code), None)


async def members_page(request: web.Request) -> web.StreamResponse:
    service: NodeService = request.app[SERVICE]
    config: NodeConfig = request.app[CONFIG]
    reader = Reader.of(request)
    registry = service.registry.registry
    etag = etag_of("members", reader.ui, reader.url(), config.public_base, Brand.of(config).revision(),
                   registry.version)

    def render() -> str:
        names = member_names(service, reader.ui)
        rows = [{"code": m.code, "name": names[m.code], "role": m.role, "status": m.status,
                 "country": country_name(m.code, reader.ui)} for m in registry.members if m.status != "applicant"]
        rows.sort(key=lambda r: r["name"][1])
        return env.get_template("members.html").render(**frame(reader, config, alternates=reader.alternates(),
                                                               members=rows))

    return respond(request, reader, etag, render)


async def member_page(request: web.Request) -> web.StreamResponse:
    service: NodeService = request.app[SERVICE]
    config: NodeConfig = request.app[CONFIG]
    reader = Reader.of(request)
    code = request.match_info["code"].upper()
    member = _member(service, code)
    if member is None or member.status == "applicant":
        return not_found(request)
    if request.match_info["code"] != code:
        raise web.HTTPMovedPermanently(f"/members/{code}")
    events = await service.upcoming(EVENT_KIND, config.portal_upcoming, origin=code)
    programmes = await service.upcoming(PROGRAMME_KIND, config.portal_upcoming, origin=code)
    etag = etag_of("member", code, reader.ui, reader.url(), config.public_base, Brand.of(config).revision(),
                   service.registry.registry.version, [(r.record_id, r.hash) for r in events + programmes],
                   service.clock().date().isoformat())

    def render() -> str:
        members = member_names(service, reader.ui)
        names = [{"lang": tag, "dir": direction(tag), "name": name} for tag, name in member.names.items()]
        page = frame(reader, config, alternates=reader.alternates(), member=member, name=members[code],
                     names=names, country=country_name(code, reader.ui),
                     events=cards(events, reader.ui, members),
                     programmes=cards(programmes, reader.ui, members),
                     list_url="/events?" + urlencode({"origin": code}),
                     subscribe=subscribe_links(ListQuery(RecordFilter(origin=code), None, None, None, None),
                                               reader.ui, config.public_base, ()))
        return env.get_template("member.html").render(**page)

    return respond(request, reader, etag, render)


# -- for machines: sitemap, robots, the stylesheet ------------------------------------------------------------


async def _all_records(service: NodeService, config: NodeConfig, limit: int) -> list[StoredRecord]:
    out: list[StoredRecord] = []
    cursor: str | None = None
    while len(out) < limit:
        items, cursor = await service.list_records(cursor=cursor, limit=config.max_page_size)
        out += [r for r in items if r.body is not None and r.kind in KINDS]
        if cursor is None:
            break
    return out[:limit]


async def sitemap(request: web.Request) -> web.StreamResponse:
    """The portal's pages and every record page (sitemaps.org), each with its hreflang alternates."""
    service: NodeService = request.app[SERVICE]
    config: NodeConfig = request.app[CONFIG]
    base = config.public_base
    records = await _all_records(service, config, SITEMAP_MAX - 6 - len(service.registry.registry.members))
    etag = etag_of("sitemap", base, [(r.record_id, r.hash) for r in records], service.registry.registry.version,
                   Brand.of(config).page)
    if any(t.value in (etag.strip('"'), "*") for t in request.if_none_match or ()):
        return web.Response(status=304, headers={"ETag": etag, "Cache-Control": "public, max-age=3600"})
    # The views as they open (this month, the coming days): one URL each, not one per month or filter.
    entries: list[tuple[str, str | None]] = [("/", None), ("/events", None), ("/calendar", None), ("/agenda", None),
                                             ("/members", None)]
    if config.portal_page and about.load(config, "en") is not None:
        entries.append((about.PATH, None))
    entries += [(f"/members/{m.code}", None) for m in service.registry.registry.members if m.status != "applicant"]
    entries += [(record_path(r.record_id), r.updated_at.date().isoformat()) for r in records]
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
             'xmlns:xhtml="http://www.w3.org/1999/xhtml">']
    for path, lastmod in entries:
        loc = xml_escape(base + path)
        alts = "".join(f'<xhtml:link rel="alternate" hreflang="{lang}" href="{loc}?lang={lang}"/>'
                       for lang in UI_LANGUAGES)
        parts.append(f"<url><loc>{loc}</loc>" + (f"<lastmod>{lastmod}</lastmod>" if lastmod else "") + alts + "</url>")
    parts.append("</urlset>\n")
    return web.Response(text="\n".join(parts), content_type="application/xml", charset="utf-8",
                        headers={"ETag": etag, "Cache-Control": "public, max-age=3600"})


async def robots(request: web.Request) -> web.StreamResponse:
    base = request.app[CONFIG].public_base
    text = ("User-agent: *\nAllow: /\nDisallow: /api/\nDisallow: /author/\nDisallow: /status\nDisallow: /metrics\n"
            f"Disallow: /oai\n\nSitemap: {base}/sitemap.xml\n")
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "public, max-age=86400"})


async def stylesheet(request: web.Request) -> web.StreamResponse:
    body = Brand.of(request.app[CONFIG]).stylesheet()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if any(t.value == etag.strip('"') for t in request.if_none_match or ()):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="text/css", charset="utf-8", headers=headers)


def _portal_only(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not request.app[CONFIG].portal:
            raise web.HTTPNotFound(text="the portal is off on this node", content_type="text/plain")
        response: web.StreamResponse = await handler(request)
        return response
    return guarded


def register_routes(app: web.Application) -> None:
    """The portal's routes (the record page and its downloads are node/partners/pages.py's)."""
    app.router.add_get("/", _portal_only(cached(home_page)))
    app.router.add_get("/events", _portal_only(cached(list_page)))
    app.router.add_get("/members", _portal_only(cached(members_page)))
    app.router.add_get("/members/{code:[A-Za-z]{2}}", _portal_only(cached(member_page)))
    app.router.add_get("/sitemap.xml", _portal_only(cached(sitemap)))
    app.router.add_get("/robots.txt", _portal_only(robots))
    app.router.add_get("/portal.css", stylesheet)
