"""A key's window judged at the hub's receipt time (PROTOCOL.md §5 step 2, ADR 18), over the real push path:
``issued_at`` is the signer's to choose, so a rotated-out or revoked key cannot date new envelopes into its window."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from federation.hub.app import create_app
from federation.hub.appkeys import SERVICE
from federation.hub.config import HubConfig
from federation.protocol.envelope import format_time
from federation.protocol.governance import next_version, sign_document
from federation.protocol.keys import SigningKey
from tests.support.factories import Member, example_bodies, push_request
from tests.support.hubdir import HUB_URL
from tests.support.timing import FakeClock


@pytest.fixture
def clock(hub_dir: Path) -> FakeClock:
    return FakeClock()  # after the genesis registry the hub directory holds (registry versions never go back)


@pytest.fixture
async def hub(aiohttp_client: Any, hub_dir: Path, db_url: str, clock: FakeClock) -> Any:
    return await aiohttp_client(create_app(HubConfig.load(hub_dir, db_url=db_url, verify_workers=0), clock=clock))


@pytest.fixture
def body() -> dict[str, Any]:
    return example_bodies("cultural-event")[0]


async def push(hub: Any, clock: FakeClock, member: Member, envelopes: list[Any],
               key: SigningKey | None = None) -> dict[str, Any]:
    data, headers = push_request(member, envelopes, HUB_URL, created=clock.timestamp(), key=key)
    r = await hub.post("/api/v1/envelopes", data=data, headers=headers)
    assert r.status == 200, await r.text()
    result: dict[str, Any] = (await r.json())["results"][0]
    return result


def decide(hub: Any, hub_dir: Path, action: str, *docs: Any, now: datetime) -> int:
    """The next registry version, made from ``docs`` as the registrar makes it, and taken by the hub (the
    governance routes are tested in test_governance_api.py: here only the windows it leaves matter)."""
    service = hub.server.app[SERVICE]
    new = next_version(service.registry, {"action": action, "documents": [d.to_dict() for d in docs]},
                       SigningKey.load(hub_dir / "hub.key.pem"), now=now)
    service.registry = new
    version: int = new.registry.version
    return version


def rotate(hub: Any, hub_dir: Path, member: Member, new: SigningKey, now: datetime, *,
           effective: datetime | None = None) -> int:
    base = hub.server.app[SERVICE].registry.registry.version
    body: dict[str, Any] = {"type": "rotation", "base": base, "member": member.code, "new_key": new.public.to_jwk()}
    if effective is not None:
        body["effective"] = format_time(effective)
    first = sign_document(body, member.key, now=now)
    return decide(hub, hub_dir, "rotate", first, sign_document(first.body, new, now=now), now=now)


async def test_backdated_envelope_signed_by_rotated_out_key_refused(hub: Any, hub_dir: Path, clock: FakeClock,
                                                                   members: dict[str, Member], body: dict) -> None:
    """KR rotates to a new key; an hour later an envelope signed by the old key, issued_at dated before the
    rotation, pushed by KR's node (authenticated by the new key), is refused and quarantined, not logged."""
    kr, new = members["KR"], SigningKey.generate()
    rotated_at = clock()
    assert rotate(hub, hub_dir, kr, new, rotated_at) == 2
    clock.advance(timedelta(hours=1))
    forged = kr.publish(body, issued=rotated_at - timedelta(minutes=10))  # signed by the old key
    result = await push(hub, clock, kr, [forged], key=new)
    assert result["status"] == "rejected"
    assert result["problem"]["reason"] == "key-not-valid-at-receipt"
    service = hub.server.app[SERVICE]
    assert await service.store.size() == 0
    assert [q["reason"] for q in await service.store.quarantined()] == ["key-not-valid-at-receipt"]


async def test_backdated_envelope_signed_by_revoked_key_refused(hub: Any, hub_dir: Path, clock: FakeClock,
                                                               members: dict[str, Member], body: dict) -> None:
    """KR schedules a rotation for tomorrow, then revokes its current key at once (compromised). Once the new key
    takes over, an envelope signed by the revoked key and dated inside its (revoked) window is refused."""
    kr, new = members["KR"], SigningKey.generate()
    t0 = clock()
    assert rotate(hub, hub_dir, kr, new, t0, effective=t0 + timedelta(days=1)) == 2
    clock.advance(timedelta(minutes=10))
    revocation = sign_document({"type": "revocation", "base": 2, "member": "KR", "kid": kr.key.kid}, kr.key,
                               now=clock())
    assert decide(hub, hub_dir, "revoke", revocation, now=clock()) == 3
    clock.advance(timedelta(days=2))
    forged = kr.publish(body, issued=t0 + timedelta(minutes=5))  # before the revocation, by the revoked key
    result = await push(hub, clock, kr, [forged], key=new)
    assert result["status"] == "rejected"
    assert result["problem"]["reason"] == "key-not-valid-at-receipt"
    assert await hub.server.app[SERVICE].store.size() == 0


async def test_envelope_logged_before_rotation_resent_after_is_duplicate(hub: Any, hub_dir: Path, clock: FakeClock,
                                                                        members: dict[str, Member],
                                                                        body: dict) -> None:
    """Re-sending stays safe across a rotation: an envelope the log already holds is answered duplicate with its
    position, not refused (the node lost the first answer, then the key was rotated)."""
    kr, new = members["KR"], SigningKey.generate()
    env = kr.publish(body, issued=clock())
    assert (await push(hub, clock, kr, [env]))["status"] == "accepted"
    clock.advance(1)
    rotate(hub, hub_dir, kr, new, clock())
    clock.advance(timedelta(hours=1))
    result = await push(hub, clock, kr, [env], key=new)
    assert (result["status"], result.get("position")) == ("duplicate", 1), result


async def test_envelope_received_within_the_skew_of_a_rotation_accepted(hub: Any, hub_dir: Path, clock: FakeClock,
                                                                       members: dict[str, Member],
                                                                       body: dict) -> None:
    """An envelope signed just before the rotation and received minutes after it (inside the registry's
    clock_skew_seconds, 300) is accepted: the planned rotation of a node that pushes promptly loses nothing."""
    kr, new = members["KR"], SigningKey.generate()
    rotated_at = clock()
    rotate(hub, hub_dir, kr, new, rotated_at)
    clock.advance(timedelta(minutes=4))
    env = kr.publish(body, issued=rotated_at - timedelta(seconds=1))
    assert (await push(hub, clock, kr, [env], key=new))["status"] == "accepted"
