"""The hub's HTTP interface (aiohttp): parse and authenticate, then hand over to HubService."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from federation.hub.config import HubConfig
from federation.hub.dashboard import pages as dashboard
from federation.hub.ingest.service import HubService
from federation.hub.monitor import HubMetrics, Monitor
from federation.hub.registrar import GovernanceService
from federation.hub.store.log import HubStore
from federation.protocol import httpsig, merkle, strictjson
from federation.protocol.checkpoint import parse_checkpoint
from federation.protocol.errors import IpdnError, StrictJsonError, TrustError
from federation.protocol.keys import SigningKey
from federation.protocol.registry import load_registry, parse_registry
from federation.protocol.verify import Failure
from federation.server import openapi
from federation.server.logs import access_middleware, request_id_middleware
from federation.server.ratelimit import RateLimiter
from federation.server.web import (
    BODY_TIMEOUT,
    Problem,
    add_health_route,
    json_response,
    parse_json,
    problems_middleware,
    read_body,
    read_json,
)

log = logging.getLogger("ipdn.hub")

CONFIG = web.AppKey("config", HubConfig)
SERVICE = web.AppKey("service", HubService)
GOVERNANCE = web.AppKey("governance", GovernanceService)
REPLAYS = web.AppKey("replays", httpsig.ReplayCache)
MONITOR = web.AppKey("monitor", Monitor)
HUB_METRICS = web.AppKey("hub_metrics", HubMetrics)
# What a node's signature over a pull covers: no body, so no Content-Digest (the query is in @target-uri).
PULL_COMPONENTS = ("@method", "@target-uri")
MEMBER_LIMITS = web.AppKey("member_limits", RateLimiter)  # signed requests, per member
REFUSAL_LIMITS = web.AppKey("refusal_limits", RateLimiter)  # unauthenticated refusals kept, per client address


@dataclass
class Intake:
    """What a signed request brought so far: its bytes as received and, once authenticated, its member."""

    received: bytearray = field(default_factory=bytearray)
    member: str | None = None


def _as_problem(e: Problem | IpdnError) -> Problem:
    if isinstance(e, Problem):
        return e
    return Problem(403 if isinstance(e, TrustError) else 400 if isinstance(e, StrictJsonError) else 422,
                   e.reason, e.message)


def refusals_kept(handler: Callable[[web.Request, Intake], Awaitable[web.StreamResponse]]
                  ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Keep every refused request of ``handler`` in the quarantine with its reason and bytes as received.

    Not kept: 429 and 503 (load shed or handed over: not bad input), and refusals nobody authenticated past
    the per-address budget (answered all the same), so that an outsider cannot turn refusals into writes.
    """

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        intake = Intake()
        try:
            return await handler(request, intake)
        except (Problem, IpdnError) as e:
            problem = _as_problem(e)
            if problem.status in (429, 503):
                raise problem from None
            app = request.app
            cfg = app[CONFIG]
            address = request.remote or "unknown"
            if intake.member is None and app[REFUSAL_LIMITS].take(address, time.monotonic()) > 0:
                log.warning("refusal from %s not kept (over its budget): %s", address, problem.reason)
                raise problem from None
            kept = bytes(intake.received[:cfg.quarantine_max_bytes])
            await app[SERVICE].keep_refusal(intake.member, Failure("request", problem.reason, problem.detail), kept, {
                "method": request.method, "path": request.path, "status": problem.status, "remote": address,
                "content_length": request.content_length, "received_bytes": len(intake.received),
                "kept_bytes": len(kept), "sha256": hashlib.sha256(intake.received).hexdigest()})
            raise problem from None

    return wrapped


def limit_member(request: web.Request, member: str) -> None:
    """Per-member rate limit of signed requests (429 with Retry-After past it)."""
    limiter = request.app[MEMBER_LIMITS]
    wait = limiter.take(member, time.monotonic())
    if wait > 0:
        raise Problem(429, "rate-limited", f"{member} sends more than {limiter.rate:g} signed requests a second",
                      headers={"Retry-After": limiter.retry_after(wait)})


