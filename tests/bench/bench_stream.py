"""Benchmark: publish-to-partner latency through the record stream, a record published at one node until a partner
holding another node's stream (GET /api/v1/records/stream) has received its event.

A hub and three nodes as real processes on SQLite (loopback). A partner holds an anonymous stream at each node but
the publisher (a stream is one request at connect, so the partner is not rate-limited while it reads). Records are
published at QA at a steady pace (POST /api/v1/records with the operator token), one every ``INTERVAL`` seconds,
without waiting for the events. The latency is from just before the POST to the moment the event was read from the
stream; each record gives one sample per peer. The stages (from the same start, wall clock): the POST answered, in
the hub's log (``log.received_at``), applied at the peer (``records.updated_at``, stamped in its apply
transaction), the event read by the partner.

The bare baseline, in the same run: the hub's own push + long-poll round trip (bench_latency.hub_round_trips).

Run alone: ``.venv/bin/python -m tests.bench stream``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import aiohttp

from tests.bench.bench_latency import _applied_at, _stamp, hub_round_trips
from tests.bench.common import CODES, Context, Figure, Goal, percentile
from tests.support.factories import example_bodies
from tests.support.harness import Federation
from tests.support.sse import SseReader

NAME = "stream"
INTERVAL = 0.25  # seconds between publishes
GOAL_P50, GOAL_P99 = 15.0, 50.0  # ms (issue 20)


async def publish_and_listen(fed: Federation, n: int) -> dict[str, list[float]]:
    """Stage latencies in seconds from just before each POST: answered, at_hub, applied, received."""
    publisher, peers = fed.members[0], fed.members[1:]
    bodies = example_bodies("cultural-event")
    received: dict[tuple[str, str], float] = {}
    started: dict[str, float] = {}
    answered: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        readers = []
        for m in peers:
            resp = await session.get(fed.url(m) + "/api/v1/records/stream")
            assert resp.status == 200, await resp.text()
            readers.append((m, SseReader(resp)))

        async def listen(m: str, sse: SseReader) -> None:
            while True:
                ev = await sse.event(within=3600)
                received[(m, ev.json()["record_id"])] = time.time()

        tasks = [asyncio.create_task(listen(m, sse)) for m, sse in readers]
        auth = {"Authorization": f"Bearer {fed.tokens[publisher]}"}
        next_at = time.monotonic()
        for i in range(n):
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += INTERVAL
            t0 = time.time()
            async with session.post(fed.url(publisher) + "/api/v1/records", headers=auth,
                                    json={"kind": "cultural-event", "body": bodies[i % len(bodies)]}) as r:
                assert r.status == 201, await r.text()
                rid = (await r.json())["record_id"]
            answered[rid], started[rid] = time.time() - t0, t0
        deadline = time.monotonic() + 30
        while len(received) < n * len(peers):
            assert time.monotonic() < deadline, f"{n * len(peers) - len(received)} events not received within 30 s"
            await asyncio.sleep(0.01)
        for t in tasks:
            t.cancel()
        for _, sse in readers:
            sse.resp.close()
    hub = sqlite3.connect(f"file:{fed.root / 'hub' / 'hub.db'}?mode=ro", uri=True)
    dbs = {m: sqlite3.connect(f"file:{fed.root / m / 'node.db'}?mode=ro", uri=True) for m in peers}
    out: dict[str, list[float]] = {"answered": list(answered.values()), "at_hub": [], "applied": [], "received": []}
    try:
        for rid, t0 in started.items():
            logged = _stamp(hub, "SELECT received_at FROM log WHERE record_id = ?", rid)
            assert logged is not None, rid
            out["at_hub"].append(logged - t0)
            for m in peers:
                applied = _applied_at(dbs[m], rid)
                assert applied is not None, (m, rid)
                out["applied"].append(applied - t0)
                out["received"].append(received[(m, rid)] - t0)
    finally:
        for db in [hub, *dbs.values()]:
            db.close()
    return out


async def run(ctx: Context) -> list[Figure]:
    nodes, n = 3, ctx.size(200, 4)
    bare = await hub_round_trips(ctx.root / "bare", n)
    fed = Federation(ctx.root / "fed", list(CODES[:nodes]))
    with fed:
        fed.init().start_all()
        await publish_and_listen(fed, min(4, n))  # warm up
        stages = await publish_and_listen(fed, n)
    ms = [x * 1e3 for x in stages["received"]]
    bms = [x * 1e3 for x in bare]

    def pct(name: str) -> str:
        xs = stages[name]
        return f"p50 {percentile(xs, 50) * 1e3:.1f} / p99 {percentile(xs, 99) * 1e3:.1f} ms"

    note = (f"{n} records published at one node every {INTERVAL} s, {len(ms)} (record, partner stream) samples, hub + "
            f"{nodes} nodes on SQLite; from the POST: answered {pct('answered')}, in the hub's log {pct('at_hub')}, "
            f"applied at the peer {pct('applied')}, event read by the partner {pct('received')}")
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    base = "hub push + long-poll round trip, no nodes"
    return [
        Figure(NAME, f"publish-to-partner via stream p50, {nodes} nodes", p50, "ms", percentile(bms, 50), base,
               [Goal(f"p50 <= {GOAL_P50:.0f} ms", p50 <= GOAL_P50)], note=note),
        Figure(NAME, f"publish-to-partner via stream p99, {nodes} nodes", p99, "ms", percentile(bms, 99), base,
               [Goal(f"p99 <= {GOAL_P99:.0f} ms", p99 <= GOAL_P99)]),
    ]
