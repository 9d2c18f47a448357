"""The hub's governance service: collect signed documents, publish the registry version they decide.

The hub only gathers applications, proposals, votes, rotations, revocations and handovers, and signs
the next registry when :func:`federation.protocol.governance.next_version` accepts one of them with its
votes. Nodes recompute every version themselves (:func:`federation.protocol.governance.check_transition`),
so the hub's part is availability, not authority. Every document accepted is kept: the audit trail.

A submission is checked in full before anything of it is stored (shape, signatures, base version, and
that each subject could pass with enough votes): a refused document is never listed as pending (the
route keeps the refusal in the quarantine, within the per-address budget). New applications are bounded
(``max_pending_applications``): an outsider cannot fill the hub with self-signed applications. Each
submission decides only the subjects it touches, reading only their documents.

The registry lives days, not a year (``registry_lifetime``): :meth:`GovernanceService.renew_if_due` publishes a
renewal (same content, new expiry) once less than half of it is left, so an honest hub's registry never
lapses, and a hub that stops renewing cannot withhold a decision from the nodes for longer than that
(docs/PROTOCOL.md §7). Documents made against a version only renewals separate from the current one still
count: votes survive renewals.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from federation.hub.ingest.service import HubService
from federation.protocol.errors import IpdnError
from federation.protocol.governance import (
    Document,
    GovernanceError,
    check_vote,
    evolve,
    made_against,
    next_version,
    parse_document,
    quorum,
    renewal,
    unchanged_since,
)
from federation.protocol.registry import DEFAULT_LIFETIME, SignedRegistry
from federation.server.times import utc_text

log = logging.getLogger("ipdn.hub.governance")

# The registry change each subject document asks for (proposals name theirs).
_ACTIONS = {"application": "admit", "rotation": "rotate", "revocation": "revoke", "handover": "handover"}


class TooManyPendingApplications(IpdnError):
    """The hub holds ``max_pending_applications`` undecided applications: new ones wait until some are decided."""

    reason = "too-many-pending-applications"


def document_id(doc: Document) -> str:
    """Storage key: SHA-256 of the compact JWS (two signatures over one payload are two documents)."""
    return hashlib.sha256(doc.jws.signing_input + b"." + doc.jws.signature).hexdigest()


class GovernanceService:
    def __init__(self, hub: HubService, registry_path: Path, *, max_pending_applications: int = 100,
                 lifetime: timedelta = DEFAULT_LIFETIME) -> None:
        self.hub = hub
        self.store = hub.store
        self.registry_path = registry_path
        self.max_pending_applications = max_pending_applications
        self.lifetime = lifetime  # of every version this hub publishes

    @staticmethod
    def parse(objs: list[Any]) -> list[Document]:
        """The submitted documents, parsed (not yet verified).

        Raises:
            GovernanceError: governance-malformed.
        """
        return [parse_document(o) for o in objs]

    async def submit(self, docs: list[Document], *,
                     before_storing: Callable[[list[Document]], None] | None = None) -> list[str]:
        """Check every document, then keep them (made against the current registry version) and decide what
        is due. Nothing is stored when anything is refused. ``before_storing`` is called once they are
        checked, and may refuse them too (a rate limit per signing key, say) by raising.

        Raises:
            GovernanceError: made against another registry version (stale-governance-document), a bad vote, or
                a subject that could never pass whatever the votes (bad-governance-signature for an
                application not signed by the key it presents, governance-malformed, already-a-member, ...).
            TooManyPendingApplications: a new application while ``max_pending_applications`` are pending.
        """
        registry = self.hub.registry.registry
        version = registry.version
        for d in docs:
            if not made_against(registry, d):
                raise GovernanceError(f"made for registry version {d.body['base']}; the current one is {version}",
                                      reason="stale-governance-document")
            if d.type == "vote":  # refused at once, so that one bad vote cannot block a decision
                check_vote(self.hub.registry.registry, d)
        touched = {self._subject(d) for d in docs}
        subjects, related = await self._pending(touched)
        held = {s.hash for s in subjects}
        submitted_subjects: dict[str, Document] = {}
        for d in docs:
            if d.type != "vote" and d.hash not in held and d.hash not in submitted_subjects:
                submitted_subjects[d.hash] = d
            else:
                related.setdefault(self._subject(d), []).append(d)
        self._explain(list(submitted_subjects.values()), related)
        new_applications = sum(1 for d in submitted_subjects.values() if d.type == "application")
        if new_applications:
            pending = await self.store.count_pending_governance("application", self._bases())
            if pending + new_applications > self.max_pending_applications:
                raise TooManyPendingApplications(
                    f"{pending} applications are pending, at most {self.max_pending_applications}: "
                    "new ones are taken once the members decide some")
        if before_storing is not None:
            before_storing(docs)
        ids = []
        for d in docs:
            ids.append(document_id(d))
            await self.store.add_governance(ids[-1], d.type, d.body["base"], self._subject(d),
                                            json.dumps(d.to_dict()).encode(), self.hub.clock())
        while await self.decide(touched):
            pass
        return ids

    def _bases(self) -> range:
        """The versions whose documents count now: the current one and those only renewals separate from it."""
        reg = self.hub.registry.registry
        return range(unchanged_since(reg), reg.version + 1)

    @staticmethod
    def _subject(d: Document) -> str:
        return str(d.body.get("proposal")) if d.type == "vote" else d.hash

    def _explain(self, subjects: list[Document], related: dict[str, list[Document]]) -> None:
        """A submitted subject that could not pass for any reason but missing votes never will: refuse it
        before it is stored.

        Raises:
            GovernanceError: the reason, e.g. bad-governance-signature for a forged application or rotation.
        """
        for s in subjects:
            action = _ACTIONS.get(s.type) or str(s.body.get("action"))
            docs = [s, *related.get(s.hash, [])]
            try:
                evolve(self.hub.registry.registry, {"action": action, "documents": [d.to_dict() for d in docs]})
            except GovernanceError as e:
                if e.reason != "quorum-not-met":
                    raise

    async def _pending(self, subjects_of: set[str] | None = None
                       ) -> tuple[list[Document], dict[str, list[Document]]]:
        """Undecided documents made against the current version (of the given subjects only, if given):
        the subjects in arrival order, and the other documents (votes, a rotation's second signature) by
        subject."""
        rows = await self.store.governance_documents(base=self._bases(), pending=True, subjects=subjects_of)
        subjects: list[Document] = []
        seen: set[str] = set()
        by_subject: dict[str, list[Document]] = {}
        for r in rows:
            d = parse_document(json.loads(r["document"]))
            if d.type == "vote" or d.hash in seen:
                by_subject.setdefault(str(r["subject"]), []).append(d)
            else:
                subjects.append(d)
                seen.add(d.hash)
        return subjects, by_subject

    async def decide(self, subjects_of: set[str] | None = None) -> bool:
        """Publish the next registry version if a pending subject (of those given, if given) now carries its
        decision."""
        current = self.hub.registry
        subjects, related = await self._pending(subjects_of)
        for s in subjects:
            action = _ACTIONS.get(s.type) or str(s.body.get("action"))
            others = related.get(s.hash, [])
            pair = [d for d in others if d.type == s.type]  # a rotation's proof-of-possession signature
            votes = [d for d in others if d.type == "vote"]
            for docs in ([s, *pair], [s, *pair, *votes]):
                change = {"action": action, "documents": [d.to_dict() for d in docs]}
                try:
                    new = next_version(current, change, self.hub.hub_key, now=self.hub.clock(),
                                       lifetime=self.lifetime)
                except GovernanceError:
                    continue
                await self.publish(new, [document_id(d) for d in docs])
                log.info("registry v%d: %s decided (%s)", new.registry.version, action, s.hash[:12])
                return True
        return False

    def renewal_due(self) -> bool:
        """Less than half of ``lifetime`` left (or more than a whole one: a registry from before a shorter
        lifetime was configured, brought down to it)."""
        left = self.hub.registry.registry.expires_in(self.hub.clock())
        return left < self.lifetime / 2 or left > self.lifetime + timedelta(minutes=1)

    async def renew_if_due(self) -> SignedRegistry | None:
        """Publish a renewal of the current registry if due (:meth:`renewal_due`); the new version, or None.

        Every worker of a shared log checks; the one that stores the version first publishes it (versions are
        unique in the store), the others take it from there.
        """
        await self.hub.fresh()
        if not self.renewal_due():
            return None
        new = renewal(self.hub.registry, self.hub.hub_key, now=self.hub.clock(), lifetime=self.lifetime)
        try:
            await self.publish(new, [])
        except Exception as e:  # another worker stored this version first (a unique key): its renewal stands
            if not self.store.shared:
                raise
            log.info("registry v%d renewed by another worker (%s)", new.registry.version, type(e).__name__)
            return None
        log.info("registry v%d: renewed until %s", new.registry.version, new.registry.expires_at)
        return new

    async def publish(self, new: Any, used: list[str]) -> None:
        """Store the new version (and mark what decided it), write registry.json, serve it."""
        await self.store.save_decision(new.registry.version, new.hash, new.to_bytes(), used, self.hub.clock())
        tmp = self.registry_path.with_suffix(".tmp")
        tmp.write_bytes(new.to_bytes() + b"\n")
        os.replace(tmp, self.registry_path)
        self.hub.registry = new

    async def overview(self) -> dict[str, Any]:
        """Pending subjects with their tallies, and every document received (the audit trail)."""
        reg = self.hub.registry.registry
        subjects, related = await self._pending()
        pending = []
        for s in subjects:
            votes = [v for v in related.get(s.hash, []) if v.type == "vote"]
            pending.append({
                "hash": s.hash, "type": s.type, "action": _ACTIONS.get(s.type) or s.body.get("action"),
                "member": s.body.get("member") or s.body.get("chair"), "issued_at": s.body["issued_at"],
                "approve": sorted({str(v.body["voter"]) for v in votes if v.body.get("decision") == "approve"}),
                "reject": sorted({str(v.body["voter"]) for v in votes if v.body.get("decision") != "approve"}),
                "needed": quorum(reg), "document": s.to_dict()})
        trail = [{"id": r["hash"], "type": r["type"], "base": r["base"], "subject": r["subject"],
                  "received_at": utc_text(r["received_at"]),
                  "decided_in": r["decided_in"], "document": json.loads(r["document"])}
                 for r in await self.store.governance_documents()]
        return {"registry_version": reg.version, "quorum": quorum(reg), "pending": pending, "trail": trail}
