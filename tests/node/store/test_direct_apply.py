"""The store's statements run on SQLite's driver directly (federation/server/db/direct.py, ADR 35) write exactly
what SQLAlchemy's execution of the same statements writes: the reference path, kept for this test and for
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event as sa_event

from federation.server.db import direct
from federation.server.db.engine import sqlite_url
from node.store import evidence
from node.store.partners import PartnerKeyRow
from node.store.records import Changes, NodeStore, QuarantineRow
from node.store.tables import meta
from node.webhooks.events import EventFilter
from node.webhooks.store import ACTIVE, Subscription
from node.webhooks.store import meta as webhook_meta
from tests.support.factories import Member
from tests.support.search_index import index_and_rebuild

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


async def _open(path: Path, *, reference: bool) -> NodeStore:
    opened = await NodeStore.open(sqlite_url(path), "QA")
    if not reference:
        return opened
    return NodeStore(direct.reference(opened.engine), "QA", relaxed=direct.reference(opened.relaxed))


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[NodeStore, NodeStore]]:
    fast = await _open(tmp_path / "direct.db", reference=False)
    ref = await _open(tmp_path / "reference.db", reference=True)
    yield fast, ref
    await fast.close()
    await ref.close()


def _counted(store: NodeStore) -> list[str]:
    """The statements SQLAlchemy itself executes on the store's engines, from now on."""
    seen: list[str] = []
    for engine in {store.engine.sync_engine, store.relaxed.sync_engine}:
        sa_event.listen(engine, "before_cursor_execute",
                        lambda _c, _cur, sql, *_a: seen.append(" ".join(sql.split())[:40]))
    return seen


async def _everything(store: NodeStore, *, index: bool = True) -> dict[str, Any]:
    """Every row of every table, in key order, and (once per store: it leaves temporary tables on a pooled
    connection) the full-text index term by term."""
    out: dict[str, Any] = {}
    async with store.engine.connect() as conn:
        for table in [*meta.sorted_tables, *webhook_meta.sorted_tables]:
            order = list(table.primary_key.columns) or list(table.columns)
            rows = await conn.execute(sa.select(table).order_by(*order))
            out[table.name] = [tuple(r) for r in rows]
    # A delivery's id is random (a ULID's second half): its rows are compared without it.
    out["webhook_deliveries"] = sorted(r[1:] for r in out["webhook_deliveries"])
    if index:
        out["records_fts"], fresh = await index_and_rebuild(store)
        assert out["records_fts"] == fresh  # and each store's index is what its envelopes make
    return out


def _pages(qa: Member, kr: Member, tr: Member, event: dict[str, Any]) -> list[tuple[datetime, Any]]:
    """Pages of the log as a node applies them, and authoring in between (each made once: both stores get the same
    envelopes): new records, updates (each kind of column changed), a tombstone, marks, receipt times, quarantine,
    own envelopes coming back, derived columns given."""
    own = qa.publish({**event, "title": {"en": "Maqam evening"}}, record_id="QA:own")
    a1 = kr.publish({**event, "title": {"en": "Gugak lanterns", "ko": "국악 등불"}}, record_id="KR:a")
    b1 = kr.publish({**event, "title": {"ar": "أمسية الخط العربي"}}, record_id="KR:b")
    c1 = tr.publish(event, record_id="TR:c")
    first = Changes(
        cursor=4, envelopes=[(a1, 2), (b1, 3), (c1, 4)], records={"KR:a": a1, "KR:b": b1, "TR:c": c1},
        events=[a1, b1, c1], own_positions=[(own.payload.seq, 1)], marks={c1.hash: "key-revoked-after-the-fact"},
        logged_at={p: NOW + timedelta(seconds=p) for p in range(1, 5)},
        quarantine=[QuarantineRow("bad-signature", "forged", b"{}", "KR", 9, "ab" * 32, 5)])
    a2 = kr.publish({**event, "title": {"en": "Gugak lanterns, renamed"}}, record_id="KR:a", version=2)
    b2 = kr.publish({**event, "status": "cancelled"}, record_id="KR:b", version=2)
    c2 = tr.publish(None, record_id="TR:c", version=2)
    d1 = tr.publish({**event, "title": {"tr": "Ebru atölyesi"}}, record_id="TR:d")
    second = Changes(
        cursor=9, envelopes=[(a2, 6), (b2, 7), (c2, 8), (d1, 9)],
        records={"KR:a": a2, "KR:b": b2, "TR:c": c2, "TR:d": d1}, events=[a2, b2, c2, d1],
        logged_at={p: NOW + timedelta(seconds=p) for p in range(6, 10)})
    own2 = qa.publish({**event, "title": {"en": "Maqam evening, moved"}}, record_id="QA:own", version=2)
    back = Changes(cursor=10, own_positions=[(own2.payload.seq, 10)], logged_at={10: NOW})
    return [(NOW, own), (NOW, first), (NOW + timedelta(minutes=1), second), (NOW + timedelta(minutes=2), own2),
            (NOW + timedelta(minutes=3), back)]


