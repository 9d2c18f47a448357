"""Recovery of the log from the members (PROTOCOL.md §11.1; federation/hub/recovery.py): while it runs the hub is
read-only (:func:`read_only_middleware`: 503 ``hub-recovering``); the operator watches and drives it
(``GET``/``POST /api/v1/recovery``, what ``ipdn hub recover --from-members`` calls)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from federation.hub.api.intake import require_operator
from federation.hub.appkeys import CONFIG, RECOVERY
from federation.protocol import strictjson
from federation.server.web import Problem, json_response, parse_json, read_body

PATH = "/api/v1/recovery"
# What a recovering hub does not serve: its log is known to be incomplete, and nothing may be appended to it.
READ_ONLY = ("/api/v1/envelopes", "/api/v1/log", "/api/v1/governance")


@web.middleware
async def read_only_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    recovery = request.app.get(RECOVERY)
    if recovery is not None and recovery.active and request.path.startswith(READ_ONLY):
        retry = max(1, int(request.app[CONFIG].recovery_interval))
        raise Problem(503, "hub-recovering", "this hub is recovering its log from the members (read-only); "
                      "try again later", headers={"Retry-After": str(retry)})
    response: web.StreamResponse = await handler(request)
    return response


async def get_recovery(request: web.Request) -> web.Response:
    require_operator(request)
    recovery = request.app[RECOVERY]
    last = recovery.last.to_dict() if recovery.last else None
    return json_response({"recovering": recovery.active, "size": recovery.service.size, "last": last,
                          "members": recovery.endpoints()})


async def post_recovery(request: web.Request) -> web.Response:
    """Run a round now: ``{"members": [...], "endpoints": {code: URL}, "dry_run": bool, "force": bool, "begin":
    bool}`` (all optional);
    ``begin`` puts a hub that is not recovering into recovery (read-only) first."""
    require_operator(request)
    doc = parse_json(await read_body(request, 16 * 1024), strictjson.JsonLimits(max_bytes=16 * 1024, max_depth=3))
    if not isinstance(doc, dict) or not set(doc) <= {"members", "endpoints", "dry_run", "force", "begin"}:
        raise Problem(400, "malformed-request",
                      'a recovery request is {"members", "endpoints", "dry_run", "force", "begin"}')
    members, endpoints = doc.get("members") or [], doc.get("endpoints") or {}
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members) or not isinstance(
            endpoints, dict) or not all(isinstance(u, str) and u.startswith(("http://", "https://"))
                                        for u in endpoints.values()):
        raise Problem(400, "malformed-request", "members is a list of member codes, endpoints {code: URL}")
    recovery = request.app[RECOVERY]
    if doc.get("begin") is True and not doc.get("dry_run"):
        recovery.begin("begun by the operator")
    report = await recovery.run(only=members, endpoints={k: v.rstrip("/") for k, v in endpoints.items()},
                                dry_run=doc.get("dry_run") is True, force=doc.get("force") is True)
    return json_response(report.to_dict())


def register_routes(app: web.Application) -> None:
    app.router.add_get(PATH, get_recovery)
    app.router.add_post(PATH, post_recovery)
