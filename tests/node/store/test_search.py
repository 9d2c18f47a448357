"""Searching the node's records (``GET /api/v1/records``): filters, full text in every language, paging
with filters, HTTP caching and CORS, and the 0003 migration's backfill. Each test runs on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from federation.server.db import engine as db
from node.app import create_app
from node.appkeys import SERVICE
from node.config import NodeConfig
from node.store.records import MIGRATIONS, VERSION_TABLE, NodeStore, StoredRecord
from tests.support.factories import Member, example_bodies
from tests.support.nodes import AUTH, PROBLEM, publish, url

EVENTS = example_bodies("cultural-event")
PROGRAMMES = example_bodies("capacity-programme")


@pytest.fixture
async def client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    return await aiohttp_client(create_app(config, sync=False))


@pytest.fixture
async def ids(client: TestClient) -> dict[str, str]:
    """Every example published by QA: English title -> record id."""
    out = {}
    for kind, bodies in (("cultural-event", EVENTS), ("capacity-programme", PROGRAMMES)):
        for body in bodies:
            out[body["title"]["en"]] = (await publish(client, body, kind))["record_id"]
    return out


GA = EVENTS[0]["title"]["en"]  # 2020-01-20..22, QA, tags IPDN, ar/en/tr/ko
FILM = EVENTS[6]["title"]["en"]  # 2020-02-06, HU only, rescheduled, hu/en/ar
GUGAK = EVENTS[5]["title"]["en"]  # 2020-03-18, KR+QA, cancelled, tag gugak
FELLOWSHIP = PROGRAMMES[1]["title"]["en"]  # 2020-10-05..12-18, venue KR, eligible not KR, ko/ar/en
WEBINARS = PROGRAMMES[2]["title"]["en"]  # 2020-06-03..07-01, no countries, tr/ar/en


async def found(client: TestClient, **params: str) -> set[str]:
    """Record ids of every page the query yields (limit 2: paging is exercised too)."""
    out: list[str] = []
    cursor: str | None = None
    while True:
        resp = await client.get("/api/v1/records", params={**params, "limit": "2", **({"cursor": cursor} if cursor
                                                                                      else {})})
        assert resp.status == 200, await resp.text()
        doc = await resp.json()
        out += [i["record_id"] for i in doc["items"]]
        if (cursor := doc["next_cursor"]) is None:
            break
    assert len(out) == len(set(out))
    return set(out)


def titles(ids: dict[str, str], *names: str) -> set[str]:
    return {ids[n] for n in names}


class TestFilters:
    async def test_country_matches_participating_venue_and_eligible(self, client: TestClient,
                                                                    ids: dict[str, str]) -> None:
        """country matches participating_countries, the venue's country and a programme's eligible countries."""
        hu = await found(client, country="HU")
        assert ids[FILM] in hu and ids[GA] in hu and ids[FELLOWSHIP] in hu and ids[WEBINARS] not in hu
        kr = await found(client, country="kr")  # case-insensitive
        assert ids[FELLOWSHIP] in kr and ids[GUGAK] in kr and ids[FILM] not in kr  # the venue is in Seoul

    async def test_date_range_overlaps(self, client: TestClient, ids: dict[str, str]) -> None:
        """from/to select records whose days overlap the range; programmes by start_date/end_date."""
        assert await found(client, **{"from": "2020-02-01", "to": "2020-02-28"}) == titles(ids, FILM)
        assert await found(client, **{"from": "2020-06-30", "to": "2020-06-30"}) == titles(ids, WEBINARS)
        assert ids[FELLOWSHIP] in await found(client, **{"from": "2020-12-01"})
        assert await found(client, to="2020-01-19") == set()
        assert await found(client, to="2020-01-20T23:00:00+03:00") == {
            ids[e["title"]["en"]] for e in EVENTS[:2]}

    async def test_lang_status_tag(self, client: TestClient, ids: dict[str, str]) -> None:
        """lang is a language of the title; status exact; tag case-insensitive and whole."""
        assert await found(client, lang="hu") == titles(ids, FILM)
        assert await found(client, lang="KO") == {ids[b["title"]["en"]] for b in EVENTS + PROGRAMMES
                                                  if "ko" in b["title"]}
        assert await found(client, status="cancelled") == titles(ids, GUGAK)
        assert await found(client, tag="Gugak") == titles(ids, GUGAK)
        assert await found(client, tag="gug") == set()

    async def test_filters_combine(self, client: TestClient, ids: dict[str, str]) -> None:
        """Every filter given narrows the result (AND)."""
        assert await found(client, kind="capacity-programme", country="KR", status="open") == titles(ids, FELLOWSHIP)
        assert await found(client, country="QA", status="cancelled", lang="ko") == titles(ids, GUGAK)
        assert await found(client, kind="cultural-event", q="fellowship") == set()
        assert await found(client, origin="KR", tag="gugak") == set()

    @pytest.mark.parametrize("params", [{"from": "January"}, {"to": "2020-01-01T00:00:00"}, {"country": "QAT"},
                                        {"lang": "en_GB"}, {"from": "2020-02-01", "to": "2020-01-01"},
                                        {"q": "x" * 501}, {"tag": "a\x00b"}, {"q": "\x00"}])
    async def test_bad_values_refused(self, client: TestClient, params: dict[str, str]) -> None:
        """An unreadable filter is a 400 bad-query problem."""
        resp = await client.get("/api/v1/records", params=params)
        assert resp.status == 400 and resp.content_type == PROBLEM
        assert (await resp.json())["type"].endswith("bad-query")


class TestFullText:
    async def test_arabic_word_found(self, client: TestClient, ids: dict[str, str]) -> None:
        """An Arabic word of a title finds the record (and only records holding it)."""
        assert await found(client, q="المجرية") == titles(ids, FILM)

    async def test_english_words_in_description(self, client: TestClient, ids: dict[str, str]) -> None:
        """Every word must match, in any letter case, in a title or a description."""
        assert await found(client, q="Gugak") == titles(ids, GUGAK)
        assert await found(client, q="katara ASSEMBLY") >= titles(ids, GA)
        assert await found(client, q="budapest gugak") == set()

    async def test_search_follows_updates(self, client: TestClient, ids: dict[str, str]) -> None:
        """An update is searched by its new text only; a deleted record is found no more."""
        body = {**EVENTS[6], "title": {"en": "Budapest Cinema Nights"}}
        resp = await client.put(url(ids[FILM]), json={"body": body}, headers=AUTH)
        assert resp.status == 200, await resp.text()
        assert await found(client, q="الدبلوماسي") == set()  # of the old title only (its description stays)
        assert await found(client, q="cinema nights") == titles(ids, FILM)
        assert (await client.delete(url(ids[FILM]), headers=AUTH)).status == 200
        assert await found(client, q="cinema") == set()

    async def test_arabic_found_without_article_letter_forms_or_marks(self, client: TestClient,
                                                                       ids: dict[str, str]) -> None:
        """Arabic is folded alike in the index and the query (node/records/text.py): "خط" finds "الخط", "احمد"
        finds "أحمد", "مدرسة" finds "مدرسه", harakat and tatweel are ignored; Latin words are matched as before."""
        body = {**EVENTS[6], "title": {"ar": "معرض الخط العربي", "en": "Alhambra calligraphy"},
                "description": {"ar": "بإشراف أحمد في مدرسه الفنون: دروس لِلْكِتَابَةِ", "en": "Lessons in writing."}}
        rid = (await publish(client, body))["record_id"]
        for q in ("خط", "الخط", "احمد", "أحمد", "مدرسة", "المدرسة", "كتابة", "الكِتابة", "الخَطّ", "الخـــط",
                  "خط احمد"):
            assert await found(client, q=q) == {rid}, q
        assert await found(client, q="Alhambra CALLIGRAPHY") == {rid}
        assert await found(client, q="hambra") == set()  # a Latin "al" is no article
        assert await found(client, q="خطوط") == set()  # whole words still: no stemming

    async def test_punctuation_only_finds_nothing(self, client: TestClient, ids: dict[str, str]) -> None:
        """A query with no word (FTS syntax included) is no error and finds nothing."""
        assert await found(client, q='"*') == set()
        assert await found(client, q="NEAR(") == set()


class TestCaching:
    async def test_list_etag_and_304(self, client: TestClient, ids: dict[str, str]) -> None:
        """A strong ETag and max-age=60; If-None-Match with it is 304; a change gives a new ETag."""
        resp = await client.get("/api/v1/records", params={"tag": "gugak"})
        etag = resp.headers["ETag"]
        assert etag.startswith('"') and resp.headers["Cache-Control"] == "public, max-age=60"
        again = await client.get("/api/v1/records", params={"tag": "gugak"}, headers={"If-None-Match": etag})
        assert again.status == 304 and again.headers["ETag"] == etag and not await again.read()
        other = await client.get("/api/v1/records", params={"tag": "IPDN"}, headers={"If-None-Match": etag})
        assert other.status == 200 and other.headers["ETag"] != etag

    async def test_item_etag_and_304(self, client: TestClient, ids: dict[str, str]) -> None:
        """The item has max-age=300; its ETag changes with a new version."""
        resp = await client.get(url(ids[GA]))
        etag = resp.headers["ETag"]
        assert resp.headers["Cache-Control"] == "public, max-age=300"
        assert (await client.get(url(ids[GA]), headers={"If-None-Match": f'"x", {etag}'})).status == 304
        await client.post(url(ids[GA]) + "/cancel", headers=AUTH)
        fresh = await client.get(url(ids[GA]), headers={"If-None-Match": etag})
        assert fresh.status == 200 and fresh.headers["ETag"] != etag

    async def test_page_is_the_reference_encoding_of_its_records(self, client: TestClient, ids: dict[str, str]) -> None:
        """The page splices each record's stored body and envelope (StoredRecord.item_json): it decodes to exactly
        what encoding StoredRecord.item() gives, tombstones and every language included."""
        await client.delete(url(ids[GA]), headers=AUTH)  # a tombstone on the page too
        service = client.server.app[SERVICE]
        for params in ({}, {"limit": "2"}, {"tag": "gugak"}):
            doc = await (await client.get("/api/v1/records", params=params)).json()
            records, cursor = await service.list_records(limit=int(params.get("limit", 50)), tag=params.get("tag"))
            assert doc == {"items": [r.item() for r in records], "next_cursor": cursor}
            if not params:  # the whole list holds the tombstone
                assert any(i["body"] is None for i in doc["items"])

    async def test_revalidation_encodes_nothing(self, client: TestClient, ids: dict[str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """The ETag is derived from the page's records and cursor, so a 304 (the list or an item) is answered
        without encoding a record; a page of the same records with another next cursor has another ETag."""
        page, item = await client.get("/api/v1/records"), await client.get(url(ids[GA]))
        first = await client.get("/api/v1/records", params={"limit": "2"})
        rest = await client.get("/api/v1/records", params={"limit": "2", "cursor": (await first.json())["next_cursor"]})
        assert len({page.headers["ETag"], first.headers["ETag"], rest.headers["ETag"]}) == 3

        def refuse(_: StoredRecord) -> bytes:
            raise AssertionError("encoded for a 304")

        monkeypatch.setattr(StoredRecord, "item_json", refuse)
        for path, etag in (("/api/v1/records", page.headers["ETag"]), (url(ids[GA]), item.headers["ETag"])):
            assert (await client.get(path, headers={"If-None-Match": etag})).status == 304

    async def test_cors_for_browser_partners(self, client: TestClient, ids: dict[str, str]) -> None:
        """Access-Control-Allow-Origin: * on the list and the item, 304s included."""
        resp = await client.get("/api/v1/records", headers={"Origin": "https://partner.example"})
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        item = await client.get(f"/api/v1/records/{ids[GA]}")
        assert item.headers["Access-Control-Allow-Origin"] == "*"
        not_modified = await client.get(f"/api/v1/records/{ids[GA]}", headers={"If-None-Match": item.headers["ETag"]})
        assert not_modified.status == 304 and not_modified.headers["Access-Control-Allow-Origin"] == "*"


class TestMigration:
    @pytest.mark.empty_db
    async def test_records_indexed_before_0010_found_by_folded_arabic(self, config: NodeConfig, qa: Member) -> None:
        """A record indexed at revision 0009 (its searched text not folded) is found by "خط" for "الخط" once 0010
        has rebuilt the index, and still by its Latin words."""
        engine = db.make_engine(config.db_url)
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE, revision="0009")
        body = {**EVENTS[6], "title": {"ar": "معرض الخط للفنان أحمد", "en": "Calligraphy"}}
        env = qa.publish(body)
        text = "\n".join(body["title"].values()) + "\n" + "\n".join(body["description"].values())
        async with engine.begin() as conn:  # as the store of 0009 wrote it
            old = sa.table("records", *(sa.column(c) for c in (
                "record_id", "origin", "kind", "version", "op", "status", "title", "body", "hash", "seq",
                "issued_at", "updated_at", "envelope", "start_day", "end_day", "countries", "tags", "langs",
                "search")))
            await conn.execute(old.insert().values(
                record_id=env.payload.record_id, origin="QA", kind="cultural-event", version=1, op="put",
                status="rescheduled", title="x", body=json.dumps(body, ensure_ascii=False), hash=env.hash,
                seq=env.payload.seq, issued_at=env.payload.issued_at, updated_at=datetime.now(UTC),
                envelope=env.to_bytes(), start_day="2020-02-06", end_day="2020-02-06", countries="|HU|",
                tags="|film|", langs="|ar|en|", search=text))
            if conn.dialect.name == "sqlite":
                await conn.execute(sa.text("INSERT INTO records_fts (record_id, search) VALUES (:r, :t)"),
                                   {"r": env.payload.record_id, "t": text})
        await engine.dispose()
        store = await NodeStore.open(config.db_url, config.member)
        try:
            for q in ("خط", "احمد", "calligraphy"):
                assert [r.record_id for r in await store.list_records(q=q, limit=5)] == [env.payload.record_id], q
        finally:
            await store.close()

    @pytest.mark.empty_db
    async def test_records_stored_before_0003_are_backfilled(self, config: NodeConfig, qa: Member) -> None:
        """A record written at revision 0002 is found by full text and filters once 0003 has run."""
        engine = db.make_engine(config.db_url)
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE, revision="0002")
        env = qa.publish(EVENTS[6])
        async with engine.begin() as conn:  # the columns of 0001, as a store of that time wrote them
            old = sa.table("records", *(sa.column(c) for c in (
                "record_id", "origin", "kind", "version", "op", "status", "title", "body", "hash", "seq",
                "issued_at", "updated_at", "envelope")))
            await conn.execute(old.insert().values(
                record_id=env.payload.record_id, origin="QA", kind="cultural-event", version=1, op="put",
                status="rescheduled", title="x", body=json.dumps(EVENTS[6], ensure_ascii=False), hash=env.hash,
                seq=env.payload.seq, issued_at=env.payload.issued_at, updated_at=datetime.now(UTC),
                envelope=env.to_bytes()))
        await engine.dispose()
        store = await NodeStore.open(config.db_url, config.member)
        try:
            assert [r.record_id for r in await store.list_records(q="المجرية", limit=5)] == [env.payload.record_id]
            assert len(await store.list_records(country="HU", date_from="2020-02-06", date_to="2020-02-06",
                                                lang="hu", tag="film", limit=5)) == 1
        finally:
            await store.close()


class TestPortalColumns:
    """0011: type, audiences and the series' last day (issue 19's filters and calendar views)."""

    async def test_type_and_audience(self, client: TestClient, ids: dict[str, str]) -> None:
        assert await found(client, type="screening") == titles(ids, FILM)
        assert await found(client, type="webinar") == titles(ids, WEBINARS)
        assert await found(client, audience="diplomats", kind="capacity-programme") == titles(ids, WEBINARS)
        assert await found(client, audience="invited", type="screening") == titles(ids, FILM)
        assert await found(client, type="nothing-such") == set()

    async def test_a_recurring_event_is_found_by_a_later_occurrence(self, client: TestClient,
                                                                     ids: dict[str, str]) -> None:
        """The weekly film evenings (six Thursdays from 2020-02-06) are found in March by their last two."""
        assert ids[FILM] in await found(client, **{"from": "2020-03-10", "to": "2020-03-12"})
        assert ids[FILM] not in await found(client, **{"from": "2020-03-13", "to": "2020-03-31"})

    @pytest.mark.empty_db
    async def test_records_stored_before_0011_are_backfilled(self, config: NodeConfig, qa: Member) -> None:
        """A record written at revision 0010 gets its type, audiences and last day from 0011."""
        engine = db.make_engine(config.db_url)
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE, revision="0010")
        env = qa.publish(EVENTS[6])
        async with engine.begin() as conn:  # as the store of 0010 wrote it
            old = sa.table("records", *(sa.column(c) for c in (
                "record_id", "origin", "kind", "version", "op", "status", "title", "body", "hash", "seq",
                "issued_at", "updated_at", "envelope", "start_day", "end_day", "countries", "tags", "langs",
                "search")))
            await conn.execute(old.insert().values(
                record_id=env.payload.record_id, origin="QA", kind="cultural-event", version=1, op="put",
                status="rescheduled", title="x", body=json.dumps(EVENTS[6], ensure_ascii=False), hash=env.hash,
                seq=env.payload.seq, issued_at=env.payload.issued_at, updated_at=datetime.now(UTC),
                envelope=env.to_bytes(), start_day="2020-02-06", end_day="2020-02-06", countries="|HU|",
                tags="|film|", langs="|ar|en|hu|", search="film"))
        await engine.dispose()
        store = await NodeStore.open(config.db_url, config.member)
        try:
            assert len(await store.list_records(type_="screening", audience="invited", date_from="2020-03-12",
                                                limit=5)) == 1
            assert await store.list_records(date_from="2020-03-13", limit=5) == []
        finally:
            await store.close()
