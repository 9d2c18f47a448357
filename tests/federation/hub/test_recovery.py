"""Recovery of the log from the members (federation/hub/recovery.py): a hub behind its members reads the rest back,
but only a suffix that makes the root of a checkpoint a hub key signed and a member co-signed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from federation.hub.ingest.service import HubService
from federation.hub.recovery import Recovery, RecoveryFetchError, choose_receipts
from federation.hub.store.log import HubStore, LogEntry
from federation.protocol.checkpoint import SignedCheckpoint, cosign, sign_checkpoint
from federation.protocol.envelope import Envelope, format_time
from federation.protocol.governance import next_version, sign_document
from federation.protocol.keys import SigningKey
from federation.protocol.registry import SignedRegistry, genesis, load_registry
from federation.server.times import Clock, utcnow
from node.own_keys import OwnKeys
from node.records.service import NodeService
from node.store.records import NodeStore
from node.sync.engine import SyncEngine
from tests.support.factories import Member, example_bodies
from tests.support.fakehub import FakeHub
from tests.support.nodes import make_config
from tests.support.timing import FakeClock

KR_URL = "http://kr.test"
SKEW = timedelta(seconds=300)  # the registry's clock_skew_seconds


async def _hub(directory: Path, name: str, *, clock: Clock = utcnow, registry: SignedRegistry | None = None
               ) -> HubService:
    store = await HubStore.open(f"sqlite+aiosqlite:///{directory / name}")
    service = HubService(store, registry or load_registry(directory / "registry.json"),
                         SigningKey.load(directory / "hub.key.pem"), verify_workers=0, clock=clock)
    await service.start()
    return service


class Node:
    """A member's node as the recovering hub sees it: a checkpoint it co-signed, and its copy of the log with the
    receipt time the hub's log gave each entry (node/api/records.py ``get_log``: omitted when it has none)."""

    def __init__(self, checkpoint: SignedCheckpoint, entries: Sequence[tuple[int, bytes, datetime | None]],
                 url: str = KR_URL) -> None:
        self.checkpoint, self.entries, self.url = checkpoint, list(entries), url

    async def fetch(self, url: str) -> bytes:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == self.url
        if parts.path == "/api/v1/log/checkpoint":
            return self.checkpoint.to_bytes()
        if parts.path == "/api/v1/log":
            q = {k: int(v[0]) for k, v in parse_qs(parts.query).items()}
            page = [(p, e, at) for p, e, at in self.entries if p > q["after"]][:q["limit"]]
            entries = ",".join(f'{{"position":{p},' + (f'"received_at":"{format_time(at)}",' if at else "")
                               + f'"envelope":{e.decode()}}}' for p, e, at in page)
            return f'{{"entries":[{entries}],"size":{len(self.entries)}}}'.encode()
        raise RecoveryFetchError(f"GET {url}: 404")


class Members:
    """Several members' nodes, each at its URL."""

    def __init__(self, *nodes: Node) -> None:
        self.nodes = {n.url: n for n in nodes}

    async def fetch(self, url: str) -> bytes:
        parts = urlsplit(url)
        return await self.nodes[f"{parts.scheme}://{parts.netloc}"].fetch(url)


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
    for _, env, _ in await original.store.read_log(0, 2):
        obj = json.loads(env)
        assert (await service.ingest(Envelope.from_dict(obj).payload.origin, [obj]))[0].status == "accepted"
    yield service
    await service.stop()
    await service.store.close()


def _cosigned(service: HubService, member: Member) -> SignedCheckpoint:
    assert service.checkpoint is not None
    return service.checkpoint.with_signature(cosign(service.checkpoint, member.key))


async def _log(service: HubService) -> list[LogEntry]:
    return await service.store.read_log(0, 1000)


