"""The hub's aiohttp application: :func:`create_app` wires the state (federation/hub/appkeys.py), the API
(federation/hub/api/), the dashboard, OpenAPI, metrics and health; the lifecycle opens the store and starts the
service, governance and monitor. Handlers parse and authenticate, then hand over to HubService."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Collection, Mapping
from datetime import timedelta

import aiohttp
from aiohttp import web

from federation.hub.api import governance as governance_api
from federation.hub.api import log as log_api
from federation.hub.api import push as push_api
from federation.hub.api import recovery as recovery_api
from federation.hub.api import registry as registry_api
from federation.hub.api import status as status_api
from federation.hub.appkeys import (
    CONFIG,
    GOVERNANCE,
    GOVERNANCE_ADDRESS_LIMITS,
    GOVERNANCE_KEY_LIMITS,
    HUB_METRICS,
    MEMBER_LIMITS,
    MONITOR,
    RECOVERY,
    REFUSAL_LIMITS,
    REPLAYS,
    SERVICE,
)
from federation.hub.config import HubConfig
from federation.hub.dashboard import pages as dashboard
from federation.hub.ingest.service import HubService
from federation.hub.monitor import HubMetrics, Monitor
from federation.hub.recovery import MARKER, Recovery, RecoveryReport, http_fetch, parse_endpoints
from federation.hub.registrar import GovernanceService
from federation.hub.store.log import HubStore, QuarantineBounds
from federation.protocol import httpsig
from federation.protocol.keys import SigningKey
from federation.protocol.registry import load_registry, parse_registry
from federation.server import openapi
from federation.server.access import OPERATOR_ACCESS
from federation.server.logs import access_middleware, request_id_middleware
from federation.server.ratelimit import RateLimiter
from federation.server.times import Clock, utcnow
from federation.server.web import (
    BODY_TIMEOUT,
    FORM_MAX_BYTES,
    TRUSTED_PROXIES,
    add_health_route,
    problems_middleware,
)

log = logging.getLogger("ipdn.hub")


async def _service(cfg: HubConfig, *, verify_workers: int, clock: Clock = utcnow) -> HubService:
    """The hub service over its store (migrated on open), with the newest registry: registry.json or a
    version decided while registry.json was not yet rewritten."""
    store = await HubStore.open(cfg.db_url)
    registry = load_registry(cfg.registry_path)
    stored = await store.latest_registry()
    if stored is not None and parse_registry(stored).registry.version > registry.registry.version:
        registry = parse_registry(stored)
    bounds = QuarantineBounds(item=cfg.quarantine_max_bytes, member=cfg.quarantine_member_bytes,
                              total=cfg.quarantine_total_bytes, items=cfg.quarantine_member_items)
    return HubService(store, registry, SigningKey.load(cfg.key_path), clock=clock, writer_batch=cfg.writer_batch,
                      verify_workers=verify_workers, shared_poll=cfg.shared_poll, quarantine_bounds=bounds)


async def prepare(cfg: HubConfig) -> None:
    """Migrate and do first-start work (Merkle backfill, first checkpoint, registry row) once, before
    several workers start on the same database."""
    service = await _service(cfg, verify_workers=0)
    await service.start()
    await service.stop()
    await service.store.close()


def _member_session() -> aiohttp.ClientSession:
    """The session a recovering hub asks its members with (bounded waits: a silent member is reported, not awaited)."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120, connect=5, sock_read=30))


def _recovery(cfg: HubConfig, service: HubService, session: aiohttp.ClientSession) -> Recovery:
    return Recovery(service, http_fetch(session), endpoints=parse_endpoints(cfg.member_endpoints),
                    marker=cfg.dir / MARKER)


async def _recover_until_done(recovery: Recovery, interval: float) -> None:
    """A restored hub's rounds (read-only meanwhile) until its log holds what the members co-signed."""
    while recovery.active:
        try:
            report = await recovery.run()
            log.warning("recovery round: %s: %s", report.outcome, report.detail)
        except Exception:  # a round must not end the task (the members answer later)
            log.exception("recovery round failed")
        if recovery.active:
            await asyncio.sleep(interval)


async def recover_offline(cfg: HubConfig, *, only: Collection[str] = (), endpoints: Mapping[str, str] | None = None,
                          dry_run: bool = False, force: bool = False) -> RecoveryReport:
    """One recovery round on a hub that is not running (``ipdn hub recover`` with the hub stopped, e.g. rebuilt
    after losing its disk); unless it completes, the hub starts read-only and carries on by itself."""
    service = await _service(cfg, verify_workers=0)
    await service.start()
    try:
        async with _member_session() as session:
            recovery = _recovery(cfg, service, session)
            if not dry_run:
                recovery.begin("begun by ipdn hub recover")
            return await recovery.run(only=only, endpoints=endpoints, dry_run=dry_run, force=force)
    finally:
        await service.stop()
        await service.store.close()


