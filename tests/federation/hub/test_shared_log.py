"""Two hub workers in one process sharing one PostgreSQL log: the writer catches up inside its own
transaction, under the writers' lock, and reads a chain head again only after another worker grew the log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from federation.hub.ingest.service import HubService
from federation.hub.monitor import Monitor
from federation.hub.store.log import HubStore, LogReads
from federation.protocol.keys import SigningKey
from federation.protocol.registry import genesis
from tests.support.factories import Member, example_bodies

pytestmark = pytest.mark.postgres


@pytest.fixture
async def workers(pg_url: str) -> AsyncIterator[tuple[HubService, HubService, dict[str, Member]]]:
    members = {c: Member(c) for c in ("QA", "KR")}
    hub_key = SigningKey.generate()
    reg = genesis(hub_key=hub_key, hub_url="http://hub.test",
                  founders=[(m.public, {"en": c}) for c, m in members.items()], now=datetime.now(UTC))
    services = []
    for _ in range(2):
        service = HubService(await HubStore.open(pg_url), reg, hub_key)
        await service.start()
        services.append(service)
    yield services[0], services[1], members
    for service in services:
        await service.stop()
        await service.store.close()


async def ingest(service: HubService, member: Member) -> Any:
    [outcome] = await service.ingest(member.code, [member.publish(example_bodies("cultural-event")[0]).to_dict()])
    return outcome


async def test_head_read_again_after_another_worker_appended(workers: Any) -> None:
    """Worker A learns of B's append to QA's chain while catching up for KR only; its next QA envelope is
    classified against QA's head as it now is (not as A last saw it), so it is accepted, not refused as a gap."""
    a, b, m = workers
    qa, kr = m["QA"], m["KR"]
    assert (await ingest(a, qa)).status == "accepted"  # QA seq 1 through A
    assert (await ingest(b, qa)).status == "accepted"  # QA seq 2 through B
    assert (await ingest(a, kr)).status == "accepted"  # A catches up: the log grew, only KR's head read
    third = await ingest(a, qa)  # QA seq 3 through A: QA's head must be read again
    assert (third.status, third.position) == ("accepted", 4)


async def test_sole_worker_reads_no_head_again(workers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """While no other worker appends, a worker's catch-up is the one query for the log's end: the heads it
    read (or wrote) are still true."""
    a, _, m = workers
    await ingest(a, m["QA"])
    reads: list[Any] = []
    real = LogReads.heads

    async def counted(self: LogReads, origins: Any = None) -> Any:
        reads.append(origins)
        return await real(self, origins)

    monkeypatch.setattr(LogReads, "heads", counted)
    for _ in range(3):
        assert (await ingest(a, m["QA"])).status == "accepted"
    assert reads == []


async def test_status_counts_what_other_workers_appended(workers: Any) -> None:
    """A worker's status reads the heads another worker moved (one index probe per member, not a count of the
    log) and counts each member's envelopes from them."""
    a, b, m = workers
    for _ in range(3):
        await ingest(a, m["QA"])
    await ingest(a, m["KR"])
    await b.catch_up([code for code in m])  # as GET /api/v1/status does on a shared log
    members = {x["code"]: x["envelopes"] for x in (await Monitor(b).snapshot())["members"]}
    assert members == {"QA": 3, "KR": 1}
