"""Fixtures of the node tests: a small network's registry (its hub key, QA and KR are tests/conftest.py's), QA's
node directory, store and service, and a fake hub (tests/support/fakehub.py). Their helpers (make_config,
driven_engine, eventually, ...) are in tests/support/nodes.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from federation.protocol.keys import SigningKey
from federation.protocol.registry import SignedRegistry
from node.config import NodeConfig
from node.own_keys import OwnKeys
from node.records.service import NodeService
from node.store.records import NodeStore
from tests.support.factories import Member, example_bodies
from tests.support.fakehub import FakeHub
from tests.support.nodes import HUB_URL, Net, make_config, make_registry


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


@pytest.fixture
async def net(aiohttp_server: Any, tmp_path: Path, hub_key: SigningKey, qa: Member, kr: Member) -> Net:
    """A fake hub on a loopback port and QA's node directory whose registry points at it."""
    hub = FakeHub(hub_key)
    server = await aiohttp_server(hub.app())
    hub.registry = make_registry(hub_key, str(server.make_url("/")), qa, kr)
    return Net(hub, server, hub.registry, make_config(tmp_path, qa, hub.registry))
