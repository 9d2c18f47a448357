"""The services' clock; stored times as UTC, and as the text the HTTP APIs and pages show (hub and node).

Not the protocol's time format: protocol fields (``issued_at``) are written with milliseconds by
:func:`federation.protocol.envelope.format_time` (PROTOCOL.md §1). These are the times the status, quarantine
and record APIs report, at the precision they were stored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import overload

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
    """RFC 3339 in UTC with a ``Z``, at the precision stored (``2026-11-29T06:33:03.120417Z``); None stays None."""
    when = as_utc(when)
    return when.isoformat().replace("+00:00", "Z") if when else None
