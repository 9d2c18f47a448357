"""The authoring form's recurrence builder: a repeating event as people say it, and the RRULE the record holds.

The builder says "every week (or every n weeks) on these days" or "every month (or every n months) on this day of
the month", until a last day or a number of times; :func:`write` makes the RFC 5545 §3.3.10 RRULE value of it with
icalendar's ``vRecur`` (the schema's ``rrule``: no ``RRULE:`` prefix), :func:`read` reads a record's rule back into
the builder, :func:`problem` checks a rule with python-dateutil (the library calendar clients expand with), and
:func:`words` says it in the page's language (the staff catalogue's ``rrule.*``, CLDR plural forms: Arabic has
six). A rule the builder cannot say (daily, "the second Tuesday", by month, a week starting on Sunday...) is
kept as written and edited as text (the builder's "another rule"), so every record stays editable.

The last day is a date in the event's own time zone, inclusive: it is written as the end of that day there, in
UTC (``UNTIL=20270331T205959Z`` for Doha), as RFC 5545 wants beside a start with a zone; without a zone yet, as
the date (the partner feeds read that as the end of the day in the event's zone: node/partners/feeds.py).
docs/adr/0029-licence-picker-and-recurrence-builder.md says why.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any, Protocol

from dateutil.rrule import rrulestr
from icalendar.prop import vRecur

from federation.server.ui.formats import format_date, format_list, locale

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")  # in CLDR's (Babel's) order of day names: 0 is Monday
FREQUENCIES = ("weekly", "monthly")
CUSTOM = "custom"  # the builder's choice for a rule written by hand
# The range of each number of a rule (RFC 5545 §3.3.10); a negative one counts from the end, so 0 is none.
RANGES = {"BYSECOND": (0, 60), "BYMINUTE": (0, 59), "BYHOUR": (0, 23), "BYMONTHDAY": (-31, 31),
          "BYYEARDAY": (-366, 366), "BYWEEKNO": (-53, 53), "BYMONTH": (1, 12), "BYSETPOS": (-366, 366)}
_WHOLE = re.compile(r"[+-]?[0-9]{1,9}")


class Words(Protocol):
    """What :func:`words` needs of the page's language (node.staff.forms.Names)."""

    @property
    def lang(self) -> str: ...

    def message(self, key: str, **values: Any) -> str: ...

    def plural(self, key: str, n: int, **values: Any) -> str: ...


@dataclass(frozen=True)
class Recurrence:
    """A rule the builder can show: ``freq`` weekly or monthly, every ``interval`` weeks or months, on ``days``
    (weekly; none: the start's weekday) or on day ``monthday`` (monthly; none: the start's day), ending on the day
    ``until`` (in the event's zone, inclusive) or after ``count`` times, or never."""

    freq: str
    interval: int = 1
    days: tuple[str, ...] = ()
    monthday: int | None = None
    until: date | None = None
    count: int | None = None


def _zone(name: str | None) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def read(rule: str, zone: str | None) -> Recurrence | None:
    """The builder's view of ``rule``, or None when the builder cannot show it (or it cannot be read)."""
    try:
        parts = vRecur.from_ical(rule.strip())
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    freq = str(parts.get("FREQ", [""])[0]).lower()
    if freq not in FREQUENCIES:
        return None
    allowed = {"FREQ", "INTERVAL", "UNTIL", "COUNT", "WKST", "BYDAY" if freq == "weekly" else "BYMONTHDAY"}
    if set(parts) - allowed or any(len(parts.get(k, [])) > 1 for k in ("INTERVAL", "UNTIL", "COUNT", "BYMONTHDAY")):
        return None
    if [str(w) for w in parts.get("WKST", ["MO"])] != ["MO"] or ("UNTIL" in parts and "COUNT" in parts):
        return None
    days = [str(d) for d in parts.get("BYDAY", [])]
    if any(d not in WEEKDAYS for d in days):  # an ordinal ("1MO") is not weekly on days
        return None
    interval, count = int(parts.get("INTERVAL", [1])[0]), parts.get("COUNT", [None])[0]
    monthday = parts.get("BYMONTHDAY", [None])[0]
    if interval < 1 or (count is not None and count < 1) or (monthday is not None and not 1 <= monthday <= 31):
        return None  # the builder offers none of these (a negative day counts from the month's end)
    until: date | None = None
    if "UNTIL" in parts:
        u = parts["UNTIL"][0]
        if isinstance(u, datetime):
            u = u.astimezone(_zone(zone) or UTC).date() if u.tzinfo is not None else u.date()
        until = u
    return Recurrence(freq, interval, tuple(d for d in WEEKDAYS if d in days),
                      None if monthday is None else int(monthday), until, None if count is None else int(count))


def write(rec: Recurrence, zone: str | None) -> str:
    """The RRULE value of ``rec`` (the last day as the end of that day in ``zone``, in UTC)."""
    values: dict[str, Any] = {"FREQ": rec.freq.upper()}
    if rec.until is not None:
        tz = _zone(zone)
        values["UNTIL"] = (datetime.combine(rec.until, time(23, 59, 59), tz).astimezone(UTC)
                           if tz is not None else rec.until)
    if rec.count is not None:
        values["COUNT"] = rec.count
    if rec.interval != 1:
        values["INTERVAL"] = rec.interval
    if rec.freq == "weekly" and rec.days:
        values["BYDAY"] = [d for d in WEEKDAYS if d in rec.days]
    if rec.freq == "monthly" and rec.monthday is not None:
        values["BYMONTHDAY"] = rec.monthday
    return str(vRecur(values).to_ical().decode("ascii"))  # type: ignore[no-untyped-call]


