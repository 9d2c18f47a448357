"""Benchmark: publish-to-peer latency as a client sees it, a POST at one node until another node's GET answers 200
(and until a partner's record stream there has the event), hub + 10 nodes on SQLite, in three regimes.

A hub and ten nodes as real processes on SQLite (loopback). The client is this process: it publishes with
``POST /api/v1/records`` (the operator token) on a fixed schedule, without waiting for earlier records (an open
loop), and reads with a partner key whose rate is unlimited (10^9 requests a minute: no answer is a 429, which the
run checks), so what it measures is the path, not a rate limit. The regimes (issue 20):

- paced: one record every 0.5 s, published at each node in turn;
- steady: a steady 20 records/s from one member;
- five: five members publishing 20 records/s each (100/s in all).

**Readable** is from just before the POST until ``GET /api/v1/records/{id}`` at a peer answers 200: the client asks
every ``POLL`` seconds from the moment the hub's public log shows the record (it follows ``GET /api/v1/log`` with
long-polls; no peer can hold a record before the hub logged it), then every tenth of the time since the POST began
(so a record that is late costs few GETs; the error is at most 2 ms or 10 %), at ``probes`` peers per record,
rotating through them (one when paced, as the issue measured at one peer; three at 20/s, one at 100/s): the probing
must not load the nodes more than the records do. Probing all nine peers of every paced record (about 18 GETs each,
160 a record) was tried: it added about a third to every stage after the pull (streamed p50 about 78 ms against 50
with one probe, the same code and machine), the nodes answering GETs while applying the page they wait for.
**Streamed** is until the partner's stream at a peer
(``GET /api/v1/records/stream``, one per node, held through the run) has the record's event: every peer, every
record. The stages, from the same start (wall clock: one machine): the POST answered; in the hub's log
(``log.received_at``, taken in the hub's group commit); pulled (the page arrived at the peer) and applied (its apply
transaction committed), from the line each node logs per page with ``sync_trace`` on (node/sync/engine.py; off by
default). Each node verifies in its own process (``verify_workers`` 0, see ``NODE_ENV``). The CPU each process
spent per record in each regime is printed too (from /proc): what two cores must give at the regime's rate.

The bare baseline, measured in the same run on a separate hub process without nodes: the hub's own push and
pull round trip, i.e. one signed push of one pre-signed envelope while a client holds a long-poll
(``GET /api/v1/log?wait=25``), timed from before the push until the long-poll answered with the entry. It is
the floor of the sync path (push, verify, group commit, wake, page) without authoring, applying or reading.

Run alone: ``.venv/bin/python -m tests.bench latency``.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import aiohttp

from tests.bench.common import CODES, Context, Figure, Goal, Net, make_chains, percentile, push_body
from tests.support.factories import example_bodies
from tests.support.harness import Federation
from tests.support.sse import SseReader

NAME = "latency"
GOAL_P50, GOAL_P99 = 15.0, 50.0  # ms, as a client sees it (issue 20)
POLL = 0.002  # seconds between a client's GETs of one record at one peer, at first ...
SLOWER = 0.1  # ... then this part of the time since the POST began (a slow record costs few GETs: error <= 10 %)
RATE = 10**9  # the partner key's requests a minute: unlimited in practice
PATIENCE = 300.0  # seconds a record may take to reach a peer before the run fails (past capacity, queues grow)
# Each node logs its pulled pages (sync_trace) and verifies them in its own process: ten nodes sharing two cores would
# otherwise each start two verifier processes once they fall behind (pages of 64 or more, ADR 32), which measures
# where the nodes are put, not the path (five members at 20/s: readable p50 36.6 s with them, 8.5 s without).
NODE_ENV = {"IPDN_NODE_SYNC_TRACE": "true", "IPDN_NODE_VERIFY_WORKERS": "0"}


@dataclass(frozen=True, slots=True)
class Regime:
    name: str
    text: str
    schedule: list[tuple[float, str]]  # (seconds from the start, the publishing member)
    probes: int  # peers whose GET is timed, per record


def regimes(members: Sequence[str], quick: bool) -> list[Regime]:
    peers = len(members) - 1
    paced = 4 if quick else 120
    seconds = 0.5 if quick else 10.0
    five = list(members[:5])
    return [
        Regime("paced", "one record every 0.5 s, at each node in turn",
               [(i * 0.5, members[i % len(members)]) for i in range(paced)], 1),
        Regime("steady", f"20 records/s from {members[0]}", [(i / 20, members[0]) for i in range(int(seconds * 20))],
               min(3, peers)),
        Regime("five", f"{len(five)} members publishing 20 records/s each",
               [(i / 20 + j / (20 * len(five)), m) for i in range(int(seconds * 20)) for j, m in enumerate(five)], 1),
    ]


@dataclass
class Published:
    record_id: str
    member: str
    t0: float  # wall clock just before the POST
    answered: float  # seconds from t0
    late: float  # how far behind its schedule the POST began
    readable: dict[str, float] = field(default_factory=dict)  # peer -> seconds from t0 until GET answered 200


@dataclass
class Run:
    """What the client saw in one regime."""

    regime: Regime
    published: list[Published]
    streamed: dict[tuple[str, str], float]  # (peer, record_id) -> wall clock the event was read
    gets: int  # GETs of records sent
    refused: int  # of them answered 429 (must be 0: the key is not rate-limited)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process (and the client) in the regime


def cpu_seconds(fed: Federation) -> dict[str, float]:
    """User + system CPU seconds so far of each process of ``fed`` and of this one (the client), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, proc in fed.procs.items():
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    t = os.times()
    out["client"] = t.user + t.system
    return out


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


