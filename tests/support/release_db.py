"""A node database as a release wrote it, kept as rows, and what that node answered: the input and the expected
output of the test that upgrades it (tests/node/store/test_storage_upgrade.py).

:func:`build` makes a node the normal way (a staff member authors through the service, the hub's log is applied
by the log applier: real signatures, chains, receipt times, a quarantined gap); :func:`dump` keeps every table's
rows as the release wrote them, :func:`answers` what its store answered (every record, the searches, the
histories, the envelopes served, the log served back to a recovering hub). The test loads the rows into a database
migrated to the release's revision (SQLite or PostgreSQL), upgrades it and compares the answers.

Make a new fixture at a release (before changing the node's storage) with::

    PYTHONPATH=. .venv/bin/python -m tests.support.release_db tests/node/store/release-<revision>.json
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from federation.protocol.keys import SigningKey
from federation.server.db import engine as db
from node.own_keys import OwnKeys
from node.records.service import NodeService
from node.store.records import MIGRATIONS, VERSION_TABLE, NodeStore
from node.store.staff import Authorship, StaffUser
from tests.support.factories import Member, example_bodies
from tests.support.nodes import HUB_URL, make_config, make_registry

# Searches whose answers the upgrade must keep: full text (Arabic folding: the article, alef forms, marks, ta
# marbuta; Latin, Korean), each filter, filters with text, and the portal's upcoming lists.
SEARCHES: dict[str, dict[str, Any]] = {
    "ar-article": {"q": "خط"}, "ar-with-article": {"q": "الخط"}, "ar-alef": {"q": "أحمد"},
    "ar-bare-alef": {"q": "احمد"}, "ar-marks": {"q": "مَعْرِض"}, "ar-ta-marbuta": {"q": "الشبكة"},
    "ar-old-title-word": {"q": "الجمعية"}, "en": {"q": "calligraphy"}, "en-two-words": {"q": "public diplomacy"},
    "en-replaced-word": {"q": "sixth"}, "en-deleted-word": {"q": "conference"}, "ko-new-title": {"q": "청년"},
    "punctuation": {"q": "!!"},
    "country": {"country": "HU"}, "tag": {"tag": "film"}, "lang": {"lang": "ko"}, "status": {"status": "cancelled"},
    "deleted": {"status": "deleted"}, "days": {"date_from": "2020-01-21", "date_to": "2020-02-06"},
    "kind": {"kind": "capacity-programme"}, "origin": {"origin": "QA"},
    "q-and-filters": {"q": "diplomacy", "kind": "cultural-event", "country": "TR"},
}
UPCOMING = {"events": {"kind": "cultural-event", "today": "2020-01-21"},
            "programmes-kr": {"kind": "capacity-programme", "today": "2020-01-01", "origin": "KR"}}
STAFF = StaffUser("amal", "Amal Al-Thani", "not-a-hash", created_at=datetime(2026, 12, 1, tzinfo=UTC))


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, memoryview)):
        return {"b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime):
        return {"at": value.replace(tzinfo=None).isoformat()}  # stored in UTC (node/store/tables.py utc)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    if isinstance(value, dict) and "at" in value:
        return datetime.fromisoformat(value["at"]).replace(tzinfo=UTC)
    return value


def _plain(value: Any) -> Any:
    """Answers as JSON values: dataclasses as dicts, times encoded, bytes (envelopes) by their SHA-256."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.name.startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (bytes, memoryview)):
        return {"sha256": hashlib.sha256(bytes(value)).hexdigest()}
    return _encode(value)


def _digest(value: Any) -> str:
    """The SHA-256 of a JSON value's sorted encoding: an exact comparison that keeps the fixture small."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# -- rows ----------------------------------------------------------------------------------------------------


def _tables(conn: sa.Connection) -> list[str]:
    """The node's tables with rows of their own (not Alembic's, not FTS5's shadow tables)."""
    names = sa.inspect(conn).get_table_names()
    return sorted(n for n in names if n != VERSION_TABLE and not n.startswith("records_fts"))


