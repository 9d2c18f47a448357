"""The node's decisions: authoring own records, applying envelopes pulled from the hub, the registry.

Authoring validates first and stores nothing on failure; a valid record is signed as the next
envelope of the node's own chain, by the own key the registry says is valid at its ``issued_at``
(node/own_keys.py; none valid: refused), and kept (envelope, record, outbox entry) in one transaction. One
lock serializes every write that touches a chain, so own sequence numbers are gapless and an
envelope pulled from the hub is never judged against a head that is about to move.

Applying follows docs/PROTOCOL.md §5: every envelope from the hub's log is verified against the
registry and the node's chain head for its origin. What fails is quarantined with its reason and
the node carries on with the other origins; a gap or a fork means the hub or the origin misbehaves,
so those origins stay where they are (their later envelopes fail the chain check too) and the
status page raises an alarm. Per record the highest version wins; tombstones are kept.

Every log entry, applied or quarantined, is also a leaf of the node's own Merkle frontier, saved with
the cursor; node/sync/logtrust.py and the sync engine compare it with the hub's signed checkpoints. Once
the node holds evidence that the hub's log misbehaves, it applies nothing more from the hub.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from federation.protocol import jws, merkle
from federation.protocol.checkpoint import Checkpoint, cosign
from federation.protocol.envelope import TYP as ENVELOPE_TYP
from federation.protocol.envelope import Envelope, Payload, format_time, parse_time, sign_envelope
from federation.protocol.errors import InputError, IpdnError, UnknownSchemaError
from federation.protocol.governance import GovernanceError, check_transition
from federation.protocol.keys import SigningKey
from federation.protocol.registry import RegistryError, SignedRegistry, accept_update, parse_registry
from federation.protocol.schemas import SchemaSet, default_schemas
from federation.protocol.verify import ChainHead, verify_envelope
from node.errors import (
    BadQueryError,
    HubError,
    HubProtocolError,
    InvalidRecordError,
    LogHaltedError,
    LogMisbehaviourError,
    NotOwnRecordError,
    RecordDeletedError,
    RecordNotFoundError,
)
from node.own_keys import OwnKeys
from node.store.records import (
    Authorship,
    Changes,
    Counts,
    EvidenceRow,
    LogView,
    NodeStore,
    QuarantineRow,
    StoredRecord,
)
from node.sync import logtrust

log = logging.getLogger("ipdn.node")

# A body field that carries why an event was cancelled, if a record schema defines one (v1 does not).
CANCEL_REASON_FIELD = "cancellation_reason"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class ApplyReport:
    """What one page of the hub's log did to this node."""

    applied: int = 0
    duplicates: int = 0
    quarantined: list[str] = field(default_factory=list)  # reasons


