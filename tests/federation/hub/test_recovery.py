"""Recovery of the log from the members (federation/hub/recovery.py): a hub behind its members reads the rest back,
but only a suffix that makes the root of a checkpoint a hub key signed and a member co-signed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from federation.hub.ingest.service import HubService
from federation.hub.recovery import Recovery, RecoveryFetchError
from federation.hub.store.log import HubStore
from federation.protocol.checkpoint import SignedCheckpoint, cosign, sign_checkpoint
from federation.protocol.envelope import Envelope
from federation.protocol.keys import SigningKey
from federation.protocol.registry import load_registry
from tests.support.factories import Member, example_bodies

KR_URL = "http://kr.test"


async def _hub(directory: Path, name: str) -> HubService:
    store = await HubStore.open(f"sqlite+aiosqlite:///{directory / name}")
    service = HubService(store, load_registry(directory / "registry.json"), SigningKey.load(directory / "hub.key.pem"),
                         verify_workers=0)
    await service.start()
    return service


class Node:
    """A member's node as the recovering hub sees it: a checkpoint it co-signed, and its copy of the log."""

    def __init__(self, checkpoint: SignedCheckpoint, entries: list[tuple[int, bytes]]) -> None:
        self.checkpoint, self.entries = checkpoint, entries

    async def fetch(self, url: str) -> bytes:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == KR_URL
        if parts.path == "/api/v1/log/checkpoint":
            return self.checkpoint.to_bytes()
        if parts.path == "/api/v1/log":
            q = {k: int(v[0]) for k, v in parse_qs(parts.query).items()}
            page = [(p, e) for p, e in self.entries if p > q["after"]][:q["limit"]]
            entries = ",".join(f'{{"position":{p},"envelope":{e.decode()}}}' for p, e in page)
            return f'{{"entries":[{entries}],"size":{len(self.entries)}}}'.encode()
        raise RecoveryFetchError(f"GET {url}: 404")


@pytest.fixture
async def original(hub_dir: Path, members: dict[str, Member]) -> AsyncIterator[HubService]:
    """The hub as it was before the loss: 6 entries of QA and KR, checkpoint 6."""
    service = await _hub(hub_dir, "original.db")
    bodies = example_bodies("cultural-event")
    for i in range(6):
        m = members["QA" if i % 2 else "KR"]
        outcome = (await service.ingest(m.code, [m.publish(bodies[i % len(bodies)]).to_dict()]))[0]
        assert outcome.status == "accepted"
    yield service
    await service.stop()
    await service.store.close()


@pytest.fixture
async def restored(hub_dir: Path, original: HubService) -> AsyncIterator[HubService]:
    """The hub restored from a backup of when it held the first 2 entries."""
    service = await _hub(hub_dir, "restored.db")
    for _, env in await original.store.read_log(0, 2):
        obj = json.loads(env)
        assert (await service.ingest(Envelope.from_dict(obj).payload.origin, [obj]))[0].status == "accepted"
    yield service
    await service.stop()
    await service.store.close()


def _cosigned(service: HubService, member: Member) -> SignedCheckpoint:
    assert service.checkpoint is not None
    return service.checkpoint.with_signature(cosign(service.checkpoint, member.key))


async def _log(service: HubService) -> list[tuple[int, bytes]]:
    return await service.store.read_log(0, 1000)


async def test_suffix_matching_cosigned_checkpoint_recovers(hub_dir: Path, members: dict[str, Member],
                                                            original: HubService) -> None:
    """A hub that lost its disk (empty log) reads all 6 entries back from KR, verified against checkpoint 6
    (the hub's own signature, KR's co-signature), keeps that checkpoint as first signed and resumes."""
    empty = await _hub(hub_dir, "empty.db")
    try:
        node = Node(_cosigned(original, members["KR"]), await _log(original))
        recovery = Recovery(empty, node.fetch, endpoints={"KR": KR_URL})
        recovery.begin("disk lost")
        report = await recovery.run(only=["KR"])
        assert report.outcome == "recovered" and report.appended == 6, report
        assert not recovery.active and report.size_after == 6
        assert await _log(empty) == await _log(original)
        assert empty.checkpoint is not None and original.checkpoint is not None
        assert empty.checkpoint.payload == original.checkpoint.payload  # the same checkpoint, not a new one
        assert [c["member"] for c in await empty.store.cosigners(6)] == ["KR"]
    finally:
        await empty.stop()
        await empty.store.close()


async def test_forged_suffix_not_matching_cosigned_checkpoint_refused(hub_dir: Path, members: dict[str, Member],
                                                                      original: HubService) -> None:
    """A member (or whoever answers at its address) serves a suffix in which every envelope is validly signed by
    its origin, but one is not the envelope the log held (KR signed another with the same seq): the root is not
    the co-signed checkpoint's, so nothing is appended and the hub stays read-only."""
    empty = await _hub(hub_dir, "empty.db")
    try:
        entries = await _log(original)
        kr = members["KR"]
        forged = Member("KR", key=kr.key)  # KR's key, another envelope at seq 1
        entries[0] = (1, forged.publish(example_bodies("cultural-event")[1]).to_bytes())
        node = Node(_cosigned(original, kr), entries)
        recovery = Recovery(empty, node.fetch, endpoints={"KR": KR_URL})
        recovery.begin("disk lost")
        report = await recovery.run(only=["KR"])
        assert report.outcome == "refused" and "recovery-suffix-invalid" in report.detail, report
        assert recovery.active and empty.size == 0 and await _log(empty) == []
        report = await recovery.run(only=["KR"], force=True)  # the operator's override never takes a refused log
        assert report.outcome == "refused" and recovery.active
    finally:
        await empty.stop()
        await empty.store.close()


async def test_checkpoint_not_signed_by_hub_key_ignored(hub_dir: Path, members: dict[str, Member],
                                                        original: HubService) -> None:
    """A checkpoint over a longer log signed by someone else's key (a member's, posing as the hub) is not a
    checkpoint of this hub's log: the member is reported, nothing is fetched."""
    empty = await _hub(hub_dir, "empty.db")
    try:
        kr = members["KR"]
        assert original.checkpoint is not None
        cp = original.checkpoint.checkpoint
        fake = sign_checkpoint(cp.network, cp.size, cp.root_bytes, kr.key, original.clock())
        node = Node(fake.with_signature(cosign(fake, kr.key)), await _log(original))
        recovery = Recovery(empty, node.fetch, endpoints={"KR": KR_URL})
        recovery.begin("disk lost")
        report = await recovery.run(only=["KR"])
        assert report.outcome == "waiting" and report.members[0].error, report
        assert "checkpoint-bad-signature" in (report.members[0].error or "")
        assert empty.size == 0 and recovery.active
    finally:
        await empty.stop()
        await empty.store.close()


async def test_restored_hub_reads_back_only_what_it_lacks(members: dict[str, Member], original: HubService,
                                                          restored: HubService) -> None:
    """Restored at 2 entries, the hub fetches 3..6, and the entries it already holds stay as they are."""
    node = Node(_cosigned(original, members["KR"]), await _log(original))
    recovery = Recovery(restored, node.fetch, endpoints={"KR": KR_URL})
    recovery.begin("restored")
    report = await recovery.run()
    assert (report.outcome, report.size_before, report.appended, report.size_after) == ("recovered", 2, 4, 6), report
    assert await _log(restored) == await _log(original)
