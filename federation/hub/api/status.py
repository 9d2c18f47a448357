"""``GET /api/v1/status`` (every member's sync figures) and ``GET /api/v1/quarantine`` (the refused inputs, for
the operator): PROTOCOL.md §8.4."""

from __future__ import annotations

import hashlib
import json
import os

from aiohttp import web

from federation.hub.api.intake import int_param, require_operator
from federation.hub.appkeys import MONITOR, SERVICE
from federation.server.times import utc_text
from federation.server.web import json_response


async def get_status(request: web.Request) -> web.Response:
    """The hub's state and every member's sync figures (federation/hub/monitor.py), and the worker answering."""
    service = request.app[SERVICE]
    if service.store.shared:  # other workers' commits and decisions; heads read since the log grew are kept
        await service.catch_up([m.code for m in service.registry.registry.members])
    return json_response({**await request.app[MONITOR].snapshot(), "worker": os.getpid()})


async def get_quarantine(request: web.Request) -> web.Response:
    """Refused inputs, newest first, each with its reason and the bytes exactly as they arrived."""
    require_operator(request)
    limit = int_param(request, "limit", 100, 1, 1000)
    rows = await request.app[SERVICE].store.quarantined(
        member=request.query.get("member"), reason=request.query.get("reason"), limit=limit)
    items = [{**{k: v for k, v in r.items() if k not in ("envelope", "detail", "received_at")},
              "received_at": utc_text(r["received_at"]),
              "detail": json.loads(str(r["detail"])), "envelope": bytes(r["envelope"]).decode("utf-8", "replace"),
              "sha256": hashlib.sha256(bytes(r["envelope"])).hexdigest()}
             for r in rows]
    return json_response({"items": items})


def register_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/status", get_status)
    app.router.add_get("/api/v1/quarantine", get_quarantine)
