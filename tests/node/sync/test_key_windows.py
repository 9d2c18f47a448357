"""Key windows judged at the hub's receipt time on the node (PROTOCOL.md §5 step 2, §8.3, §10; docs/adr/0019).

The hub is trusted for availability, not integrity: a hub that logged an envelope signed by a key that had ended
before it received it (a malicious hub, here the fake one serving a crafted log) does not get it applied. An end
published only after the hub logged an envelope (a revocation dated back to a compromise) marks what the node holds:
kept in its chain, not verified. Time is the test's: the node's clock is moved by hand."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from federation.protocol.envelope import format_time
from federation.protocol.governance import next_version, sign_document
from federation.protocol.keys import SigningKey
from federation.protocol.registry import genesis
from node.api.records import get_log
from node.appkeys import SERVICE
from node.config import NodeConfig
from node.errors import HubProtocolError
from node.partners.feeds import parse_query, recent_records
from node.sync.engine import SyncEngine
from tests.support.factories import Member
from tests.support.fakehub import FakeHub
from tests.support.nodes import driven_engine, make_config

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)  # the genesis; checkpoints are signed at now
SKEW = timedelta(seconds=300)  # the registry's clock_skew_seconds


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def engine_at(config: NodeConfig, qa: Member, clock: Clock) -> contextlib.AbstractAsyncContextManager[SyncEngine]:
    """QA's engine, its loops not running, on ``clock``."""
    return driven_engine(config, key=qa.key, clock=clock)


@pytest.fixture
async def hub(aiohttp_server: Any, hub_key: SigningKey, qa: Member, kr: Member) -> FakeHub:
    fake = FakeHub(hub_key)
    server = await aiohttp_server(fake.app())
    fake.registry = genesis(hub_key=hub_key, hub_url=str(server.make_url("/")), now=T0,
                            founders=[(m.public, {"en": f"institution of {m.code}"}) for m in (qa, kr)])
    return fake


def revoke(fake: FakeHub, hub_key: SigningKey, kr: Member, *, effective: datetime, published: datetime) -> None:
    """KR revokes its key, effective (the revocation's issued_at: its signer chooses it) and published (the
    registry version's issued_at) at the times given."""
    v1 = fake.registry
    assert v1 is not None
    doc = sign_document({"type": "revocation", "base": 1, "member": "KR", "kid": kr.key.kid}, kr.key, now=effective)
    fake.history[1] = v1
    fake.registry = next_version(v1, {"action": "revoke", "documents": [doc.to_dict()]}, hub_key, now=published)


async def test_node_refuses_logged_envelope_signed_by_key_ended_before_receipt(
        hub: FakeHub, tmp_path: Path, hub_key: SigningKey, qa: Member, kr: Member, event: dict[str, Any]) -> None:
    """KR's key is revoked at T (published then). A thief signs with it, dating issued_at back into the window;
    the hub logs it an hour after T (as a malicious hub would, or one running older code). The node, judging
    the key at the receipt time the log serves, quarantines it and applies nothing of it."""
    t = T0 + timedelta(hours=1)
    revoke(hub, hub_key, kr, effective=t, published=t)
    hub.append(kr.publish(event, record_id="KR:forged", issued=t - timedelta(minutes=30)),
               received_at=t + timedelta(hours=1))
    clock = Clock(t + timedelta(hours=2))
    async with engine_at(make_config(tmp_path, qa, hub.history[1]), qa, clock) as engine:
        assert await engine.refresh_registry()  # the node knows of the revocation
        assert await engine.pull_once() == 1
        assert await engine.service.store.quarantine_counts() == {"key-not-valid-at-receipt": 1}
        with pytest.raises(Exception, match="KR:forged"):
            await engine.service.get("KR:forged")


async def test_honest_log_with_entries_before_a_rotation_still_applies(
        hub: FakeHub, tmp_path: Path, hub_key: SigningKey, qa: Member, kr: Member, event: dict[str, Any]) -> None:
    """What KR's old key signed and the hub logged before the key ended (within the skew) stays valid after the end,
    for a node that pulls it long after: nothing quarantined, nothing marked."""
    t = T0 + timedelta(hours=1)
    hub.append(kr.publish(event, record_id="KR:early", issued=t - timedelta(hours=1)))
    hub.append(kr.publish(event, record_id="KR:edge", issued=t - timedelta(seconds=1)), received_at=t + SKEW)
    revoke(hub, hub_key, kr, effective=t, published=t - timedelta(minutes=10))
    async with engine_at(make_config(tmp_path, qa, hub.registry), qa, Clock(T0 + timedelta(days=1))) as engine:
        assert await engine.pull_once() == 2
        assert await engine.service.store.quarantine_counts() == {}
        assert await engine.service.store.marked_counts() == {}
        assert "warnings" not in (await engine.service.get("KR:edge")).item()