async def authenticate_push(request: web.Request, body: bytes,
                            required: tuple[str, ...] = httpsig.DEFAULT_COMPONENTS) -> str:
    """The member a push (or a signed pull) comes from, by its RFC 9421 signature (401 problem otherwise). A
    signature is accepted once: remembered in this process and, where workers share the log, in the database."""
    service = request.app[SERVICE]
    await service.fresh()
    reg = service.registry.registry
    keys = reg.member_keys()
    active = {m.code for m in reg.members if m.status == "active"}
    now = int(time.time())

    def resolve(kid: str) -> Any:
        k = keys.get(kid)
        return k.key if k is not None and k.member in active and k.valid_at(service.clock()) else None

    target = reg.hub_url.rstrip("/") + request.raw_path  # the public URI, never Host/X-Forwarded-*
    try:
        sig = httpsig.verify_request(request.method, target, request.headers, body, resolve_key=resolve, now=now,
                                     max_skew=request.app[CONFIG].replay_window, required=required)
        request.app[REPLAYS].check_and_remember(sig.keyid, sig.signature, sig.created, now)
    except httpsig.HttpSignatureError as e:
        raise Problem(401, e.reason, str(e)) from e
    window = request.app[CONFIG].replay_window
    if service.store.shared and not await service.store.remember_signature(
            sig.keyid, sig.signature, sig.created + window, now):
        raise Problem(401, httpsig.ReplayedSignatureError.reason, "signature already accepted by another hub worker")
    return str(keys[sig.keyid].member)