async def _reads(store: NodeStore) -> dict[str, Any]:
    """Every record paged two at a time (after each page's last key, as the stream reads after each commit), each
    record by its id, and a partner key."""
    pages, after = [], None
    while page := await store.list_records(after=after, limit=2):
        pages.append(page)
        after = (page[-1].updated_at, page[-1].record_id)
    pages.append(await store.list_records(kind="cultural-event", limit=10))  # filtered: SQLAlchemy on both
    ids = [r.record_id for p in pages[:-1] for r in p]
    return {"pages": pages, "one": [await store.get_record(i) for i in [*ids, "XX:none"]],
            "key": await store.partners.key("k1")}


async def test_direct_statements_write_what_sqlalchemy_writes(
        stores: tuple[NodeStore, NodeStore], qa: Member, kr: Member, event: dict[str, Any]) -> None:
    fast, ref = stores
    seen = {"direct": _counted(fast), "reference": _counted(ref)}
    steps = _pages(qa, kr, Member("TR"), event)
    for store in (fast, ref):
        await store.partners.add(PartnerKeyRow("k1", "partner", "ab" * 32, frozenset({"read"}), 60, NOW, None, None))
        await store.webhooks.add_subscription(Subscription(  # wants every event: the queue is written too
            "sub-1", "partner", "https://partner.example/hook", EventFilter(), "s" * 32, ACTIVE, NOW))
        for at, step in steps:
            await (store.apply(step, at) if isinstance(step, Changes) else store.author(step, at))
    assert await fast.heads(["KR", "TR", "QA"]) == await ref.heads(["KR", "TR", "QA"])
    assert await _everything(fast) == await _everything(ref)
    assert [r.record_id for r in await fast.list_records(q="renamed", limit=5)] == ["KR:a"]
    read = {id(store): await _reads(store) for store in (fast, ref)}  # the reads a record's path makes, too
    assert read[id(fast)] == read[id(ref)]
    assert sum(len(p) for p in read[id(fast)]["pages"][:-1]) == 5  # QA:own, KR:a, KR:b, TR:c, TR:d
    for store in (fast, ref):  # an error is SQLAlchemy's on both paths
        with pytest.raises(sa.exc.IntegrityError, match="UNIQUE"):
            await store.apply(Changes(cursor=11, envelopes=[(steps[1][1].envelopes[0][0], 11)]), NOW)
        assert await store.trust.cursor() == 10
    # Both paths ran: SQLAlchemy executed the reference store's writes of envelopes, records, index and cursor, and
    # none of the direct one's (it still runs the webhook queue's inserts and the quarantine's, for both).
    hot = ("INSERT INTO envelopes", "UPDATE records", "INSERT INTO records ", "INSERT INTO records_fts",
           "INSERT INTO sync_state", "UPDATE outbox")
    assert {h for h in hot for sql in seen["reference"] if sql.startswith(h)} == set(hot)
    assert [sql for sql in seen["direct"] if sql.startswith(hot)] == []


async def test_direct_writes_are_in_the_transaction(stores: tuple[NodeStore, NodeStore], kr: Member,
                                                   event: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A page whose last write fails leaves nothing of its first writes (envelopes, records, index), on both
    paths: the direct statements ran inside SQLAlchemy's transaction and its rollback took them out."""
    env = kr.publish({**event, "title": {"en": "Zanzibar"}}, record_id="KR:a")
    indexed = sa.text("SELECT rowid FROM records_fts WHERE records_fts MATCH 'zanzibar'")

    async def failing(*_args: Any) -> None:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(evidence, "save_position", failing)
    for store in stores:
        before = await _everything(store, index=False)
        with pytest.raises(RuntimeError, match="disk"):
            await store.apply(Changes(cursor=1, envelopes=[(env, 1)], records={"KR:a": env}, events=[env]), NOW)
        assert await _everything(store, index=False) == before
        assert await store.get_record("KR:a") is None
        async with store.engine.connect() as conn:
            assert (await conn.execute(indexed)).all() == []
