"""Governance: how the registry moves from one version to the next (docs/PROTOCOL.md §12).

Every change of membership, keys or hub is a new registry version that carries, in ``change``, the
signed documents that justify it. Any party holding version N recomputes version N+1 from N and those
documents with :func:`evolve` and accepts it only if the hub published exactly that. So the hub
cannot admit, suspend, re-key or replace anyone on its own: without the members' signatures nothing
changes, whatever the hub does.

- :mod:`.documents`: the signed documents (application, proposal, vote, rotation, revocation, handover),
  parsing, signing, and the signature and quorum checks;
- :mod:`.actions`: one function per action (admit, suspend, reinstate, withdraw, rotate, revoke, handover);
- :mod:`.evolve`: :func:`evolve` dispatching on the action, :func:`check_transition`, :func:`next_version`;
- :mod:`.chain`: :func:`walk_chain` from a trusted version to the latest, :func:`check_successor` one step.
"""

from federation.protocol.governance.chain import FetchVersion, check_successor, walk_chain
from federation.protocol.governance.documents import (
    DOCUMENT_TYPES,
    TYP,
    Document,
    GovernanceError,
    check_approvals,
    check_vote,
    made_against,
    member_signed,
    parse_document,
    quorum,
    sign_document,
    unchanged_since,
)
from federation.protocol.governance.evolve import (
    ACTIONS,
    APPLY,
    RENEW,
    check_transition,
    evolve,
    next_version,
    renewal,
)

__all__ = [
    "ACTIONS",
    "APPLY",
    "DOCUMENT_TYPES",
    "RENEW",
    "TYP",
    "Document",
    "FetchVersion",
    "GovernanceError",
    "check_approvals",
    "check_successor",
    "check_transition",
    "check_vote",
    "evolve",
    "made_against",
    "member_signed",
    "next_version",
    "parse_document",
    "quorum",
    "renewal",
    "sign_document",
    "unchanged_since",
    "walk_chain",
]
