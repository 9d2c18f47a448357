"""asyncio helpers the services share."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait for ``event`` at most ``seconds``; whether it was set.

    Not ``asyncio.wait_for``: on Python 3.11 it returns normally, swallowing the cancellation, when the event
    is set in the same turn of the loop as the waiting task is cancelled (CPython gh-86296), and a service
    loop around it then never stops (a test run hung so in a webhook worker's stop). ``asyncio.timeout``
    keeps the cancellation.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