def _as_served(entries: Sequence[LogEntry]) -> list[LogEntry]:
    """The entries with their receipt times as the log serves them (§1: milliseconds)."""
    return [LogEntry(p, e, at.replace(microsecond=at.microsecond // 1000 * 1000)) for p, e, at in entries]


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
        assert await _log(empty) == _as_served(await _log(original))
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
        entries[0] = LogEntry(1, forged.publish(example_bodies("cultural-event")[1]).to_bytes(), entries[0][2])
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
    assert [e[:2] for e in await _log(restored)] == [e[:2] for e in await _log(original)]
    assert (await _log(restored))[2:] == _as_served(await _log(original))[2:]  # with the receipt times they got


async def _logged_hourly(service: HubService, clock: FakeClock, members: dict[str, Member],
                         codes: Sequence[str]) -> None:
    """One envelope of each member in ``codes`` (in order), an hour apart on ``clock``."""
    bodies = example_bodies("cultural-event")
    for i, code in enumerate(codes):
        clock.advance(timedelta(hours=1))
        m = members[code]
        outcome = (await service.ingest(code, [m.publish(bodies[i % len(bodies)], issued=clock()).to_dict()]))[0]
        assert outcome.status == "accepted", outcome


async def test_recovered_log_keeps_receipt_times(hub_dir: Path, members: dict[str, Member]) -> None:
    """A hub rebuilt a day after its loss logs each recovered entry at the receipt time the members got from its log
    (PROTOCOL.md §8.3), not at the recovery: KR serves them all, QA lacks one (a node that pulled it before it kept
    receipt times), and TR dates one later than the log did; the times most members hold are kept, TR's is outvoted."""
    clock = FakeClock(datetime.now(UTC) + timedelta(minutes=1))
    original = await _hub(hub_dir, "original.db", clock=clock)
    later = FakeClock(clock() + timedelta(days=1))
    empty = await _hub(hub_dir, "empty.db", clock=later)
    try:
        await _logged_hourly(original, clock, members, ["KR", "QA", "KR", "TR"])
        log = _as_served(await _log(original))
        urls = {c: f"http://{c.lower()}.test" for c in ("KR", "QA", "TR")}
        qa_copy = [LogEntry(p, e, None if p == 2 else at) for p, e, at in log]
        tr_copy = [LogEntry(p, e, log[1].received_at if p == 1 else at) for p, e, at in log]
        nodes = Members(Node(_cosigned(original, members["KR"]), log, urls["KR"]),
                        Node(_cosigned(original, members["QA"]), qa_copy, urls["QA"]),
                        Node(_cosigned(original, members["TR"]), tr_copy, urls["TR"]))
        recovery = Recovery(empty, nodes.fetch, endpoints=urls)
        recovery.begin("disk lost")
        report = await recovery.run()
        assert (report.outcome, report.appended, report.receipts_disputed, report.receipts_unknown) == (
            "recovered", 4, 1, 0), report
        assert await _log(empty) == log
        assert [e.received_at for e in await empty.read_log(0, 10, 0)] == [e.received_at for e in log]  # as served
    finally:
        for service in (original, empty):
            await service.stop()
            await service.store.close()


def test_receipt_times_chosen_within_the_log_order() -> None:
    """choose_receipts: on a tie the earliest; a time past the checkpoint or going back along the log is not taken;
    an entry with no usable time is dated by the next one (never earlier than the log proves)."""
    t = datetime(2026, 12, 1, tzinfo=UTC)
    h = [t + timedelta(hours=i) for i in range(6)]
    votes = [{h[0]: 1, h[1]: 1}, {h[5]: 2}, {}, {h[3]: 1}, {h[2]: 1, h[4]: 1}]
    times, disputed, unknown = choose_receipts(votes, last=None, upto=h[4], now=h[5], skew=SKEW)
    # h[5] is past checkpoint h[4] + skew: unknown, dated by the next chosen (h[3]); h[2] goes back: not taken
    assert times == [h[0], h[3], h[3], h[3], h[4]] and (disputed, unknown) == (2, 2)
    times, _, unknown = choose_receipts([{}, {}], last=h[0], upto=h[2], now=h[5], skew=SKEW)
    assert times == [h[2], h[2]] and unknown == 2  # nothing known: the checkpoint's time


async def test_node_joining_after_recovery_applies_entries_of_key_rotated_out_before_recovery(
        hub_dir: Path, members: dict[str, Member], tmp_path: Path, aiohttp_server: Any) -> None:
    """KR signs two envelopes with its old key, rotates (the old key ends), signs one with the new key; the hub
    logs all three and loses its disk. Rebuilt a day later from KR's node, it keeps their receipt times (and takes
    the old key's entries at all: they were judged at receipt when logged). QA's node joins only after the
    recovery, pulls the log and applies all three: none quarantined key-not-valid-at-receipt, none marked."""
    hub_key = SigningKey.load(hub_dir / "hub.key.pem")
    fake = FakeHub(hub_key)  # serves the recovered hub's log to QA's new node (the hub's own pull path: §8.3)
    server = await aiohttp_server(fake.app())
    clock = FakeClock(datetime.now(UTC) + timedelta(minutes=1))
    v1 = genesis(hub_key=hub_key, hub_url=str(server.make_url("/")), now=clock(),
                 founders=[(m.public, {"en": c}) for c, m in members.items()])
    original = await _hub(hub_dir, "original.db", clock=clock, registry=v1)
    later = FakeClock(clock() + timedelta(days=1))
    try:
        kr, new = members["KR"], SigningKey.generate()
        await _logged_hourly(original, clock, members, ["KR", "KR"])
        clock.advance(timedelta(minutes=1))
        first = sign_document({"type": "rotation", "base": 1, "member": "KR", "new_key": new.public.to_jwk()},
                              kr.key, now=clock())
        v2 = next_version(v1, {"action": "rotate", "documents": [first.to_dict(), sign_document(
            first.body, new, now=clock()).to_dict()]}, hub_key, now=clock())
        original.registry = v2
        kr.key = new
        await _logged_hourly(original, clock, members, ["KR"])
        log = _as_served(await _log(original))

        empty = await _hub(hub_dir, "empty.db", clock=later, registry=v2)  # the registry a node holds (runbook)
        try:
            recovery = Recovery(empty, Node(_cosigned(original, members["QA"]), log).fetch, endpoints={"QA": KR_URL})
            recovery.begin("disk lost")
            report = await recovery.run()
            assert (report.outcome, report.appended) == ("recovered", 3), report
            recovered = await _log(empty)
        finally:
            await empty.stop()
            await empty.store.close()
        assert recovered == log
        fake.registry = v2
        for _, env, at in recovered:
            fake.append(Envelope.from_dict(json.loads(env)), received_at=at)
        fake.clock = later

        qa = members["QA"]
        config = make_config(tmp_path, qa, v2)
        engine = await _engine(config, qa, later)
        try:
            assert await engine.pull_once() == 3
            assert await engine.service.store.quarantine_counts() == {}
            assert await engine.service.store.marked_counts() == {}
        finally:
            await engine.stop()
            await engine.service.store.close()
    finally:
        await original.stop()
        await original.store.close()


async def _engine(config: Any, member: Member, clock: Clock) -> SyncEngine:
    """A member's node engine (its loops not running) on ``clock``."""
    store = await NodeStore.open(config.db_url, config.member)
    service = NodeService(store=store, keys=OwnKeys(member.code, member.key, directory=config.dir),
                          member=member.code, registry=load_registry(config.registry_path),
                          registry_path=config.registry_path, clock=clock)
    engine = SyncEngine(config, service, store)
    await engine.start(loops=False)
    return engine
