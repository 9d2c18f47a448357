"""federation/server/db/checkpoint.py: SQLite's log is copied back into the database by the checkpointer's thread,
not by the commit that takes it past SQLite's 1,000 pages (ADR 36)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from federation.server.db import engine as db
from federation.server.db.checkpoint import BACKSTOP, Checkpointer
from tests.support.timing import eventually

meta = sa.MetaData()
items = sa.Table("items", meta, sa.Column("id", sa.Integer, primary_key=True), sa.Column("blob", db.Blob))
ROWS, BLOB = 1000, 8000  # about 2,000 pages of 4 KiB: past SQLite's own threshold, short of the backstop


def in_the_file(path: Path) -> int:
    """Rows in the database file itself, without its log: what has been checkpointed."""
    con = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return con.execute("SELECT count(*) FROM items").fetchone()[0]
    except sqlite3.Error:  # the table not there yet
        return 0
    finally:
        con.close()


async def write(engine: sa.ext.asyncio.AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(meta.create_all)
    for start in range(0, ROWS, 100):
        async with engine.begin() as conn:
            await conn.execute(items.insert(), [{"id": i, "blob": bytes([i % 256]) * BLOB}
                                                for i in range(start, start + 100)])


async def test_the_log_is_copied_back_by_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    checkpoints = Checkpointer(path, spacing=0, rest=0)
    engine = db.make_engine(db.sqlite_url(path), checkpoints=checkpoints)
    try:
        await write(engine)
        await eventually(lambda: in_the_file(path) == ROWS)
        assert checkpoints.done >= 1
    finally:
        await engine.dispose()
        checkpoints.stop()
    assert not checkpoints.running


async def test_a_commit_leaves_the_copy_to_the_thread(tmp_path: Path) -> None:
    """With the thread stopped, 2,000 pages of commits stay in the log (the writers checkpoint only past
    BACKSTOP); an engine without a checkpointer copies them back itself, as SQLite does by default."""
    assert BACKSTOP > 2 * ROWS * BLOB // 4096
    alone, plain = tmp_path / "alone.sqlite", tmp_path / "plain.sqlite"
    stopped = Checkpointer(alone)
    stopped.stop()
    held = {}
    for path, checkpoints in ((alone, stopped), (plain, None)):
        engine = db.make_engine(db.sqlite_url(path), checkpoints=checkpoints)
        try:
            await write(engine)
            held[path] = in_the_file(path)
        finally:
            await engine.dispose()
    assert held[alone] == 0
    assert held[plain] > 0
    assert in_the_file(alone) == ROWS  # the last connection to close checkpointed what was left


async def test_stopping_before_any_commit_makes_no_file(tmp_path: Path) -> None:
    checkpoints = Checkpointer(tmp_path / "never.sqlite")
    checkpoints.stop()
    assert not checkpoints.running
    assert not (tmp_path / "never.sqlite").exists()
