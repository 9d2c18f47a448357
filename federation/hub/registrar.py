"""The hub's governance service: collect signed documents, publish the registry version they decide.

The hub only gathers applications, proposals, votes, rotations, revocations and handovers, and signs
the next registry when :func:`federation.protocol.governance.next_version` accepts one of them with its
votes. Nodes recompute every version themselves (:func:`federation.protocol.governance.check_transition`),
so the hub's part is availability, not authority. Every document received is kept: the audit trail.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from federation.hub.ingest.service import HubService
from federation.protocol.governance import (
    Document,
    GovernanceError,
    check_vote,
    evolve,
    next_version,
    parse_document,
    quorum,
)
from federation.server.times import utc_text

log = logging.getLogger("ipdn.hub.governance")

# The registry change each subject document asks for (proposals name theirs).
_ACTIONS = {"application": "admit", "rotation": "rotate", "revocation": "revoke", "handover": "handover"}


def document_id(doc: Document) -> str:
    """Storage key: SHA-256 of the compact JWS (two signatures over one payload are two documents)."""
    return hashlib.sha256(doc.jws.signing_input + b"." + doc.jws.signature).hexdigest()


class GovernanceService:
    def __init__(self, hub: HubService, registry_path: Path) -> None:
        self.hub = hub
        self.store = hub.store
        self.registry_path = registry_path

    async def submit(self, objs: list[Any]) -> list[str]:
        """Keep each document (made against the current registry version) and decide what is due.

        Raises:
            GovernanceError: malformed, or made against another registry version (stale-governance-document).
        """
        version = self.hub.registry.registry.version
        docs = [parse_document(o) for o in objs]
        for d in docs:
            if d.body["base"] != version:
                raise GovernanceError(f"made for registry version {d.body['base']}; the current one is {version}",
                                      reason="stale-governance-document")
            if d.type == "vote":  # refused at once, so that one bad vote cannot block a decision
                check_vote(self.hub.registry.registry, d)
        ids = []
        for d in docs:
            subject = str(d.body.get("proposal")) if d.type == "vote" else d.hash
            ids.append(document_id(d))
            await self.store.add_governance(ids[-1], d.type, version, subject,
                                            json.dumps(d.to_dict()).encode(), self.hub.clock())
        while await self.decide():
            pass
        await self._explain(docs)
        return ids

    async def _explain(self, submitted: list[Document]) -> None:
        """A submitted subject that stays pending for any reason but missing votes will never pass:
        say why (it stays in the audit trail).

        Raises:
            GovernanceError: the reason, e.g. bad-governance-signature for a forged rotation.
        """
        subjects, related = await self._pending()
        for s in subjects:
            if not any(d.hash == s.hash for d in submitted):
                continue
            action = _ACTIONS.get(s.type) or str(s.body.get("action"))
            docs = [s, *related.get(s.hash, [])]
            try:
                evolve(self.hub.registry.registry, {"action": action, "documents": [d.to_dict() for d in docs]})
            except GovernanceError as e:
                if e.reason != "quorum-not-met":
                    raise

    async def _pending(self) -> tuple[list[Document], dict[str, list[Document]]]:
        rows = await self.store.governance_documents(base=self.hub.registry.registry.version)
        subjects: list[Document] = []
        by_subject: dict[str, list[Document]] = {}
        for r in rows:
            if r["decided_in"] is not None:
                continue
            d = parse_document(json.loads(r["document"]))
            if d.type == "vote" or any(s.hash == d.hash for s in subjects):
                by_subject.setdefault(str(r["subject"]), []).append(d)
            else:
                subjects.append(d)
        return subjects, by_subject

    async def decide(self) -> bool:
        """Publish the next registry version if a pending subject now carries its decision."""
        current = self.hub.registry
        subjects, related = await self._pending()
        for s in subjects:
            action = _ACTIONS.get(s.type) or str(s.body.get("action"))
            others = related.get(s.hash, [])
            pair = [d for d in others if d.type == s.type]  # a rotation's proof-of-possession signature
            votes = [d for d in others if d.type == "vote"]
            for docs in ([s, *pair], [s, *pair, *votes]):
                change = {"action": action, "documents": [d.to_dict() for d in docs]}
                try:
                    new = next_version(current, change, self.hub.hub_key, now=self.hub.clock())
                except GovernanceError:
                    continue
                await self.publish(new, [document_id(d) for d in docs])
                log.info("registry v%d: %s decided (%s)", new.registry.version, action, s.hash[:12])
                return True
        return False

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
