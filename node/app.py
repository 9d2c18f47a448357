"""The node's web application: :func:`create_app` wires the routes (node/api/records.py, node/status/,
node/partners/, node/webhooks/api.py, node/staff/web.py), the middlewares and the cleanup context that opens
the store and owns the sync loops. Every error is an RFC 9457 problem: ``problems_middleware`` for protocol
errors, :func:`_node_problems` for the node's own, wherever they are raised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web

from federation.protocol.errors import IpdnError
from federation.protocol.registry import load_registry
from federation.server import openapi
from federation.server.access import OPERATOR_ACCESS
from federation.server.logs import access_middleware, request_id_middleware
from federation.server.web import BODY_TIMEOUT, TRUSTED_PROXIES, add_health_route, problem_response, problems_middleware
from node.api import records as records_api
from node.api import stream as records_stream
from node.appkeys import CONFIG, ENGINE, SERVICE, WEBHOOKS
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
from node.own_keys import OwnKeys
from node.partners import access as partners
from node.partners import answers, feeds, oaipmh, pages, portal, views
from node.partners.dcat import register_routes as catalog_routes
from node.records.service import NodeService, schemas_written
from node.staff import web as authoring
from node.status import document as status_doc
from node.status import page as statuspage
from node.status.metrics import NodeMetrics
from node.store.records import NodeStore
from node.sync.engine import SyncEngine
from node.webhooks import api as webhook_api
from node.webhooks.delivery import WebhookWorker
from node.webhooks.events import load_or_create_key

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
    app[TRUSTED_PROXIES] = config.proxies
    app[OPERATOR_ACCESS] = config.operator_access

    async def services(app: web.Application) -> AsyncIterator[None]:
        keys = OwnKeys.load(config.member, config.key_path, config.dir)
        registry = load_registry(config.registry_path)
        keys.require_listed(registry.registry)
        store = await NodeStore.open(config.db_url, config.member)
        service = NodeService(store=store, keys=keys, member=config.member, registry=registry,
                              registry_path=config.registry_path, key_warn=timedelta(days=config.key_warn_days),
                              schemas=schemas_written(config.status_reasons))
        engine = SyncEngine(config, service, store)
        hooks = WebhookWorker(config, store.webhooks, load_or_create_key(config.webhook_key_path), clock=service.clock)
        app[SERVICE], app[ENGINE], app[WEBHOOKS] = service, engine, hooks
        app[partners.ACCESS] = partners.PartnerAccess(store, config.public_read, config.partner_rate_per_minute,
                                                      config.anonymous_rate_per_minute, wall_clock=service.clock)
        await engine.start(loops=sync)
        await hooks.start(loop=sync)
        try:
            yield
        finally:
            await hooks.stop()
            await engine.stop()
            await store.close()

    app.cleanup_ctx.append(services)
    records_stream.register_routes(app)  # before records_api: /api/v1/records/stream is no record id
    records_api.register_routes(app)
    status_doc.register_routes(app)
    oaipmh.register_routes(app)
    feeds.register_routes(app)
    catalog_routes(app)  # /catalog: the DCAT-AP catalogue (node/partners/dcat.py)
    answers.install(app)  # the public pages' answers, kept until the data changes (pages and portal)
    pages.register_routes(app)
    portal.register_routes(app)
    views.register_routes(app)  # the portal's calendar, agenda and the operator's page
    webhook_api.register_routes(app)
    authoring.register_routes(app, config.dir)
    openapi.register_routes(app, "node")
    add_health_route(app)
    statuspage.register(app, status_doc.status_document)
    metrics.register(app, status_doc.status_document)
    return app
