"""The sync engine: push the outbox to the hub, pull the hub's log, follow the registry, witness.

Seven loops, each owned by the app (started and cancelled by its cleanup context):

- push: woken when authoring adds to the outbox (and once at start); sends pending own envelopes in
  seq order, in batches signed with RFC 9421, and records what the hub accepted. An own envelope
  the hub rejects stops pushing (its successors chain on it) until an operator acts.
- inclusion: the checkpoint in each push answer must include the first and the last own envelope
  acknowledged (inclusion proofs), checked here so that the next push need not wait for the proofs.
- pull: long-polls ``GET /api/v1/log`` from the stored cursor and applies each page. A page that ends at
  the end of the log carries the hub's checkpoint of that size (PROTOCOL.md §8.3): its signature and its
  root against the node's own Merkle frontier are checked at once, without a request. A hub that sends
  none (an older one, or an empty page) has its latest checkpoint fetched and checked in the loop, at most
  every ``checkpoint_interval``. Evidence of misbehaviour stops this loop for good.
- checkpoint: accepts the last checkpoint the pull loop verified once a consistency proof shows it extends
  the one accepted before, at most every ``checkpoint_interval``: the proof and the write are off the path
  of the next pull.
- witness: co-signs each accepted checkpoint and sends the co-signature to the hub.
- peers: compares the node's accepted checkpoint with the one each configured peer node serves
  (split view: the hub showing members different histories).
- registry: fetches the registry every ``registry_refresh`` seconds and moves forward when valid. Once the
  registry held has lapsed, the pull loop applies nothing until a newer one arrives (PROTOCOL.md §7).

Every signature the engine makes (push requests, co-signatures) is by the own key the registry says is
valid now (node/own_keys.py); :meth:`SyncEngine.rotate_key` starts a key rotation at the hub. The requests
themselves are node/sync/hub_client.py's.

A network failure or a 5xx answer backs off exponentially with full jitter (base 0.5 s, cap 30 s by
default, reset on success); authoring and serving go on meanwhile. All the loops share one
``aiohttp.ClientSession``. Times recorded or compared are the service's clock; the loop's monotonic clock
only measures intervals (how long a poll took, how long since the last checkpoint check).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

from federation.protocol import merkle
from federation.protocol.checkpoint import SignedCheckpoint, cosign
from federation.protocol.errors import IpdnError
from federation.protocol.registry import RegistryError
from federation.server.aio import wait_event
from node.config import NodeConfig
from node.errors import (
    HubError,
    HubProtocolError,
    HubUnavailableError,
    LogHaltedError,
    LogMisbehaviourError,
    RotationError,
)
from node.own_keys import Rotation, RotationState
from node.records.service import NodeService
from node.store.outbox import PENDING, REJECTED, OutboxRow
from node.store.records import NodeStore
from node.sync import logtrust
from node.sync.hub_client import HubClient, LogPage
from node.sync.verifier import CheckedPage, PageVerifier

log = logging.getLogger("ipdn.node.sync")
trace = logging.getLogger("ipdn.node.sync.trace")  # config.sync_trace: one line per page pulled


class Backoff:
    """Exponential backoff with full jitter: the n-th consecutive failure waits U(0, min(cap, base·2ⁿ))."""

    def __init__(self, base: float, cap: float, rng: Callable[[], float] = random.random) -> None:
        self.base, self.cap, self.rng = base, cap, rng
        self.failures = 0

    def next_delay(self) -> float:
        delay = self.rng() * min(self.cap, self.base * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


@dataclass(slots=True)
class SyncState:
    """What the status page shows about the hub."""

    reachable: bool | None = None  # None: not tried yet
    last_push_at: datetime | None = None
    last_pull_at: datetime | None = None
    last_error: str | None = None
    last_error_reason: str | None = None  # its reason slug: the status page words it (internal-error for a bug)
    last_error_at: datetime | None = None
    log_size: int | None = None
    cosigned_size: int | None = None  # the checkpoint whose co-signature the hub holds from this node
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)  # peer URL -> the last comparison
    errors: dict[tuple[str, str], int] = field(default_factory=dict)  # (loop, reason) -> failures (metrics)


@dataclass(frozen=True, slots=True)
class RotationOutcome:
    rotation: Rotation
    hub_registry_version: int  # the version the hub published for it
    registry_version: int  # the version this node holds now (the same, unless fetching it failed)
    resubmitted: bool  # an earlier rotation without answer was sent again, no new key made


def retry_delay(backoff: Backoff, error: Exception) -> float:
    """The wait after a failure: the backoff's, or longer when the hub asked for it (429/503 Retry-After),
    but never past the backoff's cap (a hub cannot park a node)."""
    delay = backoff.next_delay()
    asked = error.retry_after if isinstance(error, HubUnavailableError) else None
    return max(delay, min(asked, backoff.cap)) if asked else delay


