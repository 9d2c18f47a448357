"""federation/server/db/sqlite_driver.py: statements on the event loop unless they must wait, held to aiosqlite's
results."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
import sqlalchemy as sa

from federation.server.db import engine as db
from federation.server.db import sqlite_driver

ROWS = sqlite_driver.READ_AHEAD * 2 + 7  # a result longer than two read-aheads


async def _script(conn: aiosqlite.Connection) -> list[Any]:
    """Every driver call SQLAlchemy makes, and the streaming ones it could; what each gave back."""
    out: list[Any] = []
    cur = await conn.cursor()
    await cur.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
    await cur.executemany("INSERT INTO t (v) VALUES (?)", [(f"v{i}",) for i in range(ROWS)])
    out.append(cur.rowcount)
    await cur.execute("INSERT INTO t (v) VALUES (?)", ("last",))
    out += [cur.rowcount, cur.lastrowid, cur.description]
    await conn.commit()
    await cur.execute("SELECT id, v FROM t ORDER BY id")
    out += [cur.description, await cur.fetchall(), await cur.fetchall()]
    await cur.execute("SELECT id FROM t ORDER BY id")
    out += [await cur.fetchone(), await cur.fetchmany(3), await cur.fetchmany(sqlite_driver.READ_AHEAD + 5),
            len(await cur.fetchall()), await cur.fetchone()]
    await cur.execute("SELECT v FROM t WHERE id = ?", (2,))
    out.append(await cur.fetchall())
    await cur.execute("SELECT v FROM t WHERE id < 0")
    out += [await cur.fetchall(), await cur.fetchone()]
    with pytest.raises(sqlite3.IntegrityError):
        await cur.execute("INSERT INTO t (v) VALUES ('v1')")
    await cur.execute("UPDATE t SET v = v || '!' WHERE id <= 3")
    out += [cur.rowcount, conn.in_transaction]
    await conn.rollback()
    out.append(conn.in_transaction)
    await conn.rollback()  # outside a transaction: nothing to do
    await cur.execute("SELECT count(*), min(v) FROM t")
    out.append(await cur.fetchall())
    await cur.close()
    return out


async def test_same_results_as_aiosqlite(tmp_path: Path) -> None:
    """Rows, counts, descriptions, errors and transactions come out as aiosqlite's own give them."""
    stock = await aiosqlite.connect(tmp_path / "stock.db")
    fast = await sqlite_driver.connect(tmp_path / "fast.db")
    try:
        assert await _script(fast) == await _script(stock)
    finally:
        await stock.close()
        await fast.close()


def _hops_counted(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """From now on, each call made on a connection's thread, by the name of what it ran."""
    hops: list[Any] = []
    real = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(fn, "__name__", fn))
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return hops


