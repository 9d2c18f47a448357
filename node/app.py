"""The node's HTTP API (aiohttp): authoring for the operator, reading and webhooks for partners, status.

Handlers parse and authenticate, the service decides, the store persists. Writes need the operator's
bearer token (compared as SHA-256 digests in constant time); reads need none. Every error is an
RFC 9457 problem: ``problems_middleware`` for protocol errors, :func:`_node_problems` for the
node's own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence, Set
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web

from federation.protocol import strictjson
from federation.protocol.envelope import Envelope
from federation.protocol.errors import IpdnError
from federation.protocol.registry import load_registry
from federation.server import openapi
from federation.server.logs import access_middleware, request_id_middleware
from federation.server.web import (
    BODY_TIMEOUT,
    Problem,
    add_health_route,
    json_response,
    problem_response,
    problems_middleware,
    read_json,
)
from node.config import NodeConfig
from node.errors import (
    BadQueryError,
    HubProtocolError,
    HubUnavailableError,
    InvalidRecordError,
    KeyNotValidError,
    NotOwnRecordError,
    OperatorAuthError,
    RecordDeletedError,
    RecordNotFoundError,
    RotationError,
)
from node.own_keys import MAX_EFFECTIVE_IN, OwnKeys
from node.partners import access as partners
from node.partners import feeds, oaipmh, pages
from node.records.filters import RecordFilter
from node.records.service import NodeService
from node.staff import web as authoring
from node.status import page as statuspage
from node.status.metrics import NODE_METRICS, NodeMetrics
from node.store.records import NodeStore, StoredRecord
from node.sync.engine import SyncEngine
from node.webhooks import api as webhook_api
from node.webhooks.delivery import WebhookWorker
from node.webhooks.events import load_or_create_key

CONFIG = web.AppKey("config", NodeConfig)
SERVICE = web.AppKey("service", NodeService)
ENGINE = web.AppKey("engine", SyncEngine)
WEBHOOKS = web.AppKey("webhooks", WebhookWorker)

_STATUS: dict[type[IpdnError], int] = {
    BadQueryError: 400, OperatorAuthError: 401, NotOwnRecordError: 403, RecordNotFoundError: 404,
    RecordDeletedError: 409, RotationError: 409, InvalidRecordError: 422, HubProtocolError: 502,
    KeyNotValidError: 503, HubUnavailableError: 503,
}


@web.middleware
async def _node_problems(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except tuple(_STATUS) as e:
        extra: dict[str, Any] = {}
        if isinstance(e, InvalidRecordError):
            extra["errors"] = [i.to_dict() for i in e.issues]
        resp = problem_response(_STATUS[type(e)], e.reason, e.message, **extra)
        if isinstance(e, OperatorAuthError):
            resp.headers["WWW-Authenticate"] = 'Bearer realm="ipdn-node"'
        return resp


# -- helpers -------------------------------------------------------------------------------------------


def _authorize(request: web.Request) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    expected = request.app[CONFIG].operator_token_hash
    if scheme.lower() != "bearer" or not token.strip() or not hmac.compare_digest(digest, expected):
        raise OperatorAuthError("publishing needs this node's operator token (Authorization: Bearer ...)")


async def _read_object(request: web.Request, required: Set[str], optional: Set[str] = frozenset()) -> dict[str, Any]:
    limits = strictjson.JsonLimits(max_bytes=request.app[CONFIG].max_request_bytes)
    doc = await read_json(request, limits)
    if not isinstance(doc, dict) or not required <= set(doc) or set(doc) - required - optional:
        want = ", ".join(sorted(required)) + (f" (optional {', '.join(sorted(optional))})" if optional else "")
        raise Problem(400, "malformed-request", f"the request body is a JSON object with members {want}")
    return doc


def _published(env: Envelope) -> dict[str, Any]:
    p = env.payload
    return {"record_id": p.record_id, "version": p.version, "seq": p.seq, "hash": env.hash,
            "envelope": env.to_dict()}


def _record_url(record_id: str) -> str:
    return "/api/v1/records/" + quote(record_id, safe="")


def _time(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None


# -- authoring -----------------------------------------------------------------------------------------


async def create_record(request: web.Request) -> web.Response:
    _authorize(request)
    doc = await _read_object(request, {"kind", "body"})
    if not isinstance(doc["kind"], str):
        raise Problem(400, "malformed-request", "kind is a string such as cultural-event")
    env = await request.app[SERVICE].create(doc["kind"], doc["body"])
    return json_response(_published(env), status=201, headers={"Location": _record_url(env.payload.record_id)})


async def update_record(request: web.Request) -> web.Response:
    _authorize(request)
    doc = await _read_object(request, {"body"})
    env = await request.app[SERVICE].update(request.match_info["record_id"], doc["body"])
    return json_response(_published(env))


async def cancel_record(request: web.Request) -> web.Response:
    _authorize(request)
    reason = None
    if request.can_read_body:
        reason = (await _read_object(request, set(), {"reason"})).get("reason")
        if reason is not None and not isinstance(reason, str):
            raise Problem(400, "malformed-request", "reason is a string")
    env = await request.app[SERVICE].cancel(request.match_info["record_id"], reason)
    return json_response(_published(env))


async def delete_record(request: web.Request) -> web.Response:
    _authorize(request)
    env = await request.app[SERVICE].delete(request.match_info["record_id"])
    return json_response(_published(env))


async def retry_outbox(request: web.Request) -> web.Response:
    _authorize(request)
    return json_response({"requeued": await request.app[SERVICE].retry_rejected()})


async def rotate_key(request: web.Request) -> web.Response:
    """Start a key rotation (``{"effective_in": seconds}``, default 60): a new key, the rotation documents
    submitted to the hub, the next registry fetched; the new key signs from ``effective`` on."""
    _authorize(request)
    effective_in: Any = 60
    if request.can_read_body:
        effective_in = (await _read_object(request, set(), {"effective_in"})).get("effective_in", 60)
    limit = MAX_EFFECTIVE_IN.total_seconds()
    if type(effective_in) not in (int, float) or not 0 <= effective_in <= limit:
        raise Problem(400, "malformed-request", f"effective_in is a number of seconds, 0 to {limit:.0f}")
    outcome = await request.app[ENGINE].rotate_key(timedelta(seconds=effective_in))
    r = outcome.rotation
    return json_response({"kid": r.kid, "file": r.file, "effective": r.effective, "base": r.base,
                          "registry_version": outcome.registry_version,
                          "hub_registry_version": outcome.hub_registry_version,
                          "resubmitted": outcome.resubmitted, "documents": list(r.documents)},
                         status=200 if outcome.resubmitted else 201)


# -- reading -------------------------------------------------------------------------------------------


LIST_CACHE, ITEM_CACHE = "public, max-age=60", "public, max-age=300"
MAX_Q = 500


# Part of every record API ETag: bump it whenever the same records would be encoded differently.
RECORDS_REVISION = b"records-1"


def _records_etag(records: Sequence[StoredRecord], cursor: str | None) -> str:
    """A strong ETag derived from what the response is made of (each record's status and envelope, which fix its
    item; the next cursor): a 304 costs no encoding."""
    h = hashlib.sha256(RECORDS_REVISION)
    for part in (cursor or "").encode(), *(p for r in records for p in (r.status.encode(), r.envelope)):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return '"' + h.hexdigest()[:32] + '"'


def _cached(request: web.Request, etag: str, cache_control: str, body: Callable[[], bytes]) -> web.Response:
    """``body()`` as JSON with its ``ETag``, ``Cache-Control`` and CORS for browser partners; 304 (and no body
    made) when ``If-None-Match`` names the ETag (or is ``*``)."""
    headers = {"ETag": etag, "Cache-Control": cache_control, "Access-Control-Allow-Origin": "*"}
    wanted = {t.strip().removeprefix("W/") for t in request.headers.get("If-None-Match", "").split(",")}
    if etag in wanted or "*" in wanted:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body(), content_type="application/json", headers=headers)


async def get_record(request: web.Request) -> web.Response:
    record = await request.app[SERVICE].get(request.match_info["record_id"])
    return _cached(request, _records_etag([record], None), ITEM_CACHE, record.item_json)


def _day(name: str, value: str | None) -> date | None:
    """``from``/``to``: a calendar day, or an RFC 3339 time (its day at its own offset)."""
    if not value:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        when = datetime.fromisoformat(value)
    except ValueError as e:
        raise BadQueryError(f"{name} is a day (YYYY-MM-DD) or an RFC 3339 time: {e}") from e
    if when.tzinfo is None:
        raise BadQueryError(f"{name} as a time needs an offset or Z")
    return when.date()


async def list_records(request: web.Request) -> web.Response:
    config, q = request.app[CONFIG], request.query
    try:
        limit = int(q.get("limit", config.page_size))
        since = datetime.fromisoformat(q["updated_since"]) if q.get("updated_since") else None
    except ValueError as e:
        raise BadQueryError(f"limit is an integer and updated_since an RFC 3339 time: {e}") from e
    if not 1 <= limit <= config.max_page_size:
        raise BadQueryError(f"limit is between 1 and {config.max_page_size}")
    if since is not None and since.tzinfo is None:
        raise BadQueryError("updated_since needs an offset or Z")
    date_from, date_to = _day("from", q.get("from")), _day("to", q.get("to"))
    if date_from and date_to and date_from > date_to:
        raise BadQueryError("from is after to")
    text = q.get("q") or None
    if text is not None and len(text) > MAX_Q:
        raise BadQueryError(f"q is at most {MAX_Q} characters")
    if any("\x00" in v for v in q.values()):
        raise BadQueryError("a parameter holds a NUL character")
    f = RecordFilter.parse(q)
    items, next_cursor = await request.app[SERVICE].list_records(
        kind=f.kind, origin=f.origin, updated_since=since, cursor=q.get("cursor") or None, limit=limit,
        country=f.country, date_from=date_from, date_to=date_to, lang=f.lang, status=f.status, tag=f.tag, q=text)

    def page() -> bytes:  # {"items": [...], "next_cursor": ...}
        return b'{"items":[' + b",".join(r.item_json() for r in items) + b'],"next_cursor":' + json.dumps(
            next_cursor).encode() + b"}"

    return _cached(request, _records_etag(items, next_cursor), LIST_CACHE, page)


async def status(request: web.Request) -> web.Response:
    return json_response(await status_document(request.app))


async def status_document(app: web.Application) -> dict[str, Any]:
    """What the node knows about its sync: the status API, the status page and the metrics show this."""
    service, engine = app[SERVICE], app[ENGINE]
    counts = await service.counts()
    reg, state = service.registry.registry, engine.state
    return {
        "role": "node", "member": service.member, "registry_version": reg.version,
        "hub": {"url": reg.hub_url, "reachable": state.reachable, "last_push_at": _time(state.last_push_at),
                "last_pull_at": _time(state.last_pull_at), "last_error": state.last_error,
                "last_error_at": _time(state.last_error_at), "log_size": state.log_size},
        "outbox": {"pending": counts.outbox.get("pending", 0), "rejected": counts.outbox.get("rejected", 0),
                   "accepted": counts.outbox.get("accepted", 0)},
        "cursor": await service.applier.cursor(),
        "records": {"own": counts.own, "received": counts.received},
        "quarantine": counts.quarantine,
        "webhooks": await service.store.webhooks.counts(),
        "log": await _log_status(app),
        "keys": service.keys.describe(reg, service.clock()),
        "alarms": await service.alarms(),
        "time": _time(datetime.now(UTC)),
    }


def _document(data: bytes | None) -> Any:
    """Evidence as received: JSON when it is JSON, else text."""
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


async def _log_status(app: web.Application) -> dict[str, Any]:
    """The log as this node verified it: the checkpoint accepted, witnessing, peers, evidence."""
    service, state = app[SERVICE], app[ENGINE].state
    accepted = await service.trust.accepted_checkpoint()
    evidence = await service.trust.evidence(10)
    return {
        "checkpoint": accepted.to_dict() if accepted else None, "cosigned_size": state.cosigned_size,
        "halted": bool(evidence),
        "peers": [{**p, "checked_at": _time(p["checked_at"])} for p in state.peers.values()],
        "evidence": [{"id": e.id, "reason": e.reason, "detail": e.detail, "at": _time(e.created_at),
                      "accepted": _document(e.accepted), "offending": _document(e.offending)} for e in evidence],
    }


async def get_log_checkpoint(request: web.Request) -> web.Response:
    """The last checkpoint this node verified and accepted, with its own co-signature: what it vouches for,
    so partners, auditors and other nodes can compare views (a split view shows up as two roots)."""
    doc = await request.app[SERVICE].trust.witnessed_checkpoint()
    if doc is None:
        raise Problem(404, "no-checkpoint", "this node has not accepted a checkpoint of the hub's log yet")
    return json_response(doc, headers={"Cache-Control": "no-cache"})


# -- the application -----------------------------------------------------------------------------------


def create_app(config: NodeConfig, *, sync: bool = True) -> web.Application:
    """The node's web application. Its cleanup context opens the store and owns the sync loops
    (``sync=False`` opens the engine without starting its loops, for tests that drive it by hand)."""
    metrics = NodeMetrics()
    # partner_middleware sits outside problems_middleware so that its own refusals (401, 429) carry CORS
    # headers too, and inside the metrics so that they are counted.
    app = web.Application(client_max_size=config.max_request_bytes, middlewares=[
        request_id_middleware, access_middleware, metrics.base.middleware(), partners.partner_middleware,
        problems_middleware, _node_problems])
    app[CONFIG] = config
    app[BODY_TIMEOUT] = config.body_timeout
    app[NODE_METRICS] = metrics

    async def services(app: web.Application) -> AsyncIterator[None]:
        keys = OwnKeys.load(config.member, config.key_path, config.dir)
        registry = load_registry(config.registry_path)
        keys.require_listed(registry.registry)
        store = await NodeStore.open(config.db_url, config.member)
        service = NodeService(store=store, keys=keys, member=config.member, registry=registry,
                              registry_path=config.registry_path, key_warn=timedelta(days=config.key_warn_days))
        engine = SyncEngine(config, service, store)
        hooks = WebhookWorker(config, store.webhooks, load_or_create_key(config.webhook_key_path), clock=service.clock)
        app[SERVICE], app[ENGINE], app[WEBHOOKS] = service, engine, hooks
        app[partners.ACCESS] = partners.PartnerAccess(store, config.public_read, config.partner_rate_per_minute,
                                                      config.anonymous_rate_per_minute)
        await engine.start(loops=sync)
        await hooks.start(loop=sync)
        try:
            yield
        finally:
            await hooks.stop()
            await engine.stop()
            await store.close()

    app.cleanup_ctx.append(services)
    app.router.add_post("/api/v1/records", create_record)
    app.router.add_get("/api/v1/records", list_records)
    app.router.add_get("/api/v1/records/{record_id}", get_record)
    app.router.add_put("/api/v1/records/{record_id}", update_record)
    app.router.add_delete("/api/v1/records/{record_id}", delete_record)
    app.router.add_post("/api/v1/records/{record_id}/cancel", cancel_record)
    app.router.add_post("/api/v1/outbox/retry", retry_outbox)
    app.router.add_post("/api/v1/keys/rotate", rotate_key)
    app.router.add_get("/api/v1/status", status)
    oaipmh.register_routes(app)
    feeds.register_routes(app)
    pages.register_routes(app)
    webhook_api.register_routes(app)
    authoring.register_routes(app, SERVICE, config.dir)
    openapi.register_routes(app, "node")
    add_health_route(app)
    app.router.add_get("/api/v1/log/checkpoint", get_log_checkpoint)
    statuspage.register(app, status_document)
    metrics.register(app, status_document)
    return app
