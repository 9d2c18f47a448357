"""Benchmark: partner read throughput on a node, record pages and 304 revalidations, requests per second.

A node process (SQLite) holding records received from the hub's log answers ``GET /api/v1/records`` (the
default page of 50 records, each with its body and envelope) to a client of 16 concurrent aiohttp tasks on
the same machine; then the same request with ``If-None-Match`` naming the page's ETag (answered 304). The
anonymous rate limit is raised for the run (it is per client address, and every request comes from one).

The bare baseline, measured in the same run with the same client: a trivial aiohttp handler in its own process
answering a fixed 11-byte JSON (tests/bench/trivial_server.py). Client and server share the two cores.

Run alone: ``.venv/bin/python -m tests.bench reads``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import aiohttp

from federation.protocol.keys import SigningKey
from tests.bench.common import CODES, Context, Figure, Net, make_chains, median, push_all
from tests.support.harness import free_port, wait_for

NAME = "reads"
CONCURRENCY = 16
NODE = "DE"


async def throughput(url: str, seconds: float, headers: dict[str, str] | None = None, expect: int = 200, *,
                     fresh: bool = False) -> float:
    """Requests per second answered ``expect`` to ``CONCURRENCY`` concurrent GETs of ``url`` for ``seconds``
    (``fresh``: each with a parameter of its own added, so that no answer kept for an earlier one serves it)."""
    done = 0
    sep = "&" if "?" in url else "?"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.get(f"{url}{sep}n={done}" if fresh else url, headers=headers) as r:
                    await r.read()
                    if r.status != expect:
                        raise AssertionError(f"GET {url}: {r.status}, expected {expect}")
                done += 1

        t = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
        return done / (time.perf_counter() - t)


async def run(ctx: Context) -> list[Figure]:
    records, seconds = ctx.size(2000, 100), ctx.size(5.0, 0.5)
    chains = make_chains(CODES[:4], records // 4)
    port = free_port()
    trivial = subprocess.Popen([sys.executable, "-m", "tests.bench.trivial_server", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    net = Net(ctx.root / "net", {**{c: ch.key for c, ch in chains.items()}, NODE: SigningKey.generate()})
    bare, pages, revalidated = [], [], []
    try:
        with net:
            net.start("hub")
            await push_all(net.hub_url, chains.values(), 500)
            net.add_node(NODE)
            net.start(NODE, {"IPDN_NODE_ANONYMOUS_RATE_PER_MINUTE": str(10**9)})
            wait_for("catch-up", lambda: net.status(NODE)["cursor"] >= records, timeout=600)
            page = net.url(NODE) + "/api/v1/records"
            async with aiohttp.ClientSession() as s, s.get(page) as r:
                etag, size = r.headers["ETag"], len(await r.read())
            base = f"http://127.0.0.1:{port}/"
            for _ in range(ctx.rounds):
                bare.append(await throughput(base, seconds))
                pages.append(await throughput(page, seconds))
                revalidated.append(await throughput(page, seconds, {"If-None-Match": etag}, 304))
    finally:
        trivial.terminate()
        trivial.wait()
    note = f"{records:,} records held, {CONCURRENCY} concurrent clients, {seconds} s per round, median of {ctx.rounds}"
    b = median(bare)
    return [
        Figure(NAME, "record pages (GET /api/v1/records, 50/page)", median(pages), "requests/s", b,
               "trivial aiohttp handler", note=f"{size:,} bytes a page; {note}", samples=pages),
        Figure(NAME, "304 revalidations (If-None-Match)", median(revalidated), "requests/s", b,
               "trivial aiohttp handler", samples=revalidated),
    ]
