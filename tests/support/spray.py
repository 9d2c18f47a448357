"""A password spray at a real node's ``/author/signin`` while ``/healthz`` is timed: what the sign-in benchmark
(tests/bench/bench_signin.py) measures and the end-to-end test (tests/e2e/test_signin_spraying.py) holds.

Each sprayer is a browser-like client of its own (its cookie jar): it fetches the form, then posts a new user name
with a common password, as fast as answers come. ``spread`` sends each attempt as from a new address (the node
must then believe X-Forwarded-For from 127.0.0.1: its ``trusted_proxies``), which no per-address limit stops;
then only the bounded password pool protects the event loop. Without it, every attempt is from 127.0.0.1.

``/healthz`` is probed from a process of its own, so the sprayers' client work (and its hold on this process's
GIL) does not delay the probe's own reading of the clock.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import secrets
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import aiohttp

SPRAY_PASSWORD = "Winter2026!"  # the spray's guess, no one's password


@dataclass
class SprayResult:
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    healthz: list[float] = field(default_factory=list)  # seconds, one per probe
    user_sign_ins: list[tuple[int, float]] = field(default_factory=list)  # (status, seconds) of the real user

    @property
    def attempts_per_second(self) -> float:
        return sum(self.statuses.values()) / self.seconds


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the sign-in form"
    return m.group(1)


async def sign_in_once(session: aiohttp.ClientSession, base: str, username: str, password: str,
                       headers: dict[str, str] | None = None) -> int:
    async with session.get(base + "/author/signin") as r:
        token = _csrf(await r.text())
    data = {"csrf_token": token, "username": username, "password": password, "next": "/author/"}
    async with session.post(base + "/author/signin", data=data, headers=headers, allow_redirects=False) as r:
        await r.read()
        return r.status


def probe(base: str, until: float, interval: float) -> list[float]:
    """Seconds of each ``GET /healthz``, one every ``interval``, until the wall clock reads ``until``."""
    async def run() -> list[float]:
        out = []
        async with aiohttp.ClientSession() as session:
            while time.time() < until:
                t = time.perf_counter()
                async with session.get(base + "/healthz") as r:
                    await r.read()
                out.append(time.perf_counter() - t)
                await asyncio.sleep(interval)  # a probe's pace, not a wait for a condition
        return out

    return asyncio.run(run())


async def measure(base: str, seconds: float, *, sprayers: int = 8, spread: bool = False,
                  user: tuple[str, str] | None = None, interval: float = 0.02) -> SprayResult:
    """Spray with ``sprayers`` clients for ``seconds`` (none: the baseline) while probing ``/healthz``; with
    ``user`` (name, password), that person signs in once a second from an address of their own meanwhile."""
    result = SprayResult(seconds)
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    probing = asyncio.get_running_loop().run_in_executor(pool, probe, base, time.time() + seconds, interval)
    deadline = time.perf_counter() + seconds

    async def spray() -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # an IP's cookies
            while time.perf_counter() < deadline:
                headers = ({"X-Forwarded-For": f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}."
                                               f"{secrets.randbelow(254) + 1}"} if spread else None)
                status = await sign_in_once(session, base, f"user{secrets.token_hex(4)}", SPRAY_PASSWORD, headers)
                result.statuses[status] += 1

    async def person() -> None:
        assert user is not None
        while time.perf_counter() < deadline:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # signed out
                t = time.perf_counter()
                status = await sign_in_once(session, base, *user, headers={"X-Forwarded-For": "198.51.100.7"})
                result.user_sign_ins.append((status, time.perf_counter() - t))
            await asyncio.sleep(1.0)

    try:
        await asyncio.gather(*[spray() for _ in range(sprayers)], *([person()] if user else []))
        result.healthz = await probing
    finally:
        pool.shutdown(cancel_futures=True)
    return result
