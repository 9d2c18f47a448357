"""``GET /api/v1/status`` (every member's sync figures) and ``GET /api/v1/quarantine`` (the refused inputs, for
the operator): PROTOCOL.md §8.4. The status is the operator's (federation/server/access.py); anyone else gets
its public part: the hub's URL, the registry version and expiry, the log's size, the time."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from aiohttp import web

from federation.hub.api.intake import int_param, require_operator
from federation.hub.appkeys import MONITOR, SERVICE
from federation.server.access import operator_access
from federation.server.times import utc_text
from federation.server.web import json_response

NO_STORE = {"Cache-Control": "private, no-store", "Vary": "Authorization"}  # the answer depends on who asks


async def get_status(request: web.Request) -> web.Response:
    """The hub's state and every member's sync figures (federation/hub/monitor.py), and the worker answering."""
    service = request.app[SERVICE]
    if not operator_access(request).allows(request):
        reg = service.registry.registry
        return json_response({"role": "hub", "hub_url": reg.hub_url, "registry_version": reg.version,
                              "registry_expires_at": reg.expires_at, "log_size": await service.log_size(),
                              "time": utc_text(service.clock()), "restricted": True}, headers=NO_STORE)
    if service.store.shared:  # other workers' commits and decisions; heads read since the log grew are kept
        await service.catch_up([m.code for m in service.registry.registry.members])
    return json_response({**await request.app[MONITOR].snapshot(), "worker": os.getpid()}, headers=NO_STORE)


async def get_quarantine(request: web.Request) -> web.Response:
    """Refused inputs, newest first, each with its reason and the bytes exactly as they arrived."""
    require_operator(request)
    limit = int_param(request, "limit", 100, 1, 1000)
    rows = await request.app[SERVICE].store.quarantined(
        member=request.query.get("member"), reason=request.query.get("reason"), limit=limit)
    return json_response({"items": [quarantine_item(r) for r in rows]})


def quarantine_item(row: dict[str, Any]) -> dict[str, Any]:
    """One refusal as PROTOCOL.md §8.4 gives it: ``envelope`` is the bytes kept and ``sha256`` their digest;
    ``size`` and ``input_sha256`` are of the input as received, ``truncated`` says the bytes kept are less
    (a prefix, or none), ``bound`` which of the quarantine's bounds cut them."""
    kept = bytes(row["envelope"] or b"")
    size = row["input_size"] if row.get("input_size") is not None else len(kept)
    return {**{k: v for k, v in row.items() if k not in ("envelope", "detail", "received_at", "input_size")},
            "received_at": utc_text(row["received_at"]), "detail": json.loads(str(row["detail"])),
            "envelope": kept.decode("utf-8", "replace"), "sha256": hashlib.sha256(kept).hexdigest(),
            "size": size, "kept_bytes": len(kept), "truncated": len(kept) < size,
            "input_sha256": row.get("input_sha256") or hashlib.sha256(kept).hexdigest()}


def register_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/status", get_status)
    app.router.add_get("/api/v1/quarantine", get_quarantine)