async def _lifecycle(app: web.Application, clock: Clock) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    service = await _service(cfg, verify_workers=cfg.verify_workers, clock=clock)
    store = service.store
    await service.start()
    app[SERVICE] = service
    session = _member_session()
    recovery = app[RECOVERY] = _recovery(cfg, service, session)
    if recovery.active:
        log.warning("hub restored or rebuilt (%s): read-only until its log is recovered from the members",
                    recovery.marker)
    elif recovery.probe():
        log.info("asking the members whether they hold more of the log (read-only until they answered)")
    recovering = asyncio.create_task(_recover_until_done(recovery, cfg.recovery_interval), name="hub-recovery")
    # Signatures made before this process started were never seen by its replay cache: refused as expired.
    app[REPLAYS] = httpsig.ReplayCache(window=cfg.replay_window, since=int(service.clock().timestamp()))
    governance = app[GOVERNANCE] = GovernanceService(
        service, cfg.registry_path, max_pending_applications=cfg.max_pending_applications,
        lifetime=timedelta(seconds=cfg.registry_lifetime))
    if not recovery.active:  # a hub down for days comes back with a registry nodes accept again
        await governance.renew_if_due()
    monitor = app[MONITOR] = Monitor(service, silent_after=cfg.silent_after, flush_interval=cfg.pull_flush_interval)
    await monitor.start()
    app[HUB_METRICS].monitor = monitor
    renewals = asyncio.create_task(_renew_registry(governance, recovery, cfg.registry_check_interval),
                                   name="hub-renewals")
    log.info("hub ready: log size %d, registry v%d", service.size, service.registry.registry.version)
    yield
    renewals.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await renewals
    recovering.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await recovering
    await session.close()
    await monitor.stop()
    await service.stop()
    await store.close()


async def _renew_registry(governance: GovernanceService, recovery: Recovery, interval: float) -> None:
    """Renew the registry before it lapses (GovernanceService.renew_if_due), checking every ``interval`` s, and
    never while the hub recovers: a restored hub's registry may be older than the members', and a renewal of it
    would be a version they hold another of (ADR 0021); it is checked as soon as recovery ends."""
    while True:
        if recovery.active:
            await recovery.finished()
        else:
            await asyncio.sleep(interval)
        if recovery.active:  # begun again meanwhile (by the operator)
            continue
        try:
            await governance.renew_if_due()
        except Exception:  # tried again at the next check; the registry still has half its lifetime
            log.exception("renewing the registry failed")


async def _wake_readers(app: web.Application) -> None:
    app[SERVICE].wake_readers()


def create_app(config: HubConfig, *, clock: Clock = utcnow) -> web.Application:
    """The hub's web application; ``clock`` is the time every decision reads (tests pass one they move)."""
    metrics = HubMetrics()  # its monitor is set when the service starts
    app = web.Application(middlewares=[request_id_middleware, access_middleware, metrics.base.middleware(),
                                       problems_middleware, recovery_api.read_only_middleware],
                          client_max_size=FORM_MAX_BYTES)
    app[CONFIG] = config
    app[HUB_METRICS] = metrics
    app[MEMBER_LIMITS] = RateLimiter(config.push_rate, config.push_burst)
    app[REFUSAL_LIMITS] = RateLimiter(config.refusal_rate, config.refusal_burst)
    app[GOVERNANCE_ADDRESS_LIMITS] = RateLimiter(config.governance_rate, config.governance_burst)
    app[GOVERNANCE_KEY_LIMITS] = RateLimiter(config.governance_key_rate, config.governance_key_burst)
    app[BODY_TIMEOUT] = config.body_timeout
    app[TRUSTED_PROXIES] = config.proxies
    app[OPERATOR_ACCESS] = config.operator_access
    app.cleanup_ctx.append(functools.partial(_lifecycle, clock=clock))
    app.on_shutdown.append(_wake_readers)
    push_api.register_routes(app)
    log_api.register_routes(app)
    recovery_api.register_routes(app)
    registry_api.register_routes(app)
    governance_api.register_routes(app)
    status_api.register_routes(app)
    openapi.register_routes(app, "hub")
    metrics.base.register(app)
    dashboard.register(app)
    add_health_route(app)
    return app
