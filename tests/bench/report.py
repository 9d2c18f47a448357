"""Render results files of the suite (``python -m tests.bench --json FILE``) as the Markdown table of
docs/BENCHMARKS.md: ``.venv/bin/python -m tests.bench.report FILE [LATER ...]``. A later file's benchmarks
replace the same benchmarks of an earlier one (a benchmark run again on its own).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _value(v: float | None, unit: str) -> str:
    if v is None:
        return ""
    return f"{v:,.1f} {unit}" if unit in ("ms", "MiB") else f"{v:,.0f} {unit}"


def render(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}; Python {m['python']}, "
        f"SQLite {m['sqlite']}, PostgreSQL {m['postgresql'] or 'not used'}; load average {m['load_avg']} at the "
        f"start ({m['date']}).",
        "",
        "| benchmark | figure | value | bare baseline (same run) | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    for f in doc["figures"]:
        base = f"{_value(f['baseline'], f['unit'])} ({f['baseline_name']})" if f["baseline"] is not None else ""
        ratio = f"{f['ratio']:.2f}" if f["ratio"] is not None else ""
        goals = "; ".join(f"{g['text']}: {'met' if g['met'] else '**not met**'}" for g in f["goals"])
        lines.append(f"| {f['bench']} | {f['name']} | {_value(f['value'], f['unit'])} | {base} | {ratio} | {goals} |")
    notes = [f"- {f['bench']}, {f['name']}: {f['note']}" for f in doc["figures"] if f["note"]]
    return "\n".join([*lines, "", *notes, "", "Seconds per benchmark: " + ", ".join(
        f"{k} {v:.0f}" for k, v in doc["seconds"].items())]) + "\n"


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's machine, and per benchmark the figures of the last run that measured it."""
    by_bench: dict[str, list[dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    for doc in docs:
        fresh: dict[str, list[dict[str, Any]]] = {}
        for f in doc["figures"]:
            fresh.setdefault(f["bench"], []).append(f)
        by_bench.update(fresh)
        seconds.update(doc["seconds"])
    return {**docs[0], "seconds": seconds, "figures": [f for figs in by_bench.values() for f in figs]}


def main() -> None:
    sys.stdout.write(render(merge([json.loads(Path(p).read_text()) for p in sys.argv[1:]])))


if __name__ == "__main__":
    main()
