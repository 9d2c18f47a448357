"""asyncio helpers the services share."""

from __future__ import annotations

import asyncio
import gc
from typing import Any


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


async def keep_for_life(app: Any) -> None:
    """An ``on_startup`` handler of a served application (``ipdn hub serve``, ``ipdn node serve``), after its
    services started: put every object alive now out of the garbage collector's sight for good (``gc.freeze``).
    The modules, schemas, catalogues, templates and database engine live as long as the process, and each full
    collection would traverse them all again: 70 ms a time at a node, a second of CPU in 30,000 envelopes of
    catch-up, and a pause on the path of whatever record is being applied (docs/BENCHMARKS.md). Objects made
    later are collected as before. Not for an application made in a test's process: what it froze would outlive
    it."""
    gc.freeze()
