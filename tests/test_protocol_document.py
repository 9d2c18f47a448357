"""docs/PROTOCOL.md §6 and the code name the same reasons: every slug the hub, the nodes and the protocol core can
emit is listed in §6, and every slug §6 lists is emitted somewhere.

How slugs are read from the code and from §6: tests/support/reasons.py.
"""

from __future__ import annotations

import re

from tests.support.paths import ROOT
from tests.support.reasons import emitted, listed

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

