"""Benchmark: the hub's serialised step alone, the log commit (rows, Merkle nodes, checkpoint) per second.

Hub workers verify in parallel but commit one at a time (an advisory lock on PostgreSQL; one writer task on
SQLite), so the commit rate is the ceiling of ingest however many workers verify. Measured here as the hub's
writer does it after classifying: ``HubStore.commit`` of 500 verified rows with their Merkle nodes and a
signed checkpoint in one transaction (on PostgreSQL with the advisory lock and NOTIFY), on an empty database.
Rows, nodes and checkpoints are prepared before the clock starts: only the transaction is timed.

Baseline, measured in the same run: the bare verify loop on one core (parse, schema, Ed25519, SHA-256). The
ratio is how many cores of verification one serialised writer keeps up with.

Run alone: ``.venv/bin/python -m tests.bench commit``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime

from federation.hub.store.log import CheckpointRow, HubStore, LogRow
from federation.protocol import merkle
from federation.protocol.checkpoint import sign_checkpoint
from federation.protocol.envelope import leaf_bytes
from federation.protocol.keys import SigningKey
from federation.server.db.engine import sqlite_url
from tests.bench.common import CODES, Chain, Context, Figure, bare_verify, make_chains, median, pg_scratch

NAME = "commit"
BATCH = 500


def prepare(chains: dict[str, Chain]) -> list[tuple[list[LogRow], list[tuple[int, int, bytes]], CheckpointRow]]:
    """The writer's transactions for these envelopes, in log order: (rows, Merkle nodes, checkpoint) per batch."""
    hub_key = SigningKey.generate()
    rows, leaves = [], []
    for c in chains.values():
        for w in c.wires:
            doc = json.loads(w)
            payload = base64.urlsafe_b64decode(doc["payload"] + "==")
            p = json.loads(payload)
            rows.append(LogRow(p["origin"], p["seq"], hashlib.sha256(payload).hexdigest(), p["record_id"],
                               p["version"], p["kind"], p["op"], c.key.kid, w))
            leaves.append(merkle.leaf_hash(leaf_bytes(doc)))
    frontier = merkle.Frontier()
    out = []
    for i in range(0, len(rows), BATCH):
        batch = rows[i:i + BATCH]
        nodes = [n for leaf in leaves[i:i + BATCH] for n in frontier.append(leaf)]
        now = datetime.now(UTC)
        signed = sign_checkpoint("bench", frontier.size, frontier.root(), hub_key, now)
        out.append((batch, nodes, CheckpointRow(frontier.size, signed.checkpoint.root, now, signed.to_bytes())))
    return out


async def commit_rate(url: str, batches: list[tuple[list[LogRow], list[tuple[int, int, bytes]], CheckpointRow]],
                      ) -> float:
    store = await HubStore.open(url)
    try:
        size, elapsed = 0, 0.0
        for rows, nodes, checkpoint in batches:
            t = time.perf_counter()
            await store.commit(rows, [], datetime.now(UTC), size=size, nodes=nodes, checkpoint=checkpoint)
            elapsed += time.perf_counter() - t
            size += len(rows)
        return size / elapsed
    finally:
        await store.close()


async def run(ctx: Context) -> list[Figure]:
    n = ctx.size(8000, 200)
    chains = make_chains(CODES[:4], n // 4)
    batches = prepare(chains)
    bare = median([bare_verify(chains.values()) for _ in range(ctx.rounds)])
    figures = []
    for label, pg in (("SQLite", False), ("PostgreSQL", True)):
        if pg and not ctx.pg:
            continue
        rates = []
        for r in range(ctx.rounds):
            if pg:
                assert ctx.pg
                async with pg_scratch(ctx.pg) as url:
                    rates.append(await commit_rate(url, batches))
            else:
                rates.append(await commit_rate(sqlite_url(ctx.root / f"commit-{r}.db"), batches))
        figures.append(Figure(NAME, f"log commit alone, {label}", median(rates), "envelopes/s", bare,
                              "bare verify loop, 1 core",
                              note=f"{n} envelopes in transactions of {BATCH}, median of {ctx.rounds}",
                              samples=rates))
    return figures
