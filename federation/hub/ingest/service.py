"""The hub's ingest and log services (between the HTTP handlers and the store).

Ingest checks each envelope exactly as a node would (docs/PROTOCOL.md §5), then hands the verified
ones to a single writer task. The writer classifies each against the per-origin chain heads,
appends the accepted ones and quarantines the rest in ONE transaction with everything else queued
meanwhile (group commit), and only after that commit resolves the waiting requests. So nothing is
acknowledged before it is durable, and re-sending is always safe: an envelope already held is
answered ``duplicate`` with its original position.

On PostgreSQL several hub processes ("workers") may serve one log (``store.shared``). Each keeps the same
in-memory view (chain heads, Merkle frontier, latest checkpoint, registry) but another worker may have
appended since. The writer's transaction takes the store's advisory lock before reading anything; inside
it, the writer compares the log's size in the database with its own and catches up (heads of the batch's
origins, the frontier from stored Merkle nodes in O(log n) reads, the latest checkpoint and registry), then
classifies and appends: nothing it read can change before it commits (ADR 16). Pulls waiting on any worker
wake on the store's ``NOTIFY`` (and, as a safety net, on a periodic size check).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import json
import logging
import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from federation.hub.ingest.batch_checks import Checked, check_batch
from federation.hub.store.log import (
    LOG_CHANNEL,
    REGISTRY_CHANNEL,
    CheckpointRow,
    CosignatureRow,
    HubStore,
    LogEntry,
    LogReads,
    LogRow,
    LogTransaction,
    QuarantineBounds,
    QuarantineRow,
)
from federation.protocol import merkle
from federation.protocol.checkpoint import SignedCheckpoint, parse_checkpoint, sign_checkpoint
from federation.protocol.envelope import leaf_bytes, parse_time
from federation.protocol.keys import SigningKey
from federation.protocol.registry import SignedRegistry, parse_registry
from federation.protocol.verify import RECEIPT_REASON, ChainHead, Failure, chain_position
from federation.server.aio import wait_event
from federation.server.times import Clock, utcnow
from federation.server.web import problem_body

log = logging.getLogger("ipdn.hub")


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
KEPT_ERRORS = 50  # schema errors kept with a refused envelope (the pusher is told all): its metadata stays small
TAIL = 1024  # entries at the end of the log kept in memory by a sole writer, for the pulls a commit wakes
# Merkle nodes and checkpoints kept in memory (both never change once written): the proofs and co-signatures every
# node sends each second are answered without reading the database.
NODE_CACHE = 65_536
CHECKPOINT_CACHE = 256


@dataclass(slots=True)
class _Pending:
    """A push's verified envelopes (or one refused request) waiting for the writer; answered with an outcome per
    envelope, in order, once durable (one future per push, not per envelope)."""

    member: str | None  # None: a refused request nobody authenticated
    checked: list[Checked]
    future: asyncio.Future[list[Outcome]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    request: dict[str, Any] | None = None  # for a refused request: what is known of it (kept in the detail)
    input: tuple[int, str] | None = None  # for a refused request: the length and SHA-256 of all it received
    cosignature: CosignatureRow | None = None  # a verified co-signature to keep (``checked`` is empty)


@dataclass
class MemberActivity:
    last_push_at: datetime | None = None
    last_pull_at: datetime | None = None
    accepted: int = 0
    rejected: int = 0


class HubService:
    def __init__(self, store: HubStore, registry: SignedRegistry, hub_key: SigningKey, *, clock: Clock = utcnow,
                 writer_batch: int = 5000, verify_workers: int = 0, shared_poll: float = 2.0,
                 quarantine_bounds: QuarantineBounds | None = None) -> None:
        self.store = store
        self.quarantine_bounds = quarantine_bounds or QuarantineBounds()
        self.registry = registry
        self.hub_key = hub_key
        self.frontier = merkle.Frontier()
        self.checkpoint: SignedCheckpoint | None = None
        self.clock = clock
        self.verify_workers = verify_workers
        self.shared_poll = shared_poll  # shared log: wake and re-read at least this often, should a NOTIFY be lost
        self._pool: ProcessPoolExecutor | None = None
        self.writer_batch = writer_batch
        self.heads: dict[str, ChainHead] = {}
        self.size = 0
        self.activity: dict[str, MemberActivity] = {}
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._changed = asyncio.Event()
        # Reads of the log in flight, shared by the pulls asking for the same page in the same generation
        # (between two wakes): the nodes one commit wakes would otherwise each read the same rows.
        self._reads: dict[tuple[asyncio.Event, int, int], asyncio.Future[list[LogEntry]]] = {}
        # The last entries this worker committed, as stored, while it is the log's only writer: the pulls a
        # commit wakes (every member's, at the end of the log) are answered without reading the database.
        self._tail: collections.deque[LogEntry] = collections.deque(maxlen=TAIL)
        self._writer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._registry_stale = False  # shared log: set by the listener, cleared by fresh()
        # Shared log: the origins whose head in self.heads is true at self.size (catch-up reads the others).
        self._heads_known: set[str] = set()
        # The view (size, frontier, checkpoint, heads) changes under one task at a time: the writer's cycle,
        # or a catch-up asked for between two of them.
        self._view = asyncio.Lock()
        self._closing = False
        self._checkpoint_text: tuple[SignedCheckpoint, str] | None = None  # the latest checkpoint as a page carries it
        self._nodes: dict[tuple[int, int], bytes] = {}  # recent Merkle nodes by (level, index), oldest first
        self._checkpoints: dict[int, bytes] = {}  # recent checkpoint documents by size, oldest first

    async def start(self) -> None:
        self.heads = {o: ChainHead(s, h) for o, (s, h) in (await self.store.heads()).items()}
        self._heads_known = set(self.heads)
        self.size = await self.store.size()
        await self._restore_tree()
        await self.store.save_registry(self.registry.registry.version, self.registry.hash,
                                       self.registry.to_bytes(), self.clock())
        self._writer = asyncio.create_task(self._write_loop(), name="hub-writer")
        if self.store.shared:
            self._listener = asyncio.create_task(self._listen(), name="hub-log-listener")
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
            nodes = [n for _, env, _ in rows for n in self.frontier.append(merkle.leaf_hash(_leaf_of(env)))]
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
        self._wake()

    async def stop(self) -> None:
        self.wake_readers()
        if self._pool:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for task in (self._writer, self._listener):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

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
        pending = _Pending(member, checked)
        activity = self.member_activity(member)
        activity.last_push_at = now
        await self._queue.put(pending)
        outcomes = await pending.future
        for o in outcomes:
            if o.status == "rejected":
                activity.rejected += 1
            elif o.status == "accepted":
                activity.accepted += 1
        return outcomes

    async def keep_refusal(self, member: str | None, failure: Failure, received: bytes | bytearray,
                           request: dict[str, Any]) -> None:
        """Keep a refused request (not one envelope of a batch: the whole request) in the quarantine with
        its bytes as received, within the quarantine's bounds (a prefix of them past the per-item bound, so the
        writer's queue never holds a whole batch for it; its length and digest in full); through the single
        writer like everything the hub writes, answered once durable."""
        cut = self.quarantine_bounds.item
        pending = _Pending(member, [Checked(bytes(received[:cut]), (failure,))], request=request,
                           input=(len(received), hashlib.sha256(received).hexdigest()))
        if member is not None:
            self.member_activity(member).rejected += 1
        await self._queue.put(pending)
        await pending.future

    async def add_cosignature(self, row: CosignatureRow) -> None:
        """Keep a verified co-signature through the single writer, in the group commit of the log's next
        transaction: a member's co-signature each second costs neither a transaction of its own (an fsync) nor the
        writer a wait for SQLite's lock; answered once durable."""
        pending = _Pending(row.member, [], cosignature=row)
        await self._queue.put(pending)
        await pending.future

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].checked)
            while not self._queue.empty() and size < self.writer_batch:
                batch.append(self._queue.get_nowait())
                size += len(batch[-1].checked)
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
        """Classify and append ``batch`` in one transaction of the store's writer; on a shared log, first catch
        up with other workers' commits inside it (under the writers' lock: what it reads stays true)."""
        async with self._view:
            async with self.store.appending() as tx:
                if self.store.shared:
                    await self._catch_up(tx, sorted({c.origin for p in batch for c in p.checked
                                                     if c.origin is not None}))
                settle = await self._classify_and_append(batch, tx)
            settle()  # durable: now the in-memory view, and the answers

    async def catch_up(self, origins: list[str] | None = None) -> None:
        """Bring this worker's view up to the shared log (between two of its writer's commits)."""
        async with self._view:
            await self._catch_up(self.store, origins)

    async def _catch_up(self, reads: LogReads, origins: list[str] | None) -> None:
        """The view brought up to the log: size, frontier, checkpoint, registry, and the chain heads of
        ``origins`` (all of them when None). Heads read since the log last grew under another worker are
        still true and not read again: a sole worker's catch-up is one query."""
        size, registry_version = await reads.state()
        if size != self.size:
            keys = merkle.node_reads(lambda get: merkle.Frontier.restore(size, get))
            stored = await reads.nodes(keys)
            self.frontier = merkle.Frontier.restore(size, lambda lv, ix: stored[(lv, ix)])
            latest = await reads.checkpoint()
            self.checkpoint = parse_checkpoint(json.loads(latest)) if latest else None
            self.size = size
            self._heads_known = set()
        wanted = None if origins is None else [o for o in origins if o not in self._heads_known]
        if wanted is None or wanted:
            fresh = {o: ChainHead(s, h) for o, (s, h) in (await reads.heads(wanted)).items()}
            if wanted is None:
                self.heads, self._heads_known = fresh, set(fresh)
            else:
                self.heads.update(fresh)
                self._heads_known.update(wanted)
        await self._refresh_registry(reads, registry_version)

    async def _refresh_registry(self, reads: LogReads | None = None, newest: int | None = None) -> None:
        """Take the newest registry version held (``newest``, when the caller already read it)."""
        reads = reads or self.store
        if (newest if newest is not None else await reads.latest_registry_version()) > self.registry.registry.version:
            stored = await reads.latest_registry()
            if stored is not None:  # decided through another worker
                self.registry = parse_registry(stored)

    async def _listen(self) -> None:
        """Wake this worker's waiting pulls when another worker appends (``NOTIFY`` on the log channel), and
        mark the registry for a re-read when one decides a new version; at least every ``shared_poll``
        seconds either way, should a notification be lost while the listener reconnects."""
        import asyncpg  # PostgreSQL only

        url = self.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        notified = asyncio.Event()

        def on_registry(*_: Any) -> None:
            self._registry_stale = True

        while True:
            conn = None
            try:
                conn = await asyncpg.connect(url)
                await conn.add_listener(LOG_CHANNEL, lambda *_: notified.set())
                await conn.add_listener(REGISTRY_CHANNEL, on_registry)
                while True:
                    if not await wait_event(notified, self.shared_poll):
                        self._registry_stale = True
                    notified.clear()
                    self._wake()
            except Exception as e:  # asyncpg raises several kinds; any of them means reconnect
                if self._closing:  # a cancellation asyncpg turned into its own error while stopping
                    return
                log.warning("log listener: %s; polling until it reconnects", e)
                self._registry_stale = True
                self._wake()
                await asyncio.sleep(self.shared_poll)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()

    async def fresh(self) -> None:
        """On a shared log, re-read the registry if another worker may have published a new version."""
        if self._registry_stale:
            self._registry_stale = False
            await self._refresh_registry()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def nodes(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Merkle nodes by (level, index), for a proof: from memory, the rest read in one query and kept."""
        found = {k: self._nodes[k] for k in keys if k in self._nodes}
        if len(found) < len(set(keys)):
            read = await self.store.nodes([k for k in keys if k not in found])
            self._keep_nodes(read.items())
            found.update(read)
        return found

    def _keep_nodes(self, nodes: Iterable[tuple[tuple[int, int], bytes]]) -> None:
        cache = self._nodes
        cache.update(nodes)
        while len(cache) > NODE_CACHE:
            del cache[next(iter(cache))]

    async def checkpoint_document(self, size: int) -> bytes | None:
        """The checkpoint document of ``size`` as stored (None: the hub signed none of that size); recent ones from
        memory."""
        held = self._checkpoints.get(size)
        if held is None:
            held = await self.store.checkpoint(size)
            if held is not None:
                self._keep_checkpoint(size, held)
        return held

    def _keep_checkpoint(self, size: int, document: bytes) -> None:
        self._checkpoints[size] = document
        while len(self._checkpoints) > CHECKPOINT_CACHE:
            del self._checkpoints[next(iter(self._checkpoints))]

    def checkpoint_at(self, size: int) -> str | None:
        """The JSON text of this worker's latest checkpoint if it is of ``size`` (None: it is not), made once per
        checkpoint: a log page ending at ``size`` carries it, so a node checks its root without asking (§8.3)."""
        signed = self.checkpoint
        if signed is None or signed.checkpoint.size != size:
            return None
        if self._checkpoint_text is None or self._checkpoint_text[0] is not signed:
            self._checkpoint_text = (signed, json.dumps(signed.to_dict(), separators=(",", ":")))
        return self._checkpoint_text[1]

    async def log_size(self) -> int:
        """The log's size now: this worker's own view, or the database's on a shared log."""
        return await self.store.size() if self.store.shared else self.size

    async def _classify_and_append(self, batch: list[_Pending], tx: LogTransaction) -> Callable[[], None]:
        """Classify ``batch`` against the chain heads and append it in ``tx``; what to do once ``tx`` is durable."""
        heads = dict(self.heads)  # tentative until the commit succeeds
        # Only an (origin, seq) at or below its chain's head can be held already: the rest (nearly every
        # envelope of a live push) need no lookup, which cost as much as their inserts (ADR 16).
        held = await tx.held([(c.origin, c.seq) for p in batch for c in p.checked if _chained(c)
                              and c.origin in heads and c.seq is not None and c.seq <= heads[c.origin].seq])
        rows: list[LogRow] = []
        leaves: list[bytes] = []  # the rows' Merkle leaf hashes
        rejected: list[QuarantineRow] = []
        outcomes: list[list[tuple[Outcome, int | None]]] = []  # per push, per envelope; the int: index into rows
        in_batch: dict[tuple[str, int], tuple[str, int]] = {}  # (origin, seq) -> (hash, row index)
        for p in batch:
            answers: list[tuple[Outcome, int | None]] = []
            outcomes.append(answers)
            answer = answers.append
            for c in p.checked:
                if not _chained(c) or c.origin is None or c.seq is None or c.hash is None:
                    answer((self._reject(p, c, list(c.failures), rejected), None))
                    continue
                key = (c.origin, c.seq)
                chain = chain_position(c.seq, c.prev, heads.get(c.origin))
                if c.failures:  # late: a copy of what the log holds is still a duplicate; nothing new is logged
                    if chain is not None and chain.reason == "chain-stale" and key in held \
                            and held[key].hash == c.hash:
                        answer((Outcome("duplicate", c.hash, held[key].position), None))
                    else:
                        answer((self._reject(p, c, list(c.failures), rejected), None))
                elif chain is None:
                    rows.append(LogRow(c.origin, c.seq, c.hash, c.record_id, c.version, c.kind, c.op, c.kid, c.wire))
                    leaves.append(c.leaf_hash)
                    heads[c.origin] = ChainHead(c.seq, c.hash)
                    in_batch[key] = (c.hash, len(rows) - 1)
                    answer((Outcome("accepted", c.hash), len(rows) - 1))
                elif chain.reason == "chain-stale" and key in held and held[key].hash == c.hash:
                    answer((Outcome("duplicate", c.hash, held[key].position), None))
                elif chain.reason == "chain-stale" and key in in_batch and in_batch[key][0] == c.hash:
                    answer((Outcome("accepted", c.hash), in_batch[key][1]))
                else:
                    if chain.reason == "chain-stale":
                        chain = Failure("chain", "chain-fork", f"another envelope is held at {c.origin} seq {c.seq}")
                        at = key
                    else:  # a gap, or a fork against the head: evidence points at the head
                        at = (c.origin, heads[c.origin].seq) if c.origin in heads else key
                    conflict = held.get(at) or (await tx.held([at])).get(at)
                    answer((self._reject(p, c, [chain], rejected, conflict.position if conflict else None), None))
        frontier = merkle.Frontier.from_list(self.frontier.to_list())  # tentative, like the heads
        nodes = [n for leaf in leaves for n in frontier.append(leaf)]
        checkpoint = self._sign_checkpoint(self.size + len(rows), frontier) if rows else None
        now = self.clock()
        positions = await tx.append(rows, rejected, now, size=self.size, nodes=nodes,
                                    checkpoint=checkpoint[0] if checkpoint else None, bounds=self.quarantine_bounds,
                                    cosigned=[p.cosignature for p in batch if p.cosignature is not None])

        def settle() -> None:
            self.heads = heads
            if checkpoint:
                self.frontier, self.checkpoint = frontier, checkpoint[1]
                self._keep_nodes(((lv, ix), h) for lv, ix, h in nodes)
                self._keep_checkpoint(checkpoint[0].size, checkpoint[0].document)
            if positions:
                self.size = positions[-1]
                if not self.store.shared:
                    self._tail.extend(LogEntry(p, r.envelope, now) for p, r in zip(positions, rows, strict=True))
                self._wake()
            for p, answers in zip(batch, outcomes, strict=True):
                for o, row in answers:
                    if row is not None:
                        o.position = positions[row]
                if not p.future.done():
                    p.future.set_result([o for o, _ in answers])
        return settle

    def _reject(self, p: _Pending, c: Checked, failures: list[Failure], rejected: list[QuarantineRow],
                conflicts_with: int | None = None) -> Outcome:
        first = failures[0]
        detail = "; ".join(f"{f.check}: {f.message}" for f in failures)
        errors = [i.to_dict() for f in failures for i in f.issues]
        rejected.append(QuarantineRow(
            member=p.member, origin=c.origin, seq=c.seq, hash=c.hash, reason=first.reason,
            detail=json.dumps({"failures": [{"check": f.check, "reason": f.reason, "message": f.message[:1024]}
                                            for f in failures], "errors": errors[:KEPT_ERRORS],
                               **({"errors_omitted": len(errors) - KEPT_ERRORS} if len(errors) > KEPT_ERRORS else {}),
                               **({"request": p.request} if p.request else {})}, ensure_ascii=False),
            envelope=c.wire, conflicts_with=conflicts_with if first.reason == "chain-fork" else None,
            input_size=p.input[0] if p.input else None, input_sha256=p.input[1] if p.input else None))
        return Outcome("rejected", c.hash, reason=first.reason, detail=detail, errors=errors or None)

    async def append_recovered(self, rows: list[LogRow], leaves: list[bytes], checkpoint: SignedCheckpoint,
                               received: Sequence[datetime] | None = None) -> None:
        """Append log entries read back from the members after the log's end (federation/hub/recovery.py, which
        verified that with ``leaves`` the tree has ``checkpoint``'s root), with that checkpoint as the hub first
        signed it, each at its receipt time in ``received`` (as the members got it from the log; default now);
        the view (size, frontier, heads, checkpoint) follows."""
        async with self._view:
            frontier = merkle.Frontier.from_list(self.frontier.to_list())
            nodes = [n for leaf in leaves for n in frontier.append(leaf)]
            cp = checkpoint.checkpoint
            if frontier.size != cp.size or frontier.root() != cp.root_bytes:
                raise ValueError(f"the entries do not make checkpoint {cp.size}'s root")
            row = CheckpointRow(cp.size, cp.root, parse_time(cp.issued_at), checkpoint.to_bytes())
            now = self.clock()
            times = list(received) if received is not None else [now] * len(rows)
            async with self.store.appending() as tx:
                positions = await tx.append(rows, [], now, size=self.size, nodes=nodes, checkpoint=row,
                                            received=times)
            self.frontier, self.checkpoint, self.size = frontier, checkpoint, positions[-1]
            self.heads = {o: ChainHead(s, h) for o, (s, h) in (await self.store.heads()).items()}
            self._heads_known = set(self.heads)
            if not self.store.shared:
                self._tail.extend(LogEntry(p, r.envelope, t) for p, r, t in zip(positions, rows, times, strict=True))
            self._wake()

    # -- pull -------------------------------------------------------------------------------------------

    async def read_log(self, after: int, limit: int, wait: float) -> list[LogEntry]:
        """Entries after ``after``; with ``wait`` > 0, hold until there are some (long-poll)."""
        changed = self._changed  # taken before reading, so an append in between still wakes this pull
        rows = await self._read_log(after, limit)
        if rows or wait <= 0 or self._closing:
            return rows
        if not await wait_event(changed, wait):
            return []
        return await self._read_log(after, limit)

    def _tail_read(self, after: int, limit: int) -> list[LogEntry] | None:
        """The entries after ``after`` from memory, when this worker is the log's only writer and holds them
        (None: read the database)."""
        if self.store.shared:
            return None
        if after >= self.size:
            return []
        if self._tail and after >= self._tail[0][0] - 1:
            start = after + 1 - self._tail[0][0]
            return list(itertools.islice(self._tail, start, start + limit))
        return None

    async def _read_log(self, after: int, limit: int) -> list[LogEntry]:
        """``store.read_log``, shared with the pulls that ask for the same page meanwhile. Only within one
        generation: a read started before a commit's wake is never handed to a pull that came after it."""
        rows = self._tail_read(after, limit)
        if rows is not None:
            return rows
        key = (self._changed, after, limit)
        read = self._reads.get(key)
        if read is None:
            read = self._reads[key] = asyncio.ensure_future(self.store.read_log(after, limit))
            read.add_done_callback(lambda _: self._reads.pop(key, None))
        return list(await asyncio.shield(read))  # one pull cancelled (client gone) leaves the others' read



def _chained(c: Checked) -> bool:
    """Whether ``c`` is compared with the chain: no failure, or only its key's end before receipt
    (``key-not-valid-at-receipt``), so that re-sending an envelope the log already holds stays safe after a
    rotation: it is answered ``duplicate`` (PROTOCOL.md §8.2), anything else late is refused."""
    return all(f.reason == RECEIPT_REASON for f in c.failures)


def _leaf_of(envelope: bytes) -> bytes:
    """The Merkle leaf input of a stored envelope (its compact JWS)."""
    return leaf_bytes(json.loads(envelope))