class SyncEngine:
    def __init__(self, config: NodeConfig, service: NodeService, store: NodeStore, *,
                 rng: Callable[[], float] = random.random) -> None:
        self.config, self.service, self.store, self.rng = config, service, store, rng
        self.state = SyncState()
        self.client: HubClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._cosign_wanted = asyncio.Event()  # set when a checkpoint is accepted
        self.unchecked = False  # caught up with entries whose checkpoint is not yet checked
        self._last_check = float("-inf")
        # The last checkpoint a log page brought whose root the pull loop verified, waiting for the checkpoint loop to
        # accept it (raw as received), and the event that wakes that loop.
        self._verified: tuple[SignedCheckpoint, bytes] | None = None
        self._verified_ready = asyncio.Event()
        self._accepting = asyncio.Lock()  # one acceptance at a time: the accepted checkpoint only grows
        self._accepted: tuple[SignedCheckpoint | None] | None = None  # the last one accepted, once read or made here
        # Pulled pages are verified in worker processes when large (catching up), and the next pages are fetched and
        # verified while the one before is applied: `after` -> its task (node/sync/verifier.py).
        self.verifier = PageVerifier(service.schemas, config.verify_workers)
        self._ahead: dict[int, asyncio.Task[tuple[LogPage, CheckedPage]]] = {}
        # Push answers whose inclusion proofs are still to check: (checkpoint, batch, acknowledged).
        self._inclusions: asyncio.Queue[tuple[bytes | None, list[OutboxRow], list[tuple[int, int]]]] = asyncio.Queue()

    async def start(self, *, loops: bool = True) -> None:
        """Open the HTTP session and, unless ``loops`` is False (tests drive it by hand), the loops."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
            total=None, connect=self.config.connect_timeout),
            connector=aiohttp.TCPConnector(ssl=self.config.hub_ssl_context()))  # hub_ca, mutual TLS
        self.client = HubClient(self._session, self.config, self.service)
        self.service.refresh_registry = self.refresh_registry  # tried when no own key is valid
        if loops:
            self.service.outbox_changed.set()  # push whatever a previous run left pending
            self._cosign_wanted.set()  # the hub may not hold our co-signature of the last accepted checkpoint
            loops_ = [self._push_loop, self._inclusion_loop, self._pull_loop, self._checkpoint_loop,
                      self._registry_loop, self._witness_loop]
            if self.config.peer_urls:
                loops_.append(self._peer_loop)
            self._tasks = [asyncio.create_task(loop(), name=f"ipdn-node-{loop.__name__}") for loop in loops_]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for ahead in self._ahead.values():
            ahead.cancel()
        self._ahead = {}
        await self.verifier.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def _hub(self) -> HubClient:
        if self.client is None:
            raise RuntimeError("SyncEngine.start() opens the hub client first")
        return self.client

    # -- one step of each loop (public so tests and an operator command can run them) -----------------

    async def push_once(self) -> bool:
        """Push one batch of pending own envelopes; True if more may be waiting.

        Raises:
            HubError: the hub could not be reached or answered out of protocol.
        """
        if await self.store.outbox.entries(REJECTED, 1):
            return False  # the hub refused an own envelope; its successors would fail the same way
        limit = min(self.config.push_batch, self.service.registry.registry.policies.max_batch)
        batch = await self.store.outbox.entries(PENDING, limit)
        if not batch:
            return False
        seqs = [row.seq for row in batch]
        try:
            answer = await self._hub.push([row.envelope for row in batch])
        except HubError:
            await self.store.outbox.record_push(seqs, now=self.service.clock())
            raise
        results = answer.results
        accepted: list[tuple[int, int]] = []
        rejected: tuple[int, str, str] | None = None
        for i, row in enumerate(batch):
            res = results.get(i, {})
            status, position = res.get("status"), res.get("position")
            if status in ("accepted", "duplicate") and type(position) is int:
                accepted.append((row.seq, position))
            elif status == "rejected":
                if rejected is None:  # later ones fail because of the first (chain-gap)
                    problem = res.get("problem")
                    problem = problem if isinstance(problem, dict) else {}
                    rejected = (row.seq, str(problem.get("reason", "rejected")), str(problem.get("detail", "")))
            else:
                raise HubProtocolError(f"push answer has no valid result for envelope {i} (seq {row.seq})")
        await self.store.outbox.record_push(seqs, accepted=accepted, rejected=rejected, now=self.service.clock())
        self.state.last_push_at = self.service.clock()
        if rejected is not None:
            log.error("the hub rejected own envelope seq %s: %s: %s; pushing stops until an operator acts",
                      *rejected)
        # Checked by the inclusion loop (check_inclusions), not here: the next push does not wait for two proofs.
        self._inclusions.put_nowait((answer.checkpoint, batch, accepted))
        return rejected is None and len(batch) == limit

    async def check_inclusions(self) -> None:
        """Check every push answer :meth:`push_once` left (:meth:`check_own_included`), oldest first.

        Raises:
            HubError: a proof could not be fetched (that answer is left unchecked; the pull loop still covers its
                envelopes with the frontier).
        """
        while not self._inclusions.empty():
            await self.check_own_included(*self._inclusions.get_nowait())

    async def check_own_included(self, checkpoint: bytes | None, batch: Sequence[OutboxRow],
                                 acknowledged: Sequence[tuple[int, int]]) -> None:
        """The checkpoint of a push answer must include the first and the last own envelope acknowledged.

        Two inclusion proofs per push, whatever the batch size: they pin both ends of the batch, and every
        envelope (these included) is covered again when the pull loop reaches it, since the hub's checkpoint
        must then have the root of the node's own frontier. A failure is kept as evidence.

        Raises:
            HubError: no checkpoint in the answer, or a proof could not be fetched (the push stays recorded).
        """
        if not acknowledged:
            return
        if checkpoint is None:
            raise HubProtocolError("the push answer acknowledges envelopes without a checkpoint")
        envelopes = {row.seq: row.envelope for row in batch}
        try:
            signed = logtrust.read_checkpoint(checkpoint, self.service.registry.registry)
            size = signed.checkpoint.size
            for seq, position in dict.fromkeys([acknowledged[0], acknowledged[-1]]):
                leaf = logtrust.entry_leaf(position, json.loads(envelopes[seq]))
                proof = await self._hub.inclusion_proof(position - 1, size) if 1 <= position <= size else []
                logtrust.check_included(leaf, position, signed, proof, checkpoint)
        except LogMisbehaviourError as e:
            await self.service.trust.record_misbehaviour(e)  # pushing goes on; applying from the hub stops

    async def pull_once(self, wait: int = 0, *, every: float = 0.0) -> int:
        """Fetch and apply one page of the log after the stored cursor; the number of entries.

        When the page reaches the end of the log, the hub's latest checkpoint is checked too
        (:meth:`check_checkpoint`), at most once per ``every`` seconds (the loop's rate limit while
        entries keep arriving; what is left unchecked is checked at the next due pull, and the
        frontier covers every entry either way); evidence of misbehaviour is kept and halts applying.

        Raises:
            HubError: the hub could not be reached or answered out of protocol.
            LogHaltedError: the node holds evidence against the hub's log (found now or before).
        """
        await self.service.trust.ensure_applying()
        await self._require_current_registry()
        after = await self.service.applier.cursor()
        page, checked = await self._next_page(after, wait)
        pulled = _wall() if self.config.sync_trace else 0.0
        if self.service.applier.signed_by_unknown_keys(page.entries):
            # A member admitted or a key rotated since the last refresh: without the new registry its
            # envelopes would be quarantined and its chain would stop here.
            with contextlib.suppress(HubError, RegistryError):
                await self.refresh_registry()
        try:
            report = await self.service.applier.apply_log(after, page.entries, page.received, checked)
            if pulled and page.entries:
                trace.info("applied log positions %d..%d", after + 1, after + len(page.entries), extra={"fields": {
                    "first": after + 1, "last": after + len(page.entries), "pulled": pulled, "applied": _wall()}})
            self.state.last_pull_at = self.service.clock()
            self.state.log_size = page.size
            if page.size is not None and after + len(page.entries) >= page.size:  # caught up
                if report.frontier is not None and page.checkpoint is not None \
                        and self.check_page_checkpoint(page.checkpoint, report.frontier):
                    self.unchecked = False
                else:
                    now = asyncio.get_running_loop().time()  # monotonic: only the interval since the last check
                    self.unchecked = True
                    if now - self._last_check >= every:
                        await self.check_checkpoint()
                        self._last_check, self.unchecked = now, False
        except LogMisbehaviourError as e:
            await self.service.trust.record_misbehaviour(e)
            raise LogHaltedError(f"applying from the hub is halted: {e.reason}: {e.message}") from e
        return len(page.entries)

    async def _next_page(self, after: int, wait: int) -> tuple[LogPage, CheckedPage | None]:
        """The page after ``after`` and its verdicts: the page fetched ahead if it is that one, else fetched now. When
        a full page says more follow (catching up), the next ``pull_ahead`` pages are fetched and verified meanwhile,
        in worker processes, while this one is applied (so that the workers never wait for the writer, nor it for
        them): at most ``pull_ahead`` + 1 pages are held."""
        task = self._ahead.pop(after, None)
        for stale in [a for a in self._ahead if a < after]:  # the cursor moved otherwise (a page failed)
            self._ahead.pop(stale).cancel()
        got = None
        if task is not None:
            with contextlib.suppress(HubError):  # fetched again below, where a failure counts
                got = await task
        page, checked = got if got is not None else (await self._hub.log(after, self.config.pull_limit, wait), None)
        limit, end = self.config.pull_limit, after + len(page.entries)
        if self.verifier.workers and len(page.entries) >= limit:
            for start in range(end, min(page.size or 0, end + self.config.pull_ahead * limit), limit):
                if start not in self._ahead:
                    ahead = asyncio.create_task(self._fetch_checked(start), name="ipdn-node-pull-ahead")
                    ahead.add_done_callback(lambda t: t.cancelled() or t.exception())  # met when awaited
                    self._ahead[start] = ahead
        if checked is None and self.verifier.workers:
            checked = await self.verifier.check(self.service.registry, [obj for _, obj in page.entries],
                                                self.service.clock())
        return page, checked

    async def _fetch_checked(self, after: int) -> tuple[LogPage, CheckedPage]:
        page = await self._hub.log(after, self.config.pull_limit, 0)
        return page, await self.verifier.check(self.service.registry, [obj for _, obj in page.entries],
                                               self.service.clock())

    async def _require_current_registry(self) -> None:
        """Apply nothing from the hub under a lapsed registry (PROTOCOL.md §7): it may lack a revocation or a
        suspension the hub withholds. A renewed one is fetched first; what was not applied waits at the cursor.

        Raises:
            RegistryError: registry-expired (the pull loop backs off and tries again).
        """
        if not self.service.registry.registry.expired(self.service.clock()):
            return
        with contextlib.suppress(HubError, RegistryError):  # the follower keeps the alarm of a refused one
            await self.refresh_registry()
        reg = self.service.registry.registry
        if reg.expired(self.service.clock()):
            raise RegistryError(f"registry version {reg.version} lapsed at {reg.expires_at}: nothing from the hub "
                                "is applied until it serves a renewed version", reason="registry-expired")

    def check_page_checkpoint(self, raw: bytes, frontier: merkle.Frontier) -> bool:
        """Check the checkpoint a log page ended with (PROTOCOL.md §8.3) against the node's frontier after applying
        that page; True if it is of the frontier's size and checked (False: another size, left to
        :meth:`check_checkpoint`).

        The hub's signature and the root are checked here, in the pull loop: no request, no database. What needs
        one, the consistency proof from the checkpoint accepted last and keeping the new one, is left to
        :meth:`accept_checkpoint` (the checkpoint loop, at most every ``checkpoint_interval``), off the path of
        the next pull. Its size is the node's cursor, which is never below a checkpoint it accepted: no rollback.

        Raises:
            HubError: not a checkpoint document.
            LogMisbehaviourError: ``checkpoint-bad-signature`` or ``log-inconsistent`` (the caller keeps it).
        """
        signed = logtrust.read_checkpoint(raw, self.service.registry.registry)
        cp = signed.checkpoint
        if cp.size != frontier.size:
            return False
        if cp.root_bytes != frontier.root():
            raise LogMisbehaviourError(f"checkpoint {cp.size} has root {cp.root}, the {cp.size} entries this node "
                                       f"pulled have root {frontier.root().hex()}",
                                       reason="log-inconsistent", offending=raw)
        self._verified = (signed, raw)
        self._verified_ready.set()
        return True

    async def accept_checkpoint(self) -> bool:
        """Accept the last checkpoint :meth:`check_page_checkpoint` verified, once it is shown to extend the one
        accepted before (consistency proof); True if newly accepted. The witness loop then co-signs it.

        Raises:
            HubError: the proof could not be fetched (the checkpoint stays pending: retried).
            LogMisbehaviourError: ``log-inconsistent`` (the caller keeps it).
        """
        if self._verified is None:
            return False
        signed, raw = self._verified
        async with self._accepting:
            accepted = await self.accepted_checkpoint()
            if accepted is not None:
                old = accepted.checkpoint.size
                if signed.checkpoint.size < old or accepted.payload == signed.payload:
                    return False  # one at least as large was accepted meanwhile (by check_checkpoint)
                proof = await self._hub.consistency_proof(old, signed.checkpoint.size) \
                    if old < signed.checkpoint.size else []
                logtrust.check_consistent(accepted, signed, proof, raw)
            await self.store.trust.accept_checkpoint(raw)
            self._accepted = (signed,)
            if self._verified is not None and self._verified[0] is signed:
                self._verified = None
        self._cosign_wanted.set()
        return True

    async def check_checkpoint(self) -> bool:
        """Check the hub's latest checkpoint against what this node pulled; True if newly accepted.

        It must not be smaller than the last checkpoint accepted (rollback). At the node's cursor its root
        must be the root of the node's own frontier over every entry pulled, and it must extend the last
        accepted checkpoint (consistency proof; redundant with the frontier, which only ever grows, but a
        hub must be able to prove it). A larger one waits until the node has pulled that far. The one
        accepted is kept as received and co-signed by the witness loop.

        Raises:
            HubError: unreachable, or not a checkpoint document / proof at all (retried).
            LogMisbehaviourError: the caller keeps the evidence.
        """
        async with self._accepting:
            return await self._check_checkpoint()

    async def _check_checkpoint(self) -> bool:
        view = await self.service.trust.log_view()
        if view.cursor == 0 or view.frontier is None:
            return False  # an empty log has no checkpoint
        raw = await self._hub.checkpoint()
        signed = logtrust.read_checkpoint(raw, self.service.registry.registry)
        accepted = logtrust.stored_checkpoint(view.checkpoint)
        cp = signed.checkpoint
        if accepted is not None and cp.size < accepted.checkpoint.size:
            raise LogMisbehaviourError(f"the hub's latest checkpoint has size {cp.size}, below the size "
                                       f"{accepted.checkpoint.size} this node accepted",
                                       reason="checkpoint-rollback", offending=raw)
        if cp.size > view.cursor:
            return False  # entries appended meanwhile: pull them first
        if cp.size < view.cursor:
            raise HubProtocolError(f"the hub's latest checkpoint (size {cp.size}) is behind the log it served "
                                   f"({view.cursor} entries)")
        if cp.root_bytes != view.frontier.root():
            raise LogMisbehaviourError(f"checkpoint {cp.size} has root {cp.root}, the {cp.size} entries this node "
                                       f"pulled have root {view.frontier.root().hex()}",
                                       reason="log-inconsistent", offending=raw)
        if accepted is not None:
            if accepted.payload == signed.payload:
                return False
            old = accepted.checkpoint.size
            proof = await self._hub.consistency_proof(old, cp.size) if old < cp.size else []
            logtrust.check_consistent(accepted, signed, proof, raw)
        await self.store.trust.accept_checkpoint(raw)
        self._accepted = (signed,)
        self._cosign_wanted.set()
        return True

    async def accepted_checkpoint(self) -> SignedCheckpoint | None:
        """The last checkpoint this node accepted: read from the store once, then kept as this engine accepts
        (only this engine accepts; the checkpoint and witness loops ask each time)."""
        if self._accepted is None:
            self._accepted = (logtrust.stored_checkpoint((await self.store.trust.log_view()).checkpoint),)
        return self._accepted[0]

    async def resume_after_rollback(self) -> bool:
        """Resume applying once a hub that rolled back has recovered (PROTOCOL.md §11.1); True if it resumed.

        Only when every unresolved piece of evidence is a ``checkpoint-rollback``: the hub's latest checkpoint
        must again be at least as large as the one this node accepted and extend it (consistency proof). The
        evidence stays kept, marked resolved; own envelopes the rewound hub lost or refused go back to the outbox.

        Raises:
            HubError: the hub could not answer (still recovering: 503 ``hub-recovering``).
            LogMisbehaviourError: the recovered log does not extend the accepted checkpoint (the caller keeps it).
        """
        held = await self.store.trust.evidence(100)
        if not held or any(e.reason != "checkpoint-rollback" for e in held):
            return False
        accepted = logtrust.stored_checkpoint((await self.store.trust.log_view()).checkpoint)
        if accepted is None:
            return False
        raw = await self._hub.checkpoint()
        signed = logtrust.read_checkpoint(raw, self.service.registry.registry)
        old, new = accepted.checkpoint.size, signed.checkpoint.size
        if new < old:
            return False  # still rewound
        logtrust.check_consistent(accepted, signed, await self._hub.consistency_proof(old, new) if old < new else [],
                                  raw)
        await self.service.trust.resolve(held[0])
        requeued = await self.store.outbox.requeue_after_rollback(new)
        if requeued:
            self.service.outbox_changed.set()
        log.warning("the hub's log extends checkpoint %d again (now %d): resumed; %d own envelope(s) pushed again",
                    old, new, requeued)
        return True

    async def cosign_once(self) -> bool:
        """Send the hub this node's co-signature of the last checkpoint accepted (witnessing); True if sent.

        Raises:
            HubError.
        """
        signed = await self.accepted_checkpoint()
        if signed is None or self.state.cosigned_size == signed.checkpoint.size:
            return False
        key = await self.service.signing_key(self.service.clock())
        await self._hub.post_cosignature(signed.checkpoint.size, cosign(signed, key))
        self.state.cosigned_size = signed.checkpoint.size
        return True

    async def check_peers_once(self) -> None:
        """Compare the accepted checkpoint with each peer's (split view); a contradiction is kept as evidence.

        A peer that cannot be reached or serves no valid hub-signed checkpoint is the peer's problem: it is
        shown on the status page, not as an alarm.
        """
        for url in self.config.peer_urls:
            checked = {"url": url, "checked_at": self.service.clock(), "size": None, "root": None, "error": None}
            try:
                checked.update(await self.check_peer(url))
            except LogMisbehaviourError as e:
                await self.service.trust.record_misbehaviour(e, peer=url)
                checked["error"] = f"{e.reason}: {e.message}"
            except HubError as e:
                checked["error"] = f"{e.reason}: {e.message}"
            self.state.peers[url] = checked

    async def check_peer(self, url: str) -> dict[str, Any]:
        """Compare the accepted checkpoint with the one peer ``url`` serves; its size and root.

        Same size with another root is a split view; different sizes need the hub's consistency proof
        between the two, and one that does not verify is a split view too.

        Raises:
            HubError: the peer or the hub could not answer (or the peer's document is not hub-signed).
            LogMisbehaviourError: ``split-view``.
        """
        raw = await self._hub.peer_checkpoint(url)
        try:
            theirs = logtrust.read_checkpoint(raw, self.service.registry.registry, source=f"peer {url}")
        except LogMisbehaviourError as e:  # a forgery shows the peer (or its path) misbehaving, not the hub
            raise HubProtocolError(e.message, reason=e.reason) from e
        ours = logtrust.stored_checkpoint((await self.store.trust.log_view()).checkpoint)
        if ours is not None:
            first, second = sorted((ours, theirs), key=_size)
            proof = [] if _size(first) == _size(second) else \
                await self._hub.consistency_proof(_size(first), _size(second))
            logtrust.check_consistent(first, second, proof, raw, reason="split-view")
        return {"size": theirs.checkpoint.size, "root": theirs.checkpoint.root}

    async def refresh_registry(self) -> bool:
        """Fetch the registry and move to it if it is a valid successor; True if it changed.

        Raises:
            HubError; RegistryError (rollback, freeze, bad signature: the service raises an alarm).
        """
        changed = await self.service.registry_follower.refresh(self._hub.fetch_registry)
        await self.service.applier.rejudge()  # a key's end published since may concern envelopes held (ADR 19)
        return changed

    async def rotate_key(self, effective_in: timedelta) -> RotationOutcome:
        """Replace the node's signing key: a new key takes over ``effective_in`` from now (PROTOCOL.md §12).

        The registry is refreshed first (the rotation must be made against the hub's current version);
        the new key and the rotation are saved in the node directory before the documents go to the hub,
        which publishes the next registry version at once; the node then fetches it. Authoring waits
        meanwhile, so nothing is signed between the submission and the new registry. Envelopes keep being
        signed with the current key until ``effective``, then with the new one (node/own_keys.py).

        A rotation whose submission got no answer (the hub may or may not hold it) is kept; running this
        again while the registry has not moved resubmits it rather than starting another.

        Raises:
            RotationError: ``rotation-pending`` (one has not run its course) or ``rotation-refused``
                (the hub refused it or did not decide it; the new key is forgotten).
            KeyNotValidError: no own key is valid now, so none can sign the rotation.
            HubError: the hub could not be reached or served a registry this node refuses.
        """
        try:
            await self.refresh_registry()
        except RegistryError as e:
            raise HubProtocolError(f"the hub's registry is refused ({e.reason}: {e.message}): a rotation made "
                                   "against it would not count", reason="registry-refused") from e
        keys = self.service.keys
        async with self.service.exclusive():
            registry = self.service.registry.registry
            now = self.service.clock()
            pending = keys.pending_rotation(registry, now)
            resubmitted = pending is not None and pending.state(registry, keys.member) is RotationState.UNDECIDED
            rotation = pending if resubmitted and pending else keys.start_rotation(registry, now, effective_in)
            try:
                answer = await self._hub.submit_governance(rotation.documents)
            except HubProtocolError as e:  # refused: never registered, so forgotten
                keys.discard(rotation)
                raise RotationError(f"the hub refused the rotation: {e.message}") from e
            except HubUnavailableError as e:
                raise HubUnavailableError(
                    f"the rotation to {rotation.kid} may not have reached the hub ({e.message}); the key is kept and "
                    "the node follows the registry: run rotate-key again to resubmit it") from e
            version = answer.get("registry_version")
            if type(version) is not int or version <= rotation.base:
                keys.discard(rotation)
                raise RotationError(f"the hub kept the rotation but published no registry version for it "
                                    f"(still {version}); the new key is forgotten")
            with contextlib.suppress(HubError, RegistryError):  # if not now, the registry loop fetches it
                await self.refresh_registry()
        log.info("key rotation to %s submitted (effective %s, registry version %s)", rotation.kid,
                 rotation.effective, version)
        return RotationOutcome(rotation, version, self.service.registry.registry.version, resubmitted)

    # -- the loops --------------------------------------------------------------------------------------

    def _ok(self) -> None:
        self.state.reachable = True

    def _failed(self, e: Exception) -> None:
        task = asyncio.current_task()
        loop = task.get_name().removeprefix("ipdn-node-_").removesuffix("_loop") if task else "?"
        key = (loop, e.reason if isinstance(e, IpdnError) else "internal")
        self.state.errors[key] = self.state.errors.get(key, 0) + 1
        if isinstance(e, IpdnError):
            log.warning("%s: %s", e.reason, e.message)
            if isinstance(e, HubError):
                self.state.reachable = not isinstance(e, HubUnavailableError)
            text = f"{e.reason}: {e.message}"
        else:
            log.exception("sync step failed")
            text = f"internal: {type(e).__name__}: {e}"
        self.state.last_error, self.state.last_error_at = text, self.service.clock()
        self.state.last_error_reason = e.reason if isinstance(e, IpdnError) else "internal-error"

    async def _push_loop(self) -> None:
        backoff = Backoff(self.config.backoff_base, self.config.backoff_cap, self.rng)
        changed = self.service.outbox_changed
        while True:
            # Also look every outbox_poll seconds: `ipdn node import` writes the outbox from another process.
            if (not await wait_event(changed, self.config.outbox_poll)
                    and not await self.store.outbox.entries(PENDING, 1)):
                continue
            changed.clear()  # authoring during the push sets it again, so nothing is missed
            try:
                while await self.push_once():
                    pass
            except Exception as e:  # a loop must outlive any one failure (logged, shown on status)
                self._failed(e)
                await asyncio.sleep(retry_delay(backoff, e))
                changed.set()
            else:
                self._ok()
                backoff.reset()

    async def _inclusion_loop(self) -> None:
        while True:
            answer = await self._inclusions.get()
            try:
                await self.check_own_included(*answer)
            except Exception as e:  # that answer stays unchecked; the next ones are checked
                self._failed(e)

    async def _pull_loop(self) -> None:
        backoff = Backoff(self.config.backoff_base, self.config.backoff_cap, self.rng)
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            # With a checkpoint check still due, hold the long-poll only briefly so that it comes soon.
            wait = 1 if self.unchecked else self.config.long_poll_wait
            try:
                n = await self.pull_once(wait, every=self.config.checkpoint_interval)
            except LogHaltedError as e:  # evidence is kept; only an operator can decide what comes next ...
                self._failed(e)
                if not await self._await_recovery(backoff):
                    return
                continue
            except Exception as e:
                self._failed(e)
                await asyncio.sleep(retry_delay(backoff, e))
                continue
            self._ok()
            backoff.reset()
            idle = self.config.min_poll_interval - (loop.time() - started)
            if n == 0 and idle > 0:  # the hub answered an empty page without holding it
                await asyncio.sleep(idle)

    async def _await_recovery(self, backoff: Backoff) -> bool:
        """... except after a ``checkpoint-rollback``: wait for the hub to recover (a hub restored from a backup
        rebuilds its log from the members, docs/adr/0021); True once applying resumes, False for good."""
        while True:
            await asyncio.sleep(backoff.next_delay())
            try:
                if await self.resume_after_rollback():
                    backoff.reset()
                    return True
                if any(e.reason != "checkpoint-rollback" for e in await self.store.trust.evidence(100)):
                    return False
            except LogMisbehaviourError as e:
                await self.service.trust.record_misbehaviour(e)
                return False
            except Exception as e:
                self._failed(e)

    async def _checkpoint_loop(self) -> None:
        backoff = Backoff(self.config.backoff_base, self.config.backoff_cap, self.rng)
        ready = self._verified_ready
        while True:
            await ready.wait()
            ready.clear()
            try:
                await self.accept_checkpoint()
            except LogMisbehaviourError as e:  # the pull loop finds the evidence before its next page and halts
                await self.service.trust.record_misbehaviour(e)
                continue
            except Exception as e:
                self._failed(e)
                await asyncio.sleep(retry_delay(backoff, e))
                ready.set()
                continue
            backoff.reset()
            # Accept at most this often: each acceptance costs the hub a proof and this node a write, and the
            # pull loop has checked every root already.
            await asyncio.sleep(self.config.checkpoint_interval)

    async def _witness_loop(self) -> None:
        backoff = Backoff(self.config.backoff_base, self.config.backoff_cap, self.rng)
        wanted = self._cosign_wanted
        while True:
            await wanted.wait()
            wanted.clear()
            try:
                await self.cosign_once()
            except HubUnavailableError as e:
                self._failed(e)
                await asyncio.sleep(retry_delay(backoff, e))
                wanted.set()
            except Exception as e:  # refused: the next accepted checkpoint tries again
                self._failed(e)
            else:
                backoff.reset()
                # Co-sign the latest accepted checkpoint at most this often: witnessing every batch
                # would cost the hub a write per node per batch and add nothing.
                await asyncio.sleep(self.config.witness_interval)

    async def _peer_loop(self) -> None:
        while True:
            try:
                if not await self.store.trust.evidence(1):  # once halted, the evidence is kept: stop comparing
                    await self.check_peers_once()
            except Exception as e:
                self._failed(e)
            await asyncio.sleep(self.config.peer_interval)

    async def _registry_loop(self) -> None:
        while True:
            try:
                await self.refresh_registry()
                self._ok()
            except RegistryError as e:  # the service keeps the current registry and raises an alarm
                log.error("registry refused: %s: %s", e.reason, e.message)
            except Exception as e:
                self._failed(e)
            await asyncio.sleep(self.config.registry_refresh)


def _wall() -> float:
    """Seconds of the wall clock, for the sync trace only: compared across processes, deciding nothing."""
    return time.time()


def _size(signed: SignedCheckpoint) -> int:
    return signed.checkpoint.size
