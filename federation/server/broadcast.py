"""A wake-up for any number of waiters, given from synchronous code after something became durable.

Waiters remember the generation they last acted on and wait for a newer one (or a timeout), then read what
changed from the database themselves: nothing is handed over in memory, so a slow waiter misses nothing and holds
no queue, and many changes while it was busy wake it once. Used by the node's record stream (node/api/stream.py),
woken after each commit that changes records (node/store/records.py).
"""

from __future__ import annotations

import asyncio
import contextlib


class Broadcast:
    def __init__(self) -> None:
        self.generation = 0
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake every waiter (each wait started before this returns). Call it after the change is committed."""
        self.generation += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, seen: int, within: float) -> int:
        """Wait until the generation is past ``seen`` or ``within`` seconds passed; the generation then."""
        if self.generation == seen:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await self._event.wait()
        return self.generation
