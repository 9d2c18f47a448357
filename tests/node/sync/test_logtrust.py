"""Trust the math, not the hub (docs/ARCHITECTURE.md, trust model): the node's Merkle view of the log, checkpoint
checks, inclusion of its own envelopes, witnessing, and split-view detection, against a fake hub that computes
real Merkle trees, signs real checkpoints, and misbehaves on request (tests/support/fakehub.py)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from federation.protocol import merkle
from federation.protocol.checkpoint import parse_checkpoint
from federation.protocol.envelope import Envelope
from federation.protocol.keys import SigningKey
from node.app import create_app
from node.config import NodeConfig
from node.errors import LogHaltedError, LogMisbehaviourError
from node.records.service import NodeService
from node.store.evidence import FRONTIER_KEY
from node.store.records import NodeStore
from node.store.tables import envelopes, sync_state
from node.sync.engine import SyncEngine
from tests.support.factories import Member
from tests.support.fakehub import FakeHub
from tests.support.nodes import TOKEN, Net, driven_engine, make_config, make_registry, publish_n
from tests.support.timing import eventually

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def leaves(*envs: Envelope) -> list[bytes]:
    return [merkle.leaf_hash(e.leaf) for e in envs]


def log_of(*envs: Envelope, start: int = 1) -> list[tuple[int, Any]]:
    return [(start + i, e.to_dict()) for i, e in enumerate(envs)]


async def sync(engine: SyncEngine) -> None:
    """Pull until caught up (each caught-up page also checks the hub's checkpoint), then accept the one verified."""
    while await engine.pull_once():
        pass
    await engine.accept_checkpoint()


async def accepted_size(engine: SyncEngine) -> int | None:
    cp = await engine.service.trust.accepted_checkpoint()
    return cp.size if cp else None


async def status(client: TestClient[Any, Any]) -> dict[str, Any]:
    return dict(await (await client.get("/api/v1/status")).json())


async def _when(doc: Any, cond: Any) -> Any:
    d = await doc
    return d if cond(d) else None


class TestNodeFrontier:
    async def test_every_entry_is_a_leaf_quarantined_too(self, service: NodeService, kr: Member,
                                                         event: dict[str, Any]) -> None:
        """The frontier covers every log entry in order, the quarantined ones too: its root is the RFC 9162
        root over all of them, saved with the cursor."""
        good = kr.publish(event)
        forged = kr.publish(event, key=SigningKey.generate())  # quarantined: bad signature
        after = kr.publish(event)  # quarantined: it chains on the forgery
        report = await service.applier.apply_log(0, log_of(good, forged, after))
        assert len(report.quarantined) == 2
        view = await service.trust.log_view()
        assert view.cursor == 3 and view.frontier is not None
        assert view.frontier.root() == merkle.root(leaves(good, forged, after))

    async def test_evidence_found_while_a_page_is_fetched_halts_its_apply(self, service: NodeService, kr: Member,
                                                                          event: dict[str, Any]) -> None:
        """Evidence recorded after the pull loop's own check (the peer or push loop found it while the page was on
        its way) stops that page too: the check under the write lock reads it with the cursor and chain heads."""
        await service.applier.apply_log(0, log_of(kr.publish(event)))
        await service.trust.record_misbehaviour(LogMisbehaviourError("split view", reason="split-view"))
        with pytest.raises(LogHaltedError, match="split-view"):
            await service.applier.apply_log(1, log_of(kr.publish(event), start=2))
        assert (await service.trust.log_view()).cursor == 1 and (await service.counts()).received == 1

    async def test_frontier_survives_restart(self, service: NodeService, config: NodeConfig, kr: Member,
                                             event: dict[str, Any]) -> None:
        """A reopened store has the same cursor and frontier (they are written in one transaction)."""
        envs = [kr.publish(event) for _ in range(5)]
        await service.applier.apply_log(0, log_of(*envs[:3]))
        await service.applier.apply_log(3, log_of(*envs[3:], start=4))
        again = await NodeStore.open(config.db_url, "QA")
        try:
            view = await again.trust.log_view()
        finally:
            await again.close()
        assert view.cursor == 5 and view.frontier is not None
        assert view.frontier.root() == merkle.root(leaves(*envs))

    async def test_entry_without_jws_members_is_hub_misbehaviour(self, service: NodeService, kr: Member,
                                                                 event: dict[str, Any]) -> None:
        """An entry lacking protected/payload/signature has no leaf: the page is refused whole, with the entry
        as the offending document (the hub logged something no checkpoint can cover)."""
        with pytest.raises(LogMisbehaviourError) as err:
            await service.applier.apply_log(0, [(1, kr.publish(event).to_dict()), (2, {"payload": "x"})])
        assert err.value.reason == "log-entry-malformed" and json.loads(err.value.offending or b"") == {"payload": "x"}
        assert await service.applier.cursor() == 0 and (await service.counts()).received == 0

    async def test_frontier_rebuilt_for_a_database_from_before_0002(self, service: NodeService, store: NodeStore,
                                                                    kr: Member, event: dict[str, Any]) -> None:
        """A node upgraded from schema 0001 has a cursor but no frontier: it is rebuilt from the envelopes and
        quarantine it holds by position (a version conflict, held and quarantined, counts once)."""
        first = kr.publish(event, record_id="KR:a")
        conflict = kr.publish({**event, "status": "cancelled"}, record_id="KR:a", version=1)
        forged = kr.publish(event, key=SigningKey.generate())
        await service.applier.apply_log(0, log_of(first, conflict, forged))
        async with store.engine.begin() as conn:
            await conn.execute(sync_state.delete().where(sync_state.c.key == FRONTIER_KEY))
        view = await service.trust.log_view()
        assert view.frontier is not None and view.frontier.root() == merkle.root(leaves(first, conflict, forged))
        assert (await store.trust.log_view()).frontier == view.frontier  # kept

    async def test_frontier_not_guessed_when_positions_are_missing(self, service: NodeService, store: NodeStore,
                                                                   kr: Member, event: dict[str, Any]) -> None:
        """If the held envelopes do not cover every position up to the cursor, the node cannot know its own
        root: frontier-incomplete, nothing guessed."""
        await service.applier.apply_log(0, log_of(kr.publish(event), kr.publish(event)))
        async with store.engine.begin() as conn:
            await conn.execute(sync_state.delete().where(sync_state.c.key == FRONTIER_KEY))
            # position 2 no longer held (its envelope stays: the record refers to it)
            await conn.execute(envelopes.update().where(envelopes.c.position == 2).values(position=None))
        with pytest.raises(LogMisbehaviourError) as err:
            await service.trust.log_view()
        assert err.value.reason == "frontier-incomplete"


@pytest.fixture(params=["asked for", "in the page"])
def checkpoints(request: pytest.FixtureRequest, net: Net) -> str:
    """Both ways a node gets the hub's checkpoint: asked for when caught up (a hub before §8.3's page checkpoints),
    or carried by the page that ends at the end of the log."""
    net.hub.page_checkpoints = request.param == "in the page"
    return str(request.param)


@pytest.mark.usefixtures("checkpoints")
class TestCheckpointChecks:
    async def test_matching_checkpoint_accepted(self, net: Net, kr: Member, event: dict[str, Any]) -> None:
        """When caught up, the hub's checkpoint with the node's own root is accepted; a later one is accepted
        after its consistency proof from the last one verifies."""
        publish_n(net.hub, kr, event, 3)
        async with driven_engine(net.config) as engine:
            await sync(engine)
            assert await accepted_size(engine) == 3
            publish_n(net.hub, kr, event, 2)
            await sync(engine)
            assert await accepted_size(engine) == 5
            assert ("consistency", {"from": "3", "to": "5"}) in net.hub.proof_requests
            assert await engine.service.trust.evidence() == []

    async def test_page_checkpoint_checked_without_asking(self, net: Net, kr: Member, event: dict[str, Any],
                                                          checkpoints: str) -> None:
        """A checkpoint carried by the page is checked in the pull loop (signature, root against the frontier) and
        accepted by the checkpoint loop after its consistency proof: the node never asks for the checkpoint and
        the pull does not wait for the proof. A hub without page checkpoints is asked as before."""
        publish_n(net.hub, kr, event, 3)
        async with driven_engine(net.config) as engine:
            assert await engine.pull_once() == 3
            in_page = checkpoints == "in the page"
            assert await accepted_size(engine) == (None if in_page else 3)
            assert await engine.accept_checkpoint() is in_page
            assert await accepted_size(engine) == 3
            publish_n(net.hub, kr, event, 2)
            await engine.pull_once()
            assert await accepted_size(engine) == (3 if in_page else 5)
            await engine.accept_checkpoint()
            assert await accepted_size(engine) == 5
            assert ("consistency", {"from": "3", "to": "5"}) in net.hub.proof_requests
            assert net.hub.checkpoint_requests == (0 if in_page else 2)

    async def test_hub_first_checkpoint_with_another_root_detected(self, net: Net, kr: Member,
                                                                   event: dict[str, Any]) -> None:
        """With nothing accepted yet there is no consistency proof to ask for: the node's own frontier is what
        refuses a first checkpoint whose root is not that of the entries served."""
        publish_n(net.hub, kr, event, 2)
        net.hub.checkpoint_root = os.urandom(32)
        async with driven_engine(net.config) as engine:
            with pytest.raises(LogHaltedError, match="log-inconsistent"):
                await sync(engine)
            [ev] = await engine.service.trust.evidence()
            assert ev.accepted is None and ev.offending is not None

    async def test_forged_checkpoint_signature_refused(self, net: Net, kr: Member, event: dict[str, Any]) -> None:
        """A checkpoint under the hub's kid but signed by another key is refused: nothing accepted, nothing
        co-signed, the forgery kept as evidence, applying halted."""
        publish_n(net.hub, kr, event, 2)
        net.hub.forge_key = SigningKey.generate()
        async with driven_engine(net.config) as engine:
            with pytest.raises(LogHaltedError, match="checkpoint-bad-signature"):
                await sync(engine)
            assert await accepted_size(engine) is None
            assert await engine.cosign_once() is False and net.hub.cosignatures == {}
            [ev] = await engine.service.trust.evidence()
            assert ev.reason == "checkpoint-bad-signature" and ev.accepted is None
            assert parse_checkpoint(json.loads(ev.offending or b"")).checkpoint.size == 2

    async def test_hub_rewrites_old_entry_detected(self, net: Net, kr: Member, event: dict[str, Any]) -> None:
        """A hub that replaces an entry the node already verified signs a root the node's frontier does not
        have: log-inconsistent."""
        publish_n(net.hub, kr, event, 3)
        async with driven_engine(net.config) as engine:
            await sync(engine)
            net.hub.rewrite(2, kr.publish(event))
            with pytest.raises(LogHaltedError, match="log-inconsistent"):
                await engine.pull_once()
            assert (await engine.service.trust.evidence())[0].reason == "log-inconsistent"

    async def test_hub_drops_entry_detected(self, net: Net, kr: Member, event: dict[str, Any]) -> None:
        """A hub that removes a verified entry (the later ones move up) and carries on appending cannot sign a
        checkpoint matching what the node pulled: log-inconsistent."""
        publish_n(net.hub, kr, event, 3)
        async with driven_engine(net.config) as engine:
            await sync(engine)
            net.hub.drop(2)
            publish_n(net.hub, kr, event, 2)
            with pytest.raises(LogHaltedError, match="log-inconsistent"):
                await sync(engine)
            assert await accepted_size(engine) == 3

    async def test_hub_checkpoint_rollback_detected(self, net: Net, kr: Member, event: dict[str, Any]) -> None:
        """A hub serving an older checkpoint than one the node accepted (a restored backup, a hidden tail):
        checkpoint-rollback."""
        publish_n(net.hub, kr, event, 3)
        async with driven_engine(net.config) as engine:
            await sync(engine)
            net.hub.serve_checkpoint_size = 2
            with pytest.raises(LogHaltedError, match="checkpoint-rollback"):
                await engine.pull_once()

    async def test_hub_signs_inconsistent_checkpoint_detected(self, net: Net, kr: Member,
                                                              event: dict[str, Any]) -> None:
        """A validly signed checkpoint whose root is not that of the entries served: log-inconsistent."""
        publish_n(net.hub, kr, event, 3)
        async with driven_engine(net.config) as engine:
            await sync(engine)
            publish_n(net.hub, kr, event, 1)
            net.hub.checkpoint_root = os.urandom(32)
            with pytest.raises(LogHaltedError, match="log-inconsistent"):
                await sync(engine)

    async def test_evidence_kept_and_sync_halted(self, aiohttp_client: Any, net: Net, kr: Member,
                                                 event: dict[str, Any]) -> None:
        """After a rewrite the node keeps both hub-signed checkpoints (accepted and offending) as evidence,
        shows the alarm, applies nothing more from the hub (also after a restart), and goes on authoring,
        serving and pushing."""
        publish_n(net.hub, kr, event, 3)
        client = await aiohttp_client(create_app(net.config))
        await eventually(lambda: _when(status(client), lambda d: (d["log"]["checkpoint"] or {}).get("size") == 3))
        net.hub.rewrite(2, kr.publish(event))
        doc = await eventually(lambda: _when(status(client), lambda d: d["log"]["halted"]))
        assert "log-inconsistent" in [a["reason"] for a in doc["alarms"]]
        [ev] = doc["log"]["evidence"]
        keys = net.registry.registry.hub_public_keys()
        accepted, offending = parse_checkpoint(ev["accepted"]), parse_checkpoint(ev["offending"])
        accepted.verify(keys, {})
        offending.verify(keys, {})
        assert accepted.checkpoint.size == offending.checkpoint.size == 3
        assert accepted.checkpoint.root != offending.checkpoint.root and ev["reason"] == "log-inconsistent"

        net.hub.append(kr.publish(event, record_id="KR:late"))
        resp = await client.post("/api/v1/records", json={"kind": "cultural-event", "body": event}, headers=AUTH)
        assert resp.status == 201
        await eventually(lambda: _when(status(client), lambda d: d["outbox"]["accepted"] == 1))
        assert net.hub.log[-1].payload.origin == "QA"  # pushing goes on
        assert (await client.get("/api/v1/records/KR:late")).status == 404 and (await status(client))["cursor"] == 3

        await client.close()
        async with driven_engine(net.config) as engine:  # a restart does not forget
            with pytest.raises(LogHaltedError):
                await engine.pull_once()


class TestWitnessing:
    async def test_node_cosigns_verified_checkpoint(self, aiohttp_client: Any, net: Net, kr: Member,
                                                    event: dict[str, Any]) -> None:
        """After accepting a checkpoint the node sends the hub its co-signature (RFC 9421-signed); the hub's
        checkpoint then verifies with QA as a co-signer."""
        publish_n(net.hub, kr, event, 2)
        client = await aiohttp_client(create_app(net.config))
        await eventually(lambda: _when(status(client), lambda d: d["log"]["cosigned_size"] == 2))
        signed = net.hub.checkpoint()
        for entry in net.hub.cosignatures[2].values():
            signed = signed.with_signature(entry)
        reg = net.registry.registry
        assert signed.verify(reg.hub_public_keys(), reg.member_keys()) == ["QA"]

    async def test_node_serves_its_checkpoint_with_cosignature(self, aiohttp_client: Any, net: Net, kr: Member,
                                                               event: dict[str, Any]) -> None:
        """GET /api/v1/log/checkpoint at the node is the checkpoint it accepted, hub-signed and co-signed by
        the node (404 before it accepted one)."""
        client = await aiohttp_client(create_app(net.config))
        assert (await client.get("/api/v1/log/checkpoint")).status == 404
        publish_n(net.hub, kr, event, 2)
        resp = await eventually(lambda: _ok(client.get("/api/v1/log/checkpoint")))
        signed = parse_checkpoint(await resp.json())
        reg = net.registry.registry
        assert signed.verify(reg.hub_public_keys(), reg.member_keys()) == ["QA"]
        assert signed.checkpoint.size == 2


class TestOwnInclusion:
    async def test_own_envelope_inclusion_verified(self, net: Net, kr: Member, event: dict[str, Any]) -> None:
        """After a push the node verifies inclusion proofs of the first and the last own envelope acknowledged
        against the checkpoint in the answer."""
        publish_n(net.hub, kr, event, 1)
        async with driven_engine(net.config) as engine:
            for _ in range(3):
                await engine.service.create("cultural-event", event)
            await engine.push_once()
            assert [kind for kind, _ in net.hub.proof_requests] == []  # the next push does not wait for them
            await engine.check_inclusions()
            asked = [q for kind, q in net.hub.proof_requests if kind == "inclusion"]
            assert asked == [{"index": "1", "size": "4"}, {"index": "3", "size": "4"}]
            assert await engine.service.trust.evidence() == []

    async def test_hub_acknowledges_without_logging_detected(self, net: Net, kr: Member,
                                                             event: dict[str, Any]) -> None:
        """A hub that answers "accepted" for an envelope it did not log (pointing at another entry) fails the
        inclusion proof: own-envelope-not-included, kept with the push answer's checkpoint; applying halts."""
        publish_n(net.hub, kr, event, 1)
        net.hub.ack_without_logging = True
        async with driven_engine(net.config) as engine:
            await engine.service.create("cultural-event", event)
            await engine.push_once()
            await engine.check_inclusions()
            [ev] = await engine.service.trust.evidence()
            assert ev.reason == "own-envelope-not-included"
            assert parse_checkpoint(json.loads(ev.offending or b"")).checkpoint.size == 1
            with pytest.raises(LogHaltedError):
                await engine.pull_once()


@dataclasses.dataclass
class Split:
    """A hub with two fronts (same key, different URLs); KR's node runs on the second ("fork") front."""

    hub: FakeHub
    tr: Member  # publishes through the hub
    kr_node: TestClient[Any, Any]
    start_qa: Callable[[], Awaitable[TestClient[Any, Any]]]  # QA's node on the main front, KR's node as its peer


@pytest.fixture
async def split(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, hub_key: SigningKey, qa: Member,
                kr: Member) -> Split:
    hub = FakeHub(hub_key)
    main, fork = await aiohttp_server(hub.app()), await aiohttp_server(hub.app(view="fork"))
    tr = Member("TR")
    registry = hub.registry = make_registry(hub_key, str(main.make_url("/")), qa, kr, tr)
    fork_registry = make_registry(hub_key, str(fork.make_url("/")), qa, kr, tr)
    hub.view_registries["fork"] = fork_registry
    kr_node = await aiohttp_client(create_app(make_config(tmp_path, kr, fork_registry)))

    async def start_qa() -> TestClient[Any, Any]:
        config = dataclasses.replace(make_config(tmp_path, qa, registry),
                                     peers=str(kr_node.make_url("/")), peer_interval=0.05)
        client: TestClient[Any, Any] = await aiohttp_client(create_app(config))
        return client

    return Split(hub, tr, kr_node, start_qa)


class TestSplitView:
    async def test_hub_split_view_detected(self, split: Split, event: dict[str, Any]) -> None:
        """The hub shows KR's node a history where TR's second envelope is another one: both nodes accept
        a checkpoint of size 2, with different roots. QA's peer check finds KR's copy: split-view, with both
        hub-signed checkpoints as evidence."""
        tr, hub = split.tr, split.hub
        t1, t2 = tr.publish(event), tr.publish(event)
        other = Member("TR", tr.key, seq=1, prev=t1.hash).publish({**event, "status": "cancelled"})
        hub.show_history("fork", [t1, other])  # before anything is logged: KR's node never sees t2
        hub.append(t1)
        hub.append(t2)
        qa_node = await split.start_qa()
        doc = await eventually(lambda: _when(status(qa_node), lambda d: d["log"]["halted"]))
        [ev] = doc["log"]["evidence"]
        assert ev["reason"] == "split-view" and "split-view" in [a["reason"] for a in doc["alarms"]]
        ours, theirs = parse_checkpoint(ev["accepted"]), parse_checkpoint(ev["offending"])
        assert hub.registry is not None
        reg = hub.registry.registry
        assert ours.verify(reg.hub_public_keys(), reg.member_keys()) == []
        assert theirs.verify(reg.hub_public_keys(), reg.member_keys()) == ["KR"]  # KR's node vouches for it
        assert ours.checkpoint.size == theirs.checkpoint.size == 2
        assert ours.checkpoint.root != theirs.checkpoint.root

    async def test_hub_split_view_at_different_sizes_detected(self, split: Split, event: dict[str, Any]) -> None:
        """KR's node holds a shorter forked history: the hub's consistency proof between the two sizes
        cannot verify against KR's root: split-view."""
        tr, hub = split.tr, split.hub
        t1, t2, t3 = tr.publish(event), tr.publish(event), tr.publish(event)
        other = Member("TR", tr.key, seq=1, prev=t1.hash).publish({**event, "status": "cancelled"})
        hub.show_history("fork", [t1, other])
        for env in (t1, t2, t3):
            hub.append(env)
        qa_node = await split.start_qa()
        doc = await eventually(lambda: _when(status(qa_node), lambda d: d["log"]["halted"]))
        assert [e["reason"] for e in doc["log"]["evidence"]] == ["split-view"]
        assert ("consistency", {"from": "2", "to": "3"}) in hub.proof_requests

    async def test_consistent_peer_passes(self, aiohttp_server: Any, net: Net, kr: Member,
                                          event: dict[str, Any]) -> None:
        """A peer that accepted an older checkpoint of the same history is consistent: no alarm, its size
        shown on the status page."""
        publish_n(net.hub, kr, event, 3)
        peer = await aiohttp_server(_serving(net.hub.checkpoint(size=2).to_dict()))
        url = str(peer.make_url("/"))
        async with driven_engine(dataclasses.replace(net.config, peers=url)) as engine:
            await sync(engine)
            await engine.check_peers_once()
            assert engine.state.peers[url.rstrip("/")]["size"] == 2
            assert engine.state.peers[url.rstrip("/")]["error"] is None
            assert await engine.service.trust.evidence() == []

    async def test_peer_forged_checkpoint_is_no_alarm(self, aiohttp_server: Any, net: Net, kr: Member,
                                                      event: dict[str, Any]) -> None:
        """A peer serving a checkpoint the hub did not sign proves nothing about the hub: the peer's error is
        shown, no evidence is kept and applying goes on."""
        publish_n(net.hub, kr, event, 2)
        forger = FakeHub(SigningKey.generate())
        forger.registry = net.registry
        forger.log = list(net.hub.log[:1])
        peer = await aiohttp_server(_serving(forger.checkpoint().to_dict()))
        url = str(peer.make_url("/")).rstrip("/")
        async with driven_engine(dataclasses.replace(net.config, peers=url)) as engine:
            await sync(engine)
            await engine.check_peers_once()
            assert "checkpoint-bad-signature" in engine.state.peers[url]["error"]
            assert await engine.service.trust.evidence() == []


def _serving(doc: dict[str, Any]) -> web.Application:
    """A peer node's GET /api/v1/log/checkpoint answering ``doc``."""
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(doc)

    app = web.Application()
    app.router.add_get("/api/v1/log/checkpoint", handler)
    return app


async def _ok(resp: Any) -> Any:
    r = await resp
    return r if r.status == 200 else None
