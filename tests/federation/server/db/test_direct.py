"""Statements run beneath SQLAlchemy on SQLite's driver (federation/server/db/direct.py, ADR 35) give what
SQLAlchemy's own execution gives: values, types, IN lists, literals, errors."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from federation.server.db import direct, sqlite_driver
from federation.server.db import engine as db

meta = sa.MetaData()
things = sa.Table("things", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20)),
                  sa.Column("at", sa.DateTime(timezone=True)), sa.Column("on", sa.Boolean), sa.Column("blob", db.Blob))
AT = datetime(2026, 12, 7, 18, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    e = db.make_engine(db.sqlite_url(tmp_path / "t.db"))
    async with e.begin() as conn:
        await conn.run_sync(meta.create_all)
    yield e
    await e.dispose()


async def test_rows_and_writes_agree_with_sqlalchemys(engine: AsyncEngine) -> None:
    rows = [{"id": i, "name": f"n{i}", "at": AT, "on": i % 2 == 0, "blob": bytes([i])} for i in range(1, 4)]
    async with engine.begin() as conn:
        await direct.run(conn, things.insert(), rows[:1])  # one row: a statement
        await direct.run(conn, things.insert(), rows[1:])  # two: executemany
    query = sa.select(things).where(things.c.id.in_(sa.bindparam("ids", expanding=True)), things.c.name != "zz")
    ref = direct.reference(engine)
    async with engine.connect() as fast_conn, ref.connect() as ref_conn:
        got = await direct.rows(fast_conn, query, {"ids": [1, 3]})
        want = await direct.rows(ref_conn, query, {"ids": [1, 3]})
    assert [tuple(r) for r in got] == [tuple(r) for r in want]
    assert [(r.id, r.on, r.blob) for r in got] == [(1, False, b"\x01"), (3, False, b"\x03")]
    assert got[0].at == AT.replace(tzinfo=None)  # SQLite keeps no offset, on either path


async def test_errors_are_sqlalchemys_and_a_missing_value_is_refused(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await direct.run(conn, things.insert(), {"id": 1, "name": "a"})
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            await direct.run(conn, things.insert(), {"id": 1, "name": "again"})
    with pytest.raises(KeyError, match="b_id"):
        async with engine.begin() as conn:
            await direct.run(conn, things.update().where(things.c.id == sa.bindparam("b_id")), {"name": "x"})


async def test_statements_built_per_call_do_not_grow_the_plans(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        for i in range(direct.PLANS + 10):
            await direct.rows(conn, sa.select(things.c.id).where(things.c.id == i))
    assert len(direct._plans) <= direct.PLANS


async def test_a_write_cancelled_while_it_waits_for_a_lock_is_cancelled(engine: AsyncEngine, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that meets a lock held elsewhere waits on the connection's thread; a node stopping cancels it. The
    cancellation reaches the caller (a ProgrammingError from closing the cursor the thread still used had replaced
    it, and the node's pull loop, which carries on after errors, never stopped), the write is rolled back, and
    the engine writes again."""
    on_thread, cancelled = asyncio.Event(), asyncio.Event()
    hop, loop = sqlite_driver.Cursor._hop, asyncio.get_running_loop()

    async def watched(self: sqlite_driver.Cursor, fn: Any, *args: Any) -> Any:
        # SQLite calls the trace callback on the thread once the statement runs (the cursor in use), before its
        # busy handler waits for the lock.
        self._owner._conn.set_trace_callback(lambda sql: loop.call_soon_threadsafe(on_thread.set))
        try:
            return await hop(self, fn, *args)
        except asyncio.CancelledError:
            cancelled.set()  # the task goes on at once to close the cursor, then waits for the rollback
            raise

    monkeypatch.setattr(sqlite_driver.Cursor, "_hop", watched)
    holder = sqlite3.connect(tmp_path / "t.db", check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")

        async def write() -> None:
            async with engine.begin() as conn:
                await direct.run(conn, things.insert(), {"id": 1, "name": "waits"})

        task = asyncio.create_task(write())
        await asyncio.wait_for(on_thread.wait(), 30)  # its try on the event loop met the lock: the thread waits
        task.cancel()
        await asyncio.wait_for(cancelled.wait(), 30)  # delivered while the thread still waits for the lock ...
        holder.rollback()  # ... which is then released: the thread's statement and the rollback after it go on
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
    finally:
        holder.close()
    async with engine.begin() as conn:
        await direct.run(conn, things.insert(), {"id": 2, "name": "after"})
    async with engine.connect() as conn:
        assert [r.name for r in await direct.rows(conn, sa.select(things.c.name))] == ["after"]
