"""The node's own records: authoring them, and reading what it holds.

Authoring validates first and stores nothing on failure; a valid record is signed as the next
envelope of the node's own chain, by the own key the registry says is valid at its ``issued_at``
(node/own_keys.py; none valid: refused), and kept (envelope, record, outbox entry) in one transaction. One
lock serializes every write that touches a chain, so own sequence numbers are gapless and an
envelope pulled from the hub is never judged against a head that is about to move.

The service holds the node's other parts, sharing that lock, its clock and the registry it follows:
``applier`` applies the hub's log (node/records/apply.py), ``trust`` keeps the node's view of that log and
the evidence against it (node/sync/trust.py), ``registry_follower`` the registry and its acceptance
(node/sync/registry.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from federation.protocol.envelope import Envelope, Payload, format_time, parse_time, sign_envelope
from federation.protocol.errors import InputError, UnknownSchemaError
from federation.protocol.keys import SigningKey
from federation.protocol.registry import RegistryError, SignedRegistry
from federation.protocol.schemas import SchemaSet, default_schemas
from federation.server.times import Clock, utcnow
from node.errors import (
    BadQueryError,
    HubError,
    InvalidRecordError,
    NotOwnRecordError,
    RecordDeletedError,
    RecordNotFoundError,
    found,
)
from node.own_keys import OwnKeys
from node.records.apply import LogApplier
from node.store.records import Counts, NodeStore, RecordVersion, StoredRecord
from node.store.staff import Authorship
from node.sync.registry import RegistryFollower
from node.sync.trust import LogTrust

log = logging.getLogger("ipdn.node")

# The body field that says why an event was cancelled or postponed, in languages (cultural-event/v2; v1 has none).
REASON_FIELD = "status_reason"
REASON_CHARS = 500  # the schema's one line (common/v1 shortText)
REASON_STATUSES = frozenset({"cancelled", "postponed", "rescheduled", "moved-online"})  # those v2 gives a reason
EVENT_V1 = "https://schemas.ipdn.network/cultural-event/v1"  # what a node writes with status_reasons off


def schemas_written(status_reasons: bool) -> SchemaSet:
    """The schema set a node works with: every version verified; cultural-event written up to v2 only when
    ``status_reasons`` is on (NodeConfig.status_reasons, docs/adr/0031), else up to v1, as the previous release."""
    schemas = default_schemas()
    return schemas if status_reasons else schemas.capped({"cultural-event": EVENT_V1})


def reason_text(reason: str) -> str:
    """A reason typed by a person as the schema's one line: whitespace runs (line breaks) as one space, cut."""
    return " ".join(reason.split())[:REASON_CHARS].rstrip()





def _encode_cursor(rec: StoredRecord) -> str:
    return _encode_key(rec.updated_at, rec.record_id)


