"""The hub's ingest and log services (between the HTTP handlers and the store).

Ingest checks each envelope exactly as a node would (docs/PROTOCOL.md §5), then hands the verified
ones to a single writer task. The writer classifies each against the per-origin chain heads,
appends the accepted ones and quarantines the rest in ONE transaction with everything else queued
meanwhile (group commit), and only after that commit resolves the waiting requests. So nothing is
acknowledged before it is durable, and re-sending is always safe: an envelope already held is
answered ``duplicate`` with its original position.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from federation import strictjson
from federation.envelope import Envelope
from federation.errors import IpdnError
from federation.hub.store import HubStore, LogRow, QuarantineRow
from federation.registry import SignedRegistry
from federation.schemas import SchemaSet
from federation.verify import ChainHead, Failure, check_chain, verify_envelope
from federation.web import problem_body

log = logging.getLogger("ipdn.hub")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Outcome:
    """The answer for one envelope of a push (docs/PROTOCOL.md §8.2)."""

    status: str  # accepted, duplicate, rejected
    hash: str | None = None
    position: int | None = None
    reason: str | None = None
    detail: str | None = None
    errors: list[dict[str, str]] | None = None

    def to_dict(self, index: int) -> dict[str, Any]:
        if self.status == "rejected":
            extra = {"errors": self.errors} if self.errors else {}
            return {"index": index, "status": "rejected", "hash": self.hash,
                    "problem": problem_body(422, self.reason or "rejected", self.detail or "", **extra)}
        return {"index": index, "status": self.status, "position": self.position, "hash": self.hash}


@dataclass(slots=True)
class _Pending:
    """A verified envelope (or an intake failure) waiting for the writer."""

    member: str
    raw: bytes
    env: Envelope | None
    failures: list[Failure]
    future: asyncio.Future[Outcome] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class MemberActivity:
    last_push_at: datetime | None = None
    last_pull_at: datetime | None = None
    accepted: int = 0
    rejected: int = 0


class HubService:
    def __init__(self, store: HubStore, registry: SignedRegistry, schemas: SchemaSet, *,
                 clock: Clock = utcnow, writer_batch: int = 5000) -> None:
        self.store = store
        self.registry = registry
        self.schemas = schemas
        self.clock = clock
        self.writer_batch = writer_batch
        self.heads: dict[str, ChainHead] = {}
        self.size = 0
        self.activity: dict[str, MemberActivity] = {}
        self._queue: asyncio.Queue[list[_Pending]] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.heads = {o: ChainHead(s, h) for o, (s, h) in (await self.store.heads()).items()}
        self.size = await self.store.size()
        await self.store.save_registry(self.registry.registry.version, self.registry.hash,
                                       self.registry.to_bytes(), self.clock())
        self._writer = asyncio.create_task(self._write_loop(), name="hub-writer")

    async def stop(self) -> None:
        if self._writer:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    def member_activity(self, member: str) -> MemberActivity:
        return self.activity.setdefault(member, MemberActivity())

    # -- ingest -----------------------------------------------------------------------------------------

    async def ingest(self, member: str, envelopes: list[Any]) -> list[Outcome]:
        """Verify and durably append a member's batch; one outcome per envelope, in order."""
        now = self.clock()
        keys = self.registry.registry.member_keys()
        skew = self.registry.registry.policies.clock_skew_seconds
        limits = strictjson.JsonLimits(max_bytes=self.registry.registry.policies.max_envelope_bytes)
        pending = []
        for obj in envelopes:
            raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
            try:
                env = Envelope.from_dict(obj, limits)
            except IpdnError as e:
                pending.append(_Pending(member, raw, None, [Failure("intake", e.reason, e.message)]))
                continue
            result = verify_envelope(env, keys=keys.get, schemas=self.schemas, now=now,
                                     max_future_skew=timedelta(seconds=skew))
            failures = result.failures
            if env.payload.origin != member:
                failures = [*failures, Failure("origin", "not-own-envelope",
                                               f"{member} pushed an envelope of {env.payload.origin}")]
            pending.append(_Pending(member, env.to_bytes(), env, failures))
        activity = self.member_activity(member)
        activity.last_push_at = now
        await self._queue.put(pending)
        outcomes = await asyncio.gather(*(p.future for p in pending))
        for o in outcomes:
            if o.status == "rejected":
                activity.rejected += 1
            elif o.status == "accepted":
                activity.accepted += 1
        return list(outcomes)

    async def _write_loop(self) -> None:
        while True:
            batch = await self._queue.get()
            while not self._queue.empty() and len(batch) < self.writer_batch:
                batch.extend(self._queue.get_nowait())
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.cancel()
                raise
            except Exception as e:  # the store failed: nothing of this batch is acknowledged
                log.exception("group commit failed")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)

    async def _commit(self, batch: list[_Pending]) -> None:
        heads = dict(self.heads)  # tentative until the commit succeeds
        stale = [(p.env.payload.origin, p.env.payload.seq) for p in batch if p.env and not p.failures]
        held = await self.store.held(stale)
        rows: list[LogRow] = []
        rejected: list[QuarantineRow] = []
        outcomes: list[tuple[_Pending, Outcome, int | None]] = []  # the int: index into rows
        in_batch: dict[tuple[str, int], tuple[str, int]] = {}  # (origin, seq) -> (hash, row index)
        for p in batch:
            if p.env is None or p.failures:
                o = self._reject(p, p.failures, rejected)
                outcomes.append((p, o, None))
                continue
            env, pl = p.env, p.env.payload
            key = (pl.origin, pl.seq)
            chain = check_chain(env, heads.get(pl.origin))
            if chain is None:
                rows.append(LogRow(pl.origin, pl.seq, env.hash, pl.record_id, pl.version, pl.kind, pl.op,
                                   env.kid, env.to_bytes()))
                heads[pl.origin] = ChainHead(pl.seq, env.hash)
                in_batch[key] = (env.hash, len(rows) - 1)
                outcomes.append((p, Outcome("accepted", env.hash), len(rows) - 1))
            elif chain.reason == "chain-stale":
                if key in held and held[key].hash == env.hash:
                    outcomes.append((p, Outcome("duplicate", env.hash, held[key].position), None))
                elif key in in_batch and in_batch[key][0] == env.hash:
                    outcomes.append((p, Outcome("accepted", env.hash), in_batch[key][1]))
                else:
                    conflict = held[key].position if key in held else None
                    fork = Failure("chain", "chain-fork", f"another envelope is held at {pl.origin} seq {pl.seq}")
                    outcomes.append((p, self._reject(p, [fork], rejected, conflict), None))
            else:
                conflict = None
                if chain.reason == "chain-fork":
                    head = heads[pl.origin]
                    held_head = (await self.store.held([(pl.origin, head.seq)])).get((pl.origin, head.seq))
                    conflict = held_head.position if held_head else None
                outcomes.append((p, self._reject(p, [chain], rejected, conflict), None))
        now = self.clock()
        positions = await self.store.commit(rows, rejected, now)
        # Durable: now update the in-memory view and answer.
        self.heads = heads
        if positions:
            self.size = positions[-1]
            self._changed.set()
            self._changed = asyncio.Event()
        for p, o, row in outcomes:
            if row is not None:
                o.position = positions[row]
            if not p.future.done():
                p.future.set_result(o)

    def _reject(self, p: _Pending, failures: list[Failure], rejected: list[QuarantineRow],
                conflicts_with: int | None = None) -> Outcome:
        first = failures[0]
        detail = "; ".join(f"{f.check}: {f.message}" for f in failures)
        errors = [i.to_dict() for f in failures for i in f.issues]
        pl = p.env.payload if p.env else None
        rejected.append(QuarantineRow(
            member=p.member, origin=pl.origin if pl else None, seq=pl.seq if pl else None,
            hash=p.env.hash if p.env else None, reason=first.reason,
            detail=json.dumps({"failures": [{"check": f.check, "reason": f.reason, "message": f.message}
                                            for f in failures], "errors": errors}, ensure_ascii=False),
            envelope=p.raw, conflicts_with=conflicts_with))
        return Outcome("rejected", p.env.hash if p.env else None, reason=first.reason, detail=detail,
                       errors=errors or None)

    # -- pull -------------------------------------------------------------------------------------------

    async def read_log(self, after: int, limit: int, wait: float) -> list[tuple[int, bytes]]:
        """Entries after ``after``; with ``wait`` > 0, hold until there are some (long-poll)."""
        if wait > 0 and self.size <= after:
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), timeout=wait)
            except TimeoutError:
                return []
        return await self.store.read_log(after, limit)

