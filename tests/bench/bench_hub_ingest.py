"""Benchmark: hub ingest over HTTP (envelopes verified and durably committed per second).

A real hub process (``ipdn hub serve``) on SQLite, on PostgreSQL with one worker, and on PostgreSQL with
four workers (``IPDN_HUB_WORKERS=4``, verification in each worker's event loop); four members push
pre-signed batches of 500 concurrently. The bare baseline, measured in the same round on the same kind of
database: the same envelopes through the bare primitives in-process on one core (parse, schema, Ed25519,
SHA-256), then ``HubStore.commit`` in groups of 500. Every round starts from an empty database.

Run alone: ``.venv/bin/python -m tests.bench ingest``.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

from federation.hub.store.log import HubStore, LogRow
from federation.server.db.engine import sqlite_url
from tests.bench.common import (
    CODES,
    Chain,
    Context,
    Figure,
    Goal,
    Net,
    bare_check,
    make_chains,
    median,
    pg_scratch,
    prepare_pushes,
    send_pushes,
)

NAME = "ingest"
BATCH = 500
GOAL_RATIO, GOAL_RATE = 0.6, 10_000


async def bare_insert(chains: dict[str, Chain], url: str, batch: int = BATCH) -> float:
    """Verify-and-insert with the bare primitives on one core, ``batch`` rows per transaction; envelopes/s."""
    store = await HubStore.open(url)
    wires = [(c.key.public, w, json.loads(base64.urlsafe_b64decode(json.loads(w)["payload"] + "==")))
             for c in chains.values() for w in c.wires]  # the row's fields, read before the clock starts
    t = time.perf_counter()
    rows: list[LogRow] = []
    size = 0
    for pub, w, p in wires:
        h = bare_check(pub.raw, w).hex()
        rows.append(LogRow(p["origin"], p["seq"], h, p["record_id"], p["version"], p["kind"], p["op"], pub.kid, w))
        if len(rows) == batch:
            size += len(await store.commit(rows, [], datetime.now(UTC), size=size))
            rows = []
    if rows:
        await store.commit(rows, [], datetime.now(UTC), size=size)
    elapsed = time.perf_counter() - t
    await store.close()
    return len(wires) / elapsed


async def hub_ingest(ctx: Context, chains: dict[str, Chain], tag: str, db_url: str | None,
                     env: dict[str, str] | None = None) -> float:
    """Envelopes per second accepted by a fresh hub process over HTTP."""
    net = Net(ctx.root / tag, {c: ch.key for c, ch in chains.items()}, {"hub": db_url} if db_url else None)
    with net:
        net.start("hub", env)
        pushes = prepare_pushes(net.hub_url, chains.values(), BATCH)  # the members' signing is not the hub's work
        t = time.perf_counter()
        n = await send_pushes(net.hub_url, pushes)
        return n / (time.perf_counter() - t)


def ingest_goals(value: float, bare: float) -> list[Goal]:
    return [Goal(f">= {GOAL_RATIO} x bare", value >= GOAL_RATIO * bare),
            Goal(f">= {GOAL_RATE:,}/s", value >= GOAL_RATE)]


async def run(ctx: Context) -> list[Figure]:
    n = ctx.size(8000, 200)
    chains = make_chains(CODES[:4], n // 4)
    configs: list[tuple[str, bool, dict[str, str]]] = [("SQLite", False, {})]
    if ctx.pg:
        configs += [("PostgreSQL, 1 worker", True, {}),
                    ("PostgreSQL, 4 workers", True, {"IPDN_HUB_WORKERS": "4", "IPDN_HUB_VERIFY_WORKERS": "0"})]
    figures = []
    for ci, (label, pg, env) in enumerate(configs):
        bares, hubs = [], []
        for r in range(ctx.rounds):
            if pg:
                assert ctx.pg
                async with pg_scratch(ctx.pg) as url:
                    bares.append(await bare_insert(chains, url))
                async with pg_scratch(ctx.pg) as url:
                    hubs.append(await hub_ingest(ctx, chains, f"ingest-{ci}-{r}", url, env))
            else:
                bares.append(await bare_insert(chains, sqlite_url(ctx.root / f"ingest-bare-{ci}-{r}.db")))
                hubs.append(await hub_ingest(ctx, chains, f"ingest-{ci}-{r}", None, env))
        value, bare = median(hubs), median(bares)
        figures.append(Figure(NAME, f"hub ingest, {label}", value, "envelopes/s", bare,
                              "verify-and-insert loop, 1 core, same database", ingest_goals(value, bare),
                              note=f"{n} envelopes of 4 members, batches of {BATCH}, median of {ctx.rounds}",
                              samples=hubs))
    return figures
