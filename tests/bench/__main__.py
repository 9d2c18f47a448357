"""The benchmark suite (docs/BENCHMARKS.md): ``make bench``, or

    .venv/bin/python -m tests.bench [--quick] [--json out.json] [--rounds N] [--no-pg] [BENCH ...]

BENCH is any of: envelope, ingest, commit, latency, catchup, reads, biglog, import, signin (all by default).
Every figure is printed beside a bare baseline measured in the same run, with the ratio and the goal it is
held to. ``--quick`` runs a smoke-sized configuration: its figures say nothing about performance.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.common import BENCHES, PG_ADMIN, Context, Figure, format_figure, machine, pg_reachable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("benches", nargs="*", metavar="BENCH", help=", ".join(BENCHES))
    ap.add_argument("--quick", action="store_true", help="smoke-sized run (a few seconds per benchmark)")
    ap.add_argument("--rounds", type=int, help="rounds per repeated measurement (default 3; 1 with --quick)")
    ap.add_argument("--json", type=Path, help="also write the machine and every figure here")
    ap.add_argument("--pg", default=PG_ADMIN, help="PostgreSQL admin URL (a scratch database is made per run)")
    ap.add_argument("--no-pg", action="store_true", help="skip the PostgreSQL configurations")
    ap.add_argument("--biglog", type=int, help="entries already in the log for biglog (default 1,000,000)")
    ap.add_argument("--catchup", type=int, default=0, metavar="N",
                    help="catchup also on a log of N envelopes (say 1000000; beside 10,000 and 100,000)")
    args = ap.parse_args(argv)
    if unknown := [b for b in args.benches if b not in BENCHES]:
        ap.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    return args


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.benches or list(BENCHES)
    pg = None if args.no_pg or not await pg_reachable(args.pg) else args.pg
    about = await machine(pg)
    print(f"machine: {about['cores']} cores, {about['cpu']}, {about['memory_gib']} GiB, {about['arch']}, "
          f"Python {about['python']}, SQLite {about['sqlite']}, PostgreSQL {about['postgresql'] or 'not used'}; "
          f"load average {about['load_avg']} at start (shared machine)")
    if args.quick:
        print("--quick: smoke-sized run; the figures say nothing about performance")
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ipdn-bench-") as tmp:
        for name in names:
            ctx = Context(root=Path(tmp) / name, quick=args.quick, rounds=args.rounds or (1 if args.quick else 3),
                          pg=pg, biglog=args.biglog or (1_000 if args.quick else 1_000_000), catchup=args.catchup)
            ctx.root.mkdir()
            module: Any = importlib.import_module(BENCHES[name])
            print(f"\n[{name}] {module.__doc__.strip().splitlines()[0]}", flush=True)
            t = time.perf_counter()
            got = await module.run(ctx)
            timings[name] = round(time.perf_counter() - t, 1)
            for f in got:
                print(format_figure(f), flush=True)
            print(f"  ({timings[name]:.0f} s)")
            figures += got
            if args.json:  # after every benchmark, so a long run that fails later keeps what it measured
                args.json.write_text(json.dumps({"machine": about, "quick": args.quick, "seconds": timings,
                                                 "figures": [f.to_dict() for f in figures]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
