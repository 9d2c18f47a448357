"""Upgrades: the hub's and the node's Alembic migrations, walked one revision at a time from an empty
database to head on SQLite and PostgreSQL, with real data written at the first revision.

The walk reads the revisions from the migration scripts, so migrations added later (0004, ...) are
covered without editing this file; only a new table at the first revision would need a seed here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

import federation.hub.store.log as hub_store
import node.store.records as node_store
import node.store.tables as node_tables
import node.webhooks.store as webhook_store
from federation.protocol.envelope import Envelope
from federation.server.db import engine as db
from tests.support.factories import Member, example_bodies

# Diff kinds that mean "the database is not what the code addresses". Nullability, indexes and
# constraints live in the migrations only (the stores' tables declare names and types).
SHAPE_DIFFS = {"add_table", "remove_table", "add_column", "remove_column", "modify_type"}
# Columns a revision removes by design, with what keeps their data: the walk checks what is left of each seeded row,
# and the head's store reads the rest back (test_head_migrated_database_opens_and_serves_the_seed).
DROPPED = {("node", "records", "body"): "0012", ("node", "records", "envelope"): "0012"}  # envelopes holds it once


@dataclass(frozen=True)
class Schema:
    name: str
    migrations: Path
    version_table: str
    meta: sa.MetaData
    unmodelled: tuple[str, ...]  # tables the store reaches without metadata (SQLite FTS5 and its shadows)
    seed: Callable[[list[Envelope]], dict[str, list[dict[str, Any]]]]


def _hub_seed(envs: list[Envelope]) -> dict[str, list[dict[str, Any]]]:
    now = datetime.now(UTC)
    return {
        "log": [{"position": i + 1, "origin": e.payload.origin, "seq": e.payload.seq, "hash": e.hash,
                 "record_id": e.payload.record_id, "version": e.payload.version, "kind": e.payload.kind,
                 "op": e.payload.op, "kid": e.kid, "envelope": e.to_bytes(), "received_at": now}
                for i, e in enumerate(envs)],
        "quarantine": [{"id": 1, "received_at": now, "member": "KR", "origin": "KR", "seq": 9, "hash": "0" * 64,
                        "reason": "chain-gap", "detail": "{}", "conflicts_with": None, "envelope": b"{}"}],
    }


def _node_seed(envs: list[Envelope]) -> dict[str, list[dict[str, Any]]]:
    now = datetime.now(UTC)
    return {
        "envelopes": [{"origin": e.payload.origin, "seq": e.payload.seq, "hash": e.hash,
                       "record_id": e.payload.record_id, "version": e.payload.version, "kind": e.payload.kind,
                       "op": e.payload.op, "envelope": e.to_bytes(), "issued_at": e.payload.issued_at,
                       "received_at": now, "position": i + 1} for i, e in enumerate(envs)],
        "records": [{"record_id": e.payload.record_id, "origin": e.payload.origin, "kind": e.payload.kind,
                     "version": e.payload.version, "op": e.payload.op, "status": "scheduled",
                     "title": (e.payload.body or {})["title"]["en"], "body": json.dumps(e.payload.body),
                     "hash": e.hash, "seq": e.payload.seq, "issued_at": e.payload.issued_at, "updated_at": now,
                     "envelope": e.to_bytes()} for e in envs],
        "outbox": [{"seq": e.payload.seq, "state": "accepted", "position": i + 1, "reason": None, "detail": None,
                    "attempts": 1, "last_attempt_at": now} for i, e in enumerate(envs)],
        "sync_state": [{"key": "cursor", "value": str(len(envs))}],
    }


def _merged(*parts: sa.MetaData) -> sa.MetaData:
    """One MetaData holding the tables of several modules that share a database (the node's store and its
    webhook store)."""
    out = sa.MetaData()
    for part in parts:
        for table in part.tables.values():
            table.to_metadata(out)
    return out


SCHEMAS = [
    Schema("hub", hub_store.MIGRATIONS, hub_store.VERSION_TABLE, hub_store.meta, (), _hub_seed),
    Schema("node", node_store.MIGRATIONS, node_store.VERSION_TABLE, _merged(node_tables.meta, webhook_store.meta),
           ("records_fts",), _node_seed),
]


def revisions(migrations: Path) -> list[str]:
    """Every revision from the first to head, in upgrade order (the chain must not branch)."""
    script = ScriptDirectory(str(migrations))
    assert len(script.get_heads()) == 1, f"{migrations}: more than one head {script.get_heads()}"
    return [s.revision for s in reversed(list(script.walk_revisions()))]


async def _reflect(conn: Any, table: str) -> sa.Table:
    """The table as the database has it now (typed, so datetimes read back as datetimes on SQLite too)."""
    return await conn.run_sync(lambda c: sa.Table(table, sa.MetaData(), autoload_with=c))


async def _insert(engine: AsyncEngine, seed: dict[str, list[dict[str, Any]]]) -> None:
    async with engine.begin() as conn:
        for table, rows in seed.items():
            await conn.execute((await _reflect(conn, table)).insert(), rows)


async def _rows(engine: AsyncEngine, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        t = await _reflect(conn, table)
        cols = [t.c[c] for c in columns]
        return [tuple(r) for r in (await conn.execute(sa.select(*cols).order_by(*cols))).all()]


def _normalise(value: Any) -> Any:
    if isinstance(value, datetime):  # SQLite gives naive datetimes back (in UTC, as written)
        return value.replace(tzinfo=None)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


async def _shape_diffs(engine: AsyncEngine, schema: Schema) -> list[Any]:
    def include(name: str | None, kind: str, _parent: Any) -> bool:
        return not (kind == "table" and name is not None and name.startswith(schema.unmodelled or ("\0",)))

    def compare(conn: sa.Connection) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"version_table": schema.version_table, "compare_type": True,
                                                     "include_name": include})
        return [d for d in compare_metadata(ctx, schema.meta)
                if (d[0] if isinstance(d, tuple) else d[0][0]) in SHAPE_DIFFS]

    async with engine.connect() as conn:
        return await conn.run_sync(compare)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
class TestUpgradePath:
    async def test_each_revision_in_turn_keeps_the_data_and_ends_at_the_models(self, schema: Schema,
                                                                                db_url: str) -> None:
        """Base -> first revision, seed real envelopes and records, then one revision at a time to head: the
        seeded rows read back unchanged after every step, and head has exactly the tables and columns (names
        and types) the store's metadata addresses."""
        steps = revisions(schema.migrations)
        assert steps[0] == "0001" and len(steps) >= 3
        qa = Member("QA")
        envs = [qa.publish(body) for body in example_bodies("cultural-event")[:3]]
        seed = schema.seed(envs)
        engine = db.make_engine(db_url)
        try:
            await db.migrate(engine, schema.migrations, schema.version_table, revision=steps[0])
            await _insert(engine, seed)
            expected = {t: sorted(tuple(_normalise(r[c]) for c in rows[0]) for r in rows)
                        for t, rows in seed.items()}
            for rev in steps[1:]:
                await db.migrate(engine, schema.migrations, schema.version_table, revision=rev)
                assert await db.current_revision(engine, schema.migrations, schema.version_table) == rev
                for table, rows in seed.items():
                    kept = [i for i, c in enumerate(rows[0]) if DROPPED.get((schema.name, table, c), "~") > rev]
                    got = [tuple(_normalise(v) for v in r)
                           for r in await _rows(engine, table, [list(rows[0])[i] for i in kept])]
                    assert sorted(got) == sorted(tuple(e[i] for i in kept) for e in expected[table]), \
                        f"{table} changed by {rev}"
            assert await _shape_diffs(engine, schema) == []
        finally:
            await engine.dispose()

    async def test_head_migrated_database_opens_and_serves_the_seed(self, schema: Schema, db_url: str) -> None:
        """After the walk the store opens (no further migration) and reads the seeded data through its own API."""
        steps = revisions(schema.migrations)
        qa = Member("QA")
        envs = [qa.publish(body) for body in example_bodies("cultural-event")[:2]]
        engine = db.make_engine(db_url)
        await db.migrate(engine, schema.migrations, schema.version_table, revision=steps[0])
        await _insert(engine, schema.seed(envs))
        await engine.dispose()
        if schema.name == "hub":
            store = await hub_store.HubStore.open(db_url)
            try:
                assert [e.position for e in await store.read_log(0, 10)] == [1, 2]
            finally:
                await store.close()
        else:
            nstore = await node_store.NodeStore.open(db_url, "QA")
            try:
                rec = await nstore.get_record(envs[1].payload.record_id)
                assert rec is not None and rec.version == 1
                assert (rec.body, rec.envelope) == (envs[1].payload.body, envs[1].to_bytes())  # from envelopes
                # 0003's backfill made the seeded records searchable by a word of their title.
                word = (envs[0].payload.body or {})["title"]["en"].split()[0]
                found = await nstore.list_records(q=word, limit=10)
                assert envs[0].payload.record_id in {r.record_id for r in found}
            finally:
                await nstore.close()
