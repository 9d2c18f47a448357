"""When a record happens, in its own time zone: the occurrences of an event (its RRULE expanded by
recurring_ical_events, as the calendar apps reading the node's iCalendar feed expand it) or a programme's days,
within a span of local days; and the last local day of the whole series, which the store keeps as the
``last_day`` search column (node/store/records.py) so that a date filter finds a recurring event by any of its
occurrences, not only by the first.

Days are local to the record (its ``timezone``): an event at 23:00 in Doha on 31 January belongs to January in
every view, whatever the reader's zone, as the record page states it (docs/adr/0025).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import recurring_ical_events
from dateutil.rrule import rrulestr
from icalendar import Calendar, Event, vRecur

FOREVER = "9999-12-31"  # the last day of a series without COUNT or UNTIL (a day string sorts after every other)
MAX_OCCURRENCES = 10_000  # a series counted further than this is taken as endless (its last day: FOREVER)


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One occurrence: aware local datetimes in the record's zone (an event), or days (a programme)."""

    start: datetime | date
    end: datetime | date
    zone: str | None
    index: int = 0  # 0 for the first occurrence of a series (the one the record states)

    @property
    def first_day(self) -> date:
        return self.start.date() if isinstance(self.start, datetime) else self.start

    @property
    def last_day(self) -> date:
        """The last local day it covers (an event ending at midnight ends the day before)."""
        if isinstance(self.end, datetime):
            end = self.end - timedelta(microseconds=1) if self.end > self.start else self.end
            return end.date()
        return self.end


def zone_of(body: Mapping[str, Any]) -> tzinfo | None:
    try:
        return ZoneInfo(str(body["timezone"])) if body.get("timezone") else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def rrule(value: str, zone: tzinfo) -> vRecur:
    """The record's RRULE, with UNTIL in UTC as RFC 5545 §3.3.10 requires when DTSTART has a zone: a
    local UNTIL time is read in the event's zone, an UNTIL date as the end of that day there.

    Raises:
        ValueError: not an RRULE value icalendar can read.
    """
    rule: vRecur = vRecur.from_ical(value)
    if rule.get("UNTIL"):
        u = rule["UNTIL"][0]
        if not isinstance(u, datetime):
            u = datetime.combine(u, time(23, 59, 59))
        if u.tzinfo is None:
            u = u.replace(tzinfo=zone)
        rule["UNTIL"] = [u.astimezone(UTC)]
    return rule


def _event_span(body: Mapping[str, Any]) -> tuple[datetime, datetime, tzinfo] | None:
    """The first occurrence of an event in its zone (UTC when the zone is unknown here), or None."""
    try:
        zone = zone_of(body) or UTC
        start = datetime.fromisoformat(str(body["start"])).astimezone(zone)
        end = datetime.fromisoformat(str(body["end"])).astimezone(zone) if body.get("end") else start
    except (KeyError, ValueError, TypeError):
        return None
    return start, max(start, end), zone


def _series(body: Mapping[str, Any], start: datetime, end: datetime, zone: tzinfo) -> Any | None:
    """recurring_ical_events over the event's one VEVENT, or None when it does not recur (or its rule cannot be
    read: then, as in the iCalendar feed, only the first occurrence is shown)."""
    if not isinstance(body.get("recurrence"), str):
        return None
    ev = Event()
    ev.add("uid", "occurrences")
    ev.add("dtstart", start)
    ev.add("dtend", end)
    try:
        ev.add("rrule", rrule(body["recurrence"], zone))
    except ValueError:
        return None
    cal = Calendar()
    cal.add_component(ev)
    return recurring_ical_events.of(cal)


def _local(value: Any, zone: tzinfo) -> datetime | date:
    return value.astimezone(zone) if isinstance(value, datetime) else value


