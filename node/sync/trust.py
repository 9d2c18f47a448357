"""Log trust as the node keeps it: its view of the hub's log, the last checkpoint it accepted, the evidence.

node/sync/logtrust.py judges (pure functions); this keeps what the judgements need and what they found,
in the store's ``trust`` tables (node/store/evidence.py). Once the node holds evidence that the hub's log
misbehaves, it applies nothing more from the hub (:meth:`LogTrust.ensure_applying`) until an operator acts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from federation.protocol import merkle
from federation.protocol.checkpoint import Checkpoint, cosign
from node.errors import LogHaltedError, LogMisbehaviourError
from node.own_keys import OwnKeys
from node.store.evidence import EvidenceRow, LogView
from node.store.records import NodeStore
from node.sync import logtrust
from node.sync.registry import RegistryFollower

log = logging.getLogger("ipdn.node")


def _halted(evidence: EvidenceRow) -> LogHaltedError:
    return LogHaltedError(f"applying from the hub is halted: {evidence.reason}: {evidence.detail}")


class LogTrust:
    def __init__(self, store: NodeStore, keys: OwnKeys, registry: RegistryFollower,
                 clock: Callable[[], datetime]) -> None:
        self.store = store
        self.keys = keys
        self.registry = registry
        self.clock = clock
        # Evidence is only ever added, and only by record_misbehaviour: read once, then latched here.
        self._evidence: EvidenceRow | None = None
        self._evidence_read = False

    async def log_view(self) -> LogView:
        """The cursor, the frontier over every entry up to it, and the last checkpoint accepted.

        A database from before the frontier was kept (revision 0001) gets it rebuilt once from the
        envelopes and quarantine it holds by log position.

        Raises:
            LogMisbehaviourError: ``frontier-incomplete``: the held envelopes do not cover positions 1..cursor.
        """
        view = await self.store.trust.log_view()
        if view.frontier is not None:
            return view
        frontier = merkle.Frontier()
        rows = await self.store.trust.logged_envelopes(view.cursor) if view.cursor else []
        if [p for p, _, _ in rows] != list(range(1, view.cursor + 1)):
            raise LogMisbehaviourError(f"the entries held do not cover log positions 1..{view.cursor}: the frontier "
                                       "cannot be rebuilt", reason="frontier-incomplete")
        for position, data, _ in rows:
            frontier.append(logtrust.entry_leaf(position, json.loads(data)))
        await self.store.trust.save_frontier(view.cursor, frontier)
        return LogView(view.cursor, frontier, view.checkpoint, view.received_at)

    async def ensure_applying(self) -> None:
        """Raises LogHaltedError if the node holds evidence against the hub's log."""
        if not self._evidence_read:
            held = await self.store.trust.evidence(1)
            self._evidence, self._evidence_read = self._evidence or (held[0] if held else None), True
        if self._evidence is not None:
            raise _halted(self._evidence)

    async def record_misbehaviour(self, error: LogMisbehaviourError, *, peer: str | None = None) -> None:
        """Keep the evidence (the last checkpoint accepted and the offending document): the node applies
        nothing more from the hub until an operator acts."""
        detail = f"{error.message} (from peer {peer})" if peer else error.message
        log.error("the hub's log misbehaves: %s: %s; applying from the hub is halted", error.reason, detail)
        row = EvidenceRow(error.reason, detail, (await self.store.trust.log_view()).checkpoint, error.offending)
        await self.store.trust.add_evidence(row, self.clock())
        self._evidence = self._evidence or row

    async def resolve(self, evidence: EvidenceRow) -> None:
        """``evidence`` (and any older) no longer halts applying: the hub showed it recovered (kept all the same)."""
        if evidence.id is not None:
            await self.store.trust.resolve_evidence(evidence.id)
        log.warning("the hub recovered from %s (evidence %s): applying from the hub resumes", evidence.reason,
                    evidence.id)
        self._evidence, self._evidence_read = None, False

    async def accepted_checkpoint(self) -> Checkpoint | None:
        """The last checkpoint of the hub's log this node verified and accepted."""
        signed = logtrust.stored_checkpoint((await self.store.trust.log_view()).checkpoint)
        return signed.checkpoint if signed is not None else None

    async def evidence(self, limit: int = 100) -> list[EvidenceRow]:
        """Evidence of the hub's log misbehaving, newest first (any: applying from the hub is halted)."""
        return await self.store.trust.evidence(limit)

    async def witnessed_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint accepted, with this node's co-signature added (what it vouches for; without
        it while no own key is valid)."""
        signed = logtrust.stored_checkpoint((await self.store.trust.log_view()).checkpoint)
        if signed is None:
            return None
        key = self.keys.signing_key(self.registry.current.registry, self.clock())
        return (signed.with_signature(cosign(signed, key)) if key is not None else signed).to_dict()
