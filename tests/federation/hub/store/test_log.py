"""The hub's store (federation/hub/store/log.py) on its own: the append-only log and what is committed with it
(Merkle nodes, checkpoints, the quarantine), the writer's transaction, co-signatures, registry versions and the
replay memory. On SQLite, then PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from federation.hub.store.log import CheckpointRow, Held, HubStore, LogConflictError, LogRow, QuarantineRow

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[HubStore]:
    s = await HubStore.open(db_url)
    yield s
    await s.close()


def row(origin: str, seq: int) -> LogRow:
    h = hashlib.sha256(f"{origin}{seq}".encode()).hexdigest()
    return LogRow(origin, seq, h, f"{origin}:r{seq}", 1, "cultural-event", "put", "kid-" + origin,
                  f'{{"envelope":"{origin}{seq}"}}'.encode())


def refused(member: str | None, reason: str, envelope: bytes = b"x") -> QuarantineRow:
    return QuarantineRow(member=member, origin=member, seq=None, hash=None, reason=reason, detail="{}",
                         envelope=envelope)


def checkpoint_row(size: int) -> CheckpointRow:
    return CheckpointRow(size, "ab" * 32, NOW, f'{{"size":{size}}}'.encode())


class TestEmpty:
    async def test_new_store_is_an_empty_log(self, store: HubStore) -> None:
        assert await store.size() == 0 and await store.state() == (0, 0)
        assert await store.heads() == {} and await store.read_log(0, 10) == []
        assert await store.checkpoint() is None and await store.checkpoint_cosigned() is None
        assert await store.latest_registry() is None and await store.leaf_count() == 0


class TestAppend:
    async def test_rows_appended_at_the_next_positions(self, store: HubStore) -> None:
        """Rows get positions size+1.. in order; reads return the envelope bytes as stored."""
        assert await store.commit([row("QA", 1), row("KR", 1)], [], NOW, size=0) == [1, 2]
        assert await store.commit([row("QA", 2)], [], NOW, size=2) == [3]
        assert await store.size() == 3
        assert await store.read_log(0, 10) == [(1, row("QA", 1).envelope, NOW), (2, row("KR", 1).envelope, NOW),
                                               (3, row("QA", 2).envelope, NOW)]
        assert await store.read_log(1, 1) == [(2, row("KR", 1).envelope, NOW)]  # with the receipt time (§8.3)

    async def test_heads_and_held(self, store: HubStore) -> None:
        """Each origin's last (seq, hash); what is held at given (origin, seq), and nothing for the rest."""
        await store.commit([row("QA", 1), row("QA", 2), row("KR", 1)], [], NOW, size=0)
        assert await store.heads() == {"QA": (2, row("QA", 2).hash), "KR": (1, row("KR", 1).hash)}
        assert await store.heads(["KR", "TR"]) == {"KR": (1, row("KR", 1).hash)}
        held = await store.held([("QA", 1), ("QA", 3), ("KR", 1)])
        assert held == {("QA", 1): Held(1, row("QA", 1).hash), ("KR", 1): Held(3, row("KR", 1).hash)}
        assert await store.held([]) == {}

    async def test_writer_that_ignored_the_lock_refused(self, store: HubStore) -> None:
        """An append that expects the log to end elsewhere than it does writes nothing (another writer)."""
        await store.commit([row("QA", 1)], [], NOW, size=0)
        with pytest.raises(LogConflictError):
            await store.commit([row("QA", 2)], [refused("QA", "x")], NOW, size=0)
        assert await store.size() == 1 and await store.quarantined() == []

    async def test_same_origin_and_seq_twice_refused_by_the_database(self, store: HubStore) -> None:
        """The log holds one envelope per (origin, seq), whatever the writer believed."""
        await store.commit([row("QA", 1)], [], NOW, size=0)
        with pytest.raises(sa.exc.IntegrityError):
            await store.commit([row("QA", 1)], [], NOW, size=1)
        assert await store.size() == 1

    async def test_transaction_rolled_back_when_the_block_raises(self, store: HubStore) -> None:
        """What the writer appended inside ``appending`` is gone if the block fails before it ends."""
        async def fail_inside() -> None:
            async with store.appending() as tx:
                assert await tx.append([row("QA", 1)], [], NOW, size=0) == [1]
                assert await tx.size() == 1  # the transaction reads its own write
                raise RuntimeError("failed before the commit")

        with pytest.raises(RuntimeError):
            await fail_inside()
        assert await store.size() == 0

    async def test_nodes_and_checkpoint_committed_with_the_rows(self, store: HubStore) -> None:
        nodes = [(0, 0, b"\x01" * 32), (0, 1, b"\x02" * 32), (1, 0, b"\x03" * 32)]
        await store.commit([row("QA", 1), row("QA", 2)], [], NOW, size=0, nodes=nodes, checkpoint=checkpoint_row(2))
        assert await store.leaf_count() == 2
        assert await store.nodes([(0, 1), (1, 0), (5, 5)]) == {(0, 1): b"\x02" * 32, (1, 0): b"\x03" * 32}
        assert await store.checkpoint() == checkpoint_row(2).document == await store.checkpoint(2)
        assert await store.checkpoint(1) is None


