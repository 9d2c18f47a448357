"""The node's status document, ``GET /api/v1/status``: what the node knows about its sync (the hub, the outbox,
the cursor, records, quarantine, webhooks, the log as verified, own keys, alarms). The status page
(node/status/page.py) and the metrics (node/status/metrics.py) show the same document.

It is the operator's (federation/server/access.py: the operator token, or an ``operator_networks`` address);
anyone else gets the public part (:func:`public_document`): member, registry version and expiry, time."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from federation.server.access import operator_access
from federation.server.times import utc_text
from federation.server.web import json_response
from node.appkeys import ENGINE, SERVICE

PATH = "/api/v1/status"

# How the page and the metrics are handed the document (the app passes :func:`status_document`).
StatusDocument = Callable[[web.Application], Awaitable[dict[str, Any]]]


async def status_document(app: web.Application) -> dict[str, Any]:
    """What the node knows about its sync: the status API, the status page and the metrics show this."""
    service, engine = app[SERVICE], app[ENGINE]
    counts = await service.counts()
    reg, state = service.registry.registry, engine.state
    now = service.clock()  # the service's clock: the keys' state and the document's time agree
    return {
        "role": "node", "member": service.member, "registry_version": reg.version,
        "registry_expires_at": reg.expires_at,
        "hub": {"url": reg.hub_url, "reachable": state.reachable, "last_push_at": utc_text(state.last_push_at),
                "last_pull_at": utc_text(state.last_pull_at), "last_error": state.last_error,
                "last_error_reason": state.last_error_reason, "last_error_at": utc_text(state.last_error_at),
                "log_size": state.log_size},
        "outbox": {"pending": counts.outbox.get("pending", 0), "rejected": counts.outbox.get("rejected", 0),
                   "accepted": counts.outbox.get("accepted", 0)},
        "cursor": await service.applier.cursor(),
        "records": {"own": counts.own, "received": counts.received},
        "quarantine": counts.quarantine,
        "marked": await service.store.marked_counts(),  # kept, not verified (key-revoked-after-the-fact, ADR 19)
        "webhooks": await service.store.webhooks.counts(),
        "log": await _log_status(app),
        "keys": service.keys.describe(reg, now),
        "alarms": await service.alarms(),
        "time": utc_text(now),
    }


def public_document(app: web.Application) -> dict[str, Any]:
    """What anyone may read: that the node is up, whose it is, the registry it follows (PROTOCOL.md §9)."""
    service = app[SERVICE]
    reg = service.registry.registry
    return {"role": "node", "member": service.member, "registry_version": reg.version,
            "registry_expires_at": reg.expires_at, "time": utc_text(service.clock()), "restricted": True}


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
        "peers": [{**p, "checked_at": utc_text(p["checked_at"])} for p in state.peers.values()],
        "evidence": [{"id": e.id, "reason": e.reason, "detail": e.detail, "at": utc_text(e.created_at),
                      "accepted": _document(e.accepted), "offending": _document(e.offending)} for e in evidence],
    }


# The answer depends on who asks: no shared cache may keep it.
NO_STORE = {"Cache-Control": "private, no-store", "Vary": "Authorization"}


async def status(request: web.Request) -> web.Response:
    if not operator_access(request).allows(request):
        return json_response(public_document(request.app), headers=NO_STORE)
    return json_response(await status_document(request.app), headers=NO_STORE)


def register_routes(app: web.Application) -> None:
    app.router.add_get(PATH, status)
