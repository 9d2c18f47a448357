"""Benchmark: publish-to-peer latency, a record published at one node until applied at each of the others.

A hub and ten nodes as real processes on SQLite (loopback). Records are published one after another, at each
node in turn (POST /api/v1/records, operator token); the latency to a peer is from just before the POST to the
moment the peer applied it: ``records.updated_at`` in the peer's database, stamped by the apply transaction
just before its commit (read afterwards, so observing costs the nodes nothing). Each record gives nine
samples; p50 and p99 are over all of them.

The bare baseline, measured in the same run on a separate hub process without nodes: the hub's own push and
pull round trip, i.e. one signed push of one pre-signed envelope while a client holds a long-poll
(``GET /api/v1/log?wait=25``), timed from before the push until the long-poll answered with the entry. It is
the floor of the sync path (push, verify, group commit, wake, page) without authoring or applying.

Run alone: ``.venv/bin/python -m tests.bench latency``.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from tests.bench.common import CODES, Context, Figure, Goal, Net, make_chains, percentile, push_body
from tests.support.factories import example_bodies
from tests.support.harness import Federation

NAME = "latency"
GOAL_P50, GOAL_P99 = 50.0, 200.0  # ms


async def hub_round_trips(root: Path, n: int) -> list[float]:
    """Seconds from a push of one envelope to a held long-poll answering it, ``n`` times (one hub, no nodes)."""
    chain = make_chains(["QA"], n)["QA"]
    net = Net(root, {"QA": chain.key})
    out = []
    with net:
        net.start("hub")
        async with aiohttp.ClientSession() as session:
            for i, wire in enumerate(chain.wires):
                async def pull(after: int) -> float:
                    async with session.get(net.hub_url + "/api/v1/log",
                                           params={"after": str(after), "wait": "25"}) as r:
                        doc = await r.json()
                    assert doc["entries"], doc
                    return time.perf_counter()

                held = asyncio.create_task(pull(i))
                await asyncio.sleep(0.03)  # the long-poll is held by now
                data, headers = push_body(chain.key, [wire], net.hub_url)
                t0 = time.perf_counter()
                async with session.post(net.hub_url + "/api/v1/envelopes", data=data, headers=headers) as r:
                    assert r.status == 200, await r.text()
                out.append(await held - t0)
    return out


def _stamp(db: sqlite3.Connection, query: str, record_id: str) -> float | None:
    row = db.execute(query, (record_id,)).fetchone()
    if row is None:
        return None
    when = datetime.fromisoformat(row[0])
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _applied_at(db: sqlite3.Connection, record_id: str) -> float | None:
    return _stamp(db, "SELECT updated_at FROM records WHERE record_id = ?", record_id)


@dataclass
class Stages:
    """Per record, seconds from just before the POST: answered (authored), in the hub's log (its commit
    began), and at each peer (its apply began)."""

    authored: list[float] = field(default_factory=list)
    at_hub: list[float] = field(default_factory=list)
    per_peer: list[float] = field(default_factory=list)
    slowest: list[float] = field(default_factory=list)


def publish_to_peers(fed: Federation, n: int) -> Stages:
    """The stages of ``n`` records published in turn at each node."""
    bodies = example_bodies("cultural-event")
    dbs = {m: sqlite3.connect(f"file:{fed.root / m / 'node.db'}?mode=ro", uri=True) for m in fed.members}
    hub = sqlite3.connect(f"file:{fed.root / 'hub' / 'hub.db'}?mode=ro", uri=True)
    out = Stages()
    try:
        for i in range(n):
            at = fed.members[i % len(fed.members)]
            t0 = time.time()
            rid = fed.publish(at, "cultural-event", bodies[i % len(bodies)])["record_id"]
            out.authored.append(time.time() - t0)
            peers = [m for m in fed.members if m != at]
            got: dict[str, float] = {}
            deadline = time.monotonic() + 30
            while len(got) < len(peers):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{rid} not applied at {set(peers) - set(got)} within 30 s")
                time.sleep(0.01)
                for m in peers:
                    if m not in got and (applied := _applied_at(dbs[m], rid)) is not None:
                        got[m] = applied - t0
            out.per_peer += got.values()
            out.slowest.append(max(got.values()))
            logged = _stamp(hub, "SELECT received_at FROM log WHERE record_id = ?", rid)
            assert logged is not None, rid
            out.at_hub.append(logged - t0)
            time.sleep(0.05 + random.random() * 0.05)  # records are not published back to back
    finally:
        for db in [*dbs.values(), hub]:
            db.close()
    return out


async def run(ctx: Context) -> list[Figure]:
    nodes, n = ctx.size(10, 3), ctx.size(200, 4)
    bare = await hub_round_trips(ctx.root / "bare", n)
    fed = Federation(ctx.root / "fed", list(CODES[:nodes]))
    with fed:
        fed.init().start_all()
        publish_to_peers(fed, min(n, nodes))  # warm up: every node publishes once
        stages = await asyncio.to_thread(publish_to_peers, fed, n)
    ms = [x * 1e3 for x in stages.per_peer]
    bms = [x * 1e3 for x in bare]

    def mid(xs: list[float]) -> str:
        return f"{percentile(xs, 50) * 1e3:.1f} ms"

    note = (f"{n} records, {len(ms)} (record, peer) samples, hub + {nodes} nodes on SQLite; p50 from the POST: "
            f"answered {mid(stages.authored)}, in the hub's log {mid(stages.at_hub)}, at a peer "
            f"{mid(stages.per_peer)}, at the slowest peer {mid(stages.slowest)} "
            f"(p99 {percentile(stages.slowest, 99) * 1e3:.1f} ms)")
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    return [
        Figure(NAME, f"publish-to-peer p50, {nodes} nodes", p50, "ms", percentile(bms, 50),
               "hub push + long-poll round trip, no nodes", [Goal(f"p50 <= {GOAL_P50:.0f} ms", p50 <= GOAL_P50)],
               note=note),
        Figure(NAME, f"publish-to-peer p99, {nodes} nodes", p99, "ms", percentile(bms, 99),
               "hub push + long-poll round trip, no nodes", [Goal(f"p99 <= {GOAL_P99:.0f} ms", p99 <= GOAL_P99)]),
    ]
