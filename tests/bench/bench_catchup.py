"""Benchmark: catch-up of a new node (pull, verify, apply to the end of the log) and its peak memory.

A hub process on SQLite is filled with pre-signed envelopes of four members (pushed over HTTP, untimed).
A new node (a fifth member, real ``ipdn node serve`` process on SQLite) is started and timed from its start
until its cursor reaches the end of the log; its peak memory is the resident-set high-water mark (VmHWM in
/proc/<pid>/status) when it got there. Measured at 10,000 and, with a new node on the grown log, at 100,000.

Baselines, measured in the same run: for the rate, the bare verify loop (parse, schema, Ed25519, SHA-256,
in-process, one core) over the first 10,000 of the same envelopes, median of rounds; for memory, the peak of
a node started on the empty log (its floor); the goal compares the peak at 100,000 with the peak at 10,000.

Run alone: ``.venv/bin/python -m tests.bench catchup``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from pathlib import Path

from federation.protocol.keys import SigningKey
from tests.bench.common import (
    CODES,
    Context,
    Figure,
    Goal,
    Net,
    bare_verify,
    make_chains,
    median,
    peak_rss_mib,
    push_all,
)

NAME = "catchup"
GOAL_MEMORY = 1.2
NODE = "DE"


def db_mib(path: Path) -> float:
    """An SQLite database's size on disk with its WAL, in MiB."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists()) / 2**20


def catch_up(net: Net, size: int, timeout: float = 3600) -> tuple[float, float]:
    """Start a fresh node; seconds until it applied ``size`` entries, and its peak RSS (MiB) then."""
    shutil.rmtree(net.root / NODE, ignore_errors=True)
    net.add_node(NODE)
    t = time.perf_counter()
    net.start(NODE)
    deadline = time.monotonic() + timeout
    while (cursor := net.status(NODE)["cursor"]) < size:
        if time.monotonic() > deadline:
            raise AssertionError(f"the node applied {cursor} of {size} entries in {timeout} s")
        time.sleep(0.25)
    elapsed = time.perf_counter() - t
    peak = peak_rss_mib(net.pid(NODE))
    net.stop(NODE)
    return elapsed, peak


async def run(ctx: Context) -> list[Figure]:
    small, large = ctx.size(10_000, 100), ctx.size(100_000, 400)
    writers = CODES[:4]
    chains = make_chains(writers, large // len(writers))
    sample = [dataclasses.replace(c, wires=c.wires[:small // len(writers)]) for c in chains.values()]
    bare = median([bare_verify(sample) for _ in range(ctx.rounds)])
    net = Net(ctx.root / "net", {**{c: ch.key for c, ch in chains.items()}, NODE: SigningKey.generate()})
    with net:
        net.start("hub")
        _, idle_peak = await asyncio.to_thread(catch_up, net, 0)
        await push_all(net.hub_url, chains.values(), 500, stop=small // len(writers))
        small_s, small_peak = await asyncio.to_thread(catch_up, net, small)
        await push_all(net.hub_url, chains.values(), 500, start=small // len(writers))
        large_s, large_peak = await asyncio.to_thread(catch_up, net, large)
        disk = f"node database {db_mib(net.root / NODE / 'node.db'):,.0f} MiB, hub database " \
               f"{db_mib(net.root / 'hub' / 'hub.db'):,.0f} MiB at {large:,} envelopes"
    return [
        Figure(NAME, f"catch-up of {small:,} envelopes", small / small_s, "envelopes/s", bare,
               "bare verify loop, 1 core", note=f"{small_s:.1f} s from node start to cursor {small:,}"),
        Figure(NAME, f"catch-up of {large:,} envelopes", large / large_s, "envelopes/s", bare,
               "bare verify loop, 1 core", note=f"{large_s:.1f} s from node start to cursor {large:,}; {disk}"),
        Figure(NAME, f"node peak memory after {small:,}", small_peak, "MiB", idle_peak,
               "node started on the empty log"),
        Figure(NAME, f"node peak memory after {large:,}", large_peak, "MiB", small_peak,
               f"the same at {small:,}", [Goal(f"<= {GOAL_MEMORY} x at {small:,}",
                                               large_peak <= GOAL_MEMORY * small_peak)]),
    ]