def occurrences(body: Mapping[str, Any] | None, first: date, last: date) -> list[Occurrence]:
    """The record's occurrences that overlap the local days ``first`` to ``last`` (both included), in order."""
    if not body:
        return []
    if "start_date" in body:  # a programme: its days
        try:
            days = (date.fromisoformat(str(body["start_date"])),
                    date.fromisoformat(str(body.get("end_date") or body["start_date"])))
        except ValueError:
            return []
        return [Occurrence(days[0], days[1], body.get("timezone"))] if days[0] <= last and days[1] >= first else []
    span = _event_span(body)
    if span is None:
        return []
    start, end, zone = span
    name = str(body["timezone"]) if zone is not UTC else "UTC"
    series = _series(body, start, end, zone)
    if series is None:
        one = Occurrence(start, end, name)
        return [one] if one.first_day <= last and one.last_day >= first else []
    window = series.between(datetime.combine(first, time(), zone), datetime.combine(last + timedelta(days=1), time(),
                                                                                   zone))
    out = []
    for ev in window:
        s, e = _local(ev["DTSTART"].dt, zone), _local(ev["DTEND"].dt, zone)
        out.append(Occurrence(s, e, name, 0 if s == start else 1))
    return sorted(out, key=lambda o: o.start)


def last_day(body: Mapping[str, Any] | None) -> str | None:
    """The last local day of the record's last occurrence (YYYY-MM-DD; FOREVER for an endless series): what the
    store's date filters compare ``from`` with. None for a body without dates.

    A recurring event's is found by dateutil's rrule directly (:func:`_last_day_by_rrule`), the way
    recurring_ical_events expands the series, without building a calendar for it: 2 ms an event with the library
    (as much as verifying ten envelopes: every record a node applies pays it), a tenth of that without.
    :func:`last_day_reference` is the definition, and tests hold the two to the same answers."""
    if body and "start_date" not in body and isinstance(body.get("recurrence"), str):
        span = _event_span(body)
        if span is not None and (fast := _last_day_by_rrule(body["recurrence"], *span)) is not None:
            return fast
    return last_day_reference(body)


def _last_day_by_rrule(value: str, start: datetime, end: datetime, zone: tzinfo) -> str | None:
    """:func:`last_day_reference` of an event starting at ``start`` (ending at ``end``) in ``zone`` that recurs by
    ``value``, as recurring_ical_events computes it (its rule set: the rule from DTSTART, and DTSTART itself unless
    after UNTIL; each occurrence lasting as the first, in wall-clock time); None when the rule is not read here (the
    reference decides)."""
    try:
        rule = rrule(value, zone)
        if not rule.get("COUNT") and not rule.get("UNTIL"):
            return FOREVER
        until = rule["UNTIL"][0] if rule.get("UNTIL") else None
        text = rule.to_ical().decode()  # type: ignore[no-untyped-call]
        found = list(islice(rrulestr(text, dtstart=start), MAX_OCCURRENCES + 1))
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    if (until is None or start <= until) and start not in found:
        found.append(start)
    if not found or len(found) > MAX_OCCURRENCES:
        return FOREVER if found else Occurrence(start, end, None).last_day.isoformat()
    final = max(found)
    return Occurrence(_local(final, zone), _local(final + (end - start), zone), None).last_day.isoformat()


def last_day_reference(body: Mapping[str, Any] | None) -> str | None:
    """:func:`last_day` by recurring_ical_events: the definition."""
    if not body:
        return None
    if "start_date" in body:
        value = body.get("end_date") or body.get("start_date")
        return str(value)[:10] if isinstance(value, str) else None
    span = _event_span(body)
    if span is None:
        return None
    start, end, zone = span
    series = _series(body, start, end, zone)
    if series is None:
        return Occurrence(start, end, None).last_day.isoformat()
    rule = vRecur.from_ical(body["recurrence"])
    if not rule.get("COUNT") and not rule.get("UNTIL"):
        return FOREVER
    found = list(islice(series.all(), MAX_OCCURRENCES + 1))
    if not found or len(found) > MAX_OCCURRENCES:
        return FOREVER if found else Occurrence(start, end, None).last_day.isoformat()
    final = found[-1]
    return Occurrence(_local(final["DTSTART"].dt, zone), _local(final["DTEND"].dt, zone), None).last_day.isoformat()
