"""Occurrences of a record in a span of local days (node/records/occurrences.py): recurrences expanded by
recurring_ical_events in the event's own zone (across DST changes and month boundaries), programmes' days, and the
last day of a series that the store's date filters use."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from node.records.occurrences import FOREVER, MAX_OCCURRENCES, last_day, last_day_reference, occurrences
from tests.support.factories import example_bodies

FILM = example_bodies("cultural-event")[6]  # Thursdays 19:00-21:30 Budapest, six of them from 2020-02-06
FELLOWSHIP = example_bodies("capacity-programme")[1]  # 2020-10-05 .. 2020-12-18


def event(start: str, end: str | None, zone: str, rule: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"start": start, "timezone": zone}
    if end:
        body["end"] = end
    if rule:
        body["recurrence"] = rule
    return body


def starts(body: dict[str, Any], first: date, last: date) -> list[str]:
    return [o.start.isoformat() for o in occurrences(body, first, last)]


def test_a_weekly_series_is_split_across_months() -> None:
    assert starts(FILM, date(2020, 2, 1), date(2020, 2, 29)) == [
        f"2020-02-{d:02d}T19:00:00+01:00" for d in (6, 13, 20, 27)]
    march = occurrences(FILM, date(2020, 3, 1), date(2020, 3, 31))
    assert [o.start.isoformat() for o in march] == ["2020-03-05T19:00:00+01:00", "2020-03-12T19:00:00+01:00"]
    assert [o.index for o in march] == [1, 1]  # later occurrences, not the one the record states
    assert occurrences(FILM, date(2020, 2, 6), date(2020, 2, 6))[0].index == 0
    assert starts(FILM, date(2020, 4, 1), date(2020, 4, 30)) == []
    assert last_day(FILM) == "2020-03-12"


def test_local_time_is_kept_across_a_dst_change() -> None:
    """Weekly at 19:00 in Budapest: +01:00 before the last Sunday of March, +02:00 after it."""
    body = event("2026-03-19T19:00:00+01:00", "2026-03-19T21:00:00+01:00", "Europe/Budapest", "FREQ=WEEKLY;COUNT=3")
    assert starts(body, date(2026, 3, 1), date(2026, 4, 30)) == [
        "2026-03-19T19:00:00+01:00", "2026-03-26T19:00:00+01:00", "2026-04-02T19:00:00+02:00"]


@pytest.mark.parametrize(("start", "zone", "month"), [
    ("2026-01-31T23:30:00+03:00", "Asia/Qatar", 1),  # 20:30 UTC: January everywhere
    ("2026-01-31T20:00:00-06:00", "America/Mexico_City", 1),  # 1 February 02:00 UTC, but 31 January there
    ("2026-02-01T00:30:00+09:00", "Asia/Seoul", 2),  # 31 January 15:30 UTC, but 1 February there
])
def test_an_occurrence_belongs_to_its_local_day(start: str, zone: str, month: int) -> None:
    body = event(start, None, zone)
    january = occurrences(body, date(2026, 1, 1), date(2026, 1, 31))
    february = occurrences(body, date(2026, 2, 1), date(2026, 2, 28))
    assert (len(january), len(february)) == ((1, 0) if month == 1 else (0, 1))
    assert (january or february)[0].zone == zone


def test_recurring_in_its_zone_across_a_month_boundary() -> None:
    """Daily at 22:00 in Mexico City (04:00 UTC the next day): the last of January is on the 31st there."""
    body = event("2026-01-30T22:00:00-06:00", "2026-01-30T23:00:00-06:00", "America/Mexico_City",
                 "FREQ=DAILY;COUNT=3")
    assert starts(body, date(2026, 1, 1), date(2026, 1, 31)) == ["2026-01-30T22:00:00-06:00",
                                                                 "2026-01-31T22:00:00-06:00"]
    assert starts(body, date(2026, 2, 1), date(2026, 2, 28)) == ["2026-02-01T22:00:00-06:00"]
    assert last_day(body) == "2026-02-01"


def test_a_span_over_the_month_end_is_in_both_months() -> None:
    body = event("2026-01-30T10:00:00+03:00", "2026-02-02T18:00:00+03:00", "Asia/Qatar")
    (jan,) = occurrences(body, date(2026, 1, 1), date(2026, 1, 31))
    (feb,) = occurrences(body, date(2026, 2, 1), date(2026, 2, 28))
    assert jan == feb and (jan.first_day, jan.last_day) == (date(2026, 1, 30), date(2026, 2, 2))


def test_ending_at_midnight_ends_the_day_before() -> None:
    body = event("2026-01-31T22:00:00+03:00", "2026-02-01T00:00:00+03:00", "Asia/Qatar")
    assert occurrences(body, date(2026, 2, 1), date(2026, 2, 28)) == []
    assert last_day(body) == "2026-01-31"


def test_monthly_last_friday() -> None:
    body = event("2026-01-30T18:00:00+03:00", None, "Asia/Qatar", "FREQ=MONTHLY;BYDAY=-1FR;UNTIL=20260430")
    assert starts(body, date(2026, 2, 1), date(2026, 4, 30)) == [
        "2026-02-27T18:00:00+03:00", "2026-03-27T18:00:00+03:00", "2026-04-24T18:00:00+03:00"]
    assert last_day(body) == "2026-04-24"


def test_an_endless_series_goes_on() -> None:
    body = event("2026-01-01T09:00:00+00:00", None, "UTC", "FREQ=YEARLY")
    assert last_day(body) == FOREVER
    assert starts(body, date(2040, 1, 1), date(2040, 1, 31)) == ["2040-01-01T09:00:00+00:00"]


def test_an_unreadable_rule_shows_the_first_occurrence_only() -> None:
    body = event("2026-01-01T09:00:00+03:00", None, "Asia/Qatar", "FREQ=WEEKLY;BYDAY=XX")
    assert starts(body, date(2026, 1, 1), date(2026, 12, 31)) == ["2026-01-01T09:00:00+03:00"]
    assert last_day(body) == "2026-01-01"


def test_a_programme_is_its_days() -> None:
    (o,) = occurrences(FELLOWSHIP, date(2020, 11, 1), date(2020, 11, 30))
    assert (o.start, o.end) == (date(2020, 10, 5), date(2020, 12, 18))
    assert occurrences(FELLOWSHIP, date(2020, 12, 19), date(2020, 12, 31)) == []
    assert last_day(FELLOWSHIP) == "2020-12-18"


def test_an_unknown_zone_is_read_in_utc() -> None:
    (o,) = occurrences(event("2026-05-01T10:00:00+03:00", None, "Mars/Olympus"), date(2026, 5, 1), date(2026, 5, 1))
    assert o.zone == "UTC" and o.start == datetime.fromisoformat("2026-05-01T07:00:00+00:00")


RULES = ["FREQ=DAILY;COUNT=3", "FREQ=WEEKLY;COUNT=6;BYDAY=TH", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;COUNT=5",
         "FREQ=MONTHLY;BYMONTHDAY=31;COUNT=4", "FREQ=MONTHLY;BYDAY=-1FR;COUNT=3", "FREQ=YEARLY;COUNT=2",
         "FREQ=HOURLY;INTERVAL=7;COUNT=30", "FREQ=DAILY;UNTIL=20211102", "FREQ=WEEKLY;UNTIL=20211101T090000",
         "FREQ=DAILY;UNTIL=20211101T090000Z", "FREQ=DAILY;UNTIL=20200101", "FREQ=DAILY",
         "FREQ=NOPE;COUNT=2", "COUNT=3", "FREQ=MINUTELY;INTERVAL=90;COUNT=40"]


def outcome(f: Any, body: dict[str, Any]) -> Any:
    """What ``f`` answers, or the type of error it raises (a rule neither path reads fails alike)."""
    try:
        return f(body)
    except Exception as e:  # the comparison is the point
        return type(e)


@pytest.mark.parametrize("zone", ["Europe/Budapest", "America/New_York", "Asia/Qatar", "Australia/Lord_Howe"])
def test_last_day_by_rrule_is_the_reference(zone: str) -> None:
    """The fast path (dateutil's rrule directly) gives recurring_ical_events' answer for every rule, across the DST
    changes (starts in a gap and in a fold), at midnight and across it, for events of no length and of more than a
    day, ending before UNTIL or after, with a start the rule itself would not produce, and for rules neither reads."""
    starts = ["2021-03-28T02:30:00", "2021-10-31T02:30:00", "2021-03-14T02:30:00", "2021-11-07T01:30:00",
              "2021-10-30T23:30:00", "2021-10-29T00:00:00"]
    checked = 0
    for start in starts:
        begin = datetime.fromisoformat(start)
        for hours in (None, 1, 3, 25):
            end = None if hours is None else (begin + timedelta(hours=hours)).isoformat()
            for rule in RULES:
                body = event(start, end, zone, rule)
                assert outcome(last_day, body) == outcome(last_day_reference, body), (start, hours, rule)
                checked += 1
    assert checked == len(starts) * 4 * len(RULES)
    longest = event(starts[0], None, zone, f"FREQ=HOURLY;COUNT={MAX_OCCURRENCES + 1}")  # taken as endless
    assert last_day(longest) == last_day_reference(longest) == FOREVER
