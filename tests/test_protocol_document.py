"""docs/PROTOCOL.md §6 and the code name the same reasons: every slug the hub, the nodes and the protocol core can
emit is listed in §6, and every slug §6 lists is emitted somewhere.

A slug is read from the code where it is written: ``reason="…"`` (an error's or a check's reason), a class's
``reason = "…"``, ``Problem(status, "…", …)`` and ``problem_response(status, "…", …)`` (an HTTP problem),
``Failure("check", "…", …)`` (a verification failure) and ``"reason": "…"`` (an alarm). §6 is read by its heading,
and its slugs are the back-quoted ones in its tables.
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
# Reasons the code defines but that no other party ever sees, each with why.
LOCAL = {
    "error": "IpdnError's default: every error raised on purpose names its own reason",
    "invalid-input": "InputError's default, likewise",
    "untrusted": "TrustError's default, likewise",
    "verification-failed": "VerificationError's default; it carries the first failure's reason",
    "http-signature-invalid": "the base of httpsig's errors; each subclass names its reason",
    "merkle-proof-invalid": "the base of the Merkle proof errors; each check names its reason",
    "bad-config": "a party's own configuration file, environment or flags",
    "bad-key-file": "a party's own private key file",
    "backup-failed": "a party's own backup",
    "bad-account": "the authoring pages' staff accounts (node/staff)",
    "draft-not-found": "the authoring pages' drafts (node/staff)",
    "edit-conflict": "the authoring pages' drafts (node/staff)",
}


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
    rows = [line for line in section_6().splitlines() if line.startswith("|")]
    return {s for row in rows for s in re.findall(r"`([a-z][a-z0-9]*(?:-[a-z0-9]+)*)`", row)}


def test_every_emitted_reason_is_listed_in_section_6() -> None:
    """A reason a party can receive and the document does not name is a reason no other implementation can
    give: add it to §6 (one line: the slug, when, the HTTP status)."""
    found = emitted(protocol_only=True)
    missing = {s: sorted(found[s]) for s in sorted(set(found) - listed() - set(LOCAL))}
    assert not missing, f"emitted but not listed in PROTOCOL.md §6: {missing}"


def test_every_listed_reason_is_emitted() -> None:
    """A slug §6 lists that no code emits is a stale line (or a typo of one that is emitted)."""
    stale = sorted(listed() - set(emitted(protocol_only=False)))
    assert not stale, f"listed in PROTOCOL.md §6 but emitted nowhere: {stale}"


def test_local_reasons_are_still_defined_and_not_listed() -> None:
    """The exceptions above stay true: each is still in the code, and none is in §6."""
    found = emitted(protocol_only=False)
    assert sorted(s for s in LOCAL if s not in found) == []
    assert sorted(set(LOCAL) & listed()) == []


def test_citations_of_section_6_reasons_name_a_section_that_has_them() -> None:
    """docs/operating-hub.md cites reasons to PROTOCOL.md sections: each cited section names the reason."""
    text = (ROOT / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    sections = {m.group(1): text[m.end():] for m in re.finditer(r"^##+ (\d+(?:\.\d+)?)[. ]", text, re.MULTILINE)}
    for name, body in list(sections.items()):
        sections[name] = body[:body.find("\n## ")] if "\n## " in body else body
    guide = (ROOT / "docs" / "operating-hub.md").read_text(encoding="utf-8")
    wrong = []
    for m in re.finditer(r"`([a-z][a-z0-9-]+)` \(PROTOCOL\.md §(\d+(?:\.\d+)?)", guide):
        slug, section = m.groups()
        if section in sections and f"`{slug}`" not in sections[section]:
            wrong.append(f"{slug} cited to §{section}")
    assert not wrong, wrong

