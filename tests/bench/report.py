"""Render a results file of the suite (``python -m tests.bench --json FILE``) as the Markdown tables of
docs/BENCHMARKS.md: ``.venv/bin/python -m tests.bench.report FILE``.
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


def main() -> None:
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text())))


if __name__ == "__main__":
    main()
