"""The hub renews the registry before it lapses (federation/hub/registrar.py ``renew_if_due``): a version with
the same content and a new expiry, justified by ``change.action = "renew"``, that every node recomputes; votes
collected before a renewal still count after it. Time is the test's clock, moved by hand."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from federation.hub.app import create_app
from federation.hub.appkeys import GOVERNANCE, RECOVERY, SERVICE
from federation.hub.config import HubConfig
from federation.hub.recovery import MARKER
from federation.protocol.governance import (
    GovernanceError,
    check_successor,
    evolve,
    next_version,
    renewal,
    sign_document,
)
from federation.protocol.keys import SigningKey
from federation.protocol.registry import SignedRegistry, genesis, load_registry, parse_registry
from tests.support.factories import Member
from tests.support.timing import eventually

HUB_URL = "http://hub.test"
T0 = datetime.now(UTC).replace(microsecond=0)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def members() -> dict[str, Member]:
    return {c: Member(c) for c in ("QA", "TR", "KR")}


@pytest.fixture
def hub_dir(tmp_path: Path, members: dict[str, Member]) -> Path:
    SigningKey.generate().save(tmp_path / "hub.key.pem")
    reg = genesis(hub_key=SigningKey.load(tmp_path / "hub.key.pem"), hub_url=HUB_URL, now=T0,
                  founders=[(m.public, {"en": c}) for c, m in members.items()])
    (tmp_path / "registry.json").write_bytes(reg.to_bytes())
    return tmp_path


async def start(aiohttp_client: Any, hub_dir: Path, db_url: str, clock: Clock) -> Any:
    return await aiohttp_client(create_app(HubConfig.load(hub_dir, db_url=db_url, verify_workers=0), clock=clock))


async def served(hub: Any, version: int | None = None) -> SignedRegistry:
    r = await hub.get("/api/v1/registry" + (f"?version={version}" if version else ""))
    assert r.status == 200
    return parse_registry(await r.read())


async def test_registry_renewed_automatically_before_expiry(aiohttp_client: Any, hub_dir: Path, db_url: str) -> None:
    """Nothing while more than half the week is left; then a renewal every node accepts (same content, a new
    expiry a lifetime ahead, justified as "renew"), served and written to registry.json."""
    v1 = load_registry(hub_dir / "registry.json")
    clock = Clock(T0 + timedelta(days=3))
    hub = await start(aiohttp_client, hub_dir, db_url, clock)
    governance = hub.app[GOVERNANCE]
    assert await governance.renew_if_due() is None and (await served(hub)).registry.version == 1

    clock.at = T0 + timedelta(days=3, hours=13)  # less than half of the 7 days left
    renewed = await governance.renew_if_due()
    assert renewed is not None
    v2 = await served(hub)
    assert v2.hash == renewed.hash and v2.registry.version == 2
    assert v2.registry.change == {"action": "renew", "documents": [], "since": 1}
    assert v2.registry.expires_in(clock.at) == timedelta(days=7)
    check_successor(v1, v2)  # what a node checks: signed by v1's hub key, nothing but the times changed
    assert load_registry(hub_dir / "registry.json").hash == v2.hash
    assert await governance.renew_if_due() is None  # once is enough


async def test_hub_down_past_the_lapse_renews_as_it_starts(aiohttp_client: Any, hub_dir: Path, db_url: str) -> None:
    """A hub that was stopped for longer than the lifetime serves a current registry from its first request."""
    hub = await start(aiohttp_client, hub_dir, db_url, Clock(T0 + timedelta(days=10)))
    reg = (await served(hub)).registry
    assert reg.version == 2 and not reg.expired(T0 + timedelta(days=10))


async def test_longer_registry_brought_down_to_the_configured_lifetime(aiohttp_client: Any, hub_dir: Path,
                                                                      db_url: str, members: dict[str, Member]) -> None:
    """A registry issued for a year (before short lifetimes) is renewed at once for the configured lifetime,
    so the bound on a withheld decision holds from the upgrade on."""
    yearly = genesis(hub_key=SigningKey.load(hub_dir / "hub.key.pem"), hub_url=HUB_URL, now=T0,
                     lifetime=timedelta(days=365), founders=[(m.public, {"en": c}) for c, m in members.items()])
    (hub_dir / "registry.json").write_bytes(yearly.to_bytes())
    hub = await start(aiohttp_client, hub_dir, db_url, Clock(T0 + timedelta(hours=1)))
    reg = (await served(hub)).registry
    assert reg.version == 2 and reg.expires_in(T0 + timedelta(hours=1)) == timedelta(days=7)


async def test_votes_made_before_a_renewal_still_count(aiohttp_client: Any, hub_dir: Path, db_url: str,
                                                       members: dict[str, Member]) -> None:
    """An application and a first vote made against v1, a renewal (v2), the second vote against v2: the quorum
    is reached and v3 admits the applicant, a step every node recomputes."""
    clock = Clock(T0)
    hub = await start(aiohttp_client, hub_dir, db_url, clock)
    mz = SigningKey.generate()
    application = sign_document({"type": "application", "base": 1, "member": "MZ", "names": {"en": "MZ"},
                                 "key": mz.public.to_jwk()}, mz, now=T0)

    def vote(code: str, base: int) -> Any:
        return sign_document({"type": "vote", "base": base, "proposal": application.hash, "voter": code,
                              "decision": "approve"}, members[code].key, now=clock.at)

    r = await hub.post("/api/v1/governance", json={"documents": [application.to_dict(), vote("QA", 1).to_dict()]})
    assert r.status == 202, await r.text()
    clock.at = T0 + timedelta(days=4)
    assert await hub.app[GOVERNANCE].renew_if_due() is not None
    r = await hub.post("/api/v1/governance", json={"documents": [vote("KR", 2).to_dict()]})
    assert r.status == 202, await r.text()
    v2, v3 = await served(hub, 2), await served(hub)
    assert v3.registry.version == 3 and v3.registry.member("MZ") is not None
    check_successor(v2, v3)
    assert hub.app[SERVICE].registry.hash == v3.hash


def test_renewal_cannot_claim_older_content_than_it_repeats(members: dict[str, Member]) -> None:
    """A renewal's ``since`` must name the version its content dates from: a hub cannot stretch the window in
    which old votes count past a decision (they would be replayed onto other members and keys)."""
    hub = SigningKey.generate()
    v1 = genesis(hub_key=hub, hub_url=HUB_URL, now=T0,
                 founders=[(m.public, {"en": c}) for c, m in members.items()])
    withdrawal = sign_document({"type": "proposal", "base": 1, "action": "withdraw", "member": "TR", "proposer": "TR",
                             "reason": "leaving"}, members["TR"].key, now=T0)
    v2 = next_version(v1, {"action": "withdraw", "documents": [withdrawal.to_dict()]}, hub, now=T0)
    assert renewal(v2, hub, now=T0).registry.change == {"action": "renew", "documents": [], "since": 2}
    with pytest.raises(GovernanceError) as e:
        evolve(v2.registry, {"action": "renew", "documents": [], "since": 1})
    assert e.value.reason == "governance-malformed"


async def test_restored_hub_publishes_no_renewal_before_it_recovered(aiohttp_client: Any, hub_dir: Path,
                                                                      db_url: str) -> None:
    """A hub restored from a backup may hold an older registry than its members: a renewal of it would be a version
    they already hold another of. Due as it starts, the renewal waits while the hub recovers its log (ADR 0021),
    and is published as soon as recovery ends."""
    (hub_dir / MARKER).write_text("restored\n")
    hub = await start(aiohttp_client, hub_dir, db_url, Clock(T0 + timedelta(days=10)))
    recovery = hub.app[RECOVERY]
    assert recovery.active and (await served(hub)).registry.version == 1
    await asyncio.sleep(0)  # the renewal task has run up to its wait
    assert (await served(hub)).registry.version == 1 and load_registry(hub_dir / "registry.json").registry.version == 1
    await recovery.run(force=True)  # no member to ask: the operator resumes
    assert not recovery.active
    assert await eventually(lambda: load_registry(hub_dir / "registry.json").registry.version == 2)
    assert (await served(hub)).registry.version == 2
