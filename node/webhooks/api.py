"""The partner-facing webhook API under ``/api/v1/webhooks`` (docs/PROTOCOL.md §13).

Managing subscriptions needs a partner key with the ``webhooks`` scope (node/partners/access.py: the middleware
authenticates, :func:`partners.require_scope` refuses); a partner sees and changes only its own
subscriptions (another's id is a 404, as if it did not exist). The node's public webhook key is public.
Every refusal is an RFC 9457 problem.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from federation.protocol import strictjson
from federation.protocol.schemas import default_schemas
from federation.protocol.webhooks import new_id, new_secret, public_key_text
from federation.server.times import utc_text
from federation.server.web import Problem, json_response, read_json
from node.appkeys import CONFIG, SERVICE, WEBHOOKS
from node.partners import access as partners
from node.webhooks import events as webhooks
from node.webhooks.store import ACTIVE, DELIVERED, FAILED, OPERATOR, PENDING, Delivery, Subscription, WebhookStore

BASE = partners.WEBHOOKS_PREFIX
KEY_PATH = partners.WEBHOOKS_KEY_PATH
TOLERANCE = 300  # seconds: what receivers should accept around webhook-timestamp (the spec's 5 minutes)


def describe_subscription(sub: Subscription, *, secret: bool = False) -> dict[str, Any]:
    """A subscription as the operator and its partner see it (the secret only when just made)."""
    out: dict[str, Any] = {
        "id": sub.id, "partner": sub.partner, "url": sub.url, "filters": sub.filters.to_dict(), "state": sub.state,
        "created_at": utc_text(sub.created_at), "disabled": None, "failing_since": utc_text(sub.failing_since),
        "last_success_at": utc_text(sub.last_success_at), "last_failure_at": utc_text(sub.last_failure_at)}
    if sub.disabled is not None:
        out["disabled"] = {"reason": sub.disabled.reason, "detail": sub.disabled.detail,
                           "at": utc_text(sub.disabled.at)}
    if secret:
        out["secret"] = sub.secret
    return out


def describe_delivery(d: Delivery) -> dict[str, Any]:
    return {"id": d.id, "subscription": d.subscription_id, "type": d.type, "record_id": d.record_id,
            "version": d.version, "state": d.state, "attempts": d.attempts, "created_at": utc_text(d.created_at),
            "next_attempt_at": utc_text(d.next_attempt_at), "delivered_at": utc_text(d.delivered_at),
            "last_status": d.last_status, "last_error": d.last_error,
            "tried": [{"attempt": a.attempt, "at": utc_text(a.at), "status": a.status, "error": a.error,
                       "duration_ms": a.duration_ms} for a in d.tried]}


def new_subscription(partner: str, url: Any, filters: Any, *, allow_loopback: bool, now: datetime) -> Subscription:
    """A subscription checked and ready to store, with a fresh id and secret.

    Raises:
        WebhookUrlError: the URL breaks the rule (node/webhooks/events.py ``check_url``).
        BadQueryError: a filter is malformed or names an unknown kind.
    """
    url = webhooks.check_url(url, allow_loopback=allow_loopback)
    spec = webhooks.EventFilter.parse(filters, kinds=sorted(default_schemas().latest))
    return Subscription(new_id(webhooks.SUBSCRIPTION_PREFIX, now), partner, url, spec, new_secret(),
                        ACTIVE, now)


def _store(request: web.Request) -> WebhookStore:
    return request.app[SERVICE].store.webhooks




async def _own(request: web.Request) -> tuple[partners.Partner, Subscription]:
    partner = partners.require_scope(request, "webhooks")
    sub = await _store(request).subscription(request.match_info["id"])
    if sub is None or sub.partner != partner.name:
        raise Problem(404, "subscription-not-found", f"no subscription {request.match_info['id']} of this partner")
    return partner, sub


async def signing_key(request: web.Request) -> web.Response:
    """The node's public webhook key: what ``v1a`` signatures verify against."""
    key = request.app[WEBHOOKS].key
    return json_response({"key": public_key_text(key), "algorithm": "Ed25519", "signature_version": "v1a",
                          "jwk": key.public.to_jwk(), "tolerance_seconds": TOLERANCE},
                         headers={"Cache-Control": "public, max-age=3600"})


