"""The portal's calendar views (docs/adr/0025), the records of the list's filters as a month and as the coming
days, and the operator's own page:

- ``/calendar?month=YYYY-MM``: a month, one cell per day (a grid of weeks from 48 rem; a list of the days that hold
  something below it, so a phone scrolls no sideways), each occurrence on its local day;
- ``/agenda?from=YYYY-MM-DD``: the occurrences of the next ``portal_agenda_days`` days, grouped by day, each day
  named in the reader's language and each time in the event's zone, named;
- ``/about``: the operator's page (node/partners/about.py), when node.toml names one.

The calendar and the agenda take every filter of ``/events`` (node/partners/portal.py ``ListQuery``: kind,
member, participating country, type, audience, status, title language, tag, full text) and are made of the same
store query: the records whose series overlap the days shown (the ``start_day`` and ``last_day`` columns), then
each one's occurrences in those days (node/records/occurrences.py: a recurring event on each of its days, in its
own zone). A day is the record's local day: an event at 23:00 in Doha on 31 January is in January's calendar for
every reader. Pages are cached like the list's (ETag over what they are made of and today's date, ``public,
max-age=60``), carry hreflang alternates and the subscribe links with the same filters.
"""

from __future__ import annotations

import calendar as calendar_module
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web
from babel import dates as babel_dates
from markupsafe import Markup

from federation.server.ui import formats
from federation.server.ui.i18n import direction
from node.appkeys import CONFIG, SERVICE
from node.config import NodeConfig
from node.errors import BadQueryError
from node.partners import about, portal
from node.partners.answers import cached
from node.records.occurrences import Occurrence, occurrences
from node.records.service import NodeService
from node.store.records import StoredRecord

CALENDAR_PATH, AGENDA_PATH = "/calendar", "/agenda"
MONTH_RE = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True, slots=True)
class Entry:
    """One occurrence as a view shows it: on ``day`` (its first local day, or the view's first day for one that
    began before), with the record it belongs to."""

    day: date
    occurrence: Occurrence
    record: StoredRecord

    def order(self) -> tuple[date, str, str]:
        start = self.occurrence.start
        instant = start.isoformat() if isinstance(start, datetime) else ""
        return self.day, instant, self.record.record_id


async def _window(service: NodeService, config: NodeConfig, q: portal.ListQuery, first: date,
                  last: date) -> tuple[list[StoredRecord], bool]:
    """The records of ``q``'s filters whose series overlap ``first``..``last`` (at most ``portal_view_records``;
    True when there were more), paged through with the API's cursor."""
    found: list[StoredRecord] = []
    cursor: str | None = None
    while True:
        items, cursor = await service.list_records(**{**q.store_filters(), "date_from": first, "date_to": last},
                                                   cursor=cursor, limit=config.max_page_size)
        found += [r for r in items if r.body is not None and r.key_warning is None and r.kind in portal.KINDS]
        if cursor is None or len(found) >= config.portal_view_records:
            return found[:config.portal_view_records], cursor is not None or len(found) > config.portal_view_records


def entries(records: Sequence[StoredRecord], first: date, last: date) -> list[Entry]:
    """Every occurrence of ``records`` within the local days ``first``..``last``, by day, then by the instant it
    starts (a programme's days first), then by record."""
    out = [Entry(max(o.first_day, first), o, rec) for rec in records for o in occurrences(rec.body, first, last)]
    return sorted(out, key=Entry.order)


# -- how an occurrence is said ------------------------------------------------------------------------------


def _moment(when: datetime, ui: str) -> str:
    """A local date and time, short: "Feb 6, 7:00 PM" / "6 فبراير، 7:00 م"."""
    loc = formats.locale(ui)
    return str(babel_dates.get_datetime_format("medium", locale=loc)).replace(
        "{1}", babel_dates.format_skeleton("MMMd", when.date(), locale=loc)).replace(
        "{0}", babel_dates.format_time(when, "short", tzinfo=when.tzinfo, locale=loc))


def when_text(o: Occurrence, ui: str) -> str:
    """When, in the record's zone, named: "7:00 PM – 9:30 PM (Hungary Time)"; a span of days with its times; a
    programme's days ("Oct 5 – Dec 18")."""
    loc = formats.locale(ui)
    if not isinstance(o.start, datetime) or not isinstance(o.end, datetime):
        if o.start == o.end:
            return str(babel_dates.format_skeleton("MMMd", o.start, locale=loc))
        return str(babel_dates.format_interval(o.start, o.end, "MMMd", locale=loc))
    zone = formats.zone_name(o.zone, ui)
    if o.first_day == o.last_day:
        start = babel_dates.format_time(o.start, "short", tzinfo=o.start.tzinfo, locale=loc)
        text = start if o.end == o.start else start + " – " + babel_dates.format_time(
            o.end, "short", tzinfo=o.end.tzinfo, locale=loc)
    else:
        text = _moment(o.start, ui) + " – " + _moment(o.end, ui)
    return f"{text} ({zone})"