async def test_records_signed_by_key_revoked_after_the_fact_marked_not_verified(
        hub: FakeHub, tmp_path: Path, hub_key: SigningKey, qa: Member, kr: Member, event: dict[str, Any]) -> None:
    """KR finds its key was stolen at T and revokes it from T, but publishes that only at T + 2 h. What the hub
    logged in between is kept (the log is append-only and KR's later envelopes chain on it) but marked: the record
    API says so, the status counts and alarms it, and the partner feeds leave it out. A node that pulls the same log
    only after the revocation marks it alike (it does not break KR's chain by refusing it)."""
    t = T0 + timedelta(hours=1)
    hub.append(kr.publish(event, record_id="KR:before", issued=t - timedelta(hours=1)))
    hub.append(kr.publish(event, record_id="KR:stolen", issued=t + timedelta(hours=1)))
    clock = Clock(t + timedelta(hours=1, minutes=1))
    config = make_config(tmp_path, qa, hub.registry)
    async with engine_at(config, qa, clock) as engine:
        assert await engine.pull_once() == 2
        assert "warnings" not in (await engine.service.get("KR:stolen")).item()

        revoke(hub, hub_key, kr, effective=t, published=t + timedelta(hours=2))
        clock.at = t + timedelta(hours=2, minutes=1)
        assert await engine.refresh_registry()
        stolen = await engine.service.get("KR:stolen")
        assert stolen.key_warning == "key-revoked-after-the-fact"
        assert [w["reason"] for w in stolen.item()["warnings"]] == ["key-revoked-after-the-fact"]
        assert json.loads(stolen.item_json()) == stolen.item()
        assert "warnings" not in (await engine.service.get("KR:before")).item()
        assert await engine.service.store.marked_counts() == {"key-revoked-after-the-fact": 1}
        assert "key-revoked-after-the-fact" in [a["reason"] for a in await engine.service.alarms()]
        q = parse_query({}, engine.service, config, events_only=False)
        assert [r.record_id for r in await recent_records(engine.service, config, q)] == ["KR:before"]

    (tmp_path / "late").mkdir()
    late = make_config(tmp_path / "late", qa, hub.registry)  # a node that joins with the revocation already out
    async with engine_at(late, qa, clock) as engine:
        assert await engine.pull_once() == 2
        assert await engine.service.store.quarantine_counts() == {}
        assert (await engine.service.get("KR:stolen")).key_warning == "key-revoked-after-the-fact"


async def test_node_refuses_log_whose_receipt_times_go_back(
        hub: FakeHub, tmp_path: Path, qa: Member, kr: Member, event: dict[str, Any]) -> None:
    """A hub that dates an entry's receipt back (to slip it into a key's window) must date it before entries it
    logged earlier: the node refuses such a page (receipt-time-invalid) and applies nothing of it; likewise a
    receipt time in the node's future."""
    t = T0 + timedelta(hours=3)
    hub.append(kr.publish(event, issued=t), received_at=t)
    hub.append(kr.publish(event, issued=t - timedelta(hours=2)), received_at=t - timedelta(hours=2))
    async with engine_at(make_config(tmp_path, qa, hub.registry), qa, Clock(t + timedelta(hours=1))) as engine:
        with pytest.raises(HubProtocolError) as refused:
            await engine.pull_once()
        assert refused.value.reason == "receipt-time-invalid"
        assert await engine.service.applier.cursor() == 0
        hub.received[1] = t + timedelta(hours=2)  # now in the node's future
        with pytest.raises(HubProtocolError, match="later than now"):
            await engine.pull_once()
        assert await engine.service.applier.cursor() == 0


async def test_node_serves_its_log_with_the_receipt_times_it_got(
        hub: FakeHub, tmp_path: Path, hub_key: SigningKey, qa: Member, kr: Member, event: dict[str, Any],
        aiohttp_client: Any) -> None:
    """GET /api/v1/log at the node (what a recovering hub reads back, PROTOCOL.md §11.1) gives each entry the
    receipt time the hub's log gave it, in the hub's entry shape: an envelope applied, the node's own one seen
    again in the log, and one it quarantined (a thief's, logged after the key's end) alike."""
    t = T0 + timedelta(hours=1)
    revoke(hub, hub_key, kr, effective=t, published=t)
    clock = Clock(t + timedelta(hours=2))
    async with engine_at(make_config(tmp_path, qa, hub.history[1]), qa, clock) as engine:
        assert await engine.refresh_registry()
        own = await engine.service.create("cultural-event", event)
        hub.append(own, received_at=t - timedelta(minutes=5, microseconds=1500))
        hub.append(kr.publish(event, issued=t - timedelta(minutes=30)), received_at=t - timedelta(minutes=1))
        hub.append(kr.publish(event, issued=t - timedelta(minutes=20)), received_at=t + timedelta(hours=1))
        assert await engine.pull_once() == 3
        assert await engine.service.store.quarantine_counts() == {"key-not-valid-at-receipt": 1}
        app = web.Application()
        app[SERVICE] = engine.service
        app.router.add_get("/api/v1/log", get_log)
        client = await aiohttp_client(app)
        served = await (await client.get("/api/v1/log?after=0&limit=10")).json()
        assert [(e["position"], e["received_at"]) for e in served["entries"]] == [
            (1, format_time(t - timedelta(minutes=5, microseconds=1500))), (2, format_time(t - timedelta(minutes=1))),
            (3, format_time(t + timedelta(hours=1)))]
        assert all(list(e) == ["position", "received_at", "envelope"] for e in served["entries"])  # §8.3's shape
        assert served["entries"][0]["envelope"] == own.to_dict()
