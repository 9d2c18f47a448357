"""Benchmark: bulk import of a CSV file at a node (dry run, publish, re-import), against publishing the same
bodies one by one through NodeService.create (the bare baseline: validate, sign, store, queue).

Run: ``.venv/bin/python -m tests.bench.bench_import [--n 1000] [--rounds 3]`` (SQLite in a temporary
directory; ``--db-url`` for PostgreSQL, emptied between rounds). Figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from federation.protocol.keys import SigningKey
from federation.protocol.registry import genesis
from federation.server.ui.i18n import Catalog
from node.own_keys import OwnKeys
from node.records.service import NodeService
from node.staff.service import ALL_OR_NOTHING, DRY_RUN, StaffService
from node.staff.web import CATALOG, DOMAIN
from node.store.records import NodeStore
from tests.bench.common import Context, Figure, median
from tests.support.factories import Member

NAME = "import"

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "import-events.csv"


def make_csv(n: int) -> bytes:
    rows = list(csv.DictReader(io.StringIO(SAMPLE.read_text(encoding="utf-8"))))
    out = io.StringIO()
    w = csv.DictWriter(out, list(rows[0]))
    w.writeheader()
    for i in range(n):
        row = dict(rows[i % len(rows)])
        row["source_id"] = f"bench-{i}"
        row["title.en"] = f"{row['title.en']} #{i}"
        w.writerow(row)
    return out.getvalue().encode()


async def one_round(n: int, data: bytes, db_url: str | None) -> dict[str, float]:
    qa = Member("QA")
    registry = genesis(hub_key=SigningKey.generate(), hub_url="http://127.0.0.1:9",
                       founders=[(qa.public, {"en": "QA"})], now=datetime.now(UTC))
    with tempfile.TemporaryDirectory() as tmp:
        url = db_url or f"sqlite+aiosqlite:///{tmp}/node.db"
        store = await NodeStore.open(url, "QA")
        try:
            service = NodeService(store=store, keys=OwnKeys("QA", qa.key, directory=Path(tmp)), member="QA",
                                  registry=registry)
            staff = StaffService(service, Catalog(CATALOG, DOMAIN))
            figures: dict[str, float] = {}
            t = time.perf_counter()
            rows = staff.read(data, "csv")
            report = await staff.run_import(rows, DRY_RUN, "bench")
            figures["dry run"] = n / (time.perf_counter() - t)
            assert report.count("create") == n
            t = time.perf_counter()
            report = await staff.run_import(staff.read(data, "csv"), ALL_OR_NOTHING, "bench")
            figures["import"] = n / (time.perf_counter() - t)
            assert report.count("created") == n
            t = time.perf_counter()
            report = await staff.run_import(staff.read(data, "csv"), ALL_OR_NOTHING, "bench")
            figures["re-import (unchanged)"] = n / (time.perf_counter() - t)
            assert report.count("unchanged") == n
            bodies = [r.body for r in rows]
            t = time.perf_counter()
            for body in bodies:
                await service.create("cultural-event", body)
            figures["baseline: NodeService.create"] = n / (time.perf_counter() - t)
            return figures
        finally:
            if db_url:
                async with store.engine.begin() as conn:
                    for table in ("import_sources", "record_authors", "outbox", "records", "envelopes"):
                        await conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
            await store.close()


async def run(ctx: Context) -> list[Figure]:
    """The suite's entry (``python -m tests.bench import``): SQLite, each figure beside NodeService.create."""
    n = ctx.size(500, 20)
    data = make_csv(n)
    runs = [await one_round(n, data, None) for _ in range(ctx.rounds)]
    base = median([r["baseline: NodeService.create"] for r in runs])
    return [Figure(NAME, f"bulk import: {name}", median([r[name] for r in runs]), "rows/s", base,
                   "NodeService.create one by one", note=f"{n} CSV rows, SQLite, median of {ctx.rounds}" if i == 0
                   else "", samples=[r[name] for r in runs])
            for i, name in enumerate(k for k in runs[0] if not k.startswith("baseline"))]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--db-url", help="PostgreSQL URL (default: SQLite in a temporary directory)")
    args = ap.parse_args()
    data = make_csv(args.n)
    runs = [await one_round(args.n, data, args.db_url) for _ in range(args.rounds)]
    print(f"bulk import of {args.n} CSV rows, {args.rounds} rounds, {'PostgreSQL' if args.db_url else 'SQLite'}, "
          f"{platform.machine()} Python {platform.python_version()}")
    base = statistics.median(r["baseline: NodeService.create"] for r in runs)
    for name in runs[0]:
        rate = statistics.median(r[name] for r in runs)
        print(f"  {name:32} {rate:8.0f} rows/s  ({rate / base:.2f}x the baseline)")


if __name__ == "__main__":
    asyncio.run(main())
