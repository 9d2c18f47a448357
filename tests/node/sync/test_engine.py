"""The sync engine against a fake hub (tests/support/fakehub.py): push, pull, backoff, catch-up, registry."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from federation.protocol.governance import next_version, sign_document
from federation.protocol.keys import SigningKey
from federation.protocol.registry import sign_registry
from node.app import create_app
from node.appkeys import ENGINE, SERVICE
from node.config import NodeConfig
from node.errors import HubProtocolError, HubUnavailableError
from node.store.outbox import ACCEPTED, PENDING
from node.sync.engine import Backoff, SyncEngine, retry_delay
from tests.support.factories import Member
from tests.support.nodes import TOKEN, Net, driven_engine, make_config, make_registry
from tests.support.timing import eventually

AUTH = {"Authorization": f"Bearer {TOKEN}"}
RENEW = {"action": "renew", "documents": []}


async def status(client: TestClient) -> dict[str, Any]:
    return dict(await (await client.get("/api/v1/status")).json())


async def publish(client: TestClient, body: dict[str, Any]) -> str:
    resp = await client.post("/api/v1/records", json={"kind": "cultural-event", "body": body}, headers=AUTH)
    assert resp.status == 201
    return str((await resp.json())["record_id"])


class TestBackoff:
    def test_doubles_up_to_the_cap_and_resets(self) -> None:
        """The ceiling doubles from the base per failure, stops at the cap, and success starts over."""
        b = Backoff(0.5, 30.0, rng=lambda: 1.0)
        assert [b.next_delay() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
        b.reset()
        assert b.next_delay() == 0.5

    def test_full_jitter(self) -> None:
        """Each delay is drawn uniformly below the ceiling (here the draw is 0.25 of it)."""
        b = Backoff(0.5, 30.0, rng=lambda: 0.25)
        assert [b.next_delay() for _ in range(3)] == [0.125, 0.25, 0.5]

    def test_hubs_retry_after_honoured_up_to_the_cap(self) -> None:
        """A rate-limited node waits at least what the hub's Retry-After asks, but a hub cannot park it
        past the backoff cap; other failures wait the backoff's delay."""
        b = Backoff(0.5, 30.0, rng=lambda: 1.0)
        assert retry_delay(b, HubUnavailableError("429", retry_after=7)) == 7
        assert retry_delay(b, HubUnavailableError("429", retry_after=86400)) == 30
        assert retry_delay(b, HubUnavailableError("reset")) == 2
        assert retry_delay(b, HubProtocolError("401")) == 4


