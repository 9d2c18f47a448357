"""The node's store: what is written comes back, each write in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from federation.protocol.verify import ChainHead
from node.config import NodeConfig
from node.store.outbox import ACCEPTED, PENDING, REJECTED
from node.store.records import Changes, NodeStore, QuarantineRow
from tests.support.factories import Member
from tests.support.search_index import index_and_rebuild
from tests.support.timing import eventually

NOW = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


class TestNodeStore:
    async def test_migrations_are_idempotent(self, config: NodeConfig) -> None:
        """Opening the same database twice runs the migrations once and keeps the data."""
        first = await NodeStore.open(config.db_url, "QA")
        await first.apply(Changes(cursor=7), NOW)
        await first.close()
        again = await NodeStore.open(config.db_url, "QA")
        assert await again.trust.cursor() == 7
        await again.close()

    async def test_the_log_is_checkpointed_beside_the_writer(self, config: NodeConfig) -> None:
        """On SQLite the store's commits wake a checkpointer of its own (ADR 36), stopped with the store;
        PostgreSQL has none."""
        store = await NodeStore.open(config.db_url, "QA")
        checkpoints = store.checkpoints
        try:
            await store.apply(Changes(cursor=7), NOW)
            if store.engine.dialect.name == "sqlite":
                assert checkpoints is not None
                await eventually(lambda: checkpoints.done >= 1)
            else:
                assert checkpoints is None
        finally:
            await store.close()
        assert checkpoints is None or not checkpoints.running

    async def test_authored_envelope_round_trips(self, store: NodeStore, qa: Member, event: dict[str, Any]) -> None:
        """An own envelope comes back as record, chain head and pending outbox entry, bytes unchanged."""
        env = qa.publish(event, record_id="QA:one")
        await store.author(env, NOW)
        rec = await store.get_record("QA:one")
        assert rec is not None
        assert (rec.version, rec.op, rec.status, rec.seq, rec.hash) == (1, "put", event["status"], 1, env.hash)
        assert rec.body == event and rec.envelope == env.to_bytes() and rec.updated_at == NOW
        assert rec.title == next(iter(event["title"].values()))
        assert await store.heads(["QA", "KR"]) == {"QA": ChainHead(1, env.hash)}
        [row] = await store.outbox.entries(PENDING, 10)
        assert (row.seq, row.envelope, row.attempts) == (1, env.to_bytes(), 0)

    async def test_tombstone_round_trips(self, store: NodeStore, qa: Member, event: dict[str, Any]) -> None:
        """A delete replaces the record with a tombstone: op delete, status deleted, no body."""
        await store.author(qa.publish(event, record_id="QA:one"), NOW)
        await store.author(qa.publish(None, record_id="QA:one", version=2), NOW)
        rec = await store.get_record("QA:one")
        assert rec is not None and (rec.version, rec.op, rec.status, rec.body) == (2, "delete", "deleted", None)

    async def test_search_index_follows_each_update(self, store: NodeStore, qa: Member, event: dict[str, Any]) -> None:
        """The full-text index holds one row per record, keyed by its id: written once for a new record, replaced
        on each update (the old text out, found by id: no scan), none for a tombstone; term by term it is what an
        index made afresh from the envelopes holds."""
        await store.author(qa.publish({**event, "title": {"en": "Lanterns"}}, record_id="QA:one"), NOW)
        await store.author(qa.publish({**event, "title": {"en": "Lanterns"}}, record_id="QA:two"), NOW)
        await store.author(qa.publish({**event, "title": {"en": "Renamed"}}, record_id="QA:one", version=2), NOW)
        await store.author(qa.publish(None, record_id="QA:two", version=2), NOW)
        assert [r.record_id for r in await store.list_records(q="renamed", limit=5)] == ["QA:one"]
        assert await store.list_records(q="lanterns", limit=5) == []
        held, fresh = await index_and_rebuild(store)
        assert held == fresh and {i for i, _ in held} == {1}

    async def test_apply_writes_everything_with_the_cursor(self, store: NodeStore, kr: Member, qa: Member,
                                                           event: dict[str, Any]) -> None:
        """Envelopes, records, own positions, quarantine and the cursor land together."""
        own = qa.publish(event, record_id="QA:mine")
        await store.author(own, NOW)
        env = kr.publish(event, record_id="KR:a")
        changes = Changes(cursor=3, envelopes=[(env, 2)], records={"KR:a": env}, own_positions=[(1, 1)],
                          quarantine=[QuarantineRow("bad-signature", "forged", b"{}", "KR", 9, "ab" * 32, 3)])
        await store.apply(changes, NOW)
        assert await store.trust.cursor() == 3
        assert (await store.get_record("KR:a")) is not None
        assert await store.held([("KR", 1), ("QA", 1), ("KR", 2)]) == {("KR", 1): env.hash, ("QA", 1): own.hash}
        assert [(r.seq, r.position) for r in await store.outbox.entries(ACCEPTED, 10)] == [(1, 1)]
        [q] = await store.quarantined()
        assert (q.reason, q.origin, q.seq, q.position) == ("bad-signature", "KR", 9, 3)
        counts = await store.counts()
        assert (counts.own, counts.received, counts.quarantine, counts.outbox) == (1, 1, 1, {"accepted": 1})

    async def test_listing_pages_by_update_time(self, store: NodeStore, qa: Member, kr: Member,
                                                event: dict[str, Any]) -> None:
        """Records list in (updated_at, record_id) order; ``after`` continues behind a key; filters apply."""
        for i in range(3):
            await store.author(qa.publish(event, record_id=f"QA:r{i}"), NOW + timedelta(seconds=i))
        other = kr.publish(event, record_id="KR:x")
        await store.apply(Changes(cursor=1, envelopes=[(other, 1)], records={"KR:x": other}), NOW)
        page = await store.list_records(limit=2)
        assert [r.record_id for r in page] == ["KR:x", "QA:r0"]
        rest = await store.list_records(after=(page[-1].updated_at, page[-1].record_id), limit=10)
        assert [r.record_id for r in rest] == ["QA:r1", "QA:r2"]
        assert [r.record_id for r in await store.list_records(origin="KR", limit=10)] == ["KR:x"]
        assert await store.list_records(kind="capacity-programme", limit=10) == []
        since = await store.list_records(updated_since=NOW + timedelta(seconds=1), limit=10)
        assert [r.record_id for r in since] == ["QA:r1", "QA:r2"]

    async def test_push_results_are_recorded(self, store: NodeStore, qa: Member, event: dict[str, Any]) -> None:
        """A push counts an attempt for each envelope sent and records accepted and rejected ones."""
        for i in range(3):
            await store.author(qa.publish(event, record_id=f"QA:r{i}"), NOW)
        rejected = (2, "key-not-valid", "expired key")
        await store.outbox.record_push([1, 2, 3], accepted=[(1, 5)], rejected=rejected, now=NOW)
        assert [(r.seq, r.position, r.attempts) for r in await store.outbox.entries(ACCEPTED, 10)] == [(1, 5, 1)]
        [rej] = await store.outbox.entries(REJECTED, 10)
        assert (rej.seq, rej.reason, rej.detail) == (2, "key-not-valid", "expired key")
        assert [r.seq for r in await store.outbox.entries(PENDING, 10)] == [3]
        assert await store.outbox.retry_rejected() == 1
        assert [r.seq for r in await store.outbox.entries(PENDING, 10)] == [2, 3]


def test_chain_heads_read_without_scanning_an_origins_history() -> None:
    """The chain read on the path of every pull (the rows a page asks for and each origin's last) costs as many
    SQLite steps with 20,000 envelopes of an origin held as with 50: each head is one index probe. A head found by a
    correlated ``max(seq)`` read every row of the origin (80 ms a pull at 100,000, a node's catch-up quadratic)."""
    import sqlalchemy as sa

    from node.store.records import _chains_query
    from node.store.tables import envelopes, meta

    def steps(held: int) -> int:
        engine = sa.create_engine("sqlite://")
        meta.create_all(engine, tables=[envelopes])
        with engine.begin() as conn:
            conn.execute(envelopes.insert(), [{"origin": o, "seq": s, "hash": f"{o}{s}"}
                                              for o in ("QA", "TR") for s in range(1, held + 1)])
            raw = conn.connection.dbapi_connection
            assert raw is not None
            count = [0]

            def step() -> int:
                count[0] += 1
                return 0

            raw.set_progress_handler(step, 1)  # type: ignore[attr-defined]
            rows = conn.execute(_chains_query(2), {"origins": ["QA", "TR"], "seqs": [held], "o0": "QA", "o1": "TR"})
            got = sorted(tuple(r) for r in rows)
            raw.set_progress_handler(None, 1)  # type: ignore[attr-defined]
        assert got == sorted([("QA", held, f"QA{held}"), ("TR", held, f"TR{held}")] * 2)
        return count[0]

    small, large = steps(50), steps(20_000)
    assert large <= small + 50, (small, large)


async def test_marked_counts_read_the_marked_envelopes_only(store: NodeStore, qa: Member,
                                                            event: dict[str, Any]) -> None:
    """The status page counts marked envelopes at every call: on SQLite the plan searches the partial index of the
    marked rows (revision 0013) instead of reading every envelope held (600 ms at 1,000,000); and the counts hold."""
    import sqlalchemy as sa

    from node.store.records import _MARKED_COUNTS

    envs = [qa.publish(event) for _ in range(3)]
    for env in envs:
        await store.author(env, datetime.now(UTC))
    assert await store.mark([envs[1].hash], "key-revoked-after-the-fact") == 1
    assert await store.marked_counts() == {"key-revoked-after-the-fact": 1}
    async with store.engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            names = {r[0] for r in await conn.execute(sa.text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'envelopes'"))}
            assert "ix_envelopes_marked" in names
            return
        sql = str(_MARKED_COUNTS.compile(conn.sync_connection, compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(r[-1]) for r in await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "ix_envelopes_marked" in plan and "SCAN envelopes" not in plan, plan