def partner_keys(fed: Federation) -> dict[str, str]:
    """A read key of unlimited rate at each node (``ipdn node partner add --rate``), made before the nodes start."""
    return {m: fed.cli("node", "partner", "add", "--dir", str(fed.root / m), "latency bench", "--scope", "read",
                       "--rate", str(RATE)).stdout.strip() for m in fed.members}


async def drive(fed: Federation, session: aiohttp.ClientSession, keys: dict[str, str], regime: Regime) -> Run:
    """Publish ``regime``'s schedule and time each record at its peers (GET and stream)."""
    members = fed.members
    bodies = example_bodies("cultural-event")
    streamed: dict[tuple[str, str], float] = {}
    counts = {"gets": 0, "refused": 0}

    async def listen(m: str, sse: SseReader) -> None:
        while True:
            ev = await sse.event(within=3600)
            streamed[(m, ev.json()["record_id"])] = time.time()

    # The hub's public log, followed with long-polls: a peer is asked for a record only once the hub logged it.
    logged: dict[str, asyncio.Event] = {}
    async with session.get(fed.hub_url + "/api/v1/log", params={"after": "0", "limit": "1"}) as r:
        start_after = (await r.json())["size"]

    async def follow(after: int) -> None:
        while True:
            async with session.get(fed.hub_url + "/api/v1/log",
                                   params={"after": str(after), "limit": "1000", "wait": "25"}) as r:
                doc = await r.json()
            for e in doc["entries"]:
                payload = json.loads(base64.urlsafe_b64decode(e["envelope"]["payload"] + "=="))
                logged.setdefault(payload["record_id"], asyncio.Event()).set()
            after = doc["next"]

    readers = [(None, asyncio.create_task(follow(start_after)))]
    for m in members:  # from now on (no cursor): each stream starts at the records already held
        resp = await session.get(fed.url(m) + "/api/v1/records/stream",
                                 headers={"Authorization": f"Bearer {keys[m]}"})
        assert resp.status == 200, await resp.text()
        readers.append((resp, asyncio.create_task(listen(m, SseReader(resp)))))

    async def readable(peer: str, rid: str, t0: float, out: dict[str, float]) -> None:
        url = fed.url(peer) + "/api/v1/records/" + quote(rid, safe="")
        auth = {"Authorization": f"Bearer {keys[peer]}"}
        await asyncio.wait_for(logged.setdefault(rid, asyncio.Event()).wait(), PATIENCE)
        deadline = time.monotonic() + PATIENCE
        while True:
            async with session.get(url, headers=auth) as r:
                counts["gets"] += 1
                await r.read()
                if r.status == 200:
                    out[peer] = time.time() - t0
                    return
                counts["refused"] += r.status == 429
                assert r.status in (404, 429), (r.status, await r.text())
            assert time.monotonic() < deadline, f"{rid} not readable at {peer} within {PATIENCE} s"
            await asyncio.sleep(max(POLL, SLOWER * (time.time() - t0)))

    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    cpu = cpu_seconds(fed)

    async def publish(i: int, at: float, member: str) -> Published:
        await asyncio.sleep(max(0.0, start + at - loop.time()))
        late = loop.time() - (start + at)
        t0 = time.time()
        async with session.post(fed.url(member) + "/api/v1/records",
                                headers={"Authorization": f"Bearer {fed.tokens[member]}"},
                                json={"kind": "cultural-event", "body": bodies[i % len(bodies)]}) as r:
            assert r.status == 201, await r.text()
            rid = (await r.json())["record_id"]
        p = Published(rid, member, t0, time.time() - t0, late)
        peers = [m for m in members if m != member]
        probed = [peers[(i + k) % len(peers)] for k in range(regime.probes)]
        await asyncio.gather(*(readable(peer, rid, t0, p.readable) for peer in probed))
        return p

    published = await asyncio.gather(*(publish(i, at, m) for i, (at, m) in enumerate(regime.schedule)))
    deadline = time.monotonic() + PATIENCE
    want = {(m, p.record_id) for p in published for m in members if m != p.member}
    while not want <= streamed.keys():
        assert time.monotonic() < deadline, f"{len(want - streamed.keys())} stream events missing after {PATIENCE} s"
        await asyncio.sleep(0.05)
    for _, task in readers:
        task.cancel()
    # Ended before their streams close: a reader woken by data while cancelled could otherwise meet the closed
    # connection first and end with "Connection closed" (a RuntimeError that asyncio prints at exit).
    await asyncio.gather(*(task for _, task in readers), return_exceptions=True)
    for resp, _ in readers:
        if resp is not None:
            resp.close()
    used = {k: v - cpu[k] for k, v in cpu_seconds(fed).items()}
    return Run(regime, list(published), streamed, counts["gets"], counts["refused"], used)


