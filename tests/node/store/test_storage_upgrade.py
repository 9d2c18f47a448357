"""The storage upgrade (revision 0012, docs/adr/0030) of a node database made by release 0010
(tests/node/store/release-0010.json: made by tests/support/release_db.py through the normal authoring and apply
paths; its rows and what its store answered), on SQLite and PostgreSQL: every answer stays the same, each envelope
is stored once, the full-text index is what a rebuild makes and stays so through later updates, and the downgrade
gives the release's tables back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from federation.server.db import engine as db
from node.store.records import MIGRATIONS, VERSION_TABLE, Changes, NodeStore
from tests.support import release_db
from tests.support.factories import Member, example_bodies
from tests.support.search_index import index_and_rebuild

pytestmark = pytest.mark.empty_db  # each test makes the release's database from an empty one
FIXTURE = Path(__file__).with_name("release-0010.json")
UPGRADE = "0012"
NOW = datetime(2026, 12, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    return dict(json.loads(FIXTURE.read_text(encoding="utf-8")))


async def _made_by_release(db_url: str, release: dict[str, Any]) -> None:
    engine = db.make_engine(db_url)
    try:
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE, revision=release["revision"])
        await release_db.load(engine, release["tables"])
    finally:
        await engine.dispose()


@pytest.fixture
async def upgraded(db_url: str, release: dict[str, Any]) -> AsyncIterator[NodeStore]:
    """The release's database, opened by this release's store (which upgrades it to head)."""
    await _made_by_release(db_url, release)
    store = await NodeStore.open(db_url, "QA")
    yield store
    await store.close()


async def _columns(store: NodeStore, table: str) -> set[str]:
    async with store.engine.connect() as conn:
        return await conn.run_sync(lambda c: {col["name"] for col in sa.inspect(c).get_columns(table)})


async def _found(store: NodeStore, q: str) -> list[str]:
    return [r.record_id for r in await store.list_records(q=q, limit=100)]


class TestUpgradeFromRelease0010:
    async def test_every_answer_is_the_same(self, upgraded: NodeStore, release: dict[str, Any]) -> None:
        """Every record (facts, body, envelope, the item and its spliced JSON), every search (Arabic folding: the
        article, alef forms, marks, ta marbuta; filters alone and with text), the upcoming lists, every history
        with its authors, the envelopes served and the log served back to a recovering hub, the counts, the
        quarantine and the chain heads: as release 0010 answered them."""
        assert await db.current_revision(upgraded.engine, MIGRATIONS, VERSION_TABLE) >= UPGRADE  # type: ignore[operator]
        got = json.loads(json.dumps(await release_db.answers(upgraded)))
        assert set(got) == set(release["answers"])
        for key, expected in release["answers"].items():
            assert got[key] == expected, key

    async def test_each_envelope_is_stored_once(self, upgraded: NodeStore, release: dict[str, Any]) -> None:
        """``records`` keeps no copy of an envelope, its body or its searched text, and names each current version's
        envelope; ``envelopes`` holds the release's rows unchanged."""
        assert not await _columns(upgraded, "records") & {"body", "envelope", "search"}
        stored = await release_db.dump(upgraded.engine)
        assert stored["envelopes"] == release["tables"]["envelopes"]
        held = {(e["origin"], e["seq"]) for e in stored["envelopes"]}
        assert all((r["origin"], r["seq"]) in held for r in stored["records"])
        assert [r["id"] for r in stored["records"]] == list(range(1, len(release["tables"]["records"]) + 1))

    async def test_the_index_is_what_a_rebuild_makes(self, upgraded: NodeStore) -> None:
        """Record by record, term by term, the full-text index holds what one made afresh from the envelopes holds."""
        held, fresh = await index_and_rebuild(upgraded)
        assert held and held == fresh

    async def test_updates_after_the_upgrade_replace_their_index_rows(self, upgraded: NodeStore,
                                                                       release: dict[str, Any]) -> None:
        """Versions applied after the upgrade replace their records' index rows (found by id, the old text given
        again): a new title's words find the record and the old title's do not, a tombstone is found by none of
        its words; the index stays what a rebuild makes."""
        answers = release["answers"]
        heads = answers["heads"]["KR"]
        kr = Member("KR", seq=heads["seq"], prev=heads["hash"])  # the store applies what it is given: unverified
        event = example_bodies("cultural-event")[0]
        assert await _found(upgraded, "calligraphy") == answers["searches"]["en"]
        renamed = kr.publish({**event, "title": {"en": "Lanterns over the Bosphorus"}}, record_id="KR:ce1", version=3)
        gone = kr.publish(None, record_id="KR:ce3", version=4)
        new = kr.publish({**event, "title": {"ar": "ليلة الفوانيس"}}, record_id="KR:new")
        cursor = answers["cursor"]
        await upgraded.apply(Changes(cursor=cursor + 3, envelopes=[(renamed, cursor + 1), (gone, cursor + 2),
                                                                    (new, cursor + 3)],
                                     records={"KR:ce1": renamed, "KR:ce3": gone, "KR:new": new}), NOW)
        assert "KR:ce1" not in await _found(upgraded, "calligraphy")
        assert await _found(upgraded, "lanterns bosphorus") == ["KR:ce1"]
        assert await _found(upgraded, "فوانيس") == ["KR:new"]  # the article folded away, as indexed
        assert await _found(upgraded, "청년") == []  # KR:ce3's last title, now a tombstone
        held, fresh = await index_and_rebuild(upgraded)
        assert held == fresh

    async def test_downgrade_gives_back_the_release_tables(self, upgraded: NodeStore, release: dict[str, Any]) -> None:
        """Down to the revision before 0012: ``records`` holds each row as the release wrote it again (its envelope,
        its body, its searched text; keyed by record_id) and, on SQLite, the full-text rows are the release's."""
        cfg = db._alembic_config(MIGRATIONS, VERSION_TABLE)

        def down(conn: Connection) -> None:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0011")

        async with upgraded.engine.begin() as conn:
            await conn.run_sync(down)
        stored = await release_db.dump(upgraded.engine)
        assert "id" not in await _columns(upgraded, "records")
        for was, now in zip(release["tables"]["records"], stored["records"], strict=True):
            # The same JSON and text; the members of an own body, and so its languages' texts, perhaps in another
            # order (the signed payload's, not the author's).
            assert _json(now.pop("body")) == _json(was["body"])
            assert _lines(now.pop("search")) == _lines(was["search"])
            assert {k: v for k, v in now.items() if k in was} == {k: v for k, v in was.items()
                                                                  if k not in ("body", "search")}
        if upgraded.engine.dialect.name == "sqlite":
            assert sorted((r["record_id"], _lines(r["search"])) for r in stored["records_fts"]) == sorted(
                (r["record_id"], _lines(r["search"])) for r in release["tables"]["records_fts"])


def _json(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def _lines(text: str) -> list[str]:
    return sorted(text.split("\n"))
