"""``POST /api/v1/envelopes``: a member's signed batch of envelopes (PROTOCOL.md §8.2)."""

from __future__ import annotations

import time

from aiohttp import web

from federation.hub.api.intake import Intake, read_signed, refusals_kept
from federation.hub.appkeys import CONFIG, HUB_METRICS, SERVICE
from federation.protocol import strictjson
from federation.server.web import Problem, json_response, parse_json


@refusals_kept
async def post_envelopes(request: web.Request, intake: Intake) -> web.Response:
    cfg = request.app[CONFIG]
    service = request.app[SERVICE]
    reg = service.registry.registry
    own = reg.hub_public_keys().get(service.hub_key.kid)
    if own is None or not own.valid_at(service.clock()):
        # After a handover this hub's key has ended: the log continues at the new hub, never here.
        raise Problem(503, "hub-handed-over", f"this hub handed over to {reg.hub_url}", hub_url=reg.hub_url)
    body = await read_signed(request, intake, cfg.max_batch_bytes)
    member = str(intake.member)
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


def register_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/envelopes", post_envelopes)