@refusals_kept
async def post_envelopes(request: web.Request, intake: Intake) -> web.Response:
    cfg = request.app[CONFIG]
    service = request.app[SERVICE]
    reg = service.registry.registry
    own = reg.hub_public_keys().get(service.hub_key.kid)
    if own is None or not own.valid_at(service.clock()):
        # After a handover this hub's key has ended: the log continues at the new hub, never here.
        raise Problem(503, "hub-handed-over", f"this hub handed over to {reg.hub_url}", hub_url=reg.hub_url)
    body = await read_body(request, cfg.max_batch_bytes, into=intake.received)
    member = intake.member = await authenticate_push(request, body)
    limit_member(request, member)
    doc = parse_json(body, strictjson.JsonLimits(max_bytes=cfg.max_batch_bytes, max_depth=4))
    envelopes = doc.get("envelopes") if isinstance(doc, dict) else None
    if not isinstance(envelopes, list) or set(doc) != {"envelopes"}:
        raise Problem(400, "malformed-batch", 'a push is {"envelopes": [...]}')
    max_batch = service.registry.registry.policies.max_batch
    if len(envelopes) > max_batch:
        raise Problem(413, "batch-too-large", f"{len(envelopes)} envelopes; at most {max_batch} per push")
    started = time.perf_counter()
    outcomes = await service.ingest(member, envelopes)
    request.app[HUB_METRICS].count_push(member, outcomes, time.perf_counter() - started)
    # The checkpoint now covers every accepted or duplicate envelope of this push (PROTOCOL.md §8.2).
    checkpoint = service.checkpoint.to_dict() if service.checkpoint else None
    return json_response({"results": [o.to_dict(i) for i, o in enumerate(outcomes)], "log_size": service.size,
                          "checkpoint": checkpoint})


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(400, "bad-parameter", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise Problem(400, "bad-parameter", f"{name} must be between {lo} and {hi}")
    return value


async def get_log(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    service = request.app[SERVICE]
    after = _int_param(request, "after", 0, 0, 2**53)
    limit = _int_param(request, "limit", 100, 1, cfg.page_limit)
    wait = _int_param(request, "wait", 0, 0, int(cfg.max_wait))
    if "Signature-Input" in request.headers:  # a member's node, saying who it is (docs/adr/0008)
        member = await authenticate_push(request, b"", PULL_COMPONENTS)
        request.app[MONITOR].note_pull(member, after)
    rows = await service.read_log(after, limit, wait)
    # Stored envelopes are our own compact ASCII JSON: spliced in as they are, never re-encoded.
    entries = ",".join(f'{{"position":{p},"envelope":{env.decode("ascii")}}}' for p, env in rows)
    nxt = rows[-1][0] if rows else after
    # A full page never changes (positions are final); a partial one grows as the log does.
    size = max(await service.log_size(), nxt)
    headers = {"Cache-Control": "no-cache"}
    if len(rows) == limit:
        # Its ETag covers the entries only: "size" is a hint that grows, so the validator is weak
        # (RFC 9110 §8.8.1). A CDN or proxy revalidating a full page gets a 304 without the entries.
        tag = hashlib.sha256(entries.encode()).hexdigest()[:32]
        headers = {"Cache-Control": "public, max-age=31536000, immutable", "ETag": f'W/"{tag}"'}
        if any(t.value in (tag, "*") for t in request.if_none_match or ()):
            return web.Response(status=304, headers=headers)
    return web.Response(text=f'{{"entries":[{entries}],"next":{nxt},"size":{size}}}',
                        content_type="application/json", headers=headers)


async def get_checkpoint(request: web.Request) -> web.Response:
    """The latest checkpoint (or the one for ?size=N) with every member co-signature held."""
    service = request.app[SERVICE]
    size = _int_param(request, "size", -1, 1, 2**53) if "size" in request.query else None
    held = await service.store.checkpoint_cosigned(size)
    if held is None:
        raise Problem(404, "no-checkpoint", "no checkpoint for that size" if size else "the log is empty")
    signed = parse_checkpoint(json.loads(held[0]))
    for entry in held[1]:
        signed = signed.with_signature(entry)
    cache = "public, max-age=31536000, immutable" if size else "no-cache"
    return json_response(signed.to_dict(), headers={"Cache-Control": cache})


async def _proof(service: HubService, build: Any) -> list[str]:
    needed = merkle.node_reads(build)
    nodes = await service.store.nodes(needed)
    return [h.hex() for h in build(lambda lv, ix: nodes[(lv, ix)])]


async def get_inclusion_proof(request: web.Request) -> web.Response:
    """RFC 9162 inclusion proof of leaf ``index`` (0-based: log position - 1) in the tree of ``size``."""
    service = request.app[SERVICE]
    now_size = await service.log_size()
    size = _int_param(request, "size", now_size, 1, max(1, now_size))
    index = _int_param(request, "index", 0, 0, size - 1)
    proof = await _proof(service, lambda get: merkle.inclusion_proof(index, size, get))
    return json_response({"index": index, "size": size, "proof": proof},
                         headers={"Cache-Control": "public, max-age=31536000, immutable"})


async def get_consistency_proof(request: web.Request) -> web.Response:
    """RFC 9162 consistency proof between the trees of sizes ``from`` and ``to``."""
    service = request.app[SERVICE]
    now_size = await service.log_size()
    to = _int_param(request, "to", now_size, 1, max(1, now_size))
    frm = _int_param(request, "from", 1, 1, to)
    proof = await _proof(service, lambda get: merkle.consistency_proof(frm, to, get))
    return json_response({"from": frm, "to": to, "proof": proof},
                         headers={"Cache-Control": "public, max-age=31536000, immutable"})


@refusals_kept
async def post_cosignature(request: web.Request, intake: Intake) -> web.Response:
    """A member's co-signature of a checkpoint it verified (witnessing), pushed with its RFC 9421 signature."""
    service = request.app[SERVICE]
    limits = strictjson.JsonLimits(max_bytes=16 * 1024, max_depth=3)
    body = await read_body(request, limits.max_bytes, into=intake.received)
    member = intake.member = await authenticate_push(request, body)
    limit_member(request, member)
    doc = parse_json(body, limits)
    if not isinstance(doc, dict) or set(doc) != {"size", "signature"} or not isinstance(doc["signature"], dict):
        raise Problem(400, "malformed-cosignature", 'a co-signature is {"size": N, "signature": {...}}')
    size = doc["size"]
    held = await service.store.checkpoint(size) if type(size) is int else None
    if held is None:
        raise Problem(404, "no-checkpoint", f"no checkpoint of size {size}")
    signed = parse_checkpoint(json.loads(held)).with_signature(doc["signature"])
    keys = {k: v for k, v in service.registry.registry.member_keys().items() if v.member == member}
    if member not in signed.verify(service.registry.registry.hub_public_keys(), keys):
        raise Problem(422, "bad-cosignature", f"the signature is not {member}'s over checkpoint {size}")
    kid = signed.signers()[-1]
    await service.store.add_cosignature(size, kid, member, doc["signature"], service.clock())
    return json_response({"size": size, "member": member, "cosigned": True}, status=201)


def require_operator(request: web.Request) -> None:
    """Bearer operator token (compared as SHA-256 digests, in constant time)."""
    expected = request.app[CONFIG].operator_token_sha256
    auth = request.headers.get("Authorization", "")
    given = hashlib.sha256(auth.removeprefix("Bearer ").encode()).hexdigest()
    if not expected or not auth.startswith("Bearer ") or not hmac.compare_digest(given, expected):
        raise Problem(401, "operator-token-required", "this needs the hub operator's bearer token")


async def get_quarantine(request: web.Request) -> web.Response:
    """Refused inputs, newest first, each with its reason and the bytes exactly as they arrived."""
    require_operator(request)
    limit = _int_param(request, "limit", 100, 1, 1000)
    rows = await request.app[SERVICE].store.quarantined(
        member=request.query.get("member"), reason=request.query.get("reason"), limit=limit)
    items = [{**{k: v for k, v in r.items() if k not in ("envelope", "detail", "received_at")},
              "received_at": r["received_at"].isoformat() if r["received_at"] else None,
              "detail": json.loads(str(r["detail"])), "envelope": bytes(r["envelope"]).decode("utf-8", "replace"),
              "sha256": hashlib.sha256(bytes(r["envelope"])).hexdigest()}
             for r in rows]
    return json_response({"items": items})


async def post_governance(request: web.Request) -> web.Response:
    """Signed governance documents (self-authenticating: no HTTP signature needed)."""
    doc = await read_json(request, strictjson.JsonLimits(max_bytes=256 * 1024, max_depth=4))
    if not isinstance(doc, dict) or set(doc) != {"documents"} or not isinstance(doc["documents"], list):
        raise Problem(400, "malformed-request", 'a submission is {"documents": [...]}')
    await request.app[SERVICE].fresh()
    ids = await request.app[GOVERNANCE].submit(doc["documents"])
    version = request.app[SERVICE].registry.registry.version
    return json_response({"accepted": ids, "registry_version": version}, status=202)


async def get_governance(request: web.Request) -> web.Response:
    await request.app[SERVICE].fresh()
    return json_response(await request.app[GOVERNANCE].overview())


async def get_registry(request: web.Request) -> web.Response:
    """The current registry, or ``?version=N`` (every version stays available, so nodes can follow
    the chain one justified step at a time)."""
    if "version" in request.query:
        version = _int_param(request, "version", 1, 1, 2**31)
        doc = await request.app[SERVICE].store.registry_version(version)
        if doc is None:
            raise Problem(404, "no-such-registry-version", f"no registry version {version}")
        return web.Response(body=doc, content_type="application/json",
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})
    await request.app[SERVICE].fresh()
    reg = request.app[SERVICE].registry
    return web.Response(body=reg.to_bytes(), content_type="application/json",
                        headers={"Cache-Control": "no-cache", "ETag": f'"{reg.hash}"'})


async def get_status(request: web.Request) -> web.Response:
    """The hub's state and every member's sync figures (federation/hub/monitor.py), and the worker answering."""
    service = request.app[SERVICE]
    if service.store.shared:  # other workers' commits and decisions; heads read since the log grew are kept
        await service.catch_up([m.code for m in service.registry.registry.members])
    return json_response({**await request.app[MONITOR].snapshot(), "worker": os.getpid()})


async def _service(cfg: HubConfig, *, verify_workers: int) -> HubService:
    """The hub service over its store (migrated on open), with the newest registry: registry.json or a
    version decided while registry.json was not yet rewritten."""
    store = await HubStore.open(cfg.db_url)
    registry = load_registry(cfg.registry_path)
    stored = await store.latest_registry()
    if stored is not None and parse_registry(stored).registry.version > registry.registry.version:
        registry = parse_registry(stored)
    return HubService(store, registry, SigningKey.load(cfg.key_path), writer_batch=cfg.writer_batch,
                      verify_workers=verify_workers, shared_poll=cfg.shared_poll)


async def prepare(cfg: HubConfig) -> None:
    """Migrate and do first-start work (Merkle backfill, first checkpoint, registry row) once, before
    several workers start on the same database."""
    service = await _service(cfg, verify_workers=0)
    await service.start()
    await service.stop()
    await service.store.close()


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    service = await _service(cfg, verify_workers=cfg.verify_workers)
    store = service.store
    await service.start()
    app[SERVICE] = service
    app[GOVERNANCE] = GovernanceService(service, cfg.registry_path)
    monitor = app[MONITOR] = Monitor(service, silent_after=cfg.silent_after, flush_interval=cfg.pull_flush_interval)
    await monitor.start()
    app[HUB_METRICS].monitor = monitor
    log.info("hub ready: log size %d, registry v%d", service.size, service.registry.registry.version)
    yield
    await monitor.stop()
    await service.stop()
    await store.close()


async def _wake_readers(app: web.Application) -> None:
    app[SERVICE].wake_readers()


def create_app(config: HubConfig) -> web.Application:
    metrics = HubMetrics()  # its monitor is set when the service starts
    app = web.Application(middlewares=[request_id_middleware, access_middleware, metrics.base.middleware(),
                                       problems_middleware], client_max_size=config.max_batch_bytes)
    app[CONFIG] = config
    app[HUB_METRICS] = metrics
    app[REPLAYS] = httpsig.ReplayCache(window=config.replay_window, since=int(time.time()))
    app[MEMBER_LIMITS] = RateLimiter(config.push_rate, config.push_burst)
    app[REFUSAL_LIMITS] = RateLimiter(config.refusal_rate, config.refusal_burst)
    app[BODY_TIMEOUT] = config.body_timeout
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_wake_readers)
    app.router.add_post("/api/v1/envelopes", post_envelopes)
    app.router.add_get("/api/v1/log", get_log)
    app.router.add_get("/api/v1/registry", get_registry)
    app.router.add_get("/api/v1/status", get_status)
    app.router.add_get("/api/v1/quarantine", get_quarantine)
    app.router.add_get("/api/v1/log/checkpoint", get_checkpoint)
    app.router.add_get("/api/v1/log/proof/inclusion", get_inclusion_proof)
    app.router.add_get("/api/v1/log/proof/consistency", get_consistency_proof)
    app.router.add_post("/api/v1/log/cosignatures", post_cosignature)
    app.router.add_post("/api/v1/governance", post_governance)
    app.router.add_get("/api/v1/governance", get_governance)
    openapi.register_routes(app, "hub")
    metrics.base.register(app)
    dashboard.register(app)
    add_health_route(app)
    return app

