"""Benchmark: hub ingest with 1,000,000 entries already in the log, against the same with 10,000.

Two hub processes on SQLite: one over a log of 10,000 entries, one over a log of 1,000,000 (``--biglog N``).
Both logs are built before the hubs start, straight into the migrated schema (stdlib sqlite3, one transaction
per 50,000 rows): every row is a real signed envelope of about 4 KB from a pool of 1,000 (a filler member not
in the registry), each row with its own (origin, seq), its Merkle leaf and every perfect node of the tree
stored as the hub stores them, and a hub-signed checkpoint of the full size; so the tables, indexes and tree
that ingest reads and writes have their full size. (The filler rows are copies: a node could not verify them
as a chain; ingest never re-reads old envelopes.) Then four members push the same pre-signed envelopes to both
hubs, one round after the other (their chains continue from round to round), as in the ingest benchmark.

Baseline: the same ingest into the log of 10,000 (measured in the same rounds); goal: at least 0.8 of it.

Run alone: ``.venv/bin/python -m tests.bench biglog [--biglog 1000000]``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from federation.hub.store.log import CheckpointRow, HubStore
from federation.protocol import merkle
from federation.protocol.checkpoint import sign_checkpoint
from federation.protocol.envelope import leaf_bytes
from federation.protocol.keys import SigningKey
from federation.protocol.registry import parse_registry
from federation.server.db.engine import sqlite_url
from tests.bench.common import (
    CODES,
    Context,
    Figure,
    Goal,
    Net,
    make_chains,
    median,
    prepare_pushes,
    send_pushes,
    sign_chain,
)

NAME = "biglog"
GOAL_RATIO = 0.8
POOL = 1000
CHUNK = 50_000
FILLER = "ZZ"
_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's DateTime on SQLite


async def build_log(path: Path, size: int, hub_key: SigningKey, network: str) -> float:
    """A hub database at ``path`` holding ``size`` filler entries (see the module doc); seconds taken."""
    t = time.perf_counter()
    store = await HubStore.open(sqlite_url(path))  # the migrated schema, exactly as the hub makes it
    await store.close()
    pool_wires, _, _ = sign_chain(FILLER, SigningKey.generate().to_pem(), min(POOL, size))
    pool = []
    for w in pool_wires:
        doc = json.loads(w)
        payload = base64.urlsafe_b64decode(doc["payload"] + "==")
        pool.append((w, merkle.leaf_hash(leaf_bytes(doc)), hashlib.sha256(payload).hexdigest(), json.loads(payload)))
    kid = json.loads(base64.urlsafe_b64decode(json.loads(pool_wires[0])["protected"] + "=="))["kid"]
    now = datetime.now(UTC).strftime(_TIME)
    frontier = merkle.Frontier()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")  # building, not serving: the hub's commits are durable again
    for start in range(0, size, CHUNK):
        rows, nodes = [], []
        for i in range(start, min(size, start + CHUNK)):
            wire, leaf, h, p = pool[i % len(pool)]
            rows.append((i + 1, FILLER, i + 1, h, p["record_id"], 1, p["kind"], p["op"], kid, wire, now))
            nodes += frontier.append(leaf)
        with db:
            db.executemany("INSERT INTO log (position, origin, seq, hash, record_id, version, kind, op, kid, "
                           "envelope, received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
            db.executemany("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?,?,?)", nodes)
    db.close()
    store = await HubStore.open(sqlite_url(path))
    signed = sign_checkpoint(network, size, frontier.root(), hub_key, datetime.now(UTC))
    await store.save_checkpoint(CheckpointRow(size, signed.checkpoint.root, datetime.now(UTC), signed.to_bytes()))
    await store.close()
    return time.perf_counter() - t


def _timed_status(net: Net) -> float:
    t = time.perf_counter()
    net.status("hub")
    return time.perf_counter() - t


async def run(ctx: Context) -> list[Figure]:
    big = ctx.biglog
    small = min(10_000, max(1, big // 100))
    per = ctx.size(2000, 50)  # per member and round
    chains = make_chains(CODES[:4], per * ctx.rounds)
    keys = {c: ch.key for c, ch in chains.items()}
    nets = {size: Net(ctx.root / f"log-{size}", keys) for size in (small, big)}
    built = {}
    for size, net in nets.items():
        network = parse_registry((net.root / "hub" / "registry.json").read_bytes()).registry.network
        built[size] = await build_log(net.root / "hub" / "hub.db", size, net.hub_key, network)
    db = nets[big].root / "hub" / "hub.db"
    disk = sum(p.stat().st_size for p in (db, db.with_name(db.name + "-wal")) if p.exists()) / 2**20
    rates: dict[int, list[float]] = {small: [], big: []}
    with nets[small], nets[big]:
        for size, net in nets.items():
            t = time.perf_counter()
            net.start("hub")
            built[size] = round(built[size], 1), round(time.perf_counter() - t, 1)
        for r in range(ctx.rounds):
            for size, net in nets.items():
                pushes = prepare_pushes(net.hub_url, chains.values(), 500, start=r * per, stop=(r + 1) * per)
                t = time.perf_counter()
                n = await send_pushes(net.hub_url, pushes)
                rates[size].append(n / (time.perf_counter() - t))
        status = {size: median([_timed_status(net) for _ in range(3)]) for size, net in nets.items()}
    value, base = median(rates[big]), median(rates[small])
    return [Figure(NAME, f"hub ingest, SQLite, {big:,} entries in the log", value, "envelopes/s", base,
                   f"the same with {small:,} entries", [Goal(f">= {GOAL_RATIO} x at {small:,}",
                                                              value >= GOAL_RATIO * base)],
                   note=f"{4 * per:,} envelopes a round, median of {ctx.rounds}; log of {big:,} built in "
                        f"{built[big][0]} s ({disk:,.0f} MiB on disk), hub started over it in {built[big][1]} s; "
                        f"GET /api/v1/status took {status[big] * 1e3:,.0f} ms ({status[small] * 1e3:,.0f} ms "
                        f"at {small:,}: it counts the day's arrivals, and this log arrived today)",
                   samples=rates[big])]