async def create_subscription(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    partner = partners.require_scope(request, "webhooks")
    doc = await read_json(request, strictjson.JsonLimits(max_bytes=config.max_request_bytes))
    if not isinstance(doc, dict) or "url" not in doc or set(doc) - {"url", "filters"}:
        raise Problem(400, "malformed-request", "the request body is a JSON object with members url (optional filters)")
    store = _store(request)
    if len(await store.subscriptions(partner.name)) >= config.webhook_max_subscriptions:
        raise Problem(409, "too-many-subscriptions", f"a partner has at most {config.webhook_max_subscriptions} "
                      "subscriptions; remove one first")
    sub = new_subscription(partner.name, doc["url"], doc.get("filters"), allow_loopback=config.webhook_allow_loopback,
                           now=request.app[SERVICE].clock())
    await store.add_subscription(sub)
    return json_response(describe_subscription(sub, secret=True), status=201,
                         headers={"Location": f"{BASE}/{sub.id}"})


async def list_subscriptions(request: web.Request) -> web.Response:
    partner = partners.require_scope(request, "webhooks")
    subs = await _store(request).subscriptions(partner.name)
    return json_response({"items": [describe_subscription(s) for s in subs]}, headers={"Cache-Control": "no-store"})


async def get_subscription(request: web.Request) -> web.Response:
    _, sub = await _own(request)
    return json_response(describe_subscription(sub), headers={"Cache-Control": "no-store"})


async def delete_subscription(request: web.Request) -> web.Response:
    _, sub = await _own(request)
    await _store(request).remove_subscription(sub.id)
    return web.Response(status=204)


async def list_deliveries(request: web.Request) -> web.Response:
    _, sub = await _own(request)
    state = request.query.get("state") or None
    if state not in (None, PENDING, DELIVERED, FAILED):
        raise Problem(400, "bad-query", "state is pending, delivered or failed")
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 500:
        raise Problem(400, "bad-query", "limit is between 1 and 500")
    rows = await _store(request).deliveries(subscription_id=sub.id, state=state, limit=limit)
    return json_response({"items": [describe_delivery(d) for d in rows]}, headers={"Cache-Control": "no-store"})


async def enable_subscription(request: web.Request) -> web.Response:
    """Deliver again after a 410 or a long failure (the partner fixed its receiver); not after the
    operator disabled it."""
    _, sub = await _own(request)
    if sub.disabled is not None and sub.disabled.reason == OPERATOR:
        raise Problem(409, "subscription-disabled-by-operator",
                      f"the node's operator disabled this subscription ({sub.disabled.detail}); ask them")
    store = _store(request)
    await store.enable(sub.id)
    return json_response(describe_subscription(await store.subscription(sub.id) or sub))


async def retry_deliveries(request: web.Request) -> web.Response:
    """Queue the subscription's failed deliveries again, with a fresh schedule and the same webhook-id."""
    _, sub = await _own(request)
    return json_response({"requeued": await _store(request).retry_failed(sub.id, request.app[SERVICE].clock())})


def register_routes(app: web.Application) -> None:
    app.router.add_get(KEY_PATH, signing_key)  # before /{id}
    app.router.add_post(BASE, create_subscription)
    app.router.add_get(BASE, list_subscriptions)
    app.router.add_get(BASE + "/{id}", get_subscription)
    app.router.add_delete(BASE + "/{id}", delete_subscription)
    app.router.add_get(BASE + "/{id}/deliveries", list_deliveries)
    app.router.add_post(BASE + "/{id}/enable", enable_subscription)
    app.router.add_post(BASE + "/{id}/retry", retry_deliveries)
