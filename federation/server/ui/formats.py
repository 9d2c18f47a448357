"""Dates, times, numbers, durations and lists as a reader of a language writes them (Babel, CLDR data), for the
pages of the hub and the nodes; jinja2 filters that take the page's language from the render (``lang``).

- A time names its zone: an event's own (``Asia/Qatar`` -> "Qatar Time" / "توقيت قطر"), else UTC; it is shown
  inside ``<time datetime="…">`` holding the machine value (RFC 3339), so scripts and machines still read it.
- Digits stay Latin (CLDR's default numbering for ``ar`` in Babel, and what the Gulf members' staff write).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from typing import Any, Literal, cast

import jinja2
import jinja2.runtime
from babel import Locale, UnknownLocaleError, dates, lists, numbers
from markupsafe import Markup, escape

Style = Literal["full", "long", "medium", "short"]
ListStyle = Literal["standard", "standard-short", "or", "or-short", "unit", "unit-short", "unit-narrow"]
STYLES: dict[str, tuple[Style, Style]] = {  # date format, time format
    "full": ("full", "short"), "long": ("long", "short"), "medium": ("medium", "medium"), "short": ("short", "short")}


@cache
def locale(lang: str) -> Locale:
    """The CLDR locale of a language tag (English when CLDR does not know it)."""
    try:
        return Locale.parse(lang.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return Locale("en")


def _zone(name: str | None) -> tzinfo:
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return UTC


def parse_time(value: str | datetime | None) -> datetime | None:
    """A datetime from an RFC 3339 text (a naive one is UTC), or None."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def zone_name(zone: str | None, lang: str) -> str:
    """The zone as a reader says it: "Qatar Time", "توقيت قطر", "UTC"."""
    if not zone or zone in ("UTC", "Etc/UTC"):
        return "UTC"
    return str(dates.get_timezone_location(_zone(zone), locale=locale(lang)))


def format_time(value: str | datetime | None, lang: str, zone: str | None = None, style: str = "medium",
                name_zone: bool = True) -> str:
    """``value`` in ``zone`` (else UTC), e.g. "Wednesday, January 20, 2027, 7:00 PM (Qatar Time)"; "–" for none."""
    when = parse_time(value)
    if when is None:
        return "–"
    loc, tz = locale(lang), _zone(zone)
    date_style, time_style = STYLES.get(style, STYLES["medium"])
    local = when.astimezone(tz)
    text = str(dates.get_datetime_format(date_style, locale=loc)).replace(
        "{1}", dates.format_date(local, date_style, locale=loc)).replace(
        "{0}", dates.format_time(local, time_style, tzinfo=tz, locale=loc))
    return f"{text} ({zone_name(zone, lang)})" if name_zone else text


def format_date(value: str | None, lang: str, style: str = "long") -> str:
    """A calendar date (``2027-01-20``) in words."""
    if not value:
        return "–"
    try:
        return str(dates.format_date(datetime.fromisoformat(value).date(), style, locale=locale(lang)))
    except ValueError:
        return value


def format_number(value: Any, lang: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = round(value)
    return str(numbers.format_decimal(value, locale=locale(lang)))


def format_duration(seconds: float | None, lang: str) -> str:
    """A duration in words, to the unit that matters ("3 minutes", "٣ دقائق" forms by CLDR's plural rules)."""
    if seconds is None:
        return "–"
    return str(dates.format_timedelta(timedelta(seconds=seconds), threshold=1.5, locale=locale(lang)))


def format_list(items: Iterable[str], lang: str, style: ListStyle = "standard") -> str:
    """Items joined as the language joins them ("a, b and c"; Arabic with "،" and "و")."""
    return str(lists.format_list([str(i) for i in items if i], style=style, locale=locale(lang)))


def time_element(value: str | datetime | None, lang: str, zone: str | None = None, style: str = "medium") -> Markup:
    """``<time datetime="machine value">words</time>``; "–" for none."""
    when = parse_time(value)
    if when is None:
        return Markup("–")
    machine = when.isoformat() if isinstance(value, datetime) or value is None else str(value)
    return Markup('<time datetime="{}">{}</time>').format(machine, format_time(when, lang, zone, style))


def install(env: jinja2.Environment) -> None:
    """The filters ``when`` (a ``<time>`` element), ``time_text``, ``date``, ``number``, ``duration`` and
    ``join_list``, in the language of the page being rendered. (Parts of one thing, an address, are joined with
    the catalogue's ``pgettext("punctuation", "separator")``: CLDR has no comma without "and" for Arabic.)"""

    @jinja2.pass_context
    def when(context: jinja2.runtime.Context, value: Any, zone: str | None = None, style: str = "medium") -> Markup:
        return time_element(value, context["lang"], zone, style)

    @jinja2.pass_context
    def time_text(context: jinja2.runtime.Context, value: Any, zone: str | None = None, style: str = "medium") -> str:
        return format_time(value, context["lang"], zone, style)

    @jinja2.pass_context
    def date(context: jinja2.runtime.Context, value: Any, style: str = "long") -> str:
        return format_date(value, context["lang"], style)

    @jinja2.pass_context
    def number(context: jinja2.runtime.Context, value: Any) -> str:
        return format_number(value, context["lang"])

    @jinja2.pass_context
    def duration(context: jinja2.runtime.Context, value: Any) -> str:
        return format_duration(value, context["lang"])

    @jinja2.pass_context
    def join_list(context: jinja2.runtime.Context, items: Iterable[str], style: str = "standard") -> Markup:
        # Each item escaped (or markup already, a <bdi>); CLDR's patterns hold no markup characters.
        return Markup(format_list([escape(i) for i in items if i], context["lang"], cast(ListStyle, style)))  # noqa: S704

    env.filters.update(when=when, time_text=time_text, date=date, number=number, duration=duration,
                       join_list=join_list)