def traces(fed: Federation, member: str) -> tuple[list[int], list[tuple[float, float]]]:
    """A node's pulled pages from its log (``sync_trace``): each page's last position, sorted, and (pulled,
    applied) wall-clock times beside."""
    pages = []
    for line in (fed.root / f"{member}.log").read_text(errors="replace").splitlines():
        if '"ipdn.node.sync.trace"' in line:
            doc = json.loads(line)
            pages.append((doc["last"], doc["first"], doc["pulled"], doc["applied"]))
    pages.sort()
    return [p[0] for p in pages], [(p[2], p[3]) for p in pages]


def _wall(value: str) -> float:
    when = datetime.fromisoformat(value)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@dataclass
class Stages:
    """Per regime, seconds from just before the POST to each stage, over (record) or (record, peer) samples."""

    answered: list[float] = field(default_factory=list)
    at_hub: list[float] = field(default_factory=list)
    pulled: list[float] = field(default_factory=list)
    applied: list[float] = field(default_factory=list)
    readable: list[float] = field(default_factory=list)
    streamed: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)


def stages(fed: Federation, run: Run) -> Stages:
    hub = sqlite3.connect(f"file:{fed.root / 'hub' / 'hub.db'}?mode=ro", uri=True)
    try:
        logged = {rid: (pos, _wall(at)) for rid, pos, at in hub.execute(
            "SELECT record_id, position, received_at FROM log")}
    finally:
        hub.close()
    pages = {m: traces(fed, m) for m in fed.members}
    out = Stages()
    for p in run.published:
        pos, at = logged[p.record_id]
        out.answered.append(p.answered)
        out.late.append(p.late)
        out.at_hub.append(at - p.t0)
        out.readable += p.readable.values()
        for m in fed.members:
            if m == p.member:
                continue
            lasts, times = pages[m]
            pulled, applied = times[bisect.bisect_left(lasts, pos)]
            out.pulled.append(pulled - p.t0)
            out.applied.append(applied - p.t0)
            out.streamed.append(run.streamed[(m, p.record_id)] - p.t0)
    return out