class TestSyncLoops:
    async def test_push_marks_accepted(self, aiohttp_client: Any, net: Net, event: dict[str, Any]) -> None:
        """A published record reaches the hub's log and the outbox marks it accepted with its position."""
        client = await aiohttp_client(create_app(net.config))
        await publish(client, event)
        doc = await eventually(lambda: _when(status(client), lambda d: d["outbox"]["accepted"] == 1))
        assert doc["outbox"]["pending"] == 0 and doc["hub"]["reachable"] is True
        assert len(net.hub.log) == 1 and net.hub.log[0].payload.origin == "QA"
        [row] = await client.app[SERVICE].store.outbox.entries(ACCEPTED, 10)
        assert row.position == 1

    async def test_pull_applies_other_members_records(self, aiohttp_client: Any, net: Net, kr: Member,
                                                      event: dict[str, Any]) -> None:
        """An envelope KR pushed to the hub appears at QA's node through the long-poll."""
        client = await aiohttp_client(create_app(net.config))
        net.hub.append(kr.publish(event, record_id="KR:a"))
        resp = await eventually(lambda: _ok(client.get("/api/v1/records/KR:a")))
        assert (await resp.json())["origin"] == "KR"
        assert (await status(client))["cursor"] == 1

    async def test_hub_down_backoff_and_authoring_still_works(self, aiohttp_client: Any, net: Net, kr: Member,
                                                              event: dict[str, Any]) -> None:
        """With the hub answering 503 the node still publishes and serves, queues, and reports the hub down;
        when the hub returns it pushes the queue and pulls what it missed."""
        net.hub.up = False
        client = await aiohttp_client(create_app(net.config))
        rids = [await publish(client, event) for _ in range(3)]
        down = await eventually(lambda: _when(status(client), lambda d: d["hub"]["reachable"] is False))
        assert "hub-busy" in down["hub"]["last_error"] and down["outbox"]["pending"] == 3
        assert (await client.get(f"/api/v1/records/{rids[0]}")).status == 200
        pushes = net.hub.push_requests
        assert pushes >= 1
        net.hub.append(kr.publish(event, record_id="KR:missed"))

        net.hub.up = True
        await eventually(lambda: _when(status(client), lambda d: d["outbox"]["accepted"] == 3), within=10)
        await eventually(lambda: _ok(client.get("/api/v1/records/KR:missed")), within=10)
        assert [e.payload.seq for e in net.hub.log if e.payload.origin == "QA"] == [1, 2, 3]

    async def test_rejected_own_envelope_stops_pushing(self, aiohttp_client: Any, net: Net,
                                                       event: dict[str, Any]) -> None:
        """An own envelope the hub rejects is shown as an alarm and pushing stops (no retry loop) until
        the operator asks for a retry."""
        net.hub.reject_reason = "key-not-valid"
        client = await aiohttp_client(create_app(net.config))
        await publish(client, event)
        await publish(client, event)
        doc = await eventually(lambda: _when(status(client), lambda d: d["outbox"]["rejected"] == 1))
        assert doc["outbox"]["pending"] == 1 and [a["reason"] for a in doc["alarms"]] == ["key-not-valid"]
        pushes = net.hub.push_requests
        engine: SyncEngine = client.app[ENGINE]
        calls = {"started": 0, "finished": 0}
        push_once = engine.push_once

        async def counted_push_once() -> bool:
            calls["started"] += 1
            try:
                return await push_once()
            finally:
                calls["finished"] += 1

        engine.push_once = counted_push_once  # type: ignore[method-assign]
        changed = client.app[SERVICE].outbox_changed
        await publish(client, event)  # wakes the push loop, which must not send anything
        # The loop clears the flag and starts a push in one step: wait until that push has run its course.
        await eventually(lambda: not changed.is_set() and calls["started"] == calls["finished"] >= 1)
        assert net.hub.push_requests == pushes
        assert await engine.push_once() is False and net.hub.push_requests == pushes

        net.hub.reject_reason = None
        resp = await client.post("/api/v1/outbox/retry", headers=AUTH)
        assert (await resp.json())["requeued"] == 1
        await eventually(lambda: _when(status(client), lambda d: d["outbox"]["accepted"] == 3))

    async def test_retry_without_token_refused(self, aiohttp_client: Any, net: Net) -> None:
        """Requeueing rejected envelopes is an operator action."""
        client = await aiohttp_client(create_app(net.config, sync=False))
        assert (await client.post("/api/v1/outbox/retry")).status == 401

    async def test_registry_update_followed(self, aiohttp_client: Any, net: Net, hub_key: SigningKey) -> None:
        """A newer registry served by the hub becomes the node's trust anchor."""
        client = await aiohttp_client(create_app(net.config))
        net.hub.registry = sign_registry(dataclasses.replace(net.registry.registry, version=2, change=RENEW), hub_key)
        await eventually(lambda: _when(status(client), lambda d: d["registry_version"] == 2))
        assert net.config.registry_path.read_bytes() == net.hub.registry.to_bytes()

    async def test_registry_rollback_refused(self, aiohttp_client: Any, net: Net, hub_key: SigningKey) -> None:
        """A hub serving an older registry than the node holds is refused with an alarm."""
        v2 = sign_registry(dataclasses.replace(net.registry.registry, version=2, change=RENEW), hub_key)
        net.config.registry_path.write_bytes(v2.to_bytes())
        client = await aiohttp_client(create_app(net.config))
        doc = await eventually(lambda: _when(status(client), lambda d: d["alarms"]))
        assert doc["registry_version"] == 2 and doc["alarms"][0]["reason"] == "registry-rollback"