def item(e: Entry, ui: str, members: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """What a view shows of an entry: the record's card facts and when this occurrence is."""
    c = portal.card(e.record, ui, members)
    start = e.occurrence.start
    return {**c, "when": when_text(e.occurrence, ui), "datetime": start.isoformat(),
            "continues": e.day > e.occurrence.first_day, "repeat": e.occurrence.index > 0}


def day_name(day: date, ui: str) -> str:
    return str(babel_dates.format_date(day, "full", locale=formats.locale(ui)))


# -- the month -----------------------------------------------------------------------------------------------


def parse_month(text: str | None, today: date) -> date:
    """The first day of ``YYYY-MM`` (this month when absent).

    Raises:
        BadQueryError: not a month of the years 1000 to 9999.
    """
    if not text:
        return today.replace(day=1)
    m = MONTH_RE.fullmatch(text.strip())
    if not m or not 1 <= int(m.group(2)) <= 12 or not 1000 <= int(m.group(1)) <= 9999:
        raise BadQueryError("month is a month, YYYY-MM (years 1000 to 9999)")
    return date(int(m.group(1)), int(m.group(2)), 1)


def month_grid(first: date, found: Sequence[Entry], ui: str, members: Mapping[str, tuple[str, str]],
               today: date) -> dict[str, Any]:
    """The month as days (with their entries), the weekday names in the reader's order and the first day's column."""
    loc = formats.locale(ui)
    days_in = calendar_module.monthrange(first.year, first.month)[1]
    by_day: dict[date, list[dict[str, Any]]] = {}
    for e in found:
        by_day.setdefault(e.day, []).append(item(e, ui, members))
    week_start = loc.first_week_day
    days = []
    for n in range(days_in):
        day = first + timedelta(days=n)
        days.append({"date": day.isoformat(), "number": day.day, "name": day_name(day, ui),
                     "items": by_day.get(day, []), "today": day == today,
                     "column": (day.weekday() - week_start) % 7 + 1})
    names = loc.days["stand-alone"]["abbreviated"]
    return {"days": days, "weekdays": [str(names[(week_start + i) % 7]) for i in range(7)],
            "title": str(babel_dates.format_skeleton("yMMMM", first, locale=loc))}


def _month(reader: portal.Reader, day: date | None) -> str:
    """The calendar of ``day``'s month (None: this month), with the same filters and language."""
    return reader.url(month=day.strftime("%Y-%m") if day else None, lang=reader.ui if reader.asked else None)


def _month_window(request: web.Request, q: portal.ListQuery, today: date) -> tuple[date, date]:
    first = parse_month(request.query.get("month"), today)
    return first, first.replace(day=calendar_module.monthrange(first.year, first.month)[1])


def _month_page(first: date, last: date, found: Sequence[Entry], reader: portal.Reader,
                members: Mapping[str, tuple[str, str]], today: date, config: NodeConfig) -> dict[str, Any]:
    before, after = first - timedelta(days=1), last + timedelta(days=1) if last < date.max else None
    return {"month": first.strftime("%Y-%m"), "grid": month_grid(first, found, reader.ui, members, today),
            "count": len(found), "previous_url": _month(reader, before) if before.year >= 1000 else None,
            "next_url": _month(reader, after) if after else None,
            "this_url": _month(reader, None) if first != today.replace(day=1) else None}


async def calendar_page(request: web.Request) -> web.StreamResponse:
    return await _view(request, "calendar", _month_window, _month_page)


# -- the coming days -----------------------------------------------------------------------------------------


def agenda_days(found: Sequence[Entry], ui: str, members: Mapping[str, tuple[str, str]],
                limit: int) -> tuple[list[dict[str, Any]], date | None]:
    """The entries grouped by day, whole days only, at most ``limit`` entries (one day alone may pass it); and the
    first day left out (None: none was)."""
    days: list[dict[str, Any]] = []
    for shown, e in enumerate(found):
        if not days or days[-1]["day"] != e.day:
            if shown >= limit:
                return days, e.day
            days.append({"day": e.day, "date": e.day.isoformat(), "name": day_name(e.day, ui), "items": []})
        days[-1]["items"].append(item(e, ui, members))
    return days, None


def _starting(reader: portal.Reader, day: date | None) -> str:
    """The agenda from ``day`` (None: from today), with the same filters and language."""
    changes: dict[str, Any] = {"from": day.isoformat() if day else None, "lang": reader.ui if reader.asked else None}
    return reader.url(**changes)


def _agenda_window(request: web.Request, q: portal.ListQuery, today: date) -> tuple[date, date]:
    start = q.date_from or today
    return start, start + min(timedelta(days=request.app[CONFIG].portal_agenda_days - 1), date.max - start)


def _agenda_page(start: date, last: date, found: Sequence[Entry], reader: portal.Reader,
                 members: Mapping[str, tuple[str, str]], today: date, config: NodeConfig) -> dict[str, Any]:
    days, left_out = agenda_days(found, reader.ui, members, config.portal_agenda_max)
    later = left_out or (last + timedelta(days=1) if last < date.max else None)
    earlier = start - min(timedelta(days=config.portal_agenda_days), start - today)
    return {"days": days, "start": start.isoformat(), "start_name": day_name(start, reader.ui),
            "last_name": day_name(left_out - timedelta(days=1) if left_out else last, reader.ui),
            "later_url": _starting(reader, later) if later else None,
            "earlier_url": _starting(reader, earlier) if start > today else None,
            "today_url": _starting(reader, None) if start != today else None}


async def agenda_page(request: web.Request) -> web.StreamResponse:
    return await _view(request, "agenda", _agenda_window, _agenda_page)


# -- both ------------------------------------------------------------------------------------------------------


Window = Callable[[web.Request, portal.ListQuery, date], tuple[date, date]]
Model = Callable[[date, date, Sequence[Entry], portal.Reader, Mapping[str, tuple[str, str]], date, NodeConfig],
                 dict[str, Any]]


async def _view(request: web.Request, name: str, window: Window, model: Model) -> web.StreamResponse:
    """A view of the list's selection over the days ``window`` reads from the request (templates/<name>.html)."""
    service: NodeService = request.app[SERVICE]
    config: NodeConfig = request.app[CONFIG]
    reader = portal.Reader.of(request)
    vocabulary = portal.Vocabulary.of(service)
    today = service.clock().date()
    try:
        q = portal.ListQuery.parse(request.query, vocabulary)
        first, last = window(request, q, today)
    except BadQueryError as e:
        return portal._bad_query(request, reader, str(e))
    records, more = await _window(service, config, q, first, last)
    etag = portal.etag_of(name, reader.ui, reader.url(), config.public_base, portal.Brand.of(config).revision(),
                          first.isoformat(), today.isoformat(), more, [(r.record_id, r.hash) for r in records],
                          service.registry.registry.version)

    def render() -> str:
        members = portal.member_names(service, reader.ui)
        found = entries(records, first, last)
        page = portal.frame(
            reader, config, alternates=reader.alternates(), truncated=more,
            **model(first, last, found, reader, members, today, config),
            **portal.filter_form(q, reader, members, vocabulary, view=name),
            subscribe=portal.subscribe_links(q, reader.ui, config.public_base, vocabulary.event_statuses,
                                             event_types=vocabulary.event_types, dates=False))
        return portal.env.get_template(f"{name}.html").render(**page)

    return portal.respond(request, reader, etag, render)


# -- the operator's page ---------------------------------------------------------------------------------------


async def about_page(request: web.Request) -> web.StreamResponse:
    """The operator's own page (node/partners/about.py), in the reader's language when the operator wrote one."""
    config: NodeConfig = request.app[CONFIG]
    reader = portal.Reader.of(request)
    page = about.load(config, reader.ui)
    if page is None:
        return portal.not_found(request)
    etag = portal.etag_of("about", reader.ui, reader.url(), config.public_base, portal.Brand.of(config).revision())

    def render() -> str:
        title = page.title or portal.words(reader.ui).gettext("about.title")
        return portal.env.get_template("about.html").render(**portal.frame(
            reader, config, alternates=reader.alternates(), title=title, has_heading=page.title is not None,
            content=Markup(page.html), content_lang=page.lang,  # noqa: S704  (sanitised by about.render)
            content_dir=direction(page.lang) if page.lang else None))

    return portal.respond(request, reader, etag, render, cache_control="public, max-age=300")


def register_routes(app: web.Application) -> None:
    """The month calendar, the agenda and the operator's page (off with the rest of the portal: ``portal = false``),
    their answers kept until the data changes like the other portal pages' (node/partners/answers.py)."""
    app.router.add_get(CALENDAR_PATH, portal._portal_only(cached(calendar_page)))
    app.router.add_get(AGENDA_PATH, portal._portal_only(cached(agenda_page)))
    app.router.add_get(about.PATH, portal._portal_only(cached(about_page)))
