"""An in-memory hub speaking the hub's HTTP contract, for the node's sync tests.

It verifies push signatures (RFC 9421, with replay refusal) and envelopes (against its registry and
each origin's chain) the way the real hub does, keeps an in-memory gapless log, and holds log
requests until entries exist (long-poll). Switches let a test take it down (503) or make it reject.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from federation import httpsig
from federation.envelope import Envelope
from federation.registry import SignedRegistry
from federation.schemas import default_schemas
from federation.verify import ChainHead, verify_envelope
from federation.web import json_response, problem_body, problem_response


class FakeHub:
    def __init__(self) -> None:
        self.registry: SignedRegistry | None = None  # set once the server's URL is known
        self.served_registry: bytes | None = None  # what GET /registry answers (default: self.registry)
        self.log: list[Envelope] = []
        self.up = True  # False: every request answers 503
        self.reject_reason: str | None = None  # set: every pushed envelope is rejected with it
        self.push_requests = 0
        self.replay = httpsig.ReplayCache()
        self._appended = asyncio.Event()

    # -- what tests do to it -------------------------------------------------------------------------

    def append(self, env: Envelope) -> int:
        """Put an envelope in the log as if its origin had pushed it; its position."""
        self.log.append(env)
        self._appended.set()
        return len(self.log)

    def _head(self, origin: str) -> ChainHead | None:
        mine = [e for e in self.log if e.payload.origin == origin]
        return ChainHead(mine[-1].payload.seq, mine[-1].hash) if mine else None

    # -- the HTTP contract ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/registry", self.get_registry)
        app.router.add_post("/api/v1/envelopes", self.post_envelopes)
        app.router.add_get("/api/v1/log", self.get_log)
        app.on_shutdown.append(self._release)
        return app

    async def _release(self, app: web.Application) -> None:
        self._appended.set()  # end held long-polls so the server closes at once

    def _down(self) -> web.Response | None:
        return None if self.up else problem_response(503, "hub-busy", "the fake hub is down")

    async def get_registry(self, request: web.Request) -> web.Response:
        assert self.registry is not None
        return self._down() or web.Response(body=self.served_registry or self.registry.to_bytes(),
                                            content_type="application/json")

    async def post_envelopes(self, request: web.Request) -> web.Response:
        assert self.registry is not None
        self.push_requests += 1
        if (down := self._down()) is not None:
            return down
        body = await request.read()
        keys = self.registry.registry.member_keys()
        try:
            sig = httpsig.verify_request(
                request.method, self.registry.registry.hub_url.rstrip("/") + request.raw_path, request.headers,
                body, resolve_key=lambda kid: keys[kid].key if kid in keys else None, now=int(time.time()))
            self.replay.check_and_remember(sig.keyid, sig.signature, sig.created, int(time.time()))
        except httpsig.HttpSignatureError as e:
            return problem_response(401, e.reason, str(e))
        results: list[dict[str, Any]] = []
        for i, obj in enumerate(json.loads(body)["envelopes"]):
            env = Envelope.from_dict(obj)
            p = env.payload
            held = next((n for n, e in enumerate(self.log, 1)
                         if e.payload.origin == p.origin and e.payload.seq == p.seq), None)
            if held is not None and self.log[held - 1].hash == env.hash:
                results.append({"index": i, "status": "duplicate", "position": held, "hash": env.hash})
                continue
            result = verify_envelope(env, keys=keys.get, schemas=default_schemas(), now=datetime.now(UTC),
                                     chain_head=self._head(p.origin), check_chain_head=True)
            reason = self.reject_reason or result.reason
            if reason:
                results.append({"index": i, "status": "rejected",
                                "problem": problem_body(422, reason, f"envelope {i}: {reason}")})
                continue
            results.append({"index": i, "status": "accepted", "position": self.append(env), "hash": env.hash})
        return json_response({"results": results, "log_size": len(self.log)})

    async def get_log(self, request: web.Request) -> web.Response:
        if (down := self._down()) is not None:
            return down
        after, limit = int(request.query["after"]), int(request.query.get("limit", "100"))
        wait = min(float(request.query.get("wait", "0")), 30)
        if len(self.log) <= after and wait > 0:
            self._appended.clear()
            with contextlib.suppress(TimeoutError):  # long-poll: an empty page after ``wait`` seconds
                await asyncio.wait_for(self._appended.wait(), wait)
        entries = [{"position": n, "envelope": e.to_dict()}
                   for n, e in enumerate(self.log[after:after + limit], after + 1)]
        return json_response({"entries": entries, "next": after + len(entries), "size": len(self.log)})
