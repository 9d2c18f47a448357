"""An in-memory hub speaking the hub's HTTP contract, for the node's sync tests.

It verifies push signatures (RFC 9421, with replay refusal) and envelopes (against its registry and
each origin's chain) the way the real hub does, keeps an in-memory gapless log, and holds log
requests until entries exist (long-poll). Its log is a real RFC 9162 Merkle tree: checkpoints are
signed with the hub key of the test registry (``federation.protocol.checkpoint.sign_checkpoint``), proofs come
from ``federation.protocol.merkle``, and members' co-signatures are verified and kept.

Governance submissions (``POST /api/v1/governance``) are decided as the real hub does, with
``federation.protocol.governance.next_version``, and every registry version stays served (``?version=K``).

Switches let a test take it down (503) or make it reject, and make it misbehave the ways a hub could:
rewrite or drop an entry it already checkpointed, sign a checkpoint with another root, serve an older
checkpoint, forge its signature, acknowledge a push without logging it, or show one node (one server
front, :meth:`FakeHub.app` with a ``view``) a different history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from federation.protocol import httpsig, jws, merkle
from federation.protocol.canonical import canonical_bytes
from federation.protocol.checkpoint import TYP, SignedCheckpoint, sign_checkpoint
from federation.protocol.envelope import Envelope, format_time
from federation.protocol.errors import IpdnError
from federation.protocol.governance import GovernanceError, next_version, parse_document
from federation.protocol.keys import SigningKey, b64u_encode
from federation.protocol.registry import SignedRegistry
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import ChainHead, verify_envelope
from federation.server.web import json_response, problem_body, problem_response

VIEW = web.AppKey("view", str)


class FakeHub:
    def __init__(self, key: SigningKey | None = None) -> None:
        self.key = key or SigningKey.generate()  # the hub key: the test registry must list it
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # a test may set its own (FakeClock)
        self.registry: SignedRegistry | None = None  # set once the server's URL is known
        self.served_registry: bytes | None = None  # what GET /registry answers (default: self.registry)
        self.log: list[Envelope] = []
        self.received: list[datetime] = []  # the receipt time it serves for each entry (§8.3); a test may forge one
        self.up = True  # False: every request answers 503
        self.reject_reason: str | None = None  # set: every pushed envelope is rejected with it
        self.push_requests = 0
        self.push_keyids: list[str] = []  # the key that signed each authenticated request
        self.history: dict[int, SignedRegistry] = {}  # registry versions replaced by governance decisions
        self.governance: list[dict[str, Any]] = []  # every governance document received
        self.governance_refusal: str | None = None  # set: refuse submissions with this reason (422)
        self.governance_down = False  # True: governance submissions answer 503 and change nothing
        self.proof_requests: list[tuple[str, dict[str, str]]] = []
        self.checkpoint_requests = 0
        self.cosignatures: dict[int, dict[str, dict[str, str]]] = {}  # size -> kid -> co-signature
        self.replay = httpsig.ReplayCache()
        self._appended = asyncio.Event()
        self.waiting = 0  # long-polls held now (a test waits for one instead of sleeping)
        self._signed: dict[tuple[int, bytes], SignedCheckpoint] = {}  # one checkpoint per (size, root)
        # -- misbehaviour ---------------------------------------------------------------------------
        self.views: dict[str, list[Envelope]] = {}  # a server front's different history (split view)
        self.view_registries: dict[str, SignedRegistry] = {}  # and its registry (naming its own URL)
        self.checkpoint_root: bytes | None = None  # sign this root instead of the log's
        self.serve_checkpoint_size: int | None = None  # serve the (older) checkpoint of this size
        self.forge_key: SigningKey | None = None  # sign served checkpoints with this key instead
        self.ack_without_logging = False  # acknowledge pushes at the last position without logging them
        # A page ending at the end of the log carries the checkpoint served (misbehaviour above included), as the
        # hub's pages do (§8.3); False: as a hub before them, the node asks for it.
        self.page_checkpoints = False

    # -- what tests do to it -------------------------------------------------------------------------

    def append(self, env: Envelope, received_at: datetime | None = None) -> int:
        """Put an envelope in the log as if its origin had pushed it, received at ``received_at`` (default: at its
        ``issued_at``, as an honest hub receives a push sent at once; a malicious hub logs what it likes when it
        likes); its position."""
        self.log.append(env)
        self.received.append(received_at or env.payload.issued)
        self._appended.set()
        return len(self.log)

    def rewrite(self, position: int, env: Envelope) -> None:
        """Misbehave: replace the entry at ``position`` (already checkpointed) with another envelope."""
        self.log[position - 1] = env

    def drop(self, position: int) -> None:
        """Misbehave: remove the entry at ``position``; the later ones move up."""
        del self.log[position - 1]
        del self.received[position - 1]

    def show_history(self, view: str, entries: list[Envelope]) -> None:
        """Misbehave: the front :meth:`app` serves for ``view`` shows ``entries`` as the whole log."""
        self.views[view] = list(entries)

    def checkpoint(self, view: str = "", size: int | None = None) -> SignedCheckpoint:
        """The hub-signed checkpoint of the first ``size`` entries of ``view`` (default: all of them)."""
        leaves = self._leaves(view)[:size]
        root = self.checkpoint_root or merkle.root(leaves)
        key = (len(leaves), root)
        if key not in self._signed:
            assert self.registry is not None
            self._signed[key] = sign_checkpoint(self.registry.registry.network, len(leaves), root, self.key,
                                                self.clock())
        return self._signed[key]

    def _entries(self, view: str) -> list[Envelope]:
        return self.views.get(view, self.log)

    def _leaves(self, view: str) -> list[bytes]:
        return [merkle.leaf_hash(e.leaf) for e in self._entries(view)]

    def _received_at(self, position: int) -> datetime:
        """The receipt time served for ``position`` (a view's own entries beyond the log: now)."""
        return self.received[position - 1] if position <= len(self.received) else self.clock()

    def _head(self, origin: str) -> ChainHead | None:
        mine = [e for e in self.log if e.payload.origin == origin]
        return ChainHead(mine[-1].payload.seq, mine[-1].hash) if mine else None

    # -- the HTTP contract ---------------------------------------------------------------------------

    def app(self, view: str = "") -> web.Application:
        """A server front; one with a ``view`` shows that view's history (see :meth:`show_history`)."""
        app = web.Application()
        app[VIEW] = view
        app.router.add_get("/api/v1/registry", self.get_registry)
        app.router.add_post("/api/v1/envelopes", self.post_envelopes)
        app.router.add_get("/api/v1/log", self.get_log)
        app.router.add_get("/api/v1/log/checkpoint", self.get_checkpoint)
        app.router.add_get("/api/v1/log/proof/inclusion", self.get_inclusion_proof)
        app.router.add_get("/api/v1/log/proof/consistency", self.get_consistency_proof)
        app.router.add_post("/api/v1/log/cosignatures", self.post_cosignature)
        app.router.add_post("/api/v1/governance", self.post_governance)
        app.on_shutdown.append(self._release)
        return app

    async def _release(self, app: web.Application) -> None:
        self._appended.set()  # end held long-polls so the server closes at once

    def _down(self) -> web.Response | None:
        return None if self.up else problem_response(503, "hub-busy", "the fake hub is down")

    def _authenticate(self, request: web.Request, body: bytes) -> str | web.Response:
        """The member an RFC 9421-signed request comes from (by a key valid now), or a 401 answer."""
        assert self.registry is not None
        keys = self.registry.registry.member_keys()
        now = self.clock()
        try:
            # The target is this front's own URL (a split-view front listens elsewhere than the registry's).
            sig = httpsig.verify_request(
                request.method, str(request.url.origin()) + request.raw_path, request.headers, body,
                resolve_key=lambda kid: keys[kid].key if kid in keys and keys[kid].valid_at(now) else None,
                now=int(now.timestamp()))
            self.replay.check_and_remember(sig.keyid, sig.signature, sig.created, int(now.timestamp()))
        except httpsig.HttpSignatureError as e:
            return problem_response(401, e.reason, str(e))
        self.push_keyids.append(sig.keyid)
        return str(keys[sig.keyid].member)

    async def get_registry(self, request: web.Request) -> web.Response:
        assert self.registry is not None
        if "version" in request.query and int(request.query["version"]) in self.history:
            return self._down() or web.Response(body=self.history[int(request.query["version"])].to_bytes(),
                                                content_type="application/json")
        own = self.view_registries.get(request.app[VIEW], self.registry)
        body = self.served_registry or own.to_bytes()
        return self._down() or web.Response(body=body, content_type="application/json")

    async def post_envelopes(self, request: web.Request) -> web.Response:
        assert self.registry is not None
        self.push_requests += 1
        if (down := self._down()) is not None:
            return down
        body = await request.read()
        if isinstance(member := self._authenticate(request, body), web.Response):
            return member
        keys = self.registry.registry.member_keys()
        results: list[dict[str, Any]] = []
        for i, obj in enumerate(json.loads(body)["envelopes"]):
            env = Envelope.from_dict(obj)
            p = env.payload
            held = next((n for n, e in enumerate(self.log, 1)
                         if e.payload.origin == p.origin and e.payload.seq == p.seq), None)
            if held is not None and self.log[held - 1].hash == env.hash:
                results.append({"index": i, "status": "duplicate", "position": held, "hash": env.hash})
                continue
            result = verify_envelope(env, keys=keys.get, schemas=default_schemas(), now=self.clock(),
                                     chain_head=self._head(p.origin), check_chain_head=True)
            reason = self.reject_reason or result.reason
            if reason:
                results.append({"index": i, "status": "rejected",
                                "problem": problem_body(422, reason, f"envelope {i}: {reason}")})
                continue
            position = len(self.log) if self.ack_without_logging else self.append(env)
            results.append({"index": i, "status": "accepted", "position": position, "hash": env.hash})
        checkpoint = self.checkpoint(request.app[VIEW]).to_dict() if self.log else None
        return json_response({"results": results, "log_size": len(self.log), "checkpoint": checkpoint})

    async def post_governance(self, request: web.Request) -> web.Response:
        """Keep the documents and publish the version they decide, as the real hub (one subject per submission)."""
        assert self.registry is not None
        if self.governance_down:
            return problem_response(503, "hub-busy", "the fake hub's governance is down")
        if (down := self._down()) is not None:
            return down
        documents = json.loads(await request.read())["documents"]
        self.governance += documents
        if self.governance_refusal:
            return problem_response(422, self.governance_refusal, "the fake hub refuses governance documents")
        try:
            docs = [parse_document(d) for d in documents]
        except IpdnError as e:
            return problem_response(422, e.reason, e.message)
        version = self.registry.registry.version
        if any(d.body["base"] != version for d in docs):
            return problem_response(422, "stale-governance-document", f"the current version is {version}")
        action = {"application": "admit", "rotation": "rotate", "revocation": "revoke"}.get(
            docs[0].type, str(docs[0].body.get("action")))
        try:
            new = next_version(self.registry, {"action": action, "documents": documents}, self.key,
                               now=self.clock())
        except GovernanceError:
            pass  # kept, undecided (the real hub waits for more votes)
        else:
            self.history[version] = self.registry
            self.registry = new
        return json_response({"accepted": [d.hash for d in docs], "registry_version": self.registry.registry.version},
                             status=202)

    async def get_log(self, request: web.Request) -> web.Response:
        if (down := self._down()) is not None:
            return down
        entries_of = self._entries(request.app[VIEW])
        after, limit = int(request.query["after"]), int(request.query.get("limit", "100"))
        wait = min(float(request.query.get("wait", "0")), 30)
        if len(entries_of) <= after and wait > 0:
            self._appended.clear()
            self.waiting += 1
            try:
                with contextlib.suppress(TimeoutError):  # long-poll: an empty page after ``wait`` seconds
                    await asyncio.wait_for(self._appended.wait(), wait)
            finally:
                self.waiting -= 1
            entries_of = self._entries(request.app[VIEW])
        entries = [{"position": n, "received_at": format_time(self._received_at(n)), "envelope": e.to_dict()}
                   for n, e in enumerate(entries_of[after:after + limit], after + 1)]
        page = {"entries": entries, "next": after + len(entries), "size": len(entries_of)}
        if self.page_checkpoints and entries and after + len(entries) == len(entries_of):
            page["checkpoint"] = self._served(request.app[VIEW]).to_dict()
        return json_response(page)

    def _served(self, view: str) -> SignedCheckpoint:
        """The checkpoint served for ``view``, as the misbehaviour asked for is set."""
        signed = self.checkpoint(view, self.serve_checkpoint_size)
        if self.forge_key is not None:  # another key's signature under the hub key's kid
            protected = b64u_encode(canonical_bytes({"alg": jws.ALG, "kid": self.key.kid, "typ": TYP}))
            forged = self.forge_key.sign(f"{protected}.{b64u_encode(signed.payload)}".encode())
            signed = SignedCheckpoint(signed.checkpoint, signed.payload,
                                      ({"protected": protected, "signature": b64u_encode(forged)},))
        return signed

    async def get_checkpoint(self, request: web.Request) -> web.Response:
        if (down := self._down()) is not None:
            return down
        view = request.app[VIEW]
        self.checkpoint_requests += 1
        if not self._entries(view):
            return problem_response(404, "no-checkpoint", "the log is empty")
        signed = self._served(view)
        for entry in self.cosignatures.get(signed.checkpoint.size, {}).values():
            signed = signed.with_signature(entry)
        return json_response(signed.to_dict())

    async def _proof(self, request: web.Request, kind: str) -> web.Response:
        if (down := self._down()) is not None:
            return down
        self.proof_requests.append((kind, dict(request.query)))
        leaves = self._leaves(request.app[VIEW])

        def get_node(level: int, index: int) -> bytes:
            return merkle.root(leaves[index << level:(index + 1) << level])

        q = {k: int(v) for k, v in request.query.items()}
        if max(q.get("size", 0), q.get("to", 0)) > len(leaves):
            return problem_response(400, "bad-parameter", "beyond the log")
        try:
            if kind == "inclusion":
                proof = merkle.inclusion_proof(q["index"], q["size"], get_node)
            else:
                proof = merkle.consistency_proof(q["from"], q["to"], get_node)
        except ValueError as e:
            return problem_response(400, "bad-parameter", str(e))
        return json_response({**q, "proof": [h.hex() for h in proof]})

    async def get_inclusion_proof(self, request: web.Request) -> web.Response:
        return await self._proof(request, "inclusion")

    async def get_consistency_proof(self, request: web.Request) -> web.Response:
        return await self._proof(request, "consistency")

    async def post_cosignature(self, request: web.Request) -> web.Response:
        assert self.registry is not None
        if (down := self._down()) is not None:
            return down
        body = await request.read()
        if isinstance(member := self._authenticate(request, body), web.Response):
            return member
        doc = json.loads(body)
        keys = {k: v for k, v in self.registry.registry.member_keys().items() if v.member == member}
        for held in [s for s in self._signed.values() if s.checkpoint.size == doc["size"]]:
            signed = held.with_signature(doc["signature"])
            if member in signed.verify(self.registry.registry.hub_public_keys(), keys):
                self.cosignatures.setdefault(doc["size"], {})[signed.signers()[-1]] = doc["signature"]
                return json_response({"size": doc["size"], "member": member, "cosigned": True}, status=201)
        return problem_response(422, "bad-cosignature", f"not {member}'s signature over a checkpoint {doc['size']}")
