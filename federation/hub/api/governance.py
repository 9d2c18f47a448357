"""``/api/v1/governance``: the signed documents that decide the next registry version
(federation/hub/registrar.py), and where each proposal stands.

Submissions are self-authenticating (no HTTP signature), so anyone can send one: each is rate-limited per
client address (before its body is read) and per signing key, checked in full before anything of it is stored,
and new applications are bounded. Refusals are kept in the quarantine like every other refused input, within
the per-address budget (federation/hub/api/intake.py)."""

from __future__ import annotations

import time

from aiohttp import web

from federation.hub.api.intake import Intake, refusals_kept
from federation.hub.appkeys import GOVERNANCE, GOVERNANCE_ADDRESS_LIMITS, GOVERNANCE_KEY_LIMITS, SERVICE
from federation.hub.registrar import TooManyPendingApplications
from federation.protocol import strictjson
from federation.protocol.governance import Document
from federation.server.ratelimit import RateLimiter
from federation.server.web import Problem, json_response, parse_json, read_body

_LIMITS = strictjson.JsonLimits(max_bytes=256 * 1024, max_depth=4)
PENDING_RETRY_AFTER = "3600"  # seconds: applications wait for the members' votes, which take a while


def _limit(limiter: RateLimiter, key: str, what: str) -> None:
    wait = limiter.take(key, time.monotonic())
    if wait > 0:
        raise Problem(429, "rate-limited", f"{what} sends more than {limiter.rate:g} governance submissions a second",
                      headers={"Retry-After": limiter.retry_after(wait)})


@refusals_kept
async def post_governance(request: web.Request, intake: Intake) -> web.Response:
    """Signed governance documents (self-authenticating: no HTTP signature needed)."""
    app = request.app
    address = request.remote or "unknown"
    _limit(app[GOVERNANCE_ADDRESS_LIMITS], address, f"client {address}")
    doc = parse_json(await read_body(request, _LIMITS.max_bytes, into=intake.received), _LIMITS)
    if not isinstance(doc, dict) or set(doc) != {"documents"} or not isinstance(doc["documents"], list):
        raise Problem(400, "malformed-request", 'a submission is {"documents": [...]}')
    governance = app[GOVERNANCE]
    docs = governance.parse(doc["documents"])

    def limit_keys(checked: list[Document]) -> None:
        # After the signatures are checked, so no one can spend a member's budget with forged documents.
        for kid in sorted({d.jws.kid for d in checked}):
            _limit(app[GOVERNANCE_KEY_LIMITS], kid, f"key {kid}")

    await app[SERVICE].fresh()
    try:
        ids = await governance.submit(docs, before_storing=limit_keys)
    except TooManyPendingApplications as e:
        raise Problem(503, e.reason, e.message, headers={"Retry-After": PENDING_RETRY_AFTER}) from None
    version = app[SERVICE].registry.registry.version
    return json_response({"accepted": ids, "registry_version": version}, status=202)


async def get_governance(request: web.Request) -> web.Response:
    await request.app[SERVICE].fresh()
    return json_response(await request.app[GOVERNANCE].overview())


def register_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/governance", post_governance)
    app.router.add_get("/api/v1/governance", get_governance)
