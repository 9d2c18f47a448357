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
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from federation import merkle
from federation.checkpoint import SignedCheckpoint, parse_checkpoint, sign_checkpoint
from federation.envelope import leaf_bytes
from federation.hub.store import CheckpointRow, HubStore, LogRow, QuarantineRow
from federation.hub.verifier import Checked, check_batch
from federation.keys import SigningKey
from federation.registry import SignedRegistry
from federation.verify import ChainHead, Failure, chain_position
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


# Batches at least this large are verified in worker processes; smaller ones in the event loop.
PARALLEL_MIN = 64


@dataclass(slots=True)
class _Pending:
    """A verified envelope (or an intake failure) waiting for the writer."""

    member: str | None  # None: a refused request nobody authenticated
    checked: Checked
    future: asyncio.Future[Outcome] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    request: dict[str, Any] | None = None  # for a refused request: what is known of it (kept in the detail)


@dataclass
class MemberActivity:
    last_push_at: datetime | None = None
    last_pull_at: datetime | None = None
    accepted: int = 0
    rejected: int = 0


class HubService:
    def __init__(self, store: HubStore, registry: SignedRegistry, hub_key: SigningKey, *, clock: Clock = utcnow,
                 writer_batch: int = 5000, verify_workers: int = 0) -> None:
        self.store = store
        self.registry = registry
        self.hub_key = hub_key
        self.frontier = merkle.Frontier()
        self.checkpoint: SignedCheckpoint | None = None
        self.clock = clock
        self.verify_workers = verify_workers
        self._pool: ProcessPoolExecutor | None = None
        self.writer_batch = writer_batch
        self.heads: dict[str, ChainHead] = {}
        self.size = 0
        self.activity: dict[str, MemberActivity] = {}
        self._queue: asyncio.Queue[list[_Pending]] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        self.heads = {o: ChainHead(s, h) for o, (s, h) in (await self.store.heads()).items()}
        self.size = await self.store.size()
        await self._restore_tree()
        await self.store.save_registry(self.registry.registry.version, self.registry.hash,
                                       self.registry.to_bytes(), self.clock())
        self._writer = asyncio.create_task(self._write_loop(), name="hub-writer")
        if self.verify_workers > 0:
            # spawn, not fork: the parent runs an event loop and database threads.
            self._pool = ProcessPoolExecutor(self.verify_workers, mp_context=multiprocessing.get_context("spawn"))
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(self._pool, check_batch, self.registry.to_bytes(), "", [],
                                                        self.clock()) for _ in range(self.verify_workers)))

    async def _restore_tree(self) -> None:
        """Rebuild the Merkle frontier from stored nodes (O(log n) reads); a log written before the tree
        existed (schema 0001) gets its nodes computed once, and a checkpoint for its size."""
        leaves = await self.store.leaf_count()
        keys = merkle.node_reads(lambda get: merkle.Frontier.restore(leaves, get))
        stored = await self.store.nodes(keys)
        self.frontier = merkle.Frontier.restore(leaves, lambda lv, ix: stored[(lv, ix)])
        while self.frontier.size < self.size:
            rows = await self.store.read_log(self.frontier.size, 1000)
            nodes = [n for _, env in rows for n in self.frontier.append(merkle.leaf_hash(_leaf_of(env)))]
            await self.store.save_nodes(nodes)
        latest = await self.store.checkpoint()
        if latest is not None:
            self.checkpoint = parse_checkpoint(json.loads(latest))
        if self.size and (self.checkpoint is None or self.checkpoint.checkpoint.size != self.size):
            row, self.checkpoint = self._sign_checkpoint(self.size, self.frontier)
            await self.store.save_checkpoint(row)

    def _sign_checkpoint(self, size: int, frontier: merkle.Frontier) -> tuple[CheckpointRow, SignedCheckpoint]:
        now = self.clock()
        signed = sign_checkpoint(self.registry.registry.network, size, frontier.root(), self.hub_key, now)
        return CheckpointRow(size, signed.checkpoint.root, now, signed.to_bytes()), signed

    def wake_readers(self) -> None:
        """Answer every waiting long-poll now (at shutdown, so clients reconnect elsewhere at once)."""
        self._closing = True
        self._changed.set()

    async def stop(self) -> None:
        self.wake_readers()
        if self._pool:
            self._pool.shutdown(wait=True, cancel_futures=True)
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
        registry = self.registry.to_bytes()
        if self._pool and len(envelopes) >= PARALLEL_MIN:
            step = -(-len(envelopes) // self.verify_workers)
            loop = asyncio.get_running_loop()
            parts = await asyncio.gather(*(
                loop.run_in_executor(self._pool, check_batch, registry, member, envelopes[i:i + step], now)
                for i in range(0, len(envelopes), step)))
            checked = [c for part in parts for c in part]
        else:
            checked = check_batch(registry, member, envelopes, now)
        pending = [_Pending(member, c) for c in checked]
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

    async def keep_refusal(self, member: str | None, failure: Failure, received: bytes,
                           request: dict[str, Any]) -> None:
        """Keep a refused request (not one envelope of a batch: the whole request) in the quarantine with
        its bytes as received; through the single writer like everything the hub writes, answered once durable."""
        pending = _Pending(member, Checked(received, (failure,)), request=request)
        if member is not None:
            self.member_activity(member).rejected += 1
        await self._queue.put([pending])
        await pending.future

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
        held = await self.store.held([(c.origin, c.seq) for p in batch if not (c := p.checked).failures
                                      and c.origin is not None and c.seq is not None])
        rows: list[LogRow] = []
        rejected: list[QuarantineRow] = []
        outcomes: list[tuple[_Pending, Outcome, int | None]] = []  # the int: index into rows
        in_batch: dict[tuple[str, int], tuple[str, int]] = {}  # (origin, seq) -> (hash, row index)
        for p in batch:
            c = p.checked
            if c.failures or c.origin is None or c.seq is None or c.hash is None:
                outcomes.append((p, self._reject(p, list(c.failures), rejected), None))
                continue
            key = (c.origin, c.seq)
            chain = chain_position(c.seq, c.prev, heads.get(c.origin))
            if chain is None:
                rows.append(LogRow(c.origin, c.seq, c.hash, c.record_id, c.version, c.kind, c.op, c.kid, c.wire,
                                   c.leaf))
                heads[c.origin] = ChainHead(c.seq, c.hash)
                in_batch[key] = (c.hash, len(rows) - 1)
                outcomes.append((p, Outcome("accepted", c.hash), len(rows) - 1))
            elif chain.reason == "chain-stale" and key in held and held[key].hash == c.hash:
                outcomes.append((p, Outcome("duplicate", c.hash, held[key].position), None))
            elif chain.reason == "chain-stale" and key in in_batch and in_batch[key][0] == c.hash:
                outcomes.append((p, Outcome("accepted", c.hash), in_batch[key][1]))
            else:
                if chain.reason == "chain-stale":
                    chain = Failure("chain", "chain-fork", f"another envelope is held at {c.origin} seq {c.seq}")
                    at = key
                else:  # a gap, or a fork against the head: evidence points at the head
                    at = (c.origin, heads[c.origin].seq) if c.origin in heads else key
                conflict = held.get(at) or (await self.store.held([at])).get(at)
                outcomes.append((p, self._reject(p, [chain], rejected, conflict.position if conflict else None),
                                 None))
        frontier = merkle.Frontier.from_list(self.frontier.to_list())  # tentative, like the heads
        nodes = [n for r in rows for n in frontier.append(merkle.leaf_hash(r.leaf))]
        checkpoint = self._sign_checkpoint(self.size + len(rows), frontier) if rows else None
        positions = await self.store.commit(rows, rejected, self.clock(), size=self.size, nodes=nodes,
                                            checkpoint=checkpoint[0] if checkpoint else None)
        # Durable: now update the in-memory view and answer.
        self.heads = heads
        if checkpoint:
            self.frontier, self.checkpoint = frontier, checkpoint[1]
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
        c = p.checked
        first = failures[0]
        detail = "; ".join(f"{f.check}: {f.message}" for f in failures)
        errors = [i.to_dict() for f in failures for i in f.issues]
        rejected.append(QuarantineRow(
            member=p.member, origin=c.origin, seq=c.seq, hash=c.hash, reason=first.reason,
            detail=json.dumps({"failures": [{"check": f.check, "reason": f.reason, "message": f.message}
                                            for f in failures], "errors": errors,
                               **({"request": p.request} if p.request else {})}, ensure_ascii=False),
            envelope=c.wire, conflicts_with=conflicts_with if first.reason == "chain-fork" else None))
        return Outcome("rejected", c.hash, reason=first.reason, detail=detail, errors=errors or None)

    # -- pull -------------------------------------------------------------------------------------------

    async def read_log(self, after: int, limit: int, wait: float) -> list[tuple[int, bytes]]:
        """Entries after ``after``; with ``wait`` > 0, hold until there are some (long-poll)."""
        if wait > 0 and self.size <= after and not self._closing:
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), timeout=wait)
            except TimeoutError:
                return []
        return await self.store.read_log(after, limit)



def _leaf_of(envelope: bytes) -> bytes:
    """The Merkle leaf input of a stored envelope (its compact JWS)."""
    return leaf_bytes(json.loads(envelope))
