"""The reason slugs, read where they are written: PROTOCOL.md §6 (the back-quoted slugs of its tables) and the code
that emits them. tests/test_protocol_document.py checks the two agree; tests/federation/server/ui/test_catalogues.py
that each has words in every language.

A slug is read from the code where it is written: ``reason="…"`` (an error's or a check's reason), a class's
``reason = "…"``, ``Problem(status, "…", …)`` and ``problem_response(status, "…", …)`` (an HTTP problem),
``Failure("check", "…", …)`` (a verification failure) and ``"reason": "…"`` (an alarm).
"""

from __future__ import annotations

import re
from collections import defaultdict

from tests.support.paths import ROOT

SLUG = r"([a-z][a-z0-9]*(?:-[a-z0-9]+)+|[a-z]{3,})"
EMITTERS = [
    re.compile(rf'reason\s*=\s*"{SLUG}"'),
    re.compile(rf'^\s+reason(?:\s*:\s*str)?\s*=\s*"{SLUG}"', re.MULTILINE),
    re.compile(rf'(?:Problem|problem_response)\(\s*\d{{3}}\s*,\s*"{SLUG}"'),
    re.compile(rf'Failure\(\s*"[a-z]+"\s*,\s*"{SLUG}"'),
    re.compile(rf'"reason"\s*:\s*"{SLUG}"'),
]
# Not part of the exchange between parties (PROTOCOL.md §9): the operators' and staff's pages, the command line
# (its verdicts are the protocol's reasons, and its own errors are local), and the conformance suite's generator.
NOT_PROTOCOL = ("federation/server/ui/", "federation/hub/dashboard/", "node/staff/", "federation/cli/",
                "federation/conformance/")


def emitted(*, protocol_only: bool) -> dict[str, set[str]]:
    """slug -> the files that emit it."""
    found: dict[str, set[str]] = defaultdict(set)
    for package in ("federation", "node"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if protocol_only and rel.startswith(NOT_PROTOCOL):
                continue
            text = path.read_text(encoding="utf-8")
            for pattern in EMITTERS:
                for m in pattern.finditer(text):
                    found[m.group(1)].add(rel)
    return found


def section_6() -> str:
    text = (ROOT / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    start = text.index("\n## 6. Reasons\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def listed() -> set[str]:
    """The slugs PROTOCOL.md §6 lists."""
    rows = [line for line in section_6().splitlines() if line.startswith("|")]
    return {s for row in rows for s in re.findall(r"`([a-z][a-z0-9]*(?:-[a-z0-9]+)*)`", row)}
