"""One function per governance action: the registry that its documents make of the old one.

Each takes the registry the documents were made against, the change's first document (``head``: the
application, proposal, rotation, revocation or handover) and the rest (votes, or a rotation's proof of
possession), checks every signature and quorum, and returns the new registry or raises GovernanceError.
Version and times are not decided here (:mod:`federation.protocol.governance.evolve` does).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from federation.protocol.envelope import ORIGIN_RE, parse_time
from federation.protocol.errors import KeyFileError
from federation.protocol.governance.documents import Document, GovernanceError, check_approvals, member_signed
from federation.protocol.keys import PublicKey
from federation.protocol.registry import KeyEntry, Member, Registry

Status = Literal["active", "suspended", "withdrawn"]


# -- shared steps ------------------------------------------------------------------------------------------


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


# -- the actions -------------------------------------------------------------------------------------------


def admit(old: Registry, head: Document, rest: list[Document]) -> Registry:
    """An application signed by the key it presents, approved by a quorum: a new active member."""
    b = head.body
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
    check_approvals(old, head, rest)
    names = b.get("names")
    if not isinstance(names, dict) or not names:
        raise GovernanceError("an application names the institution", reason="governance-malformed")
    admitted = Member(code=code, names=dict(names), role="member", status="active", keys=(entry,),
                      endpoint=b.get("endpoint"), contact=b.get("contact") or None)
    return replace(old, members=_with_member(old, admitted))


def _change_status(action: Literal["suspend", "reinstate", "withdraw"], status: Status,
                   old: Registry, head: Document, rest: list[Document]) -> Registry:
    """A member's proposal of ``action``, approved by a quorum (a member withdrawing itself needs no votes)."""
    b = head.body
    if head.type != "proposal" or b.get("action") != action:
        raise GovernanceError(f"{action} starts with a {action} proposal", reason="governance-malformed")
    subject = old.member(str(b.get("member")))
    if subject is None:
        raise GovernanceError("no such member", reason="not-a-member")
    proposer = str(b.get("proposer"))
    self_withdrawal = action == "withdraw" and proposer == subject.code and not rest
    member_signed(old, proposer, head, active=not self_withdrawal)
    if not self_withdrawal:
        check_approvals(old, head, rest)
    if (action == "reinstate") != (subject.status == "suspended"):
        raise GovernanceError(f"cannot {action} a member that is {subject.status}", reason="bad-transition")
    role = "member" if subject.role == "chair" and status != "active" else subject.role
    return replace(old, members=_with_member(old, replace(subject, status=status, role=role)))


def suspend(old: Registry, head: Document, rest: list[Document]) -> Registry:
    """An active member suspended (a suspended chair is chair no more)."""
    return _change_status("suspend", "suspended", old, head, rest)


def reinstate(old: Registry, head: Document, rest: list[Document]) -> Registry:
    """A suspended member active again."""
    return _change_status("reinstate", "active", old, head, rest)


def withdraw(old: Registry, head: Document, rest: list[Document]) -> Registry:
    """A member withdrawn, by the assembly's votes or by its own signed proposal alone."""
    return _change_status("withdraw", "withdrawn", old, head, rest)


def rotate(old: Registry, head: Document, rest: list[Document]) -> Registry:
    """A new key: one rotation payload signed by a current key and by the new key (proof of possession)."""
    b = head.body
    if head.type != "rotation" or len(rest) != 1 or rest[0].jws.payload != head.jws.payload:
        raise GovernanceError("a rotation is one payload signed by the current and the new key",
                              reason="governance-malformed")
    member = member_signed(old, str(b.get("member")), head)
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


def revoke(old: Registry, head: Document, rest: list[Document]) -> Registry:
    """A key ended: by the member itself (any of its valid keys), or by a proposer and a quorum's votes."""
    b = head.body
    if head.type != "revocation":
        raise GovernanceError("a revocation starts with a revocation", reason="governance-malformed")
    owner = old.member(str(b.get("member")))
    kid, effective = b.get("kid"), _not_before_issued(b)
    if owner is None or not any(e.jwk.get("kid") == kid for e in owner.keys):
        raise GovernanceError("no such key", reason="not-a-member")
    if rest:  # carried by votes (a member that lost every key)
        member_signed(old, str(b.get("proposer")), head)
        check_approvals(old, head, rest)
    else:  # self-revocation: signed by a valid key of the member (the revoked one included)
        member_signed(old, owner.code, head, active=False)
    keys = tuple(_end_key(e, effective) if e.jwk.get("kid") == kid else e for e in owner.keys)
    return replace(old, members=_with_member(old, replace(owner, keys=keys)))


def handover(old: Registry, head: Document, rest: list[Document]) -> Registry:
    """A new hub (URL, keys) and chair, signed by the outgoing hub and approved by a quorum."""
    b = head.body
    if head.type != "handover":
        raise GovernanceError("a handover starts with a handover", reason="governance-malformed")
    when = parse_time(b["issued_at"])
    if not any(head.signed_by(k, when) for k in old.hub_public_keys().values()):
        raise GovernanceError("a handover is signed by the outgoing hub", reason="bad-governance-signature")
    check_approvals(old, head, rest)
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
