"""The webhook delivery worker: POSTs queued events to partners' URLs, signed, with retries.

One asyncio task, started with the node (node/app.py) like the sync loops, and lanes under it:

- the dispatcher looks for active subscriptions with a delivery due (node/webhooks/store.py) and starts a
  lane for each one not already served, at most ``webhook_concurrency`` at once. It wakes when the store
  queues something, when a lane ends, when the next retry falls due, and every ``webhook_poll_interval``
  (so that what another process changed in the database, e.g. ``ipdn node webhook enable``, is seen);
- a lane sends its subscription's due deliveries one at a time, oldest event first, and ends at the first
  failure (the rest are looked at again at once by the dispatcher). So a subscription receives events in
  the order the node applied them while its receiver answers; a delivery that failed is retried on its
  own schedule and may arrive after later ones (``data.version`` orders the versions of one record).

An attempt is a success on 2xx. Anything else (3xx included: redirects are not followed), a timeout or a
connection error is retried after the next step of ``webhook_schedule`` (scaled by jitter; a longer
``Retry-After`` is honoured up to the schedule's longest step) until the schedule ends, then the delivery
has failed. 410 Gone disables the subscription at once; so does failing without a success for
``webhook_disable_after_days``. Every attempt is kept (time, status, error, duration).

Everything is in the database: a restart resumes the queue where it was. A delivery whose attempt was
under way when the node stopped is sent again with the same ``webhook-id`` (at least once; the receiver
deduplicates).

Connections go only to public addresses (loopback too when ``webhook_allow_loopback``): every name is
resolved through :class:`GuardedResolver`, so a host name that resolves to a private address is refused
when connecting, not only when the subscription was made.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from federation.protocol import webhooks as standard_webhooks
from federation.protocol.keys import SigningKey
from federation.server.aio import wait_event
from node.config import NodeConfig
from node.webhooks import events as webhooks
from node.webhooks.store import AttemptResult, DueDelivery, WebhookStore

log = logging.getLogger("ipdn.node.webhooks")

Clock = Callable[[], datetime]
LANE_BATCH = 20  # due deliveries a lane reads at a time
PRUNE_EVERY = 3600.0  # seconds between prunes of old deliveries
ERROR_BYTES = 300  # of a refusing answer's body kept with the attempt


class GuardedResolver(AbstractResolver):
    """DNS resolution that only hands out addresses a delivery may connect to (node/webhooks/events.py
    ``address_allowed``): a name resolving to a private, link-local or (unless allowed) loopback address
    fails to connect."""

    def __init__(self, *, allow_loopback: bool) -> None:
        self.allow_loopback = allow_loopback
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if webhooks.address_allowed(r["host"], allow_loopback=self.allow_loopback)]
        if not allowed:
            # errno and strerror: aiohttp shows the strerror in the connection error it raises.
            raise OSError(errno.EADDRNOTAVAIL,
                          f"{host} resolves to no public address ({', '.join(r['host'] for r in found)})")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in its seconds form (an HTTP date is ignored)."""
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


