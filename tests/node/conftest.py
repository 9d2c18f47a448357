"""Fixtures of the node tests: a small network (hub key, QA's node, KR publishing), a node directory,
a fake hub (tests/support/fakehub.py) and an engine the test drives by hand."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from federation.protocol.keys import SigningKey
from federation.protocol.registry import SignedRegistry, genesis, load_registry
from node.config import NodeConfig
from node.own_keys import OwnKeys
from node.records.service import NodeService
from node.store.records import NodeStore
from node.sync.engine import SyncEngine
from tests.support.factories import Member, example_bodies
from tests.support.fakehub import FakeHub

TOKEN = "test-operator-token"
HUB_URL = "http://127.0.0.1:9"  # nothing listens there: tests that need a hub start a fake one


def make_registry(hub_key: SigningKey, hub_url: str, *members: Member) -> SignedRegistry:
    return genesis(hub_key=hub_key, hub_url=hub_url,
                   founders=[(m.public, {"en": f"institution of {m.code}"}) for m in members])


def make_config(tmp_path: Path, member: Member, registry: SignedRegistry, **over: Any) -> NodeConfig:
    """A node directory as ``ipdn node init`` leaves it, with limits short enough for tests."""
    d = tmp_path / member.code
    d.mkdir(exist_ok=True)
    key_path = d / f"{member.code}.key.pem"
    if not key_path.exists():
        member.key.save(key_path)
    (d / "registry.json").write_bytes(registry.to_bytes())
    limits: dict[str, Any] = {"backoff_base": 0.01, "backoff_cap": 0.05, "long_poll_wait": 1,
                              "min_poll_interval": 0.05, "registry_refresh": 0.2, "request_timeout": 5.0}
    return NodeConfig(member=member.code, dir=d, key_path=key_path, registry_path=d / "registry.json",
                      operator_token_hash=hashlib.sha256(TOKEN.encode()).hexdigest(), **{**limits, **over})


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 5.0) -> Any:
    """Poll ``check`` until it returns something truthy (and return that), failing after ``within`` s."""
    value = None
    try:
        async with asyncio.timeout(within):
            while not (value := await check()):  # noqa: ASYNC110  (polling what another task changes)
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"condition not met within {within} s (last value {value!r})")
    return value


@pytest.fixture
def hub_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def qa() -> Member:
    """The member whose node is under test."""
    return Member("QA")


@pytest.fixture
def kr() -> Member:
    """Another member, publishing through the hub."""
    return Member("KR")


@pytest.fixture
def registry(hub_key: SigningKey, qa: Member, kr: Member) -> SignedRegistry:
    return make_registry(hub_key, HUB_URL, qa, kr)


@pytest.fixture
def event() -> dict[str, Any]:
    return example_bodies("cultural-event")[0]


@pytest.fixture
def config(tmp_path: Path, qa: Member, registry: SignedRegistry, db_url: str) -> NodeConfig:
    """QA's node directory; its database is SQLite, then PostgreSQL (tests/conftest.py ``db_url``)."""
    return make_config(tmp_path, qa, registry, db_url=db_url)


@pytest.fixture
async def store(config: NodeConfig) -> AsyncIterator[NodeStore]:
    s = await NodeStore.open(config.db_url, config.member)
    yield s
    await s.close()


@pytest.fixture
def service(store: NodeStore, qa: Member, registry: SignedRegistry, config: NodeConfig) -> NodeService:
    return NodeService(store=store, keys=OwnKeys("QA", qa.key, directory=config.dir), member="QA", registry=registry,
                       registry_path=config.registry_path)


@dataclasses.dataclass
class Net:
    hub: FakeHub
    server: TestServer
    registry: SignedRegistry
    config: NodeConfig


@pytest.fixture
async def net(aiohttp_server: Any, tmp_path: Path, hub_key: SigningKey, qa: Member, kr: Member) -> Net:
    """A fake hub on a loopback port and QA's node directory whose registry points at it."""
    hub = FakeHub(hub_key)
    server = await aiohttp_server(hub.app())
    hub.registry = make_registry(hub_key, str(server.make_url("/")), qa, kr)
    return Net(hub, server, hub.registry, make_config(tmp_path, qa, hub.registry))


@contextlib.asynccontextmanager
async def driven_engine(config: NodeConfig) -> AsyncIterator[SyncEngine]:
    """An engine with its session open and no loops running: the test drives it."""
    store = await NodeStore.open(config.db_url, config.member)
    service = NodeService(store=store, keys=OwnKeys.load(config.member, config.key_path, config.dir),
                          member=config.member, registry=load_registry(config.registry_path),
                          registry_path=config.registry_path)
    engine = SyncEngine(config, service, store)
    await engine.start(loops=False)
    try:
        yield engine
    finally:
        await engine.stop()
        await store.close()
