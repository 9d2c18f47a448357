"""Applying the hub's log (docs/PROTOCOL.md §5): every envelope pulled is verified against the registry and
the node's chain head for its origin.

What fails is quarantined with its reason and the node carries on with the other origins; a gap or a fork
means the hub or the origin misbehaves, so those origins stay where they are (their later envelopes fail the
chain check too) and the status page raises an alarm. Per record the highest version wins; tombstones are kept.

Every log entry, applied or quarantined, is also a leaf of the node's own Merkle frontier, saved with the
cursor; node/sync/trust.py and the sync engine compare it with the hub's signed checkpoints. Once the node
holds evidence that the hub's log misbehaves, it applies nothing more from the hub.

Each entry's key is also judged at the hub's receipt time the log serves (PROTOCOL.md §5 step 2, §10; ADR 19):
an entry signed by a key that had ended before the hub logged it is quarantined (``key-not-valid-at-receipt``),
one whose key's end was published only after the hub logged it is applied but marked
(``key-revoked-after-the-fact``); an end that arrives with a later registry re-judges what is held
(:meth:`LogApplier.rejudge`). Receipt times must not go back along the log by more than the skew nor lie in the
future: otherwise the page is refused (``receipt-time-invalid``) and nothing is applied.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from federation.protocol import merkle
from federation.protocol.envelope import Envelope
from federation.protocol.schemas import SchemaSet
from federation.protocol.verify import REVOKED_AFTER_REASON, ChainHead, Failure, check_chain, judge_logged_key
from node.errors import HubProtocolError
from node.store.records import Changes, NodeStore, QuarantineRow
from node.sync import logtrust
from node.sync.registry import RegistryFollower
from node.sync.trust import LogTrust
from node.sync.verifier import CheckedPage, check_entries, envelope_of, header_of

log = logging.getLogger("ipdn.node")


@dataclass(slots=True)
class ApplyReport:
    """What one page of the hub's log did to this node."""

    applied: int = 0
    duplicates: int = 0
    quarantined: list[str] = field(default_factory=list)  # reasons
    marked: int = 0  # applied, but signed by a key revoked after the fact
    frontier: merkle.Frontier | None = None  # the node's frontier after the page (the sync engine checks its root)


