"""The log (PROTOCOL.md §8.3): pages of it, its checkpoints with the members' co-signatures, RFC 9162 proofs,
and the co-signatures members push after verifying a checkpoint (witnessing)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from aiohttp import web

from federation.hub.api.intake import (
    PULL_COMPONENTS,
    Intake,
    authenticate_push,
    int_param,
    read_signed,
    refusals_kept,
)
from federation.hub.appkeys import CONFIG, MONITOR, SERVICE
from federation.hub.ingest.service import HubService
from federation.hub.store.log import CosignatureRow
from federation.protocol import merkle, strictjson
from federation.protocol.checkpoint import parse_checkpoint
from federation.protocol.envelope import format_time
from federation.server.web import Problem, json_response, parse_json


async def get_log(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    service = request.app[SERVICE]
    after = int_param(request, "after", 0, 0, 2**53)
    limit = int_param(request, "limit", 100, 1, cfg.page_limit)
    # §8.3 allows up to 30 s; a hub configured shorter holds the request its max_wait at most, not a 400.
    wait = min(int_param(request, "wait", 0, 0, max(30, int(cfg.max_wait))), int(cfg.max_wait))
    if "Signature-Input" in request.headers:  # a member's node, saying who it is (docs/adr/0008)
        member = await authenticate_push(request, b"", PULL_COMPONENTS)
        request.app[MONITOR].note_pull(member, after)
    rows = await service.read_log(after, limit, wait)
    # Stored envelopes are our own compact ASCII JSON: spliced in as they are, never re-encoded. The receipt time
    # lets nodes judge the key's window at it too (§5 step 2, ADR 19).
    entries = ",".join(f'{{"position":{p},"received_at":"{format_time(at)}","envelope":{env.decode("ascii")}}}'
                       for p, env, at in rows)
    nxt = rows[-1][0] if rows else after
    # A full page never changes (positions are final); a partial one grows as the log does.
    size = max(await service.log_size(), nxt)
    # A page that ends where the hub's latest checkpoint does carries it: the node checks that root at once
    # (PROTOCOL.md §8.3) instead of asking for the checkpoint on its way to the next pull.
    checkpoint = service.checkpoint_at(nxt) if rows else None
    tail = f',"checkpoint":{checkpoint}' if checkpoint else ""
    headers = {"Cache-Control": "no-cache"}
    if len(rows) == limit:
        # Its ETag covers the entries only: "size" is a hint that grows, so the validator is weak
        # (RFC 9110 §8.8.1). A CDN or proxy revalidating a full page gets a 304 without the entries.
        tag = hashlib.sha256(entries.encode()).hexdigest()[:32]
        headers = {"Cache-Control": "public, max-age=31536000, immutable", "ETag": f'W/"{tag}"'}
        if any(t.value in (tag, "*") for t in request.if_none_match or ()):
            return web.Response(status=304, headers=headers)
    return web.Response(text=f'{{"entries":[{entries}],"next":{nxt},"size":{size}{tail}}}',
                        content_type="application/json", headers=headers)


async def get_checkpoint(request: web.Request) -> web.Response:
    """The latest checkpoint (or the one for ?size=N) with every member co-signature held."""
    service = request.app[SERVICE]
    size = int_param(request, "size", -1, 1, 2**53) if "size" in request.query else None
    held = await service.store.checkpoint_cosigned(size)
    if held is None:
        raise Problem(404, "no-checkpoint", "no checkpoint for that size" if size else "the log is empty")
    signed = parse_checkpoint(json.loads(held[0]))
    for entry in held[1]:
        signed = signed.with_signature(entry)
    cache = "public, max-age=31536000, immutable" if size else "no-cache"
    return json_response(signed.to_dict(), headers={"Cache-Control": cache})


async def _log_size(service: HubService) -> int:
    """The log's size, for a proof: an empty log has no tree to prove anything in (404, as its checkpoint)."""
    size = await service.log_size()
    if size == 0:
        raise Problem(404, "no-checkpoint", "the log is empty: no tree to prove in")
    return size


async def _proof(service: HubService, build: Callable[[merkle.NodeGetter], list[bytes]]) -> list[str]:
    needed = merkle.node_reads(build)
    nodes = await service.nodes(needed)
    return [h.hex() for h in build(lambda lv, ix: nodes[(lv, ix)])]


async def get_inclusion_proof(request: web.Request) -> web.Response:
    """RFC 9162 inclusion proof of leaf ``index`` (0-based: log position - 1) in the tree of ``size``."""
    service = request.app[SERVICE]
    now_size = await _log_size(service)
    size = int_param(request, "size", now_size, 1, now_size)
    index = int_param(request, "index", 0, 0, size - 1)
    proof = await _proof(service, lambda get: merkle.inclusion_proof(index, size, get))
    return json_response({"index": index, "size": size, "proof": proof},
                         headers={"Cache-Control": "public, max-age=31536000, immutable"})


async def get_consistency_proof(request: web.Request) -> web.Response:
    """RFC 9162 consistency proof between the trees of sizes ``from`` and ``to``."""
    service = request.app[SERVICE]
    now_size = await _log_size(service)
    to = int_param(request, "to", now_size, 1, now_size)
    frm = int_param(request, "from", 1, 1, to)
    proof = await _proof(service, lambda get: merkle.consistency_proof(frm, to, get))
    return json_response({"from": frm, "to": to, "proof": proof},
                         headers={"Cache-Control": "public, max-age=31536000, immutable"})


@refusals_kept
async def post_cosignature(request: web.Request, intake: Intake) -> web.Response:
    """A member's co-signature of a checkpoint it verified (witnessing), pushed with its RFC 9421 signature."""
    service = request.app[SERVICE]
    limits = strictjson.JsonLimits(max_bytes=16 * 1024, max_depth=3)
    body = await read_signed(request, intake, limits.max_bytes)
    member = str(intake.member)
    doc = parse_json(body, limits)
    if not isinstance(doc, dict) or set(doc) != {"size", "signature"} or not isinstance(doc["signature"], dict):
        raise Problem(400, "malformed-cosignature", 'a co-signature is {"size": N, "signature": {...}}')
    size = doc["size"]
    held = await service.checkpoint_document(size) if type(size) is int else None
    if held is None:
        raise Problem(404, "no-checkpoint", f"no checkpoint of size {size}")
    signed = parse_checkpoint(json.loads(held)).with_signature(doc["signature"])
    keys = {k: v for k, v in service.registry.registry.member_keys().items() if v.member == member}
    if member not in signed.verify(service.registry.registry.hub_public_keys(), keys):
        raise Problem(422, "bad-cosignature", f"the signature is not {member}'s over checkpoint {size}")
    entry = doc["signature"]
    await service.add_cosignature(CosignatureRow(size, signed.signers()[-1], member, entry["protected"],
                                                 entry["signature"]))
    return json_response({"size": size, "member": member, "cosigned": True}, status=201)


def register_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/log", get_log)
    r.add_get("/api/v1/log/checkpoint", get_checkpoint)
    r.add_get("/api/v1/log/proof/inclusion", get_inclusion_proof)
    r.add_get("/api/v1/log/proof/consistency", get_consistency_proof)
    r.add_post("/api/v1/log/cosignatures", post_cosignature)
