"""federation/server/db/engine.py's hot-path insert: the driver's executemany, or binary COPY on PostgreSQL inside a
transaction (ADR 16), with the same rows stored either way and the transaction's atomicity kept."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from federation.server.db import engine as db

meta = sa.MetaData()
items = sa.Table("items", meta, sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
                 sa.Column("name", sa.String(16)), sa.Column("blob", db.Blob),
                 sa.Column("at", sa.DateTime(timezone=True)))


def rows(start: int, n: int, conn: sa.ext.asyncio.AsyncConnection) -> list[tuple[object, ...]]:
    at = db.driver_value(conn, items.c.at, datetime(2026, 11, 29, 12, 0, tzinfo=UTC))
    return [(i, f"name {i}", bytes([i % 256]) * 3000, at) for i in range(start, start + n)]


async def stored(engine: sa.ext.asyncio.AsyncEngine) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [(r.id, r.name, bytes(r.blob), r.at.replace(tzinfo=None)) for r in
                await conn.execute(sa.select(items).order_by(items.c.id))]


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of rows of each COPY made through asyncpg."""
    import asyncpg

    made: list[int] = []
    real = asyncpg.Connection.copy_records_to_table

    async def counted(self: asyncpg.Connection, table: str, **kw: Any) -> Any:
        made.append(len(kw["records"]))
        return await real(self, table, **kw)

    monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", counted)
    return made


@pytest.mark.parametrize("n", [db.COPY_MIN - 1, db.COPY_MIN, 500])
async def test_rows_stored_alike_by_either_path(db_url: str, n: int, copies: list[int]) -> None:
    """Below COPY_MIN rows go by executemany, from it on PostgreSQL by COPY: the table holds the same either way."""
    engine = db.make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
        async with engine.begin() as conn:
            await conn.execute(sa.text("SELECT 1"))
            written = rows(1, n, conn)
            await db.insert_many(conn, items, written)
        assert await stored(engine) == [(i, name, blob, datetime(2026, 11, 29, 12, 0)) for i, name, blob, _ in written]
        assert copies == ([n] if engine.dialect.name == "postgresql" and n >= db.COPY_MIN else [])
    finally:
        await engine.dispose()


@pytest.mark.parametrize("first", [True, False], ids=["insert first", "after a statement"])
async def test_copy_rolled_back_with_its_transaction(db_url: str, first: bool, copies: list[int]) -> None:
    """A failure later in the transaction takes the inserted rows with it (nothing half-written). As the
    transaction's first statement (the driver has not begun it yet) the rows go by executemany: a COPY
    there would have committed on its own."""
    engine = db.make_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)

        async def insert_then_fail() -> None:
            async with engine.begin() as conn:
                if not first:
                    await conn.execute(sa.text("SELECT 1"))
                await db.insert_many(conn, items, rows(1, 200, conn))
                await db.insert_many(conn, items, rows(200, 1, conn))  # id 200 again

        with pytest.raises(sa.exc.IntegrityError):
            await insert_then_fail()
        assert await stored(engine) == []
        assert copies == ([200] if engine.dialect.name == "postgresql" and not first else [])
    finally:
        await engine.dispose()
