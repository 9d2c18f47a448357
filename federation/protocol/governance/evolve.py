"""From registry version N to N+1: the change's documents applied by their action, and the checks on the result.

Any party holding version N recomputes version N+1 from N and the signed documents in N+1's ``change``
with :func:`evolve` and accepts it only if the hub published exactly that (:func:`check_transition`);
the hub makes N+1 the same way (:func:`next_version`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from federation.protocol.envelope import format_time, parse_time
from federation.protocol.governance import actions
from federation.protocol.governance.documents import (
    Document,
    GovernanceError,
    made_against,
    parse_document,
    unchanged_since,
)
from federation.protocol.keys import SigningKey
from federation.protocol.registry import DEFAULT_LIFETIME, Registry, SignedRegistry, sign_registry

Action = Callable[[Registry, Document, list[Document]], Registry]

# Every action that carries documents, by the name ``change.action`` gives it. A handover is one like the
# others: listed here, not what is left when nothing else matched.
APPLY: Mapping[str, Action] = MappingProxyType({
    "admit": actions.admit,
    "suspend": actions.suspend,
    "reinstate": actions.reinstate,
    "withdraw": actions.withdraw,
    "rotate": actions.rotate,
    "revoke": actions.revoke,
    "handover": actions.handover,
})
RENEW = "renew"  # a new version (new expiry) and nothing else: no documents; ``since`` keeps pending votes valid
ACTIONS = (*APPLY, RENEW)


def evolve(old: Registry, change: dict[str, Any] | None) -> Registry:
    """The registry that ``change`` makes of ``old`` (members, keys, hub, roles), or GovernanceError.

    Version and times are not decided here: the caller compares everything else.
    """
    action = change.get("action") if isinstance(change, dict) else None
    if not isinstance(change, dict) or not isinstance(action, str) or action not in ACTIONS:
        raise GovernanceError("registry version without a known change", reason="governance-malformed")
    listed = change.get("documents", [])
    if not isinstance(listed, list):
        raise GovernanceError("the change's documents are a list", reason="governance-malformed")
    docs = [parse_document(d) for d in listed]
    for d in docs:
        if not made_against(old, d):
            raise GovernanceError(f"a document was made for registry version {d.body['base']}, not {old.version}",
                                  reason="stale-governance-document")
    if action == RENEW:
        if docs:
            raise GovernanceError("a renewal carries no documents", reason="governance-malformed")
        # Optional: the version whose content this one repeats. Absent, documents must be made against it anew.
        if "since" in change and change["since"] != unchanged_since(old):
            raise GovernanceError(f"a renewal of v{old.version} repeats v{unchanged_since(old)}, not "
                                  f"{change['since']!r}", reason="governance-malformed")
        return old
    if not docs:
        raise GovernanceError(f"{action} without documents", reason="governance-malformed")
    return APPLY[action](old, docs[0], docs[1:])


def _comparable(reg: Registry) -> dict[str, Any]:
    d = reg.to_dict()
    for k in ("version", "issued_at", "expires_at", "change"):
        d.pop(k)
    return d


def check_transition(old: SignedRegistry, new: SignedRegistry) -> None:
    """Whether ``new`` is exactly what its ``change`` makes of ``old`` (signature checked elsewhere).

    Raises:
        GovernanceError: a version skipped, times going back, or any difference from what the
            change's signed documents justify (reason quorum-not-met, bad-governance-signature, ...).
    """
    o, n = old.registry, new.registry
    if n.version != o.version + 1:
        raise GovernanceError(f"registry {n.version} does not follow {o.version}", reason="registry-version-skipped")
    if parse_time(n.issued_at) < parse_time(o.issued_at):
        raise GovernanceError("registry issued before its predecessor", reason="registry-time-reversed")
    if _comparable(evolve(o, n.change)) != _comparable(n):
        raise GovernanceError("the registry differs from what its change justifies", reason="unjustified-change")


def next_version(old: SignedRegistry, change: dict[str, Any], hub_key: SigningKey, *, now: datetime,
                 lifetime: timedelta = DEFAULT_LIFETIME) -> SignedRegistry:
    """Version N+1: ``evolve`` applied, issued at ``now``, signed by the hub (raises GovernanceError)."""
    reg = replace(evolve(old.registry, change), version=old.registry.version + 1, issued_at=format_time(now),
                  expires_at=format_time(now + lifetime), change=change)
    return sign_registry(reg, hub_key)


def renewal(old: SignedRegistry, hub_key: SigningKey, *, now: datetime,
            lifetime: timedelta = DEFAULT_LIFETIME) -> SignedRegistry:
    """Version N+1 with N's content and a new expiry (the hub's routine renewal): ``since`` names the version
    this content dates from, so documents made against any of those versions still count."""
    return next_version(old, {"action": RENEW, "documents": [], "since": unchanged_since(old.registry)}, hub_key,
                        now=now, lifetime=lifetime)
