"""Benchmark: publish at one node -> visible (verified, applied) at the two others.

Run: ``.venv/bin/python -m tests.bench.bench_latency [--n 200]``. Starts a hub and three nodes
(QA, KR, TR) as real processes on SQLite, publishes ``n`` records at QA one after another, and for
each measures the time until GET at KR and at TR returns it. The bare baseline, measured in the same
run, is one authoring round trip (POST at QA -> 201) plus one read round trip (GET of that record at QA): the floor
that any publish-then-read costs without sync.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from tests.e2e.harness import Federation
from tests.factories import example_bodies


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    bodies = example_bodies("cultural-event")
    with tempfile.TemporaryDirectory() as tmp, Federation(Path(tmp), ["QA", "KR", "TR"]) as f:
        f.init().start_all()
        base, lat = [], []
        for i in range(args.n):
            t0 = time.perf_counter()
            rid = f.publish("QA", "cultural-event", bodies[i % len(bodies)])["record_id"]
            t_pub = time.perf_counter()
            f.record("QA", rid)
            base.append((t_pub - t0) + (time.perf_counter() - t_pub))
            pending = {"KR", "TR"}
            while pending:
                for m in list(pending):
                    if f.record(m, rid)[0] == 200:
                        pending.discard(m)
            lat.append(time.perf_counter() - t0)
        print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores; {args.n} records "
              f"published at QA, visible at KR and TR (hub + 3 nodes, SQLite, loopback)")
        print(f"bare publish+read round trip  p50 {statistics.median(base) * 1e3:6.1f} ms  p99 "
              f"{pct(base, 99) * 1e3:6.1f} ms")
        print(f"publish -> visible at both    p50 {statistics.median(lat) * 1e3:6.1f} ms  p99 "
              f"{pct(lat, 99) * 1e3:6.1f} ms   ratio p50 {statistics.median(lat) / statistics.median(base):.1f}x")


if __name__ == "__main__":
    main()
