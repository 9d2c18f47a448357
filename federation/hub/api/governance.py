"""``/api/v1/governance``: the signed documents that decide the next registry version
(federation/hub/registrar.py), and where each proposal stands."""

from __future__ import annotations

from aiohttp import web

from federation.hub.appkeys import GOVERNANCE, SERVICE
from federation.protocol import strictjson
from federation.server.web import Problem, json_response, read_json


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


def register_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/governance", post_governance)
    app.router.add_get("/api/v1/governance", get_governance)
