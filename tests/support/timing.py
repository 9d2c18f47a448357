"""Time in tests passes when the test says: a clock to move by hand, an event that tells when a loop waits on it,
and a deadline-bound wait for a condition (instead of sleeping and hoping)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest


class FakeClock:
    """Callable like ``utc_now``; starts at ``start`` (default: the real time now) and moves only by :meth:`advance`
    or :meth:`set`."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta | float) -> datetime:
        """Move forward by ``by`` (seconds, or a timedelta); the new time."""
        self.now += by if isinstance(by, timedelta) else timedelta(seconds=by)
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when

    def timestamp(self) -> int:
        """Whole seconds since the epoch, as RFC 9421's ``created``."""
        return int(self.now.timestamp())


async def eventually(check: Callable[[], Awaitable[Any] | Any], within: float = 5.0) -> Any:
    """Poll ``check`` (a coroutine function, or a plain one) until it returns something truthy (and return that),
    failing after ``within`` s."""
    value = None

    async def look() -> Any:
        got = check()
        return await got if inspect.isawaitable(got) else got

    try:
        async with asyncio.timeout(within):
            while not (value := await look()):  # noqa: ASYNC110  (polling what another task changes)
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"condition not met within {within} s (last value {value!r})")
    return value


class WatchedEvent(asyncio.Event):
    """An asyncio.Event that counts the tasks waiting on it: a test waits until a service loop is idle (waiting
    for work) instead of sleeping and hoping it got there."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters = 0

    async def wait(self) -> Literal[True]:
        self.waiters += 1
        try:
            return await super().wait()
        finally:
            self.waiters -= 1
