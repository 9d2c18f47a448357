"""Governance documents: their types, parsing, signing, and the signature and vote checks every action shares.

Documents are flattened JWS (typ ``ipdn-governance+jws``) over JCS payloads with a ``type``:

- ``application``: a candidate's request, signed by the candidate's new key;
- ``proposal``: suspend, reinstate or withdraw a member, signed by an active member;
- ``vote``: an active member approves a proposal or application (by its hash);
- ``rotation``: a member's new key, signed by its current key AND by the new key (possession);
- ``revocation``: a key's end, signed by a valid key of the member, or carried by votes;
- ``handover``: a new hub (URL, keys) and chair, signed by the outgoing hub and carried by votes.

Each names the registry ``base`` version it was made against and counts only there, or at a later version
that only renewals separate from it (:func:`made_against`): a decision cannot be replayed onto a later
registry, and votes survive the hub's routine renewals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

from federation.protocol import jws, strictjson
from federation.protocol.canonical import canonical_bytes, sha256_hex
from federation.protocol.envelope import format_time, parse_time
from federation.protocol.errors import IpdnError, TrustError
from federation.protocol.keys import PublicKey, SigningKey
from federation.protocol.registry import Member, Registry

TYP = "ipdn-governance+jws"
DOCUMENT_TYPES = ("application", "proposal", "vote", "rotation", "revocation", "handover")
_LIMITS = strictjson.JsonLimits(max_bytes=64 * 1024, max_depth=6)


class GovernanceError(TrustError):
    reason = "governance-invalid"


@dataclass(frozen=True, slots=True)
class Document:
    """A governance document: its JWS as received and its decoded payload (signature not yet checked)."""

    jws: jws.SignedDocument
    body: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.body["type"])

    @property
    def hash(self) -> str:
        return sha256_hex(self.jws.payload)

    def to_dict(self) -> dict[str, str]:
        return self.jws.to_dict()

    def signed_by(self, key: PublicKey, when: datetime) -> bool:
        return self.jws.kid == key.kid and key.valid_at(when) and self.jws.verify_with(key)


def sign_document(body: dict[str, Any], key: SigningKey, *, now: datetime) -> Document:
    """``body`` signed by ``key``, with ``network`` and ``issued_at`` (``now``) unless ``body`` has them."""
    body = {"network": "IPDN", "issued_at": format_time(now), **body}
    payload = canonical_bytes(body)
    return Document(jws.sign(payload, key, TYP), body)


def parse_document(obj: Any) -> Document:
    """Parse (not verify) a governance document.

    Raises:
        GovernanceError: not a governance JWS with a known type, a base version and a time.
    """
    try:
        doc = jws.parse(obj, TYP)
        body = strictjson.loads(doc.payload, _LIMITS)
    except IpdnError as e:
        raise GovernanceError(f"governance document: {e.message}", reason="governance-malformed") from e
    if not isinstance(body, dict) or body.get("type") not in DOCUMENT_TYPES:
        raise GovernanceError("governance document has no known type", reason="governance-malformed")
    if type(body.get("base")) is not int or not isinstance(body.get("issued_at"), str):
        raise GovernanceError("governance document needs base (registry version) and issued_at",
                              reason="governance-malformed")
    parse_time(body["issued_at"])
    return Document(doc, body)


# -- who signed, and how many approved -------------------------------------------------------------------


def quorum(registry: Registry) -> int:
    """Votes needed: the admission threshold (a fraction) of active members, rounded up."""
    active = sum(1 for m in registry.members if m.status == "active")
    return max(1, math.ceil(Fraction(registry.policies.admission_threshold) * active))


def member_signed(registry: Registry, code: str, doc: Document, *, active: bool = True) -> Member:
    """The member ``code`` whose key signed ``doc`` (valid at the document's time), or GovernanceError."""
    m = registry.member(code)
    if m is None or (active and m.status != "active"):
        raise GovernanceError(f"{code} is not an active member", reason="not-an-active-member")
    when = parse_time(doc.body["issued_at"])
    if not any(doc.signed_by(e.public(code), when) for e in m.keys):
        raise GovernanceError(f"not signed by a valid key of {code}", reason="bad-governance-signature")
    return m


def unchanged_since(registry: Registry) -> int:
    """The oldest version with this registry's members, keys, hub and policies: only renewals since (a renewal's
    ``change.since``, checked against its predecessor by :func:`~federation.protocol.governance.evolve`), else
    its own version."""
    change = registry.change
    if isinstance(change, dict) and change.get("action") == "renew" and type(change.get("since")) is int:
        return int(change["since"])
    return registry.version


def made_against(registry: Registry, doc: Document) -> bool:
    """Whether ``doc``'s base is ``registry`` or a version only renewals separate from it (same content)."""
    base = doc.body.get("base")
    return type(base) is int and unchanged_since(registry) <= base <= registry.version


def check_vote(registry: Registry, vote: Document) -> None:
    """A vote made against ``registry``, signed by an active member's valid key (GovernanceError if not)."""
    if vote.type != "vote" or not made_against(registry, vote) \
            or vote.body.get("decision") not in ("approve", "reject"):
        raise GovernanceError("not a vote at this registry version", reason="vote-mismatch")
    member_signed(registry, str(vote.body.get("voter")), vote)


def check_approvals(registry: Registry, subject: Document, votes: list[Document]) -> None:
    """Enough distinct active members approved ``subject`` (by hash), each with a valid signature."""
    approvers = set()
    for v in votes:
        check_vote(registry, v)
        if v.body.get("proposal") != subject.hash:
            raise GovernanceError("a vote is for another proposal", reason="vote-mismatch")
        if v.body.get("decision") == "approve":
            approvers.add(str(v.body["voter"]))
    need = quorum(registry)
    if len(approvers) < need:
        raise GovernanceError(f"{len(approvers)} approvals; {need} needed", reason="quorum-not-met")
