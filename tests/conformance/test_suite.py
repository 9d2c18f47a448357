"""The project passes every published conformance case: through ``ipdn conformance run`` (the adapter as a
subprocess, as a partner's implementation would be run) and in-process; the committed files never drift from a
fresh generation, which is byte-for-byte deterministic."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from federation.conformance import generate, runner
from tests.support.cli import run
from tests.support.paths import ROOT

CASES = ROOT / "conformance"


def test_committed_files_equal_a_fresh_generation() -> None:
    """conformance/*.json are exactly what the generator makes (run it after changing a case)."""
    fresh = generate.files()
    assert sorted(p.name for p in CASES.glob("*.json")) == sorted(fresh)
    stale = [name for name, data in fresh.items() if (CASES / name).read_bytes() != data]
    assert not stale, f"regenerate with python -m federation.conformance.generate: {stale}"


def test_generation_is_deterministic() -> None:
    assert generate.files() == generate.files()


def test_every_case_has_the_published_shape() -> None:
    for name, doc in generate.build().items():
        assert doc["category"] == name and doc["cases"]
        for c in doc["cases"]:
            assert set(c) == {"id", "description", "input", "expected"}
            assert c["expected"] == "accept" or set(c["expected"]) == {"reason"}
            assert c["id"].endswith("-accepted") == (c["expected"] == "accept"), c["id"]
            assert c["id"].endswith("-refused") == (c["expected"] != "accept"), c["id"]


def test_the_project_passes_every_case_in_process() -> None:
    report = runner.run(runner.load_cases(CASES), runner.in_process)
    assert report.ok, "\n".join(report.lines())
    assert sum(t for _, t in report.counts().values()) == sum(len(d["cases"]) for d in generate.build().values())


def test_the_project_passes_every_case_through_the_cli_and_a_subprocess(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "conformance", "run", "--impl", f"{sys.executable} -m federation.conformance.adapter")
    assert code == 0, out
    for name, doc in generate.build().items():
        n = len(doc["cases"])
        assert any(line.split()[:2] == [name, f"{n}/{n}"] for line in out.splitlines()), out


def test_a_wrong_implementation_fails_and_says_where(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    """An implementation that accepts everything passes the accept cases only; the runner exits 1."""
    impl = tmp_path / "accept_all.py"
    impl.write_text("import json, sys\nfor line in sys.stdin:\n"
                    "    print(json.dumps({'id': json.loads(line)['id'], 'result': 'accept', 'reason': None}), "
                    "flush=True)\n")
    code, out, _ = run(capsys, "conformance", "run", "--category", "webhooks", "--impl", f"{sys.executable} {impl}")
    assert code == 1
    assert "FAIL webhooks/tampered-body-refused: expected refuse bad-signature, got accept" in out
    assert ["webhooks", "4/13", "passed", "9", "failed"] in [line.split() for line in out.splitlines()]


def test_readme_counts_match_the_cases() -> None:
    """conformance/README.md and the README's Conformance table give each category's case count."""
    counts = {name: len(doc["cases"]) for name, doc in generate.build().items()}
    for path in (CASES / "README.md", ROOT / "README.md"):
        text = path.read_text(encoding="utf-8")
        for name, n in counts.items():
            assert f"| `{name}` | {n} |" in text, f"{path.name} does not say {name} has {n} cases"
        assert f"| **total** | **{sum(counts.values())}** |" in text


def test_adapter_speaks_json_lines() -> None:
    """One request line in, one answer line out, with the case's id."""
    doc = generate.build(("strict-json",))["strict-json"]
    request = {"category": "strict-json", "id": doc["cases"][5]["id"], "input": doc["cases"][5]["input"]}
    answer = runner.Process([sys.executable, "-m", "federation.conformance.adapter"])
    try:
        got = answer(request)
    finally:
        answer.close()
    assert got == {"id": doc["cases"][5]["id"], "result": "refuse", "reason": "duplicate-key"}
    assert json.dumps(got)
