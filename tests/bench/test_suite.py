"""The benchmark suite's smallest configuration, end to end, so that it cannot rot (its figures are not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.common import BENCHES
from tests.bench.report import render

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
class TestQuickSuite:
    # One test per benchmark, so the parallel run spreads them over its workers instead of one long tail.
    @pytest.mark.parametrize("bench", sorted(BENCHES))
    def test_quick_run_measures_the_benchmark(self, tmp_path: Path, bench: str) -> None:
        """``python -m tests.bench --quick NAME`` runs the benchmark with real processes and writes each figure
        with a positive value, its bare baseline and its goals to the JSON file, which renders as Markdown."""
        out = tmp_path / "bench.json"
        p = subprocess.run([sys.executable, "-m", "tests.bench", "--quick", "--json", str(out), bench], cwd=ROOT,
                           capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
        doc = json.loads(out.read_text())
        assert doc["quick"] is True and doc["machine"]["cores"] >= 1
        assert {f["bench"] for f in doc["figures"]} == {bench}
        for f in doc["figures"]:
            assert f["value"] > 0, f
            assert f["baseline"] is None or f["baseline"] > 0, f
        assert f"| {bench} |" in render(doc)
        if bench == "ingest":
            assert "| ingest | hub ingest, SQLite |" in render(doc)
        if bench == "latency":  # each regime as a client sees it (GET and stream), by a client never rate-limited
            names = " ".join(f["name"] for f in doc["figures"])
            for regime in ("paced", "steady", "five"):
                assert f"{regime}: POST to GET 200 at a peer, p99" in names
                assert f"{regime}: POST to stream event at a peer, p50" in names
            assert "partner key of unlimited rate, none answered 429" in render(doc)
        if bench == "storage":  # both goals of the node's storage, each beside its baseline
            names = {f["name"]: f for f in doc["figures"]}
            assert names["node bytes per envelope, SQLite"]["baseline_name"] == "the hub's, same envelopes"
            assert "updates with 2,000 records held, SQLite" in " ".join(names)

    def test_unknown_benchmark_refused(self) -> None:
        """Naming a benchmark that does not exist stops the run with the list of those that do."""
        p = subprocess.run([sys.executable, "-m", "tests.bench", "nosuch"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 2 and "choose from envelope, ingest, commit" in p.stderr
