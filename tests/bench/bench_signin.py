"""Benchmark: a node under password spraying at /author/signin, its /healthz latency and the attempts it takes.

A hub and one node (SQLite) as real processes; one staff account. Eight clients spray new user names with one
password as fast as answers come (tests/support/spray.py), for two spreads: all from one address (the issue's
attack: the per-address limit refuses it before any hashing), and each attempt as from a new address through the
node's trusted proxy (no address limit applies: only the bounded password pool keeps the event loop free).
Meanwhile ``/healthz`` is probed every 20 ms, and the real person signs in once a second from an address of
their own. The bare baseline, in the same run: ``/healthz`` of the same node with no spray.

Run alone: ``.venv/bin/python -m tests.bench signin``.
"""

from __future__ import annotations

import subprocess

from tests.bench.common import Context, Figure, Goal, median, percentile
from tests.support.harness import IPDN, Federation
from tests.support.spray import SprayResult, measure

NAME = "signin"
GOAL_P99 = 50.0  # ms, /healthz under spraying (issue 16 item 6)
PASSWORD = "correct horse battery staple"


def _ms(xs: list[float], p: float) -> float:
    return percentile(xs, p) * 1000


def _statuses(r: SprayResult) -> str:
    return ", ".join(f"{n} x {s}" for s, n in sorted(r.statuses.items()))


async def run(ctx: Context) -> list[Figure]:
    f = Federation(ctx.root, ["QA"]).init()
    subprocess.run([IPDN, "node", "user", "add", "--dir", str(ctx.root / "QA"), "amal", "--password-stdin"],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    base_s, attack_s = ctx.size(10.0, 2.0), ctx.size(20.0, 4.0)
    with f:
        f.start("hub")
        f.start("QA", env={"IPDN_NODE_TRUSTED_PROXIES": "127.0.0.1, ::1"})
        url = f.url("QA")
        bare = await measure(url, base_s, sprayers=0)
        one = await measure(url, attack_s, user=("amal", PASSWORD))
        f.stop("QA")  # a fresh node: the first spray's address budget is spent
        f.start("QA", env={"IPDN_NODE_TRUSTED_PROXIES": "127.0.0.1, ::1"})
        spread = await measure(url, attack_s, spread=True, user=("amal", PASSWORD))
    figures = []
    for label, r in (("one address", one), ("a new address each try", spread)):
        p99 = _ms(r.healthz, 99)
        ok = [t for s, t in r.user_sign_ins if s == 303]
        figures += [
            Figure(NAME, f"healthz p50, spray from {label}", _ms(r.healthz, 50), "ms", _ms(bare.healthz, 50),
                   "no spray", note=f"{len(r.healthz)} probes"),
            Figure(NAME, f"healthz p99, spray from {label}", p99, "ms", _ms(bare.healthz, 99), "no spray",
                   goals=[Goal(f"p99 <= {GOAL_P99:.0f} ms", p99 <= GOAL_P99)]),
            Figure(NAME, f"attempts/s, spray from {label}", r.attempts_per_second, "attempts/s",
                   note=f"answers: {_statuses(r)}"),
            Figure(NAME, f"user sign-in, spray from {label}", median([t for _, t in r.user_sign_ins]) * 1000, "ms",
                   note=f"{len(ok)} of {len(r.user_sign_ins)} sign-ins of the real user, from elsewhere, succeeded"),
        ]
    return figures