class LogApplier:
    def __init__(self, *, store: NodeStore, member: str, registry: RegistryFollower, schemas: SchemaSet,
                 trust: LogTrust, clock: Callable[[], datetime], lock: asyncio.Lock) -> None:
        self.store = store
        self.member = member
        self.registry = registry
        self.schemas = schemas
        self.trust = trust
        self.clock = clock
        # The service's write lock: an envelope pulled from the hub is never judged against a head that
        # authoring is about to move.
        self._write = lock
        # The log cursor moves only in apply_log: read once, then kept here (None: read it again). Each page
        # is still judged against the stored frontier, so a cursor moved elsewhere fails that page, not more.
        self._cursor: int | None = None
        self._applies = 0  # apply attempts: a cursor read that overlapped one is not kept

    async def cursor(self) -> int:
        """The position of the last log entry applied (0: none yet); on the path of every pull."""
        if self._cursor is not None:
            return self._cursor
        applies = self._applies
        cursor = await self.store.trust.cursor()
        if applies == self._applies and not self._write.locked():
            self._cursor = cursor
        return cursor

    def signed_by_unknown_keys(self, entries: Sequence[tuple[int, Any]]) -> bool:
        """Whether an entry names a key the current registry lacks (a new member or a rotated key:
        the caller should fetch the registry before applying, or the envelope would be refused)."""
        keys = self.registry.current.registry.member_keys()
        for _, obj in entries:
            protected = obj.get("protected") if isinstance(obj, dict) else None
            header = header_of(protected) if isinstance(protected, str) else None
            if header is not None and isinstance(header.get("kid"), str) and header["kid"] not in keys:
                return True  # (malformed: refused when applied, whatever the registry says)
        return False

    async def apply_log(self, after: int, entries: Sequence[tuple[int, Any]],
                        received: Sequence[datetime] | None = None, checked: CheckedPage | None = None) -> ApplyReport:
        """Apply log entries (position, envelope JWS object) that follow position ``after``, received by the hub at
        the times ``received`` (one per entry, as the log serves them; None: not judged at receipt).

        ``checked``: the entries' verdicts made beforehand (node/sync/verifier.py, in worker processes while the
        page before was applied); made here, in-process, when absent or made under another registry. The chain,
        the receipt-time window and the versions are judged here either way, in order.

        Everything the page changes, the new cursor included, is written in one transaction: a crash
        loses nothing and applies nothing twice.

        Raises:
            HubProtocolError: the positions do not continue the log without a gap, or (``receipt-time-invalid``)
                a receipt time goes back along the log or lies in the future (nothing applied).
            LogMisbehaviourError: an entry is no JWS, so no leaf of the log (nothing applied).
            LogHaltedError: the node holds evidence against the hub's log (nothing applied).
        """
        positions = [p for p, _ in entries]
        if positions != list(range(after + 1, after + 1 + len(entries))):
            raise HubProtocolError(f"log entries after {after} are not consecutive: {positions[:5]}...")
        report = ApplyReport()
        if not entries:
            return report
        objs = [obj for _, obj in entries]
        if checked is None or checked.registry != self.registry.current.hash or len(checked.items) != len(objs):
            checked = self._check(objs)
        parsed = [(position, envelope_of(obj, c.fields) if c.fields is not None else None, obj)
                  for (position, obj), c in zip(entries, checked.items, strict=True)]
        envs = [e for _, e, _ in parsed if e is not None]
        async with self._write:
            await self.trust.ensure_applying()  # evidence found while the page was on its way stops it too
            if checked.registry != self.registry.current.hash:  # the registry moved while waiting for the lock
                checked = self._check(objs)
            basis = await self.store.apply_basis([(e.payload.origin, e.payload.seq) for e in envs],
                                                 [e.payload.record_id for e in envs])
            frontier = basis.view.frontier
            if frontier is None:  # a database from before 0002: rebuilt once
                frontier = (await self.trust.log_view()).frontier
            if frontier is None or frontier.size != after:
                self._cursor = None
                raise RuntimeError(f"entries after {after} do not follow the stored cursor")
            if received is not None:
                self._check_receipts(after, received, basis.view.received_at)
            for (position, obj), c in zip(entries, checked.items, strict=True):  # each entry a leaf, quarantined or not
                frontier.append(c.leaf if c.leaf is not None else logtrust.entry_leaf(position, obj))
            held, heads, versions = basis.held, basis.heads, basis.versions
            changes = Changes(cursor=positions[-1], frontier=frontier,
                              logged_at=dict(zip(positions, received, strict=True)) if received is not None else {})
            for (position, env, obj), c in zip(parsed, checked.items, strict=True):
                if env is None:
                    intake = c.failures[0]
                    self._quarantine(changes, report, QuarantineRow(
                        intake.reason, intake.message, json.dumps(obj, ensure_ascii=False).encode(), position=position))
                    continue
                if self._apply_one(env, position, held, heads, versions, changes, report, list(c.failures),
                                   changes.logged_at.get(position)) and c.derived is not None:
                    changes.derived[env.hash] = c.derived
            self._cursor, self._applies = None, self._applies + 1  # unknown until the write is done (or failed)
            await self.store.apply(changes, self.clock())
            self._cursor, report.frontier = changes.cursor, frontier
        return report

    def _check(self, objs: Sequence[Any]) -> CheckedPage:
        """The verdicts of a page made here, in-process (the reference path; node/sync/verifier.py)."""
        now, reg = self.clock(), self.registry.current
        return CheckedPage(reg.hash, now, check_entries(reg, self.schemas, objs, now))

    def _apply_one(self, env: Envelope, position: int, held: dict[tuple[str, int], str],
                   heads: dict[str, ChainHead], versions: dict[str, tuple[int, str]], changes: Changes,
                   report: ApplyReport, failures: list[Failure], logged_at: datetime | None = None) -> bool:
        """Judge one parsed envelope, given its verdict but for the chain and the receipt time (``failures``, as
        :func:`~node.sync.verifier.check_entries` made it); True if it becomes a record's current version."""
        p = env.payload
        if held.get((p.origin, p.seq)) == env.hash:
            # Already held (our own envelope coming back, or a page seen before): note where it is.
            if p.origin == self.member:
                changes.own_positions.append((p.seq, position))
            report.duplicates += 1
            return False
        skew = timedelta(seconds=self.registry.current.registry.policies.clock_skew_seconds)
        if (chain := check_chain(env, heads.get(p.origin))) is not None:
            failures.append(chain)
        mark = self._judge_receipt(env, logged_at, skew, failures)
        if failures:
            # A chain reason only when the envelope is otherwise sound: a forged one is no evidence.
            first = next((f for f in failures if f.check != "chain"), failures[0])
            reason = "chain-fork" if first.reason == "chain-stale" else first.reason  # stale, other hash: fork
            detail = "; ".join(f"{f.check}: {f.message}" for f in failures)
            if first.reason == "chain-stale":
                detail += f" (this node holds {held.get((p.origin, p.seq))} at seq {p.seq}, the log has {env.hash})"
            self._quarantine(changes, report, QuarantineRow(reason, detail, env.to_bytes(), p.origin, p.seq,
                                                            env.hash, position))
            return False
        changes.envelopes.append((env, position))
        if mark is not None:
            changes.marks[env.hash] = mark
            report.marked += 1
        held[(p.origin, p.seq)] = env.hash
        heads[p.origin] = ChainHead(p.seq, env.hash)
        report.applied += 1
        current = versions.get(p.record_id)
        if current is None or p.version > current[0]:
            versions[p.record_id] = (p.version, env.hash)
            changes.records[p.record_id] = env
            changes.events.append(env)  # each version that becomes current is an event (webhooks)
            return True
        if p.version == current[0] and env.hash != current[1]:
            # Two envelopes for one record version: evidence of misbehaviour, kept and not applied (§3.4).
            self._quarantine(changes, report, QuarantineRow(
                "version-conflict", f"{p.record_id} v{p.version} is held with hash {current[1]}",
                env.to_bytes(), p.origin, p.seq, env.hash, position))
        return False  # a lower version stays in the chain but cannot replace a newer one

    def _judge_receipt(self, env: Envelope, logged_at: datetime | None, skew: timedelta,
                       failures: list[Failure]) -> str | None:
        """Judge the key's window at the hub's receipt time, editing ``failures`` (which replaces ``key-not-valid``
        with its verdict); the envelope's mark, if it is to be kept but not verified."""
        key = self.registry.current.registry.member_keys().get(env.kid)
        if logged_at is None or key is None or any(f.check == "key" and f.reason != "key-not-valid" for f in failures):
            return None
        verdict = judge_logged_key(key, env.payload.issued, logged_at, skew, self.registry.end_known_at(env.kid))
        failures[:] = [f for f in failures if f.check != "key"]
        if verdict is None:
            return None
        if verdict.reason == REVOKED_AFTER_REASON:
            log.warning("%s seq %s: %s", env.payload.origin, env.payload.seq, verdict.message)
            return verdict.reason
        failures.insert(0, verdict)
        return None

    def _check_receipts(self, after: int, received: Sequence[datetime], last: datetime | None) -> None:
        """The hub's receipt times along the log never go back by more than the skew and never lie in the future.

        Raises:
            HubProtocolError: ``receipt-time-invalid`` (the page is not applied; the pull loop tries again).
        """
        skew = timedelta(seconds=self.registry.current.registry.policies.clock_skew_seconds)
        latest, now = last, self.clock()
        for position, at in enumerate(received, after + 1):
            if at > now + skew:
                raise HubProtocolError(f"the hub says it received log position {position} at {at.isoformat()}, "
                                       f"later than now ({now.isoformat()})", reason="receipt-time-invalid")
            if latest is not None and at < latest - skew:
                raise HubProtocolError(f"the hub says it received log position {position} at {at.isoformat()}, "
                                       f"before an earlier position ({latest.isoformat()})",
                                       reason="receipt-time-invalid")
            latest = at if latest is None else max(latest, at)

    async def rejudge(self) -> int:
        """Re-judge the held envelopes of the keys whose end a newer registry published (``registry.rejudge``):
        those the hub logged after the end are marked ``key-revoked-after-the-fact``. How many were marked."""
        pending = sorted(self.registry.rejudge)
        if not pending:
            return 0
        reg = self.registry.current.registry
        keys = reg.member_keys()
        skew = timedelta(seconds=reg.policies.clock_skew_seconds)
        marked = 0
        for kid in pending:
            key = keys.get(kid)
            if key is None or key.not_after is None or key.member is None:
                continue
            hits = []
            for hash_, data, at in await self.store.logged_since(key.member, key.not_after - 2 * skew):
                env = Envelope.from_bytes(data)
                if env.kid != kid:
                    continue
                verdict = judge_logged_key(key, env.payload.issued, at, skew, self.registry.end_known_at(kid))
                if verdict is not None:  # whatever it says now, the log held the envelope before the end was known
                    hits.append(hash_)
            marked += await self.store.mark(hits, REVOKED_AFTER_REASON)
            if hits:
                log.warning("%d envelope(s) signed by key %s after its end (%s), published later: marked %s",
                            len(hits), kid, key.not_after.isoformat(), REVOKED_AFTER_REASON)
        self.registry.rejudged(pending)
        return marked

    @staticmethod
    def _quarantine(changes: Changes, report: ApplyReport, row: QuarantineRow) -> None:
        log.warning("quarantined log position %s (%s seq %s): %s: %s", row.position, row.origin, row.seq,
                    row.reason, row.detail)
        changes.quarantine.append(row)
        report.quarantined.append(row.reason)
