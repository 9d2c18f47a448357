"""Benchmark: catch-up of a new node (pull, verify, apply to the end of the log) and its peak memory.

A hub process on SQLite is filled with pre-signed envelopes of four members (pushed over HTTP, untimed), a chunk
at a time (signed, pushed, forgotten: a million envelopes' bytes would not fit in memory). A new node (a fifth
member, a real ``ipdn node serve`` process on SQLite with its verify workers, node/sync/verifier.py) is started and
timed as a client sees it: from its start until its log API (``GET /api/v1/log``, what an auditor or a recovering hub
reads) serves the end of the log. Not its status document: that counts the records and the marks of every envelope
held at each call, O(n), and a poll of it every quarter second would weigh on what it measures. Its
peak memory is the sum of the resident-set high-water marks (VmHWM in /proc/<pid>/status) of the node's process
and of every process it started (its verify workers) when it got there. Measured at 10,000, at 100,000 and, with
``--catchup N`` (say 1,000,000), at N: each time a new node on the grown log.

Baselines, measured in the same run: for the rate, the bare verify loop (parse, schema, Ed25519, SHA-256,
in-process, one core) over 10,000 of the same envelopes, the median of rounds measured just before and just after
each catch-up (the machine is shared: its speed moves from one minute to the next); for memory, the peak of a node
started on the empty log (its floor). Goals (issue 20): each catch-up of 100,000 or more at least 0.6 of its bare
loop; the peak at the largest size at most 1.2 times the peak at the size before.

Run alone: ``.venv/bin/python -m tests.bench catchup [--catchup 1000000]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
from pathlib import Path

from federation.protocol.keys import SigningKey
from tests.bench.common import (
    CODES,
    Chain,
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
from tests.support.harness import http

NAME = "catchup"
GOAL_RATE = 0.6
GOAL_MEMORY = 1.2
NODE = "DE"
CHUNK = 100_000  # envelopes signed and pushed at a time


def db_mib(path: Path) -> float:
    """An SQLite database's size on disk with its WAL, in MiB."""
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists()) / 2**20


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (its verify workers and the multiprocessing helpers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def served(net: Net, size: int) -> int:
    """How far the node's log API serves the log (its cursor; 0 while it starts)."""
    try:
        code, doc = http("GET", net.url(NODE) + f"/api/v1/log?after={size}&limit=1", timeout=10)
    except OSError:
        return 0
    return int(doc["size"]) if code == 200 else 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class CatchUp:
    seconds: float
    peak_mib: float  # the node's and its workers' VmHWM, added up
    processes: int  # the node and the processes it started
    cpu_s: float  # CPU time of all of them


def catch_up(net: Net, size: int, timeout: float = 4 * 3600) -> CatchUp:
    """Start a fresh node and wait until it applied ``size`` entries."""
    shutil.rmtree(net.root / NODE, ignore_errors=True)
    net.add_node(NODE)
    t = time.perf_counter()
    net.start(NODE)
    deadline = time.monotonic() + timeout
    while (cursor := served(net, size)) < size:
        if time.monotonic() > deadline:
            raise AssertionError(f"the node applied {cursor} of {size} entries in {timeout} s")
        time.sleep(0.25)
    elapsed = time.perf_counter() - t
    pids = [net.pid(NODE), *descendants(net.pid(NODE))]
    got = CatchUp(elapsed, sum(peak_rss_mib(p) for p in pids), len(pids), sum(cpu_seconds(p) for p in pids))
    net.stop(NODE)
    return got


async def grow(net: Net, chains: dict[str, Chain], total: int) -> dict[str, Chain]:
    """Sign and push the members' next envelopes until the log holds ``total``, a chunk at a time; the chains'
    ends (without their envelopes)."""
    per = {c: total // len(chains) - ch.seq for c, ch in chains.items()}
    while any(n > 0 for n in per.values()):
        step = min(CHUNK // len(chains), max(per.values()))
        more = make_chains(chains, step, keys={c: ch.key for c, ch in chains.items()}, after=chains)
        await push_all(net.hub_url, more.values(), 500)
        chains = {c: dataclasses.replace(ch, wires=[]) for c, ch in more.items()}
        per = {c: n - step for c, n in per.items()}
    return chains


def bare(sample: list[Chain], rounds: int) -> list[float]:
    return [bare_verify(sample) for _ in range(rounds)]


async def run(ctx: Context) -> list[Figure]:
    sizes = [ctx.size(10_000, 100), ctx.size(100_000, 400)]
    if ctx.catchup > sizes[-1]:
        sizes.append(ctx.catchup)
    writers = CODES[:4]
    first = make_chains(writers, sizes[0] // len(writers))
    sample = list(first.values())  # the bare loop's envelopes: the log's first
    net = Net(ctx.root / "net", {**{c: ch.key for c, ch in first.items()}, NODE: SigningKey.generate()})
    figures: list[Figure] = []
    with net:
        net.start("hub")
        idle = await asyncio.to_thread(catch_up, net, 0)
        await push_all(net.hub_url, first.values(), 500)
        chains = {c: dataclasses.replace(ch, wires=[]) for c, ch in first.items()}
        before = idle
        for size in sizes:
            chains = await grow(net, chains, size)
            rates = bare(sample, ctx.rounds)
            got = await asyncio.to_thread(catch_up, net, size)
            rates += bare(sample, ctx.rounds)
            base = median(rates)
            disk = f"node database {db_mib(net.root / NODE / 'node.db'):,.0f} MiB, hub database " \
                   f"{db_mib(net.root / 'hub' / 'hub.db'):,.0f} MiB"
            goals = [Goal(f">= {GOAL_RATE} x the bare loop", size / got.seconds >= GOAL_RATE * base)] \
                if size >= 100_000 else []
            figures.append(Figure(
                NAME, f"catch-up of {size:,} envelopes", size / got.seconds, "envelopes/s", base,
                "bare verify loop, 1 core, before and after", goals, samples=rates,
                note=f"{got.seconds:.1f} s from node start to cursor {size:,}; {got.processes} processes (the node "
                     f"and its verify workers), {got.cpu_s:.0f} CPU s ({got.cpu_s / size * 1e6:.0f} us an envelope); "
                     f"{disk}"))
            figures.append(Figure(NAME, f"node peak memory after {size:,}", got.peak_mib, "MiB", before.peak_mib,
                                  "node started on the empty log" if before is idle else "the same at the size before",
                                  [Goal(f"<= {GOAL_MEMORY} x at the size before", got.peak_mib <= GOAL_MEMORY *
                                        before.peak_mib)] if size == sizes[-1] else [],
                                  note="VmHWM of the node and its verify workers, added up"))
            before = got
    return figures