def from_form(controls: Mapping[str, Sequence[str]], zone: str | None) -> str:
    """The rule the builder's inputs say ("" for an event that does not repeat).

    ``_freq`` weekly, monthly, custom (``_rule`` as typed) or blank; ``_interval``, ``_byday`` (repeated),
    ``_monthday``, ``_until`` (a date), ``_count``; ``_was`` the rule the form was shown with, kept as written
    when the inputs say the same (so opening and saving a record changes nothing). A number that is no whole
    number is written as typed, for the schema and :func:`problem` to name.
    """

    def first(name: str) -> str:
        values = controls.get(name) or [""]
        return values[0].strip()

    freq = first("_freq")
    if freq == CUSTOM:
        return re.sub(r"^RRULE:", "", first("_rule"), flags=re.IGNORECASE)
    if freq not in FREQUENCIES:
        return ""
    typed: dict[str, str] = {}  # numbers that are not whole, as typed

    def number(name: str, key: str) -> int | None:
        text = first(name)
        if not text:
            return None
        if _WHOLE.fullmatch(text):
            return int(text)
        typed[key] = text
        return None

    until_text = first("_until")
    try:
        until = date.fromisoformat(until_text) if until_text else None
    except ValueError:
        until, typed["UNTIL"] = None, until_text
    rec = Recurrence(freq, number("_interval", "INTERVAL") or 1,
                     tuple(d for d in WEEKDAYS if d in (controls.get("_byday") or [])),
                     number("_monthday", "BYMONTHDAY") if freq == "monthly" else None, until,
                     number("_count", "COUNT"))
    was = first("_was")
    if not typed and was and read(was, zone) == rec:
        return was
    return ";".join([write(rec, zone), *(f"{k}={v}" for k, v in typed.items())])


def problem(rule: str, start: str | None, zone: str | None) -> str | None:
    """What is wrong with ``rule`` (a key of the catalogue's ``err.rule:recurrence-*``), None when nothing:
    ``unreadable`` (icalendar or dateutil cannot read it, or a number is out of its range: an interval or count
    below 1, a day of the month of 40...), ``until-and-count`` (RFC 5545 allows one), ``never`` (its last day is
    before the start). Whether a readable rule ever falls on a day (the 30th of February) is not searched for:
    dateutil would step to the year 9999 to say no."""
    try:
        parts = vRecur.from_ical(rule.strip())
    except (ValueError, TypeError, KeyError, IndexError):
        return "unreadable"
    if "UNTIL" in parts and "COUNT" in parts:
        return "until-and-count"
    try:
        numbers = {k: [int(v) for v in parts.get(k, [])] for k in ("INTERVAL", "COUNT", *RANGES)}
    except (ValueError, TypeError):
        return "unreadable"
    if any(n < 1 for n in numbers["INTERVAL"] + numbers["COUNT"]) or any(
            not low <= n <= high or (low < 0 and n == 0) for k, (low, high) in RANGES.items() for n in numbers[k]):
        return "unreadable"
    tz = _zone(zone) or UTC
    if "UNTIL" in parts and not isinstance(parts["UNTIL"][0], datetime):  # a date: the end of it, in the zone
        parts["UNTIL"] = [datetime.combine(parts["UNTIL"][0], time(23, 59, 59), tz).astimezone(UTC)]
    elif "UNTIL" in parts and parts["UNTIL"][0].tzinfo is None:
        parts["UNTIL"] = [parts["UNTIL"][0].replace(tzinfo=tz).astimezone(UTC)]
    begin = _start(start, tz)
    try:
        text = vRecur(parts).to_ical().decode("ascii")  # type: ignore[no-untyped-call]
        rrulestr(text, dtstart=begin or datetime(2000, 1, 1, tzinfo=tz))
    except (ValueError, TypeError):
        return "unreadable"
    return "never" if begin is not None and "UNTIL" in parts and parts["UNTIL"][0] < begin else None


def _start(text: str | None, tz: tzinfo) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None
    return None if when is None else when.astimezone(tz) if when.tzinfo is not None else when.replace(tzinfo=tz)


def day_names(lang: str) -> list[tuple[str, str]]:
    """(RRULE day, its name in ``lang``), Monday first."""
    names = locale(lang).days["format"]["wide"]
    return [(code, str(names[i])) for i, code in enumerate(WEEKDAYS)]


def words(rule: str, names: Words, zone: str | None) -> str | None:
    """``rule`` in words ("Every 2 weeks on Monday and Thursday, 6 times"), None when the builder cannot say it."""
    rec = read(rule, zone)
    if rec is None:
        return None
    n = rec.interval
    if rec.freq == "weekly" and rec.days:
        named = dict(day_names(names.lang))
        text = names.plural("rrule.weekly-on", n, days=format_list([named[d] for d in rec.days], names.lang))
    elif rec.freq == "weekly":
        text = names.plural("rrule.weekly", n)
    elif rec.monthday is not None:
        text = names.plural("rrule.monthly-on", n, day=rec.monthday)
    else:
        text = names.plural("rrule.monthly", n)
    if rec.until is not None:
        return names.message("rrule.until", rule=text, date=format_date(rec.until.isoformat(), names.lang, "full"))
    if rec.count is not None:
        return names.plural("rrule.count", rec.count, rule=text)
    return text
