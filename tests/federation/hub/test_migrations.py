"""Hub schema upgrades: a log written before the Merkle tree existed gets its tree on the next start."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from federation.hub.ingest.service import HubService
from federation.hub.store.log import MIGRATIONS, VERSION_TABLE, HubStore, log
from federation.protocol import merkle
from federation.protocol.checkpoint import parse_checkpoint
from federation.protocol.envelope import leaf_bytes
from federation.protocol.keys import SigningKey
from federation.protocol.registry import genesis
from federation.server.db import engine as db
from tests.support.factories import Member, example_bodies

pytestmark = pytest.mark.empty_db  # each test starts from an empty database and migrates it step by step


class TestUpgradeFrom0001:
    async def test_tree_and_checkpoint_backfilled(self, db_url: str) -> None:
        """Entries stored under schema 0001 are hashed into the tree once, and a checkpoint is signed
        whose root is the RFC 9162 root of exactly those entries."""
        qa = Member("QA")
        envs = [qa.publish(example_bodies("cultural-event")[0]) for _ in range(5)]
        engine = db.make_engine(db_url)
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE, revision="0001")
        async with engine.begin() as conn:
            await conn.execute(log.insert(), [
                {"position": i + 1, "origin": "QA", "seq": e.payload.seq, "hash": e.hash,
                 "record_id": e.payload.record_id, "version": 1, "kind": "cultural-event", "op": "put",
                 "kid": e.kid, "envelope": e.to_bytes(), "received_at": datetime.now(UTC)}
                for i, e in enumerate(envs)])
            assert "merkle_nodes" not in await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        await engine.dispose()

        store = await HubStore.open(db_url)  # upgrades to head
        hub_key = SigningKey.generate()
        reg = genesis(hub_key=hub_key, hub_url="http://hub.test", founders=[(qa.public, {"en": "QA"})],
                      now=datetime.now(UTC))
        service = HubService(store, reg, hub_key)
        await service.start()
        try:
            signed = parse_checkpoint(json.loads(await store.checkpoint() or b"null"))
            assert signed.checkpoint.size == 5
            leaves = [merkle.leaf_hash(leaf_bytes(e.to_dict())) for e in envs]
            assert signed.checkpoint.root_bytes == merkle.root(leaves)
            head = ScriptDirectory.from_config(db._alembic_config(MIGRATIONS, VERSION_TABLE)).get_current_head()
            assert await db.current_revision(store.engine, MIGRATIONS, VERSION_TABLE) == head
        finally:
            await service.stop()
            await store.close()


class TestUpgradeFrom0003:
    async def test_operator_tables_and_indexes_added(self, db_url: str) -> None:
        """0004 adds the operators, their trail and members' pulls, and indexes log.received_at, keeping the log."""
        qa = Member("QA")
        env = qa.publish(example_bodies("cultural-event")[0])
        engine = db.make_engine(db_url)
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE, revision="0003")
        async with engine.begin() as conn:
            await conn.execute(log.insert().values(
                position=1, origin="QA", seq=1, hash=env.hash, record_id=env.payload.record_id, version=1,
                kind="cultural-event", op="put", kid=env.kid, envelope=env.to_bytes(), received_at=datetime.now(UTC)))
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE, revision="0004")
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            indexes = await conn.run_sync(lambda c: {i["name"] for i in sa.inspect(c).get_indexes("log")})
        assert {"operators", "operator_events", "member_pulls"} <= set(tables)
        assert {"ix_log_received_at", "ix_log_origin_received_at"} <= indexes
        assert await db.current_revision(engine, MIGRATIONS, VERSION_TABLE) == "0004"
        await engine.dispose()
        store = await HubStore.open(db_url)
        try:
            assert await store.accepted_since(datetime(2000, 1, 1, tzinfo=UTC)) == {"QA": 1}
        finally:
            await store.close()


class TestUpgradeFrom0005:
    async def test_envelopes_stored_uncompressed_in_the_row_on_postgresql(self, pg_url: str) -> None:
        """0006 (ADR 16): an envelope appended afterwards is neither compressed nor moved out of its row (pglz
        was half of the database's CPU per append), and one written before still reads back unchanged."""
        qa = Member("QA")
        before, after = (qa.publish(example_bodies("cultural-event")[0]) for _ in range(2))
        assert len(before.to_bytes()) > 2100  # above PostgreSQL's default compression threshold
        engine = db.make_engine(pg_url)
        await db.migrate(engine, MIGRATIONS, VERSION_TABLE, revision="0005")

        async def append(position: int, env: Any, stored: bytes | None = None) -> None:
            async with engine.begin() as conn:
                await conn.execute(log.insert().values(
                    position=position, origin="QA", seq=position, hash=env.hash,
                    record_id=env.payload.record_id, version=1, kind="cultural-event", op="put", kid=env.kid,
                    envelope=stored or env.to_bytes(), received_at=datetime.now(UTC)))

        stored = sa.text("SELECT position, pg_column_compression(envelope) AS compression,"
                         " pg_column_size(envelope) AS size, envelope FROM log ORDER BY position")
        toast = sa.text("SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'log'")
        try:
            await append(1, before)
            async with engine.connect() as conn:
                assert (await conn.execute(stored)).one().compression == "pglz"  # what 0006 stops
                toasted = (await conn.execute(toast)).scalar_one()
            await db.migrate(engine, MIGRATIONS, VERSION_TABLE, revision="0006")
            await append(2, after)
            async with engine.connect() as conn:
                assert (await conn.execute(toast)).scalar_one() == toasted  # nothing more moved out of line
            big = b"x" * 20_000  # larger than a page, and as compressible as bytes get
            await append(3, after, big)
            async with engine.connect() as conn:
                rows = (await conn.execute(stored)).all()
            assert [bytes(r.envelope) for r in rows] == [before.to_bytes(), after.to_bytes(), big]
            assert [r.compression for r in rows[1:]] == [None, None]
            assert rows[1].size >= len(after.to_bytes()) and rows[2].size >= len(big)
        finally:
            await engine.dispose()
