"""A node whose registry has lapsed (PROTOCOL.md §7): it applies nothing more from the hub until a renewed or
newer version arrives, so a hub that stops renewing cannot keep a withheld revocation hidden for longer than
the registry's lifetime. Time is the test's: the node's clock is moved by hand."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from federation.protocol.governance import next_version, renewal, sign_document
from federation.protocol.keys import SigningKey
from federation.protocol.registry import DEFAULT_LIFETIME, RegistryError, genesis
from node.config import NodeConfig
from node.sync.engine import SyncEngine
from tests.support.factories import Member
from tests.support.fakehub import FakeHub
from tests.support.nodes import driven_engine, make_config

# The registry is issued eight days ago, so "the lapse" is about now: checkpoints the fake hub signs at the
# wall clock are never from the node's future.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=8)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def engine_at(config: NodeConfig, qa: Member, clock: Clock) -> contextlib.AbstractAsyncContextManager[SyncEngine]:
    """QA's engine, its loops not running, on ``clock``."""
    return driven_engine(config, key=qa.key, clock=clock)


@pytest.fixture
async def hub(aiohttp_server: Any, hub_key: SigningKey, qa: Member, kr: Member) -> tuple[FakeHub, str]:
    fake = FakeHub(hub_key)
    server = await aiohttp_server(fake.app())
    url = str(server.make_url("/"))
    fake.registry = genesis(hub_key=hub_key, hub_url=url, now=T0,
                            founders=[(m.public, {"en": f"institution of {m.code}"}) for m in (qa, kr)])
    return fake, url


async def test_hub_that_stops_renewing_cannot_hide_revocation_beyond_lifetime(
        hub: tuple[FakeHub, str], tmp_path: Path, hub_key: SigningKey, qa: Member, kr: Member,
        event: dict[str, Any]) -> None:
    """KR revokes its stolen key on day 1; the hub withholds the revocation and stops renewing registry v1 while
    the thief publishes as KR. Within v1's lifetime the node cannot tell (the bounded window); once v1 lapses
    the node applies nothing more, alarms, and the forged envelope waits at the cursor until the revocation
    arrives, when it is refused."""
    fake, _ = hub
    v1 = fake.registry
    assert v1 is not None and v1.registry.expires_in(T0) == DEFAULT_LIFETIME == timedelta(days=7)
    revocation = sign_document({"type": "revocation", "base": 1, "member": "KR", "kid": kr.key.kid},
                               kr.key, now=T0 + timedelta(days=1))
    config = make_config(tmp_path, qa, v1)
    clock = Clock(T0 + timedelta(days=6))
    fake.append(kr.publish(event, record_id="KR:day6", issued=clock.at))
    async with engine_at(config, qa, clock) as engine:
        assert await engine.pull_once() == 1  # within the lifetime: the withheld revocation is not known yet

        clock.at = T0 + timedelta(days=7, seconds=1)
        fake.append(kr.publish(event, record_id="KR:forged", issued=clock.at))
        with pytest.raises(RegistryError) as refused:
            await engine.pull_once()
        assert refused.value.reason == "registry-expired"
        assert await engine.service.applier.cursor() == 1  # the forged envelope is not applied ...
        with pytest.raises(Exception, match="KR:forged"):
            await engine.service.get("KR:forged")
        alarms = [a["reason"] for a in await engine.service.alarms()]
        assert alarms == ["registry-expired"]  # ... and the operator is told why

        # The revocation is published (the hub relents, or the members' next hub): the node moves to it at
        # the next pull and refuses the forgery.
        fake.history[1] = v1
        fake.registry = next_version(v1, {"action": "revoke", "documents": [revocation.to_dict()]}, hub_key,
                                     now=clock.at)
        assert await engine.pull_once() == 1
        assert engine.service.registry.registry.version == 2
        assert (await engine.service.counts()).quarantine == 1
        assert "registry-expired" not in [a["reason"] for a in await engine.service.alarms()]


async def test_node_resumes_from_its_cursor_once_the_registry_is_renewed(
        hub: tuple[FakeHub, str], tmp_path: Path, hub_key: SigningKey, qa: Member, kr: Member,
        event: dict[str, Any]) -> None:
    """After a lapse nothing is lost: a renewal (same content, new expiry) lets the node apply what waited."""
    fake, _ = hub
    v1 = fake.registry
    assert v1 is not None
    config = make_config(tmp_path, qa, v1)
    clock = Clock(T0 + timedelta(days=7, hours=1))
    fake.append(kr.publish(event, record_id="KR:waiting", issued=clock.at))
    async with engine_at(config, qa, clock) as engine:
        with pytest.raises(RegistryError, match="lapsed"):
            await engine.pull_once()
        fake.history[1] = v1
        fake.registry = renewal(v1, hub_key, now=clock.at)
        assert await engine.pull_once() == 1
        assert (await engine.service.get("KR:waiting")).origin == "KR"
        assert engine.service.registry.registry.version == 2
