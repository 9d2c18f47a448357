"""The services' clock; stored times as UTC, and as the text the HTTP APIs and pages show (hub and node).

Every time a service writes in a JSON document has the protocol's one form (PROTOCOL.md §1): RFC 3339 in UTC with
a ``Z`` and exactly milliseconds, written by :func:`federation.protocol.envelope.format_time`; :func:`utc_text`
only adds what stored times need (None, and SQLite's naive UTC datetimes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import overload

from federation.protocol.envelope import format_time

Clock = Callable[[], datetime]  # what services take to read the time: tests pass one they move by hand


def utcnow() -> datetime:
    """The real clock: every service's default."""
    return datetime.now(UTC)


@overload
def as_utc(when: datetime) -> datetime: ...
@overload
def as_utc(when: None) -> None: ...
@overload
def as_utc(when: datetime | None) -> datetime | None: ...


def as_utc(when: datetime | None) -> datetime | None:
    """A stored time as UTC-aware (SQLite hands back naive datetimes, all of them UTC)."""
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def utc_text(when: datetime | None) -> str | None:
    """A stored time in the protocol's form (``2026-11-29T06:33:03.120Z``, :func:`format_time`); None stays None."""
    when = as_utc(when)
    return format_time(when) if when else None