async def test_only_what_can_wait_goes_to_the_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reason the driver exists (ADR 15, 34): through SQLAlchemy, a SELECT on a pooled connection makes no call
    to the connection's thread (aiosqlite's own: open cursor, execute, fetch, close, rollback on release); a write
    transaction one for the commit, and one for a statement of many rows (more than FEW), not of a few."""
    engine = db.make_engine(db.sqlite_url(tmp_path / "t.db"))
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)"))
        hops = _hops_counted(monkeypatch)
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT v FROM kv WHERE k = 'x'"))).first() is None
        assert hops == []
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO kv VALUES ('a', '1')"))
            await conn.execute(sa.text("INSERT INTO kv VALUES (:k, :v)"), [{"k": "b", "v": "2"}, {"k": "c", "v": "3"}])
        assert len(hops) == 1, hops
        many = [{"k": f"m{i}", "v": str(i)} for i in range(sqlite_driver.FEW + 1)]
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO kv VALUES (:k, :v)"), many)
        assert len(hops) == 3, hops
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM kv"))).scalar() == 3 + len(many)
    finally:
        await engine.dispose()


async def test_a_small_commit_that_does_not_wait_for_the_disk_stays_on_the_event_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ADR 37: an engine whose commits do not wait for the disk (``durable=False``, a node's applied pages) commits a
    transaction of at most FEW changed rows on the event loop, and one of more on the thread; a durable engine's
    commit (an fsync) always goes to the thread. What the loop committed is committed: another connection reads it."""
    url = db.sqlite_url(tmp_path / "t.db")
    durable, relaxed = db.make_engine(url), db.make_engine(url, durable=False)
    try:
        for engine in (durable, relaxed):  # each pooled connection's first commit goes to the thread (its baseline)
            async with engine.begin() as conn:
                await conn.execute(sa.text("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)"))
        hops = _hops_counted(monkeypatch)
        few = [{"k": f"f{i}", "v": str(i)} for i in range(sqlite_driver.FEW)]
        async with relaxed.begin() as conn:
            await conn.execute(sa.text("INSERT INTO kv VALUES (:k, :v)"), few[:3])
            await conn.execute(sa.text("UPDATE kv SET v = 'x' WHERE k = 'f0'"))
        assert hops == []
        async with durable.connect() as conn:
            assert (await conn.execute(sa.text("SELECT v FROM kv WHERE k = 'f0'"))).scalar() == "x"
        async with relaxed.begin() as conn:
            await conn.execute(sa.text("INSERT INTO kv VALUES (:k, :v)"), [{**r, "k": r["k"] + "'"} for r in few])
            await conn.execute(sa.text("INSERT INTO kv VALUES ('one', 'more')"))  # FEW + 1 rows
        assert len(hops) == 1, hops  # the commit
        async with durable.begin() as conn:
            await conn.execute(sa.text("INSERT INTO kv VALUES ('d', '1')"))
        assert len(hops) == 2, hops
        async with relaxed.connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM kv"))).scalar() == 3 + sqlite_driver.FEW + 2
    finally:
        await durable.dispose()
        await relaxed.dispose()


@pytest.mark.parametrize("many", [False, True], ids=["a statement", "a statement of a few rows"])
async def test_a_write_lock_held_elsewhere_does_not_stall_the_event_loop(tmp_path: Path, many: bool) -> None:
    """Another process (an import, a backup, the CLI) holds the write lock: a write waits for it on the
    connection's thread while the event loop goes on serving; a read runs at once (WAL); the write lands once the
    lock is released, and the next statements run on the event loop again."""
    path = tmp_path / "t.db"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (v TEXT)")
    setup.close()
    conn = await sqlite_driver.connect(path, timeout=90)
    impatient = await sqlite_driver.connect(path, timeout=0.05)
    holder = sqlite3.connect(path, check_same_thread=False)
    try:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as another process would hold it
        cur = await conn.cursor()
        await cur.execute("SELECT count(*) FROM t")
        assert await cur.fetchall() == [(0,)]
        write = asyncio.create_task(cur.executemany("INSERT INTO t VALUES (?)", [("x",), ("x",)]) if many
                                    else cur.execute("INSERT INTO t VALUES ('x')"))
        began = time.monotonic()
        await asyncio.sleep(0)  # one turn of the loop: the write starts, meets the lock and goes to the thread
        assert not write.done()
        assert time.monotonic() - began < 60  # a write waiting here would have held the loop for its 90 s
        holder.commit()
        await asyncio.wait_for(write, 30)
        await conn.commit()
        await cur.execute("SELECT v FROM t")
        assert await cur.fetchall() == [("x",)] * (2 if many else 1)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):  # the thread's wait has the connection's limit
            await (await impatient.cursor()).execute("INSERT INTO t VALUES ('y')")
        holder.rollback()
    finally:
        holder.close()
        await conn.close()
        await impatient.close()


def test_connection_left_open_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    """A connection never closed (its task cancelled when a server stops) must not hold the process after its
    event loop has ended: a node stopped by SIGTERM exits instead of waiting for a SIGKILL."""
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from federation.server.db import sqlite_driver\n"
        "held = []  # as a pool holds it\n"
        "async def main():\n"
        "    held.append(await sqlite_driver.connect(Path(sys.argv[1])))\n"
        "    await held[0].execute('SELECT 1')\n"
        "asyncio.run(main())\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "t.db")], timeout=30, capture_output=True)
    assert done.returncode == 0, done.stderr