class TestPush:
    async def test_pending_pushed_in_seq_order_batches(self, net: Net, event: dict[str, Any]) -> None:
        """Pending envelopes go out oldest first, at most push_batch per request."""
        async with driven_engine(dataclasses.replace(net.config, push_batch=2)) as engine:
            for _ in range(5):
                await engine.service.create("cultural-event", event)
            while await engine.push_once():
                pass
            assert net.hub.push_requests == 3
            assert [e.payload.seq for e in net.hub.log] == [1, 2, 3, 4, 5]
            assert await engine.store.outbox.entries(PENDING, 10) == []

    async def test_resent_envelope_acknowledged_as_duplicate(self, net: Net, event: dict[str, Any]) -> None:
        """If the hub committed a push whose answer was lost, sending again marks it accepted at the same
        position."""
        async with driven_engine(net.config) as engine:
            env = await engine.service.create("cultural-event", event)
            net.hub.append(env)
            await engine.push_once()
            [row] = await engine.store.outbox.entries(ACCEPTED, 10)
            assert row.position == 1 and len(net.hub.log) == 1


class TestPull:
    async def test_registry_fetched_for_a_new_members_envelope(self, net: Net, hub_key: SigningKey,
                                                                qa: Member, kr: Member,
                                                                event: dict[str, Any]) -> None:
        """An envelope from a member admitted after the node's last registry refresh is applied, not
        quarantined: the node fetches the registry first."""
        tr = Member("TR")
        app = sign_document({"type": "application", "base": 1, "member": "TR", "names": {"tr": "Yunus Emre"},
                             "key": tr.key.public.to_jwk()}, tr.key, now=datetime.now(UTC))
        votes = [sign_document({"type": "vote", "base": 1, "proposal": app.hash, "voter": m.code,
                                "decision": "approve"}, m.key, now=datetime.now(UTC)) for m in (qa, kr)]
        net.hub.registry = next_version(net.registry, {"action": "admit", "documents": [
            d.to_dict() for d in (app, *votes)]}, hub_key, now=datetime.now(UTC))
        net.hub.append(tr.publish(event, record_id="TR:a"))
        async with driven_engine(net.config) as engine:
            assert await engine.pull_once() == 1
            assert engine.service.registry.registry.version == 2
            assert (await engine.service.get("TR:a")).origin == "TR"
            assert (await engine.service.counts()).quarantine == 0


class TestHubClient:
    async def test_unreachable_hub_is_unavailable(self, config: NodeConfig) -> None:
        """Connection refused is a transient error (back off), not a protocol error."""
        async with driven_engine(config) as engine:
            with pytest.raises(HubUnavailableError):
                await engine.pull_once()

    async def test_refusal_is_protocol_error(self, aiohttp_server: Any, tmp_path: Path, hub_key: SigningKey,
                                             qa: Member) -> None:
        """A 4xx answer (for example a push signature the hub refuses) is reported with its reason."""
        async def refuse(request: web.Request) -> web.Response:
            return web.json_response({"reason": "bad-signature", "detail": "no"}, status=401)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", refuse)
        server = await aiohttp_server(app)
        config = make_config(tmp_path, qa, make_registry(hub_key, str(server.make_url("/")), qa))
        async with driven_engine(config) as engine:
            with pytest.raises(HubProtocolError, match="bad-signature"):
                await engine.pull_once()

    async def test_rate_limited_answer_carries_retry_after(self, aiohttp_server: Any, tmp_path: Path,
                                                           hub_key: SigningKey, qa: Member) -> None:
        """A 429 is transient (back off, retry), and the hub's Retry-After travels with it."""
        async def limited(request: web.Request) -> web.Response:
            return web.json_response({"reason": "rate-limited", "detail": "slow down"}, status=429,
                                     headers={"Retry-After": "7"})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", limited)
        server = await aiohttp_server(app)
        config = make_config(tmp_path, qa, make_registry(hub_key, str(server.make_url("/")), qa))
        async with driven_engine(config) as engine:
            with pytest.raises(HubUnavailableError, match="rate-limited") as caught:
                await engine.pull_once()
        assert caught.value.retry_after == 7

    async def test_long_poll_returns_when_entries_arrive(self, net: Net, kr: Member,
                                                         event: dict[str, Any]) -> None:
        """A pull held by the hub completes as soon as an envelope is appended."""
        async with driven_engine(net.config) as engine:
            pull = asyncio.create_task(engine.pull_once(wait=5))
            await eventually(lambda: net.hub.waiting)  # the hub holds the long-poll
            assert not pull.done()
            net.hub.append(kr.publish(event))
            assert await asyncio.wait_for(pull, 2) == 1


async def _when(doc: Any, cond: Any) -> Any:
    d = await doc
    return d if cond(d) else None


async def _ok(resp: Any) -> Any:
    r = await resp
    return r if r.status == 200 else None
