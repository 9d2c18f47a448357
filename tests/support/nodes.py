"""Helpers of the node tests (their fixtures are in tests/node/conftest.py): a small network's registry, a node
directory with short limits, an engine the test drives, the operator token, and the HTTP calls many tests make."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp.test_utils import TestClient, TestServer

from federation.protocol.envelope import Envelope
from federation.protocol.keys import SigningKey
from federation.protocol.registry import SignedRegistry, genesis, load_registry
from federation.protocol.webhooks import new_id, new_secret
from node.config import NodeConfig
from node.own_keys import OwnKeys
from node.partners.access import new_key, parse_scopes
from node.records.filters import RecordFilter
from node.records.service import NodeService
from node.store.records import NodeStore
from node.sync.engine import SyncEngine
from node.webhooks.events import EventFilter
from node.webhooks.store import Subscription
from tests.support import dbtemplates
from tests.support.factories import Member
from tests.support.fakehub import FakeHub

TOKEN = "test-operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROBLEM = "application/problem+json"
HUB_URL = "http://127.0.0.1:9"  # nothing listens there: tests that need a hub start a fake one


def make_registry(hub_key: SigningKey, hub_url: str, *members: Member) -> SignedRegistry:
    return genesis(hub_key=hub_key, hub_url=hub_url,
                   founders=[(m.public, {"en": f"institution of {m.code}"}) for m in members], now=datetime.now(UTC))


def make_config(tmp_path: Path, member: Member, registry: SignedRegistry, **over: Any) -> NodeConfig:
    """A node directory as ``ipdn node init`` leaves it, with limits short enough for tests."""
    d = tmp_path / member.code
    d.mkdir(exist_ok=True)
    key_path = d / f"{member.code}.key.pem"
    if not key_path.exists():
        member.key.save(key_path)
    (d / "registry.json").write_bytes(registry.to_bytes())
    if "db_url" not in over and not (d / "node.db").exists():  # the default database, its schema at head
        dbtemplates.copy_sqlite("node", d / "node.db")
    limits: dict[str, Any] = {"backoff_base": 0.01, "backoff_cap": 0.05, "long_poll_wait": 1,
                              "min_poll_interval": 0.05, "registry_refresh": 0.2, "request_timeout": 5.0}
    return NodeConfig(member=member.code, dir=d, key_path=key_path, registry_path=d / "registry.json",
                      operator_token_hash=hashlib.sha256(TOKEN.encode()).hexdigest(), **{**limits, **over})


@dataclasses.dataclass
class Net:
    """A fake hub on a loopback port and QA's node directory whose registry points at it."""

    hub: FakeHub
    server: TestServer
    registry: SignedRegistry
    config: NodeConfig


@contextlib.asynccontextmanager
async def driven_engine(config: NodeConfig, *, key: SigningKey | None = None,
                        clock: Callable[[], datetime] | None = None) -> AsyncIterator[SyncEngine]:
    """An engine with its session open and no loops running: the test drives it (signing with ``key`` instead of
    the key file, on ``clock`` instead of the wall clock, if given)."""
    store = await NodeStore.open(config.db_url, config.member)
    keys = OwnKeys(config.member, key, directory=config.dir) if key is not None else \
        OwnKeys.load(config.member, config.key_path, config.dir)
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    service = NodeService(store=store, keys=keys, member=config.member, registry=load_registry(config.registry_path),
                          registry_path=config.registry_path, **extra)
    engine = SyncEngine(config, service, store)
    await engine.start(loops=False)
    try:
        yield engine
    finally:
        await engine.stop()
        await store.close()


def publish_n(hub: FakeHub, member: Member, event: dict[str, Any], n: int) -> list[Envelope]:
    """``n`` envelopes of ``member`` appended to the fake hub's log."""
    envs = [member.publish(event) for _ in range(n)]
    for env in envs:
        hub.append(env)
    return envs


# -- the node's HTTP API ------------------------------------------------------------------------------


async def publish(client: TestClient, body: dict[str, Any], kind: str = "cultural-event") -> dict[str, Any]:
    """Publish through the operator API; the 201 answer."""
    resp = await client.post("/api/v1/records", json={"kind": kind, "body": body}, headers=AUTH)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


def url(record_id: str) -> str:
    return "/api/v1/records/" + quote(record_id, safe="")


async def issue(config: NodeConfig, name: str, scopes: str = "read", rate: int | None = None) -> str:
    """A new partner key with these scopes, stored in the node's database; the key."""
    key, row = new_key(name, parse_scopes(scopes), rate, datetime.now(UTC))
    store = await NodeStore.open(config.db_url, config.member)
    try:
        await store.partners.add(row)
    finally:
        await store.close()
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


WEBHOOK_NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def subscription(partner: str = "museum", url: str = "https://hooks.example.org/ipdn", **filters: Any) -> Subscription:
    """An active webhook subscription (created at WEBHOOK_NOW); ``types`` and record filters as keywords."""
    types = tuple(filters.pop("types", ()))
    return Subscription(new_id("sub_", WEBHOOK_NOW), partner, url, EventFilter(RecordFilter(**filters), types),
                        new_secret(), "active", WEBHOOK_NOW)