def _fts(conn: sa.Connection) -> sa.TableClause:
    """The SQLite FTS5 table with its rowid and columns (a virtual table: not reflected)."""
    cols = [r[1] for r in conn.execute(sa.text("PRAGMA table_info(records_fts)"))]
    return sa.table("records_fts", sa.column("rowid"), *(sa.column(c) for c in cols))


def _reflect(conn: sa.Connection, name: str) -> sa.Table:
    return sa.Table(name, sa.MetaData(), autoload_with=conn)


async def dump(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as stored; on SQLite the FTS5 table's rows too (rowid, columns) if it keeps them."""
    out: dict[str, list[dict[str, Any]]] = {}
    async with engine.connect() as conn:
        for name in await conn.run_sync(_tables):
            table = await conn.run_sync(_reflect, name)
            order = list(table.primary_key.columns) or list(table.c)
            if rows := (await conn.execute(sa.select(table).order_by(*order))).all():
                out[name] = [{k: _encode(v) for k, v in r._mapping.items()} for r in rows]
        ddl = await conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'records_fts'")) \
            if conn.dialect.name == "sqlite" else None
        # A contentless index (0012) holds no rows to read: a fixture of such a release would rebuild it on load.
        if ddl is not None and "content = ''" not in ddl.scalar_one():
            fts = await conn.run_sync(_fts)
            out["records_fts"] = [dict(r._mapping) for r in await conn.execute(
                sa.select(*fts.c).order_by(fts.c.rowid))]
    return out


async def load(engine: AsyncEngine, tables: dict[str, list[dict[str, Any]]]) -> None:
    """Write the dumped rows into a database at the release's revision (the FTS5 rows on SQLite only: on
    PostgreSQL the release's index is an expression index over the rows)."""
    async with engine.begin() as conn:
        for name, rows in tables.items():
            if name == "records_fts":
                if conn.dialect.name == "sqlite":
                    await conn.execute((await conn.run_sync(_fts)).insert(), rows)
                continue
            table = await conn.run_sync(_reflect, name)
            await conn.execute(table.insert(), [{k: _decode(v) for k, v in r.items()} for r in rows])
            if conn.dialect.name == "postgresql" and "id" in rows[0]:  # rows came with their ids
                await conn.execute(sa.select(sa.func.setval(sa.func.pg_get_serial_sequence(name, "id"),
                                                            sa.select(sa.func.max(table.c.id)).scalar_subquery())))


# -- answers -------------------------------------------------------------------------------------------------


async def answers(store: NodeStore) -> dict[str, Any]:
    """What the node answers, through its store's API only (so the same function reads any release)."""
    every = await store.list_records(limit=1000)
    ids = [r.record_id for r in every]
    cursor = await store.trust.cursor()
    out: dict[str, Any] = {
        "records": {r.record_id: {"item": _digest(r.item()), "item_json": _digest(json.loads(r.item_json())),
                                  "body": _digest(r.body), "title": r.title, "updated_at": _encode(r.updated_at),
                                  "envelope": _plain(r.envelope), "version": r.version, "status": r.status}
                    for r in every},
        "get_records": sorted((await store.get_records([*ids, "XX:none"])).keys()),
        "searches": {name: [r.record_id for r in await store.list_records(limit=1000, **kw)]
                     for name, kw in SEARCHES.items()},
        "upcoming": {name: [r.record_id for r in await store.upcoming(limit=100, **kw)]
                     for name, kw in UPCOMING.items()},
        "versions": {rid: _plain(await store.versions(rid)) for rid in ids},
        "history": {rid: _plain(await store.staff.versions(rid)) for rid in ids},
        "last_puts": _plain(await store.staff.last_puts(ids)),
        "logged": _plain(await store.trust.logged_envelopes(cursor)),
        "cursor": cursor,
        "counts": _plain(await store.counts()),
        "quarantined": _plain(await store.quarantined()),
        "heads": _plain(await store.heads(["QA", "KR"])),
    }
    return out


# -- a node made the normal way ------------------------------------------------------------------------------


def _with_title(body: dict[str, Any], title: dict[str, str]) -> dict[str, Any]:
    return {**body, "title": title}


async def build(db_url: str, root: Path) -> NodeStore:
    """QA's node: three own records authored by a staff member (one updated, one cancelled, one deleted), and the
    hub's log applied in pages: QA's own envelopes coming back and eleven of KR's records with updates (new
    titles, a cancellation and a new title, a tombstone), then a KR envelope after a gap (quarantined)."""
    events, programmes = example_bodies("cultural-event"), example_bodies("capacity-programme")
    qa, kr, hub_key = Member("QA"), Member("KR"), SigningKey.generate()
    registry = make_registry(hub_key, HUB_URL, qa, kr)
    config = make_config(root, qa, registry, db_url=db_url)
    store = await NodeStore.open(config.db_url, config.member)
    service = NodeService(store=store, keys=OwnKeys("QA", qa.key, directory=config.dir), member="QA",
                          registry=registry, registry_path=config.registry_path)
    await store.staff.add_user(STAFF, STAFF.created_at or datetime.now(UTC))
    by = Authorship("amal", "form")
    calligraphy = _with_title(events[4], {"ar": "مَعْرِضُ الخَطِّ العَرَبِيِّ للفنان أحمد", "en": "Arabic Calligraphy"})
    own = [await service.create("cultural-event", calligraphy, by),
           await service.create("cultural-event", events[5], by),
           await service.create("capacity-programme", programmes[1], by)]
    mine = [e.payload.record_id for e in own]
    updated = await service.update(mine[0], _with_title(calligraphy, {**calligraphy["title"], "tr": "Hat Sergisi"}), by)
    cancelled = await service.cancel(mine[1], "the hall is closed", by)
    deleted = await service.delete(mine[2], by)
    own += [updated, cancelled, deleted]

    theirs = [kr.publish(b, record_id=f"KR:ce{i}") for i, b in enumerate(events, 1)]
    theirs += [kr.publish(b, kind="capacity-programme", record_id=f"KR:cp{i}") for i, b in enumerate(programmes, 1)]
    theirs += [
        kr.publish(_with_title(events[0], {"ar": "أمسية الخط العربي", "en": "An Evening of Calligraphy"}),
                   record_id="KR:ce1", version=2),
        kr.publish(None, record_id="KR:ce2", version=2),
        kr.publish({**events[2], "status": "cancelled"}, record_id="KR:ce3", version=2),
        kr.publish(_with_title({**events[2], "status": "cancelled"}, {"ko": "청년 워크숍", "en": "Youth Workshop"}),
                   record_id="KR:ce3", version=3),
    ]
    kr.publish(events[6], record_id="KR:lost")  # never in the log: the next one follows a gap
    theirs.append(kr.publish(events[6], record_id="KR:after-gap"))
    log = [e.to_dict() for e in own + theirs]
    after = 0
    for page in (log[:4], log[4:12], log[12:]):
        entries = list(enumerate(page, after + 1))
        received = [datetime.now(UTC) + timedelta(milliseconds=p) for p, _ in entries]  # within the skew
        await service.applier.apply_log(after, entries, received)
        after += len(page)
    return store


async def make() -> dict[str, Any]:
    """The fixture of this release: its revision, its tables' rows and its answers."""
    with tempfile.TemporaryDirectory() as tmp:
        store = await build(f"sqlite+aiosqlite:///{tmp}/node.db", Path(tmp))
        try:
            revision = await db.current_revision(store.engine, MIGRATIONS, VERSION_TABLE)
            fixture = {"revision": revision, "tables": await dump(store.engine), "answers": await answers(store)}
        finally:
            await store.close()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"made_by": f"tests/support/release_db.py at commit {commit} (node schema {revision})", **fixture}


if __name__ == "__main__":
    made = asyncio.run(make())
    Path(sys.argv[1]).write_text(json.dumps(made, ensure_ascii=False, indent=1, sort_keys=True) + "\n",
                                 encoding="utf-8")
