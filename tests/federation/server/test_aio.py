"""federation/server/aio.py: waiting for an event with a time limit without losing a cancellation; the heap a
served process started with, frozen."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from federation.server.aio import wait_event
from tests.support import paths


async def test_set_and_timed_out() -> None:
    event = asyncio.Event()
    assert not await wait_event(event, 0.01)
    event.set()
    assert await wait_event(event, 10)


async def test_service_loop_stops_when_cancelled_as_it_is_woken() -> None:
    """A loop waiting on an event is cancelled in the same turn as the event is set (a service stopped just as
    work arrives): the cancellation is kept and the loop ends. With asyncio.wait_for on Python 3.11 the
    cancellation is swallowed and the loop waits forever (what hung a webhook worker's stop)."""
    for _ in range(20):
        event = asyncio.Event()
        turns = 0

        async def service_loop(event: asyncio.Event = event) -> None:
            nonlocal turns
            while True:
                event.clear()
                await wait_event(event, 60)
                turns += 1

        task = asyncio.create_task(service_loop())
        await asyncio.sleep(0)  # the loop is waiting
        event.set()
        await asyncio.sleep(0)  # the waiter is woken ...
        task.cancel()  # ... and the service stopped in the same turn
        done, _ = await asyncio.wait([task], timeout=2)
        assert done == {task} and task.cancelled()


def test_keep_for_life_freezes_what_is_alive_then() -> None:
    """In a process of its own (a test's process must not freeze what it made): what lived at the start is out of
    the collector's sight after it, and a cycle made later is still collected."""
    code = (
        "import asyncio, gc, weakref\n"
        "from federation.server.aio import keep_for_life\n"
        "gc.collect(); assert gc.get_freeze_count() == 0\n"
        "asyncio.run(keep_for_life(None)); frozen = gc.get_freeze_count(); assert frozen > 1000, frozen\n"
        "class C: pass\n"
        "c = C(); c.me = c; alive = weakref.ref(c); del c\n"
        "gc.collect(); assert alive() is None\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=paths.ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