class TestQuarantine:
    async def test_refusals_kept_with_their_bytes_and_counted(self, store: HubStore) -> None:
        await store.commit([], [refused("QA", "bad-signature", b"\xff\xfe"), refused(None, "signature-missing"),
                                refused("QA", "bad-signature")], NOW, size=0)
        assert await store.size() == 0
        newest_first = await store.quarantined()
        assert [q["reason"] for q in newest_first] == ["bad-signature", "signature-missing", "bad-signature"]
        assert bytes(newest_first[-1]["envelope"]) == b"\xff\xfe"
        assert [q["member"] for q in await store.quarantined(reason="signature-missing")] == [None]
        assert len(await store.quarantined(member="QA")) == 2 and len(await store.quarantined(limit=1)) == 1
        assert await store.quarantine_counts() == {("QA", "bad-signature"): 2, (None, "signature-missing"): 1}


class TestCheckpointsAndCosignatures:
    async def test_cosignatures_kept_once_per_key_and_size(self, store: HubStore) -> None:
        """Re-sending a co-signature is harmless: the first one per key and size is kept."""
        await store.save_checkpoint(checkpoint_row(1))
        await store.save_checkpoint(checkpoint_row(2))
        await store.add_cosignature(1, "kid-qa", "QA", {"protected": "p1", "signature": "s1"}, NOW)
        await store.add_cosignature(2, "kid-qa", "QA", {"protected": "p2", "signature": "s2"}, NOW)
        await store.add_cosignature(2, "kid-qa", "QA", {"protected": "p3", "signature": "s3"}, NOW)
        await store.add_cosignature(2, "kid-kr", "KR", {"protected": "p4", "signature": "s4"}, NOW)
        document, entries = await store.checkpoint_cosigned() or (b"", [])
        assert document == checkpoint_row(2).document
        assert sorted(e["signature"] for e in entries) == ["s2", "s4"]
        assert await store.checkpoint_cosigned(1) == (checkpoint_row(1).document,
                                                     [{"protected": "p1", "signature": "s1"}])
        assert await store.latest_cosigned() == {"QA": 2, "KR": 2}


class TestRegistryVersions:
    async def test_each_version_kept_once(self, store: HubStore) -> None:
        """Workers starting together may each save the registry: the first document of a version stays."""
        await store.save_registry(1, "h1", b"v1", NOW)
        await store.save_registry(1, "other", b"v1-other", NOW)
        await store.save_registry(2, "h2", b"v2", NOW)
        assert await store.latest_registry_version() == 2 and await store.latest_registry() == b"v2"
        assert await store.registry_version(1) == b"v1"
        assert await store.state() == (0, 2)


class TestReplayMemory:
    async def test_signature_remembered_until_it_expires(self, store: HubStore) -> None:
        """A push signature is accepted once; the same again is a replay until it expires and is forgotten."""
        assert await store.remember_signature("kid", b"sig", expires_at=100, now=50) is True
        assert await store.remember_signature("kid", b"sig", expires_at=100, now=60) is False
        assert await store.remember_signature("other", b"sig", expires_at=100, now=60) is True
        assert await store.remember_signature("kid", b"sig", expires_at=200, now=101) is True