def _cpu(r: Run) -> str:
    """CPU milliseconds per record published: the hub, the nodes (mean; the publishers' apart when not all are),
    the client, and all of them together (what two cores have to give at the regime's rate)."""
    n = len(r.published)
    publishers = {p.member for p in r.published}
    nodes = [k for k in r.cpu if k not in ("hub", "client")]
    others = [k for k in nodes if k not in publishers] or nodes

    def per(keys: list[str]) -> float:
        return sum(r.cpu[k] for k in keys) / len(keys) / n * 1e3

    mine = [k for k in nodes if k in publishers]
    pub = f", each publisher {per(mine):.1f}" if mine and len(mine) < len(nodes) else ""
    return (f"hub {r.cpu['hub'] / n * 1e3:.1f} ms, each node {per(others):.1f} ms{pub}, client "
            f"{r.cpu['client'] / n * 1e3:.1f} ms; {sum(r.cpu.values()) / n * 1e3:.0f} ms in all")


def _pct(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"{percentile(xs, 50) * 1e3:.1f} / {percentile(xs, 99) * 1e3:.1f}"


async def run(ctx: Context) -> list[Figure]:
    nodes = ctx.size(10, 3)
    bare = [x * 1e3 for x in await hub_round_trips(ctx.root / "bare", ctx.size(200, 4))]
    fed = Federation(ctx.root / "fed", list(CODES[:nodes]))
    runs: list[Run] = []
    with fed:
        fed.init()
        keys = partner_keys(fed)
        fed.start("hub")
        fed.start_many(fed.members, NODE_ENV)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await drive(fed, session, keys, Regime("warm-up", "", [(i * 0.1, m) for i, m in enumerate(fed.members)],
                                                   len(fed.members) - 1))
            load = os.getloadavg()[0]
            for regime in regimes(fed.members, ctx.quick):
                runs.append(await drive(fed, session, keys, regime))
        measured = [(r, stages(fed, r)) for r in runs]
    base = "hub push + long-poll round trip, no nodes"
    b50, b99 = percentile(bare, 50), percentile(bare, 99)
    figures = []
    for r, s in measured:
        assert r.refused == 0, f"{r.refused} GETs answered 429: the partner key was rate-limited"
        note = (f"{r.regime.text}: {len(r.published)} records, {len(s.readable)} (record, peer) GETs timed "
                f"({r.regime.probes} peers per record, every {POLL * 1e3:.0f} ms or {SLOWER:.0%} of the time since the "
                f"POST once the hub's log shows it; {r.gets} GETs with a partner key of unlimited rate, none answered "
                f"429), {len(s.streamed)} stream events; hub + {nodes} nodes on SQLite, load average {load:.1f} "
                f"before the regimes. "
                f"From the POST's start, p50 / p99 ms: POST answered {_pct(s.answered)}, in the hub's log "
                f"{_pct(s.at_hub)}, pulled at a peer {_pct(s.pulled)}, applied {_pct(s.applied)}, readable (GET 200) "
                f"{_pct(s.readable)}, streamed {_pct(s.streamed)}; the client began POSTs {_pct(s.late)} late. "
                f"CPU per record: {_cpu(r)}")
        for what, xs in (("readable", s.readable), ("streamed", s.streamed)):
            ms = [x * 1e3 for x in xs]
            p50, p99 = percentile(ms, 50), percentile(ms, 99)
            label = "GET 200 at a peer" if what == "readable" else "stream event at a peer"
            figures += [
                Figure(NAME, f"{r.regime.name}: POST to {label}, p50", p50, "ms", b50, base,
                       [Goal(f"p50 <= {GOAL_P50:.0f} ms", p50 <= GOAL_P50)], note=note if what == "readable" else ""),
                Figure(NAME, f"{r.regime.name}: POST to {label}, p99", p99, "ms", b99, base,
                       [Goal(f"p99 <= {GOAL_P99:.0f} ms", p99 <= GOAL_P99)]),
            ]
    return figures
