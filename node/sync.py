"""The sync engine: push the outbox to the hub, pull the hub's log, follow the registry.

Three loops, each owned by the app (started and cancelled by its cleanup context):

- push: woken when authoring adds to the outbox (and once at start); sends pending own envelopes in
  seq order, in batches signed with RFC 9421, and records what the hub accepted. An own envelope
  the hub rejects stops pushing (its successors chain on it) until an operator acts.
- pull: long-polls ``GET /api/v1/log`` from the stored cursor and applies each page.
- registry: fetches the registry every ``registry_refresh`` seconds and moves forward when valid.

A network failure or a 5xx answer backs off exponentially with full jitter (base 0.5 s, cap 30 s by
default, reset on success); authoring and serving go on meanwhile. All three loops share one
``aiohttp.ClientSession``; the hub's URL is read from the current registry at every request, so a
hub handover is followed without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from federation import httpsig, strictjson
from federation.errors import IpdnError, StrictJsonError
from federation.registry import RegistryError
from node.config import NodeConfig
from node.errors import HubError, HubProtocolError, HubUnavailableError
from node.service import NodeService
from node.store import PENDING, REJECTED, NodeStore

log = logging.getLogger("ipdn.node.sync")

ENVELOPES_PATH = "/api/v1/envelopes"
LOG_PATH = "/api/v1/log"
REGISTRY_PATH = "/api/v1/registry"


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
    last_error_at: datetime | None = None
    log_size: int | None = None


@dataclass(frozen=True, slots=True)
class LogPage:
    entries: list[tuple[int, Any]]  # (position, envelope JWS object)
    size: int | None


class HubClient:
    """The hub's HTTP API as the node uses it; errors come out as HubUnavailableError/HubProtocolError."""

    def __init__(self, session: aiohttp.ClientSession, config: NodeConfig, service: NodeService) -> None:
        self.session, self.config, self.service = session, config, service

    def _url(self, path: str) -> str:
        return self.service.registry.registry.hub_url.rstrip("/") + path

    async def _request(self, method: str, path: str, *, wait: float = 0, **kw: Any) -> bytes:
        url = self._url(path)
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout + wait,
                                        connect=self.config.connect_timeout)
        try:
            async with self.session.request(method, url, timeout=timeout, **kw) as resp:
                body = await self._read(resp)
                if resp.status >= 500 or resp.status == 429:
                    raise HubUnavailableError(f"{method} {url}: {resp.status} {_problem_text(body)}")
                if resp.status != 200:
                    raise HubProtocolError(f"{method} {url}: {resp.status} {_problem_text(body)}")
                return body
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise HubUnavailableError(f"{method} {url}: {type(e).__name__}: {e}") from e

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        limit, size, chunks = self.config.max_response_bytes, 0, []
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise HubProtocolError(f"answer from the hub is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _json(self, body: bytes) -> Any:
        try:
            return strictjson.loads(body, strictjson.JsonLimits(max_bytes=self.config.max_response_bytes))
        except StrictJsonError as e:
            raise HubProtocolError(f"the hub's answer is not strict JSON: {e.message}") from e

    async def fetch_registry(self) -> bytes:
        return await self._request("GET", REGISTRY_PATH)

    async def push(self, envelopes: Sequence[bytes]) -> dict[int, dict[str, Any]]:
        """Send envelopes (their stored wire bytes, not re-serialized); the hub's result per index."""
        body = b'{"envelopes":[' + b",".join(envelopes) + b"]}"
        headers = {"Content-Type": "application/json"}
        key = self.service.key
        # The nonce makes every signature unique: a retry of the same batch within the same second is
        # not a replay to the hub.
        headers.update(httpsig.sign_request("POST", self._url(ENVELOPES_PATH), headers, body,
                                            private_key=key.key, keyid=key.kid, created=int(time.time()),
                                            nonce=secrets.token_urlsafe(16)))
        doc = self._json(await self._request("POST", ENVELOPES_PATH, data=body, headers=headers))
        try:
            return {int(r["index"]): r for r in doc["results"] if isinstance(r, dict)}
        except (KeyError, TypeError, ValueError) as e:
            raise HubProtocolError(f"push answer without results: {e}") from e

    async def log(self, after: int, limit: int, wait: int) -> LogPage:
        params = {"after": str(after), "limit": str(limit), "wait": str(wait)}
        doc = self._json(await self._request("GET", LOG_PATH, params=params, wait=wait))
        try:
            entries = [(e["position"], e["envelope"]) for e in doc["entries"]]
            size = doc.get("size")
        except (KeyError, TypeError, AttributeError) as e:
            raise HubProtocolError(f"log page is malformed: {e}") from e
        if not all(type(p) is int for p, _ in entries):
            raise HubProtocolError("log positions must be integers")
        return LogPage(entries, size if type(size) is int else None)


def _problem_text(body: bytes) -> str:
    """The reason and detail of an RFC 9457 answer, or the start of whatever else came back."""
    try:
        doc = strictjson.loads(body)
        return f"{doc.get('reason', '')}: {doc.get('detail', '')}".strip(": ")
    except (IpdnError, AttributeError):
        return body[:200].decode("utf-8", "replace")


class SyncEngine:
    def __init__(self, config: NodeConfig, service: NodeService, store: NodeStore, *,
                 rng: Callable[[], float] = random.random) -> None:
        self.config, self.service, self.store, self.rng = config, service, store, rng
        self.state = SyncState()
        self.client: HubClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, *, loops: bool = True) -> None:
        """Open the HTTP session and, unless ``loops`` is False (tests drive it by hand), the loops."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
            total=None, connect=self.config.connect_timeout))
        self.client = HubClient(self._session, self.config, self.service)
        if loops:
            self.service.outbox_changed.set()  # push whatever a previous run left pending
            self._tasks = [asyncio.create_task(loop(), name=f"ipdn-node-{loop.__name__}")
                           for loop in (self._push_loop, self._pull_loop, self._registry_loop)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
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
        if await self.store.outbox(REJECTED, 1):
            return False  # the hub refused an own envelope; its successors would fail the same way
        limit = min(self.config.push_batch, self.service.registry.registry.policies.max_batch)
        batch = await self.store.outbox(PENDING, limit)
        if not batch:
            return False
        seqs = [row.seq for row in batch]
        try:
            results = await self._hub.push([row.envelope for row in batch])
        except HubError:
            await self.store.record_push(seqs, now=self.service.clock())
            raise
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
        await self.store.record_push(seqs, accepted=accepted, rejected=rejected, now=self.service.clock())
        self.state.last_push_at = self.service.clock()
        if rejected is not None:
            log.error("the hub rejected own envelope seq %s: %s: %s; pushing stops until an operator acts",
                      *rejected)
        return rejected is None and len(batch) == limit

    async def pull_once(self, wait: int = 0) -> int:
        """Fetch and apply one page of the log after the stored cursor; the number of entries.

        Raises:
            HubError: the hub could not be reached or answered out of protocol.
        """
        after = await self.store.cursor()
        page = await self._hub.log(after, self.config.pull_limit, wait)
        if self.service.signed_by_unknown_keys(page.entries):
            # A member admitted or a key rotated since the last refresh: without the new registry its
            # envelopes would be quarantined and its chain would stop here.
            with contextlib.suppress(HubError, RegistryError):
                await self.refresh_registry()
        await self.service.apply_log(after, page.entries)
        self.state.last_pull_at = self.service.clock()
        self.state.log_size = page.size
        return len(page.entries)

    async def refresh_registry(self) -> bool:
        """Fetch the registry and move to it if it is a valid successor; True if it changed.

        Raises:
            HubError; RegistryError (rollback, freeze, bad signature: the service raises an alarm).
        """
        return self.service.accept_registry(await self._hub.fetch_registry())

    # -- the loops --------------------------------------------------------------------------------------

    def _ok(self) -> None:
        self.state.reachable = True

    def _failed(self, e: Exception) -> None:
        if isinstance(e, HubError):
            log.warning("%s: %s", e.reason, e.message)
            self.state.reachable = not isinstance(e, HubUnavailableError)
            text = f"{e.reason}: {e.message}"
        else:
            log.exception("sync step failed")
            text = f"internal: {type(e).__name__}: {e}"
        self.state.last_error, self.state.last_error_at = text, self.service.clock()

    async def _push_loop(self) -> None:
        backoff = Backoff(self.config.backoff_base, self.config.backoff_cap, self.rng)
        changed = self.service.outbox_changed
        while True:
            await changed.wait()
            changed.clear()  # authoring during the push sets it again, so nothing is missed
            try:
                while await self.push_once():
                    pass
            except Exception as e:  # a loop must outlive any one failure (logged, shown on status)
                self._failed(e)
                await asyncio.sleep(backoff.next_delay())
                changed.set()
            else:
                self._ok()
                backoff.reset()

    async def _pull_loop(self) -> None:
        backoff = Backoff(self.config.backoff_base, self.config.backoff_cap, self.rng)
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                n = await self.pull_once(self.config.long_poll_wait)
            except Exception as e:
                self._failed(e)
                await asyncio.sleep(backoff.next_delay())
                continue
            self._ok()
            backoff.reset()
            idle = self.config.min_poll_interval - (loop.time() - started)
            if n == 0 and idle > 0:  # the hub answered an empty page without holding it
                await asyncio.sleep(idle)

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
