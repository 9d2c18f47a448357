"""Governance: how the registry moves from one version to the next (docs/PROTOCOL.md §12).

Every change of membership, keys or hub is a new registry version that carries, in ``change``, the
signed documents that justify it. Any party holding version N recomputes version N+1 from N and those
documents with :func:`evolve` and accepts it only if the hub published exactly that. So the hub
cannot admit, suspend, re-key or replace anyone on its own: without the members' signatures nothing
changes, whatever the hub does.

Documents are flattened JWS (typ ``ipdn-governance+jws``) over JCS payloads with a ``type``:

- ``application``: a candidate's request, signed by the candidate's new key;
- ``proposal``: suspend, reinstate or withdraw a member, signed by an active member;
- ``vote``: an active member approves a proposal or application (by its hash);
- ``rotation``: a member's new key, signed by its current key AND by the new key (possession);
- ``revocation``: a key's end, signed by a valid key of the member, or carried by votes;
- ``handover``: a new hub (URL, keys) and chair, signed by the outgoing hub and carried by votes.

Each names the registry ``base`` version it was made against and counts only there: a decision
cannot be replayed onto a later registry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Literal

from federation.protocol import jws, strictjson
from federation.protocol.canonical import canonical_bytes, sha256_hex
from federation.protocol.envelope import ORIGIN_RE, format_time, parse_time
from federation.protocol.errors import IpdnError, KeyFileError, TrustError
from federation.protocol.keys import PublicKey, SigningKey
from federation.protocol.registry import DEFAULT_LIFETIME, KeyEntry, Member, Registry, SignedRegistry, sign_registry

TYP = "ipdn-governance+jws"
ACTIONS = ("admit", "suspend", "reinstate", "withdraw", "rotate", "revoke", "handover", "renew")
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


def sign_document(body: dict[str, Any], key: SigningKey, *, now: datetime | None = None) -> Document:
    body = {"network": "IPDN", "issued_at": format_time(now or datetime.now(UTC)), **body}
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
    if not isinstance(body, dict) or body.get("type") not in (
            "application", "proposal", "vote", "rotation", "revocation", "handover"):
        raise GovernanceError("governance document has no known type", reason="governance-malformed")
    if type(body.get("base")) is not int or not isinstance(body.get("issued_at"), str):
        raise GovernanceError("governance document needs base (registry version) and issued_at",
                              reason="governance-malformed")
    parse_time(body["issued_at"])
    return Document(doc, body)


# -- rules ------------------------------------------------------------------------------------------------


def quorum(registry: Registry) -> int:
    """Votes needed: the admission threshold (a fraction) of active members, rounded up."""
    active = sum(1 for m in registry.members if m.status == "active")
    return max(1, math.ceil(Fraction(registry.policies.admission_threshold) * active))


def _member_key(registry: Registry, code: str, doc: Document, *, active: bool = True) -> Member:
    """The member ``code`` whose key signed ``doc`` (valid at the document's time)."""
    m = registry.member(code)
    if m is None or (active and m.status != "active"):
        raise GovernanceError(f"{code} is not an active member", reason="not-an-active-member")
    when = parse_time(doc.body["issued_at"])
    if not any(doc.signed_by(e.public(code), when) for e in m.keys):
        raise GovernanceError(f"not signed by a valid key of {code}", reason="bad-governance-signature")
    return m


def check_vote(registry: Registry, vote: Document) -> None:
    """A vote made against ``registry``, signed by an active member's valid key (GovernanceError if not)."""
    if vote.type != "vote" or vote.body.get("base") != registry.version \
            or vote.body.get("decision") not in ("approve", "reject"):
        raise GovernanceError("not a vote at this registry version", reason="vote-mismatch")
    _member_key(registry, str(vote.body.get("voter")), vote)


def _approvals(registry: Registry, subject: Document, votes: list[Document]) -> None:
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


def _jwk_entry(jwk: Any, not_before: str | None = None) -> KeyEntry:
    if not isinstance(jwk, dict):
        raise GovernanceError("a key is an Ed25519 public JWK", reason="governance-malformed")
    try:
        pub = PublicKey.from_jwk({k: jwk[k] for k in ("kty", "crv", "x") if k in jwk})
    except KeyFileError as e:  # not Ed25519, or a weak (small-order) point: PROTOCOL.md §3.1
        raise GovernanceError(f"the key presented is not usable: {e}", reason="bad-key") from e
    return KeyEntry(jwk={"kty": "OKP", "crv": "Ed25519", "x": jwk["x"], "kid": pub.kid}, not_before=not_before)


def _not_before_issued(body: dict[str, Any]) -> str:
    """A rotation's or revocation's effective time: never before it was signed (no retroactive ends)."""
    effective = str(body.get("effective", body["issued_at"]))
    if parse_time(effective) < parse_time(body["issued_at"]):
        raise GovernanceError("effective time before the document was signed", reason="backdated-governance")
    return effective


def _with_member(registry: Registry, member: Member) -> tuple[Member, ...]:
    others = [m for m in registry.members if m.code != member.code]
    return tuple(sorted([*others, member], key=lambda m: m.code))


def _end_key(entry: KeyEntry, when: str) -> KeyEntry:
    if entry.not_after is not None and parse_time(entry.not_after) <= parse_time(when):
        return entry
    return replace(entry, not_after=when)


def evolve(old: Registry, change: dict[str, Any] | None) -> Registry:
    """The registry that ``change`` makes of ``old`` (members, keys, hub, roles), or GovernanceError.

    Version and times are not decided here: the caller compares everything else.
    """
    if not isinstance(change, dict) or change.get("action") not in ACTIONS:
        raise GovernanceError("registry version without a known change", reason="governance-malformed")
    docs = [parse_document(d) for d in change.get("documents", [])]
    for d in docs:
        if d.body["base"] != old.version:
            raise GovernanceError(f"a document was made for registry version {d.body['base']}, not {old.version}",
                                  reason="stale-governance-document")
    action = change["action"]
    if action == "renew":
        if docs:
            raise GovernanceError("a renewal carries no documents", reason="governance-malformed")
        return old
    if not docs:
        raise GovernanceError(f"{action} without documents", reason="governance-malformed")
    head, rest = docs[0], docs[1:]
    b = head.body

    if action == "admit":
        if head.type != "application" or not ORIGIN_RE.fullmatch(str(b.get("member"))):
            raise GovernanceError("admission starts with an application", reason="governance-malformed")
        code = str(b["member"])
        existing = old.member(code)
        if existing is not None and existing.status != "withdrawn":
            raise GovernanceError(f"{code} is already a member", reason="already-a-member")
        entry = _jwk_entry(b.get("key"), b["issued_at"])
        if not head.signed_by(entry.public(code), parse_time(b["issued_at"])):
            raise GovernanceError("the application is not signed by the key it presents",
                                  reason="bad-governance-signature")
        _approvals(old, head, rest)
        names = b.get("names")
        if not isinstance(names, dict) or not names:
            raise GovernanceError("an application names the institution", reason="governance-malformed")
        admitted = Member(code=code, names=dict(names), role="member", status="active", keys=(entry,),
                          endpoint=b.get("endpoint"), contact=b.get("contact") or None)
        return replace(old, members=_with_member(old, admitted))

    if action in ("suspend", "reinstate", "withdraw"):
        if head.type != "proposal" or b.get("action") != action:
            raise GovernanceError(f"{action} starts with a {action} proposal", reason="governance-malformed")
        subject = old.member(str(b.get("member")))
        if subject is None:
            raise GovernanceError("no such member", reason="not-a-member")
        proposer = str(b.get("proposer"))
        self_withdrawal = action == "withdraw" and proposer == subject.code and not rest
        _member_key(old, proposer, head, active=not self_withdrawal)
        if not self_withdrawal:
            _approvals(old, head, rest)
        status: Literal["active", "suspended", "withdrawn"] = (
            "suspended" if action == "suspend" else "active" if action == "reinstate" else "withdrawn")
        if (action == "reinstate") != (subject.status == "suspended"):
            raise GovernanceError(f"cannot {action} a member that is {subject.status}", reason="bad-transition")
        role = "member" if subject.role == "chair" and status != "active" else subject.role
        return replace(old, members=_with_member(old, replace(subject, status=status, role=role)))

    if action == "rotate":
        if head.type != "rotation" or len(rest) != 1 or rest[0].jws.payload != head.jws.payload:
            raise GovernanceError("a rotation is one payload signed by the current and the new key",
                                  reason="governance-malformed")
        member = _member_key(old, str(b.get("member")), head)
        effective = _not_before_issued(b)
        new = _jwk_entry(b.get("new_key"), effective)
        if any(e.jwk.get("x") == new.jwk["x"] for m in old.members for e in m.keys):
            raise GovernanceError("the new key is already registered", reason="key-reused")
        pop = rest[0]
        if pop.jws.kid != new.jwk["kid"] or not pop.jws.verify_with(new.public(member.code)):
            raise GovernanceError("the new key did not sign the rotation (no proof of possession)",
                                  reason="bad-governance-signature")
        keys = (*tuple(_end_key(e, effective) for e in member.keys), new)
        return replace(old, members=_with_member(old, replace(member, keys=keys)))

    if action == "revoke":
        if head.type != "revocation":
            raise GovernanceError("a revocation starts with a revocation", reason="governance-malformed")
        owner = old.member(str(b.get("member")))
        kid, effective = b.get("kid"), _not_before_issued(b)
        if owner is None or not any(e.jwk.get("kid") == kid for e in owner.keys):
            raise GovernanceError("no such key", reason="not-a-member")
        if rest:  # carried by votes (a member that lost every key)
            _member_key(old, str(b.get("proposer")), head)
            _approvals(old, head, rest)
        else:  # self-revocation: signed by a valid key of the member (the revoked one included)
            _member_key(old, owner.code, head, active=False)
        keys = tuple(_end_key(e, effective) if e.jwk.get("kid") == kid else e for e in owner.keys)
        return replace(old, members=_with_member(old, replace(owner, keys=keys)))

    # handover
    if head.type != "handover":
        raise GovernanceError("a handover starts with a handover", reason="governance-malformed")
    when = parse_time(b["issued_at"])
    if not any(head.signed_by(k, when) for k in old.hub_public_keys().values()):
        raise GovernanceError("a handover is signed by the outgoing hub", reason="bad-governance-signature")
    _approvals(old, head, rest)
    hub = b.get("hub")
    chair = old.member(str(b.get("chair")))
    if not isinstance(hub, dict) or not isinstance(hub.get("url"), str) or chair is None or chair.status != "active":
        raise GovernanceError("a handover names the new hub (url, keys) and an active chair",
                              reason="governance-malformed")
    new_keys = tuple(_jwk_entry(k, b["issued_at"]) for k in hub.get("keys", []))
    if not new_keys:
        raise GovernanceError("a handover names the new hub's keys", reason="governance-malformed")
    # The outgoing keys stay listed, ended, so checkpoints and registries they signed still verify.
    hub_keys = tuple(_end_key(k, b["issued_at"]) for k in old.hub_keys) + new_keys
    members = tuple(replace(m, role="chair" if m.code == chair.code else ("member" if m.role == "chair" else m.role))
                    for m in old.members)
    return replace(old, hub_url=hub["url"].rstrip("/"), hub_keys=hub_keys, members=members)


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


def next_version(old: SignedRegistry, change: dict[str, Any], hub_key: SigningKey, *, now: datetime | None = None,
                 lifetime: timedelta = DEFAULT_LIFETIME) -> SignedRegistry:
    """Version N+1: ``evolve`` applied, timestamps renewed, signed by the hub (raises GovernanceError)."""
    now = now or datetime.now(UTC)
    reg = replace(evolve(old.registry, change), version=old.registry.version + 1, issued_at=format_time(now),
                  expires_at=format_time(now + lifetime), change=change)
    return sign_registry(reg, hub_key)