def _encode_cursor(rec: StoredRecord) -> str:
    raw = json.dumps([rec.updated_at.isoformat(), rec.record_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_cursor(token: str) -> tuple[datetime, str]:
    try:
        at, record_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return datetime.fromisoformat(at).astimezone(UTC), str(record_id)
    except (ValueError, TypeError, binascii.Error) as e:
        raise BadQueryError("cursor is not one this node issued") from e


def _halted(evidence: EvidenceRow) -> LogHaltedError:
    return LogHaltedError(f"applying from the hub is halted: {evidence.reason}: {evidence.detail}")


class NodeService:
    def __init__(self, *, store: NodeStore, keys: OwnKeys, member: str, registry: SignedRegistry,
                 registry_path: Path | None = None, schemas: SchemaSet | None = None,
                 clock: Clock = utc_now, key_warn: timedelta = timedelta(days=30)) -> None:
        self.store = store
        self.keys = keys  # the member's keys this node holds; which one signs is theirs to say (node/own_keys.py)
        self.member = member
        self.registry = registry
        self.registry_path = registry_path  # where a newer registry is kept, so a restart cannot roll back
        self.registry_alarm: dict[str, str] | None = None
        self.schemas = schemas or default_schemas()
        self.clock = clock
        self.key_warn = key_warn  # warn this long before the current key ends without a successor
        # Fetches the hub's registry (set by the sync engine): tried once when no own key is valid.
        self.refresh_registry: Callable[[], Awaitable[object]] | None = None
        self.outbox_changed = asyncio.Event()  # set when the outbox has something new to push
        self._write = asyncio.Lock()
        # Evidence is only ever added, and only by record_misbehaviour: read once, then latched here.
        self._evidence: EvidenceRow | None = None
        self._evidence_read = False
        # The log cursor moves only in apply_log: read once, then kept here (None: read it again). Each page
        # is still judged against the stored frontier, so a cursor moved elsewhere fails that page, not more.
        self._cursor: int | None = None
        self._applies = 0  # apply attempts: a cursor read that overlapped one is not kept

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the write lock: nothing is authored or applied meanwhile (a key rotation in flight)."""
        async with self._write:
            yield

    async def signing_key(self, when: datetime) -> SigningKey:
        """The own key valid at ``when`` by the registry (node/own_keys.py). If there is none, the registry is
        fetched once first: the hub may have published a rotation this node has not seen yet.

        Raises:
            KeyNotValidError: still none (signing would only make what the hub and members refuse).
        """
        key = self.keys.signing_key(self.registry.registry, when)
        if key is None and self.refresh_registry is not None:
            with contextlib.suppress(HubError, RegistryError):  # the registry alarm says why, if it matters
                await self.refresh_registry()
        return key or self.keys.require_signing_key(self.registry.registry, when)

    # -- authoring ------------------------------------------------------------------------------------

    async def create(self, kind: str, body: Any, by: Authorship | None = None) -> Envelope:
        """Publish a new record of ``kind`` (``by``: who, through the authoring pages or an import).

        Raises:
            UnknownSchemaError: no schema for ``kind``.
            InvalidRecordError: the body fails its schema (nothing is stored).
        """
        if kind not in self.schemas.latest:  # a kind name; the service pins its newest schema
            raise UnknownSchemaError(f"no record kind {kind!r} (known: {', '.join(sorted(self.schemas.latest))})")
        self._validate(kind, body)
        async with self._write:
            return await self._publish(f"{self.member}:{uuid.uuid4().hex}", kind, 1, body, by)

    async def update(self, record_id: str, body: Any, by: Authorship | None = None) -> Envelope:
        """Publish a new version of an own record (an update of a tombstone restores the record).

        Raises:
            NotOwnRecordError, RecordNotFoundError, InvalidRecordError.
        """
        async with self._write:
            current = await self._own(record_id)
            self._validate(current.kind, body)
            return await self._publish(record_id, current.kind, current.version + 1, body, by)

    async def cancel(self, record_id: str, reason: str | None = None, by: Authorship | None = None) -> Envelope:
        """Cancel an own record: a new version with status ``cancelled`` (not a deletion).

        Raises:
            NotOwnRecordError, RecordNotFoundError, RecordDeletedError, InvalidRecordError.
        """
        async with self._write:
            current = await self._own(record_id)
            if current.body is None:
                raise RecordDeletedError(f"{record_id} is deleted; publish an update to restore it first")
            if current.status == "cancelled":
                return Envelope.from_bytes(current.envelope)
            body = {**current.body, "status": "cancelled"}
            schema = self.schemas.documents[self.schemas.schema_id(current.kind)]
            if reason and CANCEL_REASON_FIELD in schema.get("properties", {}):
                body[CANCEL_REASON_FIELD] = reason
            elif reason:
                log.info("cancelled %s (%s has no field for the reason): %s", record_id, current.kind, reason)
            self._validate(current.kind, body)
            return await self._publish(record_id, current.kind, current.version + 1, body, by)

    async def delete(self, record_id: str, by: Authorship | None = None) -> Envelope:
        """Delete an own record: a signed tombstone, kept forever (deleting twice returns the same one).

        Raises:
            NotOwnRecordError, RecordNotFoundError.
        """
        async with self._write:
            current = await self._own(record_id)
            if current.op == "delete":
                return Envelope.from_bytes(current.envelope)
            return await self._publish(record_id, current.kind, current.version + 1, None, by)

    def _validate(self, kind: str, body: Any) -> None:
        issues = self.schemas.validate(kind, body)
        if issues:
            first = issues[0]
            raise InvalidRecordError(f"{len(issues)} issue(s); first at {first.pointer or '/'}: {first.message}",
                                     issues)

    async def _own(self, record_id: str) -> StoredRecord:
        if record_id.partition(":")[0] != self.member:
            raise NotOwnRecordError(f"{record_id} is not a record of {self.member}; only its origin can change it")
        current = await self.store.get_record(record_id)
        if current is None:
            raise RecordNotFoundError(f"no record {record_id}")
        return current

    async def _publish(self, record_id: str, kind: str, version: int, body: dict[str, Any] | None,
                       by: Authorship | None = None) -> Envelope:
        """Sign the next envelope of the own chain and keep it; the caller holds the write lock."""
        head = (await self.store.heads([self.member])).get(self.member)
        now = self.clock()
        issued_at = format_time(now)
        # The key valid at issued_at exactly as written (milliseconds), which is what verifiers check.
        key = await self.signing_key(parse_time(issued_at))
        env = sign_envelope(key, Payload(
            origin=self.member, seq=head.seq + 1 if head else 1, prev=head.hash if head else None,
            record_id=record_id, version=version, kind=kind, schema=self.schemas.schema_id(kind),
            op="put" if body is not None else "delete", issued_at=issued_at, body=body))
        limit = self.registry.registry.policies.max_envelope_bytes
        if len(env.to_bytes()) > limit:  # the hub and every member would refuse it
            raise InputError(f"the signed envelope would exceed {limit} bytes", reason="too-large")
        await self.store.author(env, now, by)
        self.outbox_changed.set()
        return env

    async def retry_rejected(self) -> int:
        """Queue rejected own envelopes again (the operator fixed the cause); how many."""
        n = await self.store.retry_rejected()
        self.outbox_changed.set()
        return n

    # -- reading --------------------------------------------------------------------------------------

    async def get(self, record_id: str) -> StoredRecord:
        """Raises RecordNotFoundError."""
        rec = await self.store.get_record(record_id)
        if rec is None:
            raise RecordNotFoundError(f"no record {record_id}")
        return rec

    async def list_records(self, *, kind: str | None = None, origin: str | None = None,
                           updated_since: datetime | None = None, cursor: str | None = None,
                           country: str | None = None, date_from: date | None = None, date_to: date | None = None,
                           lang: str | None = None, status: str | None = None, tag: str | None = None,
                           q: str | None = None, limit: int) -> tuple[list[StoredRecord], str | None]:
        """One page in (updated_at, record_id) order, and the cursor of the next page (None: no more).

        Filters combine: ``country`` (participating, venue or eligible country), ``date_from``/``date_to``
        (the record's local days overlap them), ``lang`` (a language of the title), ``status``, ``tag``
        (case-insensitive), ``q`` (every word in a title or description, any language).

        The cursor is the key of the last item, so it never expires; a record updated meanwhile moves
        to the end and is seen again.

        Raises:
            BadQueryError: the cursor was not issued by this node.
        """
        after = _decode_cursor(cursor) if cursor else None
        items = await self.store.list_records(
            kind=kind, origin=origin, updated_since=updated_since, after=after, country=country,
            date_from=date_from.isoformat() if date_from else None, date_to=date_to.isoformat() if date_to else None,
            lang=lang, status=status, tag=tag, q=q, limit=limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return items, _encode_cursor(items[-1]) if more else None

    # -- applying the hub's log -----------------------------------------------------------------------

    def signed_by_unknown_keys(self, entries: Sequence[tuple[int, Any]]) -> bool:
        """Whether an entry names a key the current registry lacks (a new member or a rotated key:
        the caller should fetch the registry before applying, or the envelope would be refused)."""
        keys = self.registry.registry.member_keys()
        for _, obj in entries:
            try:
                if jws.parse(obj, ENVELOPE_TYP).kid not in keys:
                    return True
            except IpdnError:
                continue  # malformed: refused when applied, whatever the registry says
        return False

    async def apply_log(self, after: int, entries: Sequence[tuple[int, Any]]) -> ApplyReport:
        """Apply log entries (position, envelope JWS object) that follow position ``after``.

        Everything the page changes, the new cursor included, is written in one transaction: a crash
        loses nothing and applies nothing twice.

        Raises:
            HubProtocolError: the positions do not continue the log without a gap (nothing applied).
            LogMisbehaviourError: an entry is no JWS, so no leaf of the log (nothing applied).
            LogHaltedError: the node holds evidence against the hub's log (nothing applied).
        """
        positions = [p for p, _ in entries]
        if positions != list(range(after + 1, after + 1 + len(entries))):
            raise HubProtocolError(f"log entries after {after} are not consecutive: {positions[:5]}...")
        report = ApplyReport()
        if not entries:
            return report
        parsed: list[tuple[int, Envelope | IpdnError, Any]] = []
        for position, obj in entries:
            try:
                parsed.append((position, Envelope.from_dict(obj), obj))
            except IpdnError as e:
                parsed.append((position, e, obj))
        envs = [e for _, e, _ in parsed if isinstance(e, Envelope)]
        async with self._write:
            await self.ensure_applying()  # evidence found while the page was on its way stops it too
            basis = await self.store.apply_basis([(e.payload.origin, e.payload.seq) for e in envs],
                                                 [e.payload.record_id for e in envs])
            frontier = basis.view.frontier
            if frontier is None:  # a database from before 0002: rebuilt once
                frontier = (await self.log_view()).frontier
            if frontier is None or frontier.size != after:
                self._cursor = None
                raise RuntimeError(f"entries after {after} do not follow the stored cursor")
            for position, obj in entries:  # every entry is a leaf, quarantined or not
                frontier.append(logtrust.entry_leaf(position, obj))
            held, heads, versions = basis.held, basis.heads, basis.versions
            changes = Changes(cursor=positions[-1], frontier=frontier)
            for position, env, obj in parsed:
                if isinstance(env, IpdnError):
                    self._quarantine(changes, report, QuarantineRow(
                        env.reason, env.message, json.dumps(obj, ensure_ascii=False).encode(), position=position))
                    continue
                self._apply_one(env, position, held, heads, versions, changes, report)
            self._cursor, self._applies = None, self._applies + 1  # unknown until the write is done (or failed)
            await self.store.apply(changes, self.clock())
            self._cursor = changes.cursor
        return report

    def _apply_one(self, env: Envelope, position: int, held: dict[tuple[str, int], str],
                   heads: dict[str, ChainHead], versions: dict[str, tuple[int, str]], changes: Changes,
                   report: ApplyReport) -> None:
        p = env.payload
        if held.get((p.origin, p.seq)) == env.hash:
            # Already held (our own envelope coming back, or a page seen before): note where it is.
            if p.origin == self.member:
                changes.own_positions.append((p.seq, position))
            report.duplicates += 1
            return
        reg = self.registry.registry
        result = verify_envelope(env, keys=reg.member_keys().get, schemas=self.schemas, now=self.clock(),
                                 chain_head=heads.get(p.origin), check_chain_head=True,
                                 max_future_skew=timedelta(seconds=reg.policies.clock_skew_seconds))
        if not result.ok:
            # A chain reason only when the envelope is otherwise sound: a forged one is no evidence.
            first = next((f for f in result.failures if f.check != "chain"), result.failures[0])
            reason = "chain-fork" if first.reason == "chain-stale" else first.reason  # stale, other hash: fork
            detail = "; ".join(f"{f.check}: {f.message}" for f in result.failures)
            if first.reason == "chain-stale":
                detail += f" (this node holds {held.get((p.origin, p.seq))} at seq {p.seq}, the log has {env.hash})"
            self._quarantine(changes, report, QuarantineRow(reason, detail, env.to_bytes(), p.origin, p.seq,
                                                            env.hash, position))
            return
        changes.envelopes.append((env, position))
        held[(p.origin, p.seq)] = env.hash
        heads[p.origin] = ChainHead(p.seq, env.hash)
        report.applied += 1
        current = versions.get(p.record_id)
        if current is None or p.version > current[0]:
            versions[p.record_id] = (p.version, env.hash)
            changes.records[p.record_id] = env
            changes.events.append(env)  # each version that becomes current is an event (webhooks)
        elif p.version == current[0] and env.hash != current[1]:
            # Two envelopes for one record version: evidence of misbehaviour, kept and not applied (§3.4).
            self._quarantine(changes, report, QuarantineRow(
                "version-conflict", f"{p.record_id} v{p.version} is held with hash {current[1]}",
                env.to_bytes(), p.origin, p.seq, env.hash, position))
        # A lower version stays in the chain but cannot replace a newer one.

    @staticmethod
    def _quarantine(changes: Changes, report: ApplyReport, row: QuarantineRow) -> None:
        log.warning("quarantined log position %s (%s seq %s): %s: %s", row.position, row.origin, row.seq,
                    row.reason, row.detail)
        changes.quarantine.append(row)
        report.quarantined.append(row.reason)

    # -- the hub's log, checked against the math ------------------------------------------------------

    async def log_view(self) -> LogView:
        """The cursor, the frontier over every entry up to it, and the last checkpoint accepted.

        A database from before the frontier was kept (revision 0001) gets it rebuilt once from the
        envelopes and quarantine it holds by log position.

        Raises:
            LogMisbehaviourError: ``frontier-incomplete``: the held envelopes do not cover positions 1..cursor.
        """
        view = await self.store.log_view()
        if view.frontier is not None:
            return view
        frontier = merkle.Frontier()
        rows = await self.store.logged_envelopes(view.cursor) if view.cursor else []
        if [p for p, _ in rows] != list(range(1, view.cursor + 1)):
            raise LogMisbehaviourError(f"the entries held do not cover log positions 1..{view.cursor}: the frontier "
                                       "cannot be rebuilt", reason="frontier-incomplete")
        for position, data in rows:
            frontier.append(logtrust.entry_leaf(position, json.loads(data)))
        await self.store.save_frontier(view.cursor, frontier)
        return LogView(view.cursor, frontier, view.checkpoint)

    async def ensure_applying(self) -> None:
        """Raises LogHaltedError if the node holds evidence against the hub's log."""
        if not self._evidence_read:
            held = await self.store.evidence(1)
            self._evidence, self._evidence_read = self._evidence or (held[0] if held else None), True
        if self._evidence is not None:
            raise _halted(self._evidence)

    async def record_misbehaviour(self, error: LogMisbehaviourError, *, peer: str | None = None) -> None:
        """Keep the evidence (the last checkpoint accepted and the offending document): the node applies
        nothing more from the hub until an operator acts."""
        detail = f"{error.message} (from peer {peer})" if peer else error.message
        log.error("the hub's log misbehaves: %s: %s; applying from the hub is halted", error.reason, detail)
        row = EvidenceRow(error.reason, detail, (await self.store.log_view()).checkpoint, error.offending)
        await self.store.add_evidence(row, self.clock())
        self._evidence = self._evidence or row

    async def accepted_checkpoint(self) -> Checkpoint | None:
        """The last checkpoint of the hub's log this node verified and accepted."""
        signed = logtrust.stored_checkpoint((await self.store.log_view()).checkpoint)
        return signed.checkpoint if signed is not None else None

    async def evidence(self, limit: int = 100) -> list[EvidenceRow]:
        """Evidence of the hub's log misbehaving, newest first (any: applying from the hub is halted)."""
        return await self.store.evidence(limit)

    async def witnessed_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint accepted, with this node's co-signature added (what it vouches for; without
        it while no own key is valid)."""
        signed = logtrust.stored_checkpoint((await self.store.log_view()).checkpoint)
        if signed is None:
            return None
        key = self.keys.signing_key(self.registry.registry, self.clock())
        return (signed.with_signature(cosign(signed, key)) if key is not None else signed).to_dict()

    # -- the registry ---------------------------------------------------------------------------------

    def accept_registry(self, data: bytes) -> bool:
        """Move to a registry fetched from the hub if it is a valid successor; True if it is newer.

        A refused one (rollback, freeze, untrusted signer) leaves the current registry in place and
        raises an alarm on the status page.

        Raises:
            RegistryError: the document is not a valid successor of the current registry.
        """
        try:
            new = accept_update(self.registry, parse_registry(data), self.clock())
            if new is not self.registry:
                # Only one justified step at a time (PROTOCOL.md §12): the members' signed decisions,
                # recomputed here, must give exactly this registry.
                check_transition(self.registry, new)
        except (RegistryError, GovernanceError) as e:
            self.registry_alarm = {"reason": e.reason, "detail": e.message}
            raise RegistryError(e.message, reason=e.reason) from e
        self.registry_alarm = None
        if new is self.registry:
            return False
        if self.registry_path is not None:
            tmp = self.registry_path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, self.registry_path)
        log.info("registry version %s accepted", new.registry.version)
        self.registry = new
        return True

    # -- status ---------------------------------------------------------------------------------------

    async def counts(self) -> Counts:
        return await self.store.counts()

    async def cursor(self) -> int:
        """The position of the last log entry applied (0: none yet); on the path of every pull."""
        if self._cursor is not None:
            return self._cursor
        applies = self._applies
        cursor = await self.store.cursor()
        if applies == self._applies and not self._write.locked():
            self._cursor = cursor
        return cursor

    async def alarms(self) -> list[dict[str, str]]:
        """What an operator must look at: refused registries, own keys, rejected own envelopes, quarantine."""
        out: list[dict[str, str]] = []
        if self.registry_alarm:
            out.append(self.registry_alarm)
        out += self.keys.alarms(self.registry.registry, self.clock(), self.key_warn)
        if self.registry.registry.expired(self.clock()):
            out.append({"reason": "registry-expired",
                        "detail": f"registry version {self.registry.registry.version} has expired"})
        for row in await self.store.outbox("rejected", 10):
            out.append({"reason": row.reason or "rejected",
                        "detail": f"the hub rejected own envelope seq {row.seq}: {row.detail}; pushing is "
                                  "stopped until an operator retries (POST /api/v1/outbox/retry)"})
        for held in await self.store.evidence(10):
            out.append({"reason": held.reason, "detail": f"{held.detail}; evidence {held.id} kept, applying from "
                                                         "the hub is halted"})
        for reason, n in sorted((await self.store.quarantine_counts()).items()):
            out.append({"reason": reason, "detail": f"{n} envelope(s) from the hub's log quarantined"})
        return out