def _encode_key(updated_at: datetime, record_id: str) -> str:
    raw = json.dumps([updated_at.isoformat(), record_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_cursor(token: str) -> tuple[datetime, str]:
    try:
        at, record_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return datetime.fromisoformat(at).astimezone(UTC), str(record_id)
    except (ValueError, TypeError, binascii.Error) as e:
        raise BadQueryError("cursor is not one this node issued") from e


def _day_of(rec: StoredRecord) -> str:
    body = rec.body or {}
    return str(body.get("start") or body.get("start_date") or "")[:10]


def _instant(rec: StoredRecord) -> datetime:
    try:
        when = datetime.fromisoformat(str((rec.body or {}).get("start") or ""))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class NodeService:
    def __init__(self, *, store: NodeStore, keys: OwnKeys, member: str, registry: SignedRegistry,
                 registry_path: Path | None = None, schemas: SchemaSet | None = None,
                 clock: Clock = utcnow, key_warn: timedelta = timedelta(days=30)) -> None:
        self.store = store
        self.keys = keys  # the member's keys this node holds; which one signs is theirs to say (node/own_keys.py)
        self.member = member
        self.schemas = schemas or default_schemas()
        self.clock = clock
        self.key_warn = key_warn  # warn this long before the current key ends without a successor
        # Fetches the hub's registry (set by the sync engine): tried once when no own key is valid.
        self.refresh_registry: Callable[[], Awaitable[object]] | None = None
        self.outbox_changed = asyncio.Event()  # set when the outbox has something new to push
        self._write = asyncio.Lock()
        # The parts read the clock through the service at each call: a test may set another clock.
        self.registry_follower = RegistryFollower(registry, registry_path, self._now)
        self.trust = LogTrust(store, keys, self.registry_follower, self._now)
        self.applier = LogApplier(store=store, member=member, registry=self.registry_follower, schemas=self.schemas,
                                  trust=self.trust, clock=self._now, lock=self._write)

    def _now(self) -> datetime:
        return self.clock()

    @property
    def registry(self) -> SignedRegistry:
        """The current registry (node/sync/registry.py moves it forward)."""
        return self.registry_follower.current

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

    async def cancel(self, record_id: str, reason: str | None = None, by: Authorship | None = None,
                     lang: str = "en") -> Envelope:
        """Cancel an own record: a new version with status ``cancelled`` (not a deletion). ``reason``, in ``lang``,
        goes into ``status_reason`` when the schema written holds one (cultural-event/v2, ADR 0031); else it is only
        logged (and kept in the staff history by ``by``). A reason given for an earlier status is dropped.

        Raises:
            NotOwnRecordError, RecordNotFoundError, RecordDeletedError, InvalidRecordError.
        """
        async with self._write:
            current = await self._own(record_id)
            if current.body is None:
                raise RecordDeletedError(f"{record_id} is deleted; publish an update to restore it first")
            if current.status == "cancelled":
                return Envelope.from_bytes(current.envelope)
            body = {k: v for k, v in current.body.items() if k != REASON_FIELD} | {"status": "cancelled"}
            schema = self.schemas.documents[self.schemas.schema_id(current.kind)]
            text = reason_text(reason or "")
            if text and REASON_FIELD in schema.get("properties", {}):
                body[REASON_FIELD] = {lang: text}
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
        return await self.get(record_id)

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
            record_id=record_id, version=version, kind=kind, schema=self.schemas.pin(kind, body),
            op="put" if body is not None else "delete", issued_at=issued_at, body=body))
        limit = self.registry.registry.policies.max_envelope_bytes
        if len(env.to_bytes()) > limit:  # the hub and every member would refuse it
            raise InputError(f"the signed envelope would exceed {limit} bytes", reason="too-large")
        await self.store.author(env, now, by)
        self.outbox_changed.set()
        return env

    async def retry_rejected(self) -> int:
        """Queue rejected own envelopes again (the operator fixed the cause); how many."""
        n = await self.store.outbox.retry_rejected()
        self.outbox_changed.set()
        return n

    # -- reading --------------------------------------------------------------------------------------

    async def get(self, record_id: str) -> StoredRecord:
        """Raises RecordNotFoundError."""
        return found(await self.store.get_record(record_id), RecordNotFoundError(f"no record {record_id}"))

    async def list_records(self, *, kind: str | None = None, origin: str | None = None,
                           updated_since: datetime | None = None, cursor: str | None = None,
                           country: str | None = None, date_from: date | None = None, date_to: date | None = None,
                           lang: str | None = None, status: str | None = None, tag: str | None = None,
                           q: str | None = None, type_: str | None = None, audience: str | None = None,
                           limit: int) -> tuple[list[StoredRecord], str | None]:
        """One page in (updated_at, record_id) order, and the cursor of the next page (None: no more).

        Filters combine: ``country`` (participating, venue or eligible country), ``date_from``/``date_to``
        (the record's local days overlap them: a recurring event's, from the first occurrence to the last), ``lang``
        (a language of the title), ``status``, ``tag`` (case-insensitive), ``q`` (every word in a title or
        description, any language), ``type_`` (event_type or programme_type), ``audience`` (one of the audiences).

        The cursor is the key of the last item, so it never expires; a record updated meanwhile moves
        to the end and is seen again.

        Raises:
            BadQueryError: the cursor was not issued by this node.
        """
        after = _decode_cursor(cursor) if cursor else None
        items = await self.store.list_records(
            kind=kind, origin=origin, updated_since=updated_since, after=after, country=country,
            date_from=date_from.isoformat() if date_from else None, date_to=date_to.isoformat() if date_to else None,
            lang=lang, status=status, tag=tag, q=q, type_=type_, audience=audience, limit=limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return items, _encode_cursor(items[-1]) if more else None

    async def upcoming(self, kind: str, limit: int, origin: str | None = None) -> list[StoredRecord]:
        """Records of ``kind`` not over by today (UTC), soonest first (the portal's home and member pages)."""
        today = self._now().date().isoformat()
        found = await self.store.upcoming(kind=kind, today=today, limit=limit, origin=origin)
        # The store orders by local day; within a day, by the instant each starts (what the body states).
        return sorted(found, key=lambda r: (_day_of(r), _instant(r)))

    async def versions(self, record_id: str) -> list[RecordVersion]:
        """Every version held of a record, oldest first, with its place in the hub's log."""
        return await self.store.versions(record_id)

    @staticmethod
    def cursor_of(record: StoredRecord) -> str:
        """The cursor that continues a listing after ``record`` (the record stream's event ids)."""
        return _encode_cursor(record)

    async def latest_cursor(self) -> str | None:
        """The cursor after the record listed last (None: no record held): where a record stream starts "now"."""
        key = await self.store.last_key()
        return _encode_key(*key) if key is not None else None

    # -- status ---------------------------------------------------------------------------------------

    async def counts(self) -> Counts:
        return await self.store.counts()

    async def alarms(self) -> list[dict[str, str]]:
        """What an operator must look at: refused registries, own keys, rejected own envelopes, quarantine."""
        out: list[dict[str, str]] = []
        if self.registry_follower.alarm:
            out.append(self.registry_follower.alarm)
        out += self.keys.alarms(self.registry.registry, self.clock(), self.key_warn)
        if self.registry.registry.expired(self.clock()):
            out.append({"reason": "registry-expired",
                        "detail": f"registry version {self.registry.registry.version} has expired"})
        for row in await self.store.outbox.entries("rejected", 10):
            out.append({"reason": row.reason or "rejected",
                        "detail": f"the hub rejected own envelope seq {row.seq}: {row.detail}; pushing is "
                                  "stopped until an operator retries (POST /api/v1/outbox/retry)"})
        for held in await self.store.trust.evidence(10):
            out.append({"reason": held.reason, "detail": f"{held.detail}; evidence {held.id} kept, applying from "
                                                         "the hub is halted"})
        for reason, n in sorted((await self.store.quarantine_counts()).items()):
            out.append({"reason": reason, "detail": f"{n} envelope(s) from the hub's log quarantined"})
        for reason, n in sorted((await self.store.marked_counts()).items()):  # ADR 19
            out.append({"reason": reason, "detail": f"{n} envelope(s) held were signed by a key whose end, published "
                                                    "after the hub logged them, lies before them: kept, not verified"})
        return out