class WebhookWorker:
    def __init__(self, config: NodeConfig, store: WebhookStore, key: SigningKey, *, clock: Clock,
                 rng: Callable[[], float] = random.random) -> None:
        self.config, self.store, self.key, self.clock, self.rng = config, store, key, clock, rng
        self.schedule = config.webhook_retry_schedule
        self.disable_after = timedelta(days=config.webhook_disable_after_days)
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self._task: asyncio.Task[None] | None = None
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._last_prune = float("-inf")

    async def start(self, *, loop: bool = True) -> None:
        """Open the HTTP client and, unless ``loop`` is False (tests drive :meth:`drain`), the dispatcher."""
        self._resolver = GuardedResolver(allow_loopback=self.config.webhook_allow_loopback)
        connector = aiohttp.TCPConnector(resolver=self._resolver, limit=self.config.webhook_concurrency * 2)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(
            total=self.config.webhook_timeout), auto_decompress=False)
        if loop:
            self._task = asyncio.create_task(self._run(), name="ipdn-node-webhooks")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._lanes.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task, self._lanes = None, {}
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:  # the connector closes only a resolver it made itself
            await self._resolver.close()
            self._resolver = None

    # -- dispatching ---------------------------------------------------------------------------------------

    async def dispatch(self) -> int:
        """Start a lane for each subscription with a delivery due that none serves yet; how many started."""
        room = self.config.webhook_concurrency - len(self._lanes)
        if room <= 0:
            return 0
        due = await self.store.due_subscriptions(self.clock(), exclude=list(self._lanes), limit=room)
        for sub_id in due:
            self._lanes[sub_id] = asyncio.create_task(self._lane(sub_id), name=f"ipdn-webhook-{sub_id}")
        return len(due)

    async def drain(self) -> None:
        """Deliver everything due now, and what falls due while doing so (tests; a compressed schedule
        makes retries due within it)."""
        while await self.dispatch() or self._lanes:
            await asyncio.gather(*list(self._lanes.values()), return_exceptions=True)

    async def _lane(self, sub_id: str) -> None:
        try:
            while rows := await self.store.due_deliveries(sub_id, self.clock(), LANE_BATCH):
                for row in rows:
                    if not await self.deliver(row):
                        return  # one failing request at a time per subscription
        except Exception:  # e.g. the database: hold the lane a while rather than retry in a tight loop
            log.exception("webhook lane for %s failed", sub_id)
            await asyncio.sleep(self.config.webhook_poll_interval)
        finally:
            self._lanes.pop(sub_id, None)
            self.store.queued.set()  # the dispatcher may start another

    async def _run(self) -> None:
        queued, poll = self.store.queued, self.config.webhook_poll_interval
        while True:
            queued.clear()
            timeout = poll
            try:
                await self.dispatch()
                await self._prune()
                if len(self._lanes) < self.config.webhook_concurrency:
                    nxt = await self.store.next_due_at(exclude=list(self._lanes))
                    if nxt is not None:
                        timeout = min(poll, max(0.0, (nxt - self.clock()).total_seconds()))
            except Exception:  # the worker must outlive a database hiccup
                log.exception("webhook dispatch failed")
            await wait_event(queued, max(timeout, 0.01))

    async def _prune(self) -> None:
        now = time.monotonic()
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            n = await self.store.prune(self.clock() - timedelta(days=self.config.webhook_retention_days))
            if n:
                log.info("pruned %s old webhook deliveries", n)

    # -- one attempt ---------------------------------------------------------------------------------------

    async def deliver(self, row: DueDelivery) -> bool:
        """Make one attempt of ``row`` and keep its result; True if delivered."""
        if self._session is None:
            raise RuntimeError("WebhookWorker.start() opens the HTTP client first")
        at = self.clock()
        timestamp = int(at.timestamp())
        headers = standard_webhooks.headers(row.id, timestamp, row.body, key=self.key, secret=row.secret)
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        started = time.monotonic()
        try:
            host = (urlsplit(row.url).hostname or "").rstrip(".")
            if _is_ip(host) and not webhooks.address_allowed(host, allow_loopback=self.config.webhook_allow_loopback):
                raise OSError(f"{host} is not a public address")
            async with self._session.post(row.url, data=row.body, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                if not 200 <= status < 300:
                    text = (await resp.content.read(ERROR_BYTES)).decode("utf-8", "replace").strip()
                    error = f"HTTP {status}" + (f": {text}" if text else "")
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
        except TimeoutError:
            error = f"no answer within {self.config.webhook_timeout:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as e:
            error = f"{type(e).__name__}: {e}"
        duration_ms = round((time.monotonic() - started) * 1000)
        result = AttemptResult(at, status, error, duration_ms)
        next_at = None
        if not result.delivered and status != 410:
            wait = webhooks.retry_delay(self.schedule, row.attempts + 1, self.rng(), self.config.webhook_jitter)
            if wait is not None:
                if retry_after is not None:
                    wait = max(wait, min(retry_after, max(self.schedule)))
                next_at = self.clock() + timedelta(seconds=wait)
        disabled = await self.store.record_attempt(row, result, next_attempt_at=next_at,
                                                   disable_after=self.disable_after)
        if result.delivered:
            log.debug("delivered %s to %s (%s, %s ms)", row.id, row.subscription_id, status, duration_ms)
        else:
            log.warning("webhook %s to %s attempt %s failed: %s; %s", row.id, row.subscription_id, row.attempts + 1,
                        error, f"next at {next_at.isoformat()}" if next_at else "no retry left")
        if disabled:
            log.warning("webhook subscription %s disabled: %s", row.subscription_id, disabled)
        return result.delivered


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.split("%", 1)[0])
    except OSError:
        return False
    return True
