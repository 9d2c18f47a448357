"""Benchmark: the portal's pages (node/partners/portal.py), requests per second, beside aiohttp serving the same bytes
as a static file.

A node process (SQLite) holding records received from the hub's log answers the portal's list page (50 records a
page: ``portal_page_size``) and a record page, in English, to 16 concurrent aiohttp client tasks on the same
machine; the anonymous rate limit is raised for the run (every request comes from one address). The baseline,
measured in the same run with the same client: an aiohttp process serving the list page's bytes as a static file
(``add_static``). Client and servers share the two cores. Issue 19's goal: portal ≥ 0.3× the static file.

Run alone: ``.venv/bin/python -m tests.bench portal``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request

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
    records, seconds = ctx.size(2000, 100), ctx.size(5.0, 0.5)
    chains = make_chains(CODES[:4], records // 4)
    net = Net(ctx.root / "net", {**{c: ch.key for c, ch in chains.items()}, NODE: SigningKey.generate()})
    static_dir = ctx.root / "static"
    static_dir.mkdir(exist_ok=True)
    port = free_port()
    static: subprocess.Popen[bytes] | None = None
    bare, lists, pages = [], [], []
    try:
        with net:
            net.start("hub")
            await push_all(net.hub_url, chains.values(), 500)
            net.add_node(NODE)
            net.start(NODE, {"IPDN_NODE_ANONYMOUS_RATE_PER_MINUTE": str(10**9), "IPDN_NODE_PORTAL_PAGE_SIZE": "50"})
            wait_for("catch-up", lambda: net.status(NODE)["cursor"] >= records, timeout=600)
            list_url = net.url(NODE) + "/events?lang=en"
            async with aiohttp.ClientSession() as s, s.get(list_url) as r:
                body = await r.read()
                assert r.status == 200, body[:500]
            shown = len(re.findall(rb"<li class=\"card ", body))
            rid = re.search(rb'<h3><a href="/events/([^"]+)"', body)
            assert rid is not None and shown == 50, shown
            record_url = net.url(NODE) + "/events/" + rid.group(1).decode() + "?lang=en"
            (static_dir / "list.html").write_bytes(body)
            static = subprocess.Popen([sys.executable, "-c", STATIC, str(port), str(static_dir)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{port}/s/list.html"
            wait_for("static server", lambda: _answers(base), timeout=30)
            for _ in range(ctx.rounds):
                bare.append(await throughput(base, seconds))
                lists.append(await throughput(list_url, seconds))
                pages.append(await throughput(record_url, seconds))
    finally:
        if static is not None:
            static.terminate()
            static.wait()
    note = f"{records:,} records held, 16 concurrent clients, {seconds} s per round, median of {ctx.rounds}"
    b = median(bare)

    def goal(value: float) -> list[Goal]:
        return [Goal("≥ 0.3× the static file (issue 19)", value >= 0.3 * b)]

    return [
        Figure(NAME, "portal list page (/events, 50 records)", median(lists), "requests/s", b,
               "aiohttp static file (same bytes)", goals=goal(median(lists)), note=f"{len(body):,} bytes; {note}",
               samples=lists),
        Figure(NAME, "portal record page (/events/{id})", median(pages), "requests/s", b,
               "aiohttp static file (list bytes)", goals=goal(median(pages)), note=note, samples=pages),
    ]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (loopback)
            return bool(r.status == 200)
    except OSError:
        return False
