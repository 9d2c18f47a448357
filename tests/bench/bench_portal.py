"""Benchmark: the portal's pages (node/partners/portal.py, pages.py), requests per second, beside aiohttp serving the
same bytes as a static file.

A node process (SQLite) holding records received from the hub's log answers the portal's list page (50 records a
page: ``portal_page_size``) and a record page, in English, to 16 concurrent aiohttp client tasks on the same
machine; the anonymous rate limit is raised for the run (every request comes from one address). Each page is
measured twice: asked again and again (the answer kept by node/partners/answers.py until a commit) and with a new
URL each time (an unknown parameter: nothing kept, so a query and a render each time, the cost of the first reader
after every commit). Both at 10,000 and at 100,000 records held. The baseline, measured in the same run with the
same client: an aiohttp process serving the list page's bytes as a static file (``add_static``). Client and
servers share the two cores. Issue 19's goals: portal ≥ 0.3× the static file; at 100,000 records ≤ 1.2× slower
than at 10,000.

Run alone: ``.venv/bin/python -m tests.bench portal``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp

from federation.protocol.keys import SigningKey
from tests.bench.bench_reads import throughput
from tests.bench.common import CODES, Context, Figure, Goal, Net, make_chains, median, push_all
from tests.support.harness import free_port, wait_for

NAME = "portal"
NODE = "DE"
STATIC = """import sys
from aiohttp import web
app = web.Application()
app.router.add_static("/s/", sys.argv[2])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


async def run(ctx: Context) -> list[Figure]:
    sizes, seconds = (100, 200) if ctx.quick else (10_000, 100_000), ctx.size(5.0, 0.5)
    members = CODES[:4]
    chains = make_chains(members, sizes[-1] // len(members))
    net = Net(ctx.root / "net", {**{c: ch.key for c, ch in chains.items()}, NODE: SigningKey.generate()})
    static_dir = ctx.root / "static"
    static_dir.mkdir(exist_ok=True)
    port = free_port()
    static: subprocess.Popen[bytes] | None = None
    figures: list[Figure] = []
    rates: dict[tuple[str, int], float] = {}
    try:
        with net:
            net.start("hub")
            net.add_node(NODE)
            net.start(NODE, {"IPDN_NODE_ANONYMOUS_RATE_PER_MINUTE": str(10**9), "IPDN_NODE_PORTAL_PAGE_SIZE": "50"})
            static = subprocess.Popen([sys.executable, "-c", STATIC, str(port), str(static_dir)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            held = 0
            for size in sizes:
                await push_all(net.hub_url, chains.values(), 500, start=held // len(members),
                               stop=size // len(members))
                held = size
                wait_for("catch-up", lambda n=size: net.status(NODE)["cursor"] >= n, timeout=1800)
                figures += await _measure(ctx, net, static_dir, port, size, seconds, rates)
    finally:
        if static is not None:
            static.terminate()
            static.wait()
    for what in ("list", "record"):
        small, large = rates[(what, sizes[0])], rates[(what, sizes[-1])]
        figures.append(Figure(NAME, f"{what} page, new URL each time, at {sizes[-1]:,} vs {sizes[0]:,} records",
                              large, "requests/s", small, f"the same at {sizes[0]:,} records", goals=[
                                  Goal("≤ 1.2× slower at 100,000 (issue 19)", large >= small / 1.2)]))
    return figures


async def _measure(ctx: Context, net: Net, static_dir: Path, port: int, size: int, seconds: float,
                   rates: dict[tuple[str, int], float]) -> list[Figure]:
    list_url = net.url(NODE) + "/events?lang=en"
    async with aiohttp.ClientSession() as s, s.get(list_url) as r:
        body = await r.read()
        assert r.status == 200, body[:500]
    shown = len(re.findall(rb"<li class=\"card ", body))
    rid = re.search(rb'<h3><a href="/events/([^"]+)"', body)
    assert rid is not None and shown == 50, shown
    record_url = net.url(NODE) + "/events/" + rid.group(1).decode() + "?lang=en"
    (static_dir / "list.html").write_bytes(body)
    base = f"http://127.0.0.1:{port}/s/list.html"
    wait_for("static server", lambda: _answers(base), timeout=30)
    samples: dict[str, list[float]] = {k: [] for k in ("bare", "list", "list-new", "record", "record-new")}
    for _ in range(ctx.rounds):
        samples["bare"].append(await throughput(base, seconds))
        samples["list"].append(await throughput(list_url, seconds))
        samples["list-new"].append(await throughput(list_url, seconds, fresh=True))
        samples["record"].append(await throughput(record_url, seconds))
        samples["record-new"].append(await throughput(record_url, seconds, fresh=True))
    note = f"{size:,} records held, 16 concurrent clients, {seconds} s per round, median of {ctx.rounds}"
    b = median(samples["bare"])
    rates[("list", size)], rates[("record", size)] = median(samples["list-new"]), median(samples["record-new"])

    def figure(key: str, name: str) -> Figure:
        value = median(samples[key])
        return Figure(NAME, f"{name}, {size:,} records", value, "requests/s", b, "aiohttp static file (list bytes)",
                      goals=[Goal("≥ 0.3× the static file (issue 19)", value >= 0.3 * b)], note=note,
                      samples=samples[key])

    return [figure("list", "list page (/events, 50 records), asked again"),
            figure("list-new", "list page, a new URL each time (nothing kept)"),
            figure("record", "record page (/events/{id}), asked again"),
            figure("record-new", "record page, a new URL each time (nothing kept)")]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (loopback)
            return bool(r.status == 200)
    except OSError:
        return False
