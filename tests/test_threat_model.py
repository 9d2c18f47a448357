"""docs/THREAT-MODEL.md names a test for each claim: every one of them must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support import paths

ROOT = paths.ROOT
TEST_ID = re.compile(r"`(tests/[\w/]+\.py(?:::\w+)+)`")


def _defined(path: Path) -> set[str]:
    """``Class::test`` and ``test`` names defined in a test module."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{m.name}" for m in node.body
                      if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
    return names


def test_every_test_named_in_the_threat_model_exists() -> None:
    """A renamed or deleted test cannot leave a claim in the threat model without its proof."""
    ids = TEST_ID.findall((ROOT / "docs" / "THREAT-MODEL.md").read_text(encoding="utf-8"))
    assert len(ids) > 40
    missing = []
    for test_id in ids:
        path, _, name = test_id.partition("::")
        if not (ROOT / path).is_file() or name not in _defined(ROOT / path):
            missing.append(test_id)
    assert not missing, missing
