"""aiosqlite with statements on the event loop unless they must wait (ADR 15, ADR 34).

aiosqlite runs every call on the connection's own thread, and SQLAlchemy's adapter makes four such calls per
SELECT (open a cursor, execute, fetch the rows, close the cursor), three per INSERT or UPDATE, and a rollback
each time a connection goes back to the pool. On the small VMs nodes run on, one hop (queue to the thread, wake
the event loop from it) costs about 120 us of CPU, several times the statement itself, and on a busy machine
much more wall time: each hop waits for the scheduler twice (ADR 34 measured ~1 ms a hop with ten nodes on two
cores).

So a statement runs on the event loop, with SQLite's busy timeout at 0: it either runs at once or fails with
SQLITE_BUSY before it changed anything, and is then run again on the thread, where SQLite's own busy handler
waits for the lock as long as the connection's ``timeout`` (a write lock held by another process, an import or
a backup, blocks one task, never the server). What can be slow for another reason stays on the thread: a
commit (an fsync, a checkpoint), ``executemany`` of more than ``FEW`` rows, the rows of a result beyond the
first ``READ_AHEAD``, a real rollback. Opening and closing a cursor, and a rollback outside any transaction (SQLite's
own no-op), run on the event loop. A connection whose commits do not wait for the disk (``quick_commits``:
``synchronous=NORMAL`` in WAL mode, which syncs only at a checkpoint) commits a transaction of at most ``FEW``
changed rows on the event loop too: it appends a few pages to the log, where the hop to the thread and back was
half of a node's commit of one applied record (ADR 37). A connection is still used by one task at a time
(SQLAlchemy's pool), so the two threads never use it at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager

READ_AHEAD = 512  # rows read with the statement; a larger result is read in a second hop (streaming stays bounded)
# Rows an executemany may write on the event loop (a node's applied page moves its cursor and frontier in one of three
# rows; a catch-up's page of 500 envelopes goes to the thread). A statement that fails SQLITE_BUSY wrote nothing: the
# lock is taken at the first row's write, and the rows after it cannot meet a lock again in the same transaction.
FEW = 16


class Cursor(aiosqlite.Cursor):
    def __init__(self, conn: Connection, cursor: sqlite3.Cursor) -> None:
        super().__init__(conn, cursor)
        self._owner = conn
        self._ahead: list[Any] = []
        self._done = True  # no rows left in SQLite's cursor beyond _ahead
        self._left = False  # a call on the thread was cancelled while it ran: the thread may still use the cursor

    async def _hop(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` on the connection's thread."""
        try:
            return await self._execute(fn, *args)  # type: ignore[no-untyped-call]
        except asyncio.CancelledError:
            self._left = True
            raise

    def _run(self, sql: str, parameters: Any) -> tuple[list[Any], bool]:
        """Execute, then read ahead."""
        self._cursor.execute(sql, parameters)
        if self._cursor.description is None:
            return [], True
        rows = self._cursor.fetchmany(READ_AHEAD)
        return rows, len(rows) < READ_AHEAD

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        args = (sql, () if parameters is None else parameters)
        try:
            self._ahead, self._done = self._owner.at_once(self._run, *args)
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            self._ahead, self._done = await self._hop(self._run, *args)  # nothing was done: wait on the thread
        return self

    async def executemany(self, sql: str, parameters: Any) -> Cursor:
        self._ahead, self._done = [], True
        rows = parameters if isinstance(parameters, list | tuple) else list(parameters)
        if len(rows) <= FEW:
            try:
                self._owner.at_once(self._cursor.executemany, sql, rows)
                return self
            except sqlite3.OperationalError as e:
                if e.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
        await self._hop(self._cursor.executemany, sql, rows)
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._ahead = self._ahead, []
        if not self._done:
            rows += await self._hop(self._cursor.fetchall)
            self._done = True
        return rows

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        n = self.arraysize if size is None else size
        if len(self._ahead) < n and not self._done:
            wanted = n - len(self._ahead)
            more = await self._hop(self._cursor.fetchmany, wanted)
            self._done = len(more) < wanted
            self._ahead += more
        rows, self._ahead = self._ahead[:n], self._ahead[n:]
        return rows

    async def fetchone(self) -> Any:
        rows = await self.fetchmany(1)
        return rows[0] if rows else None

    async def close(self) -> None:
        self._ahead, self._done = [], True
        if self._left:  # closed after the thread is done with it (a write waiting for a lock, when a server stops)
            self._owner.later(self._cursor.close)
        else:
            self._cursor.close()  # resets the statement: no disk, no lock


class Connection(aiosqlite.Connection):
    def __init__(self, connector: Any, iter_chunk_size: int, patience: float,
                 after_commit: Callable[[], None] | None = None, quick_commits: bool = False) -> None:
        super().__init__(connector, iter_chunk_size)
        self._patience = f"PRAGMA busy_timeout={int(patience * 1000)}"
        self._hasty = False  # the busy timeout is 0 (a statement ran at once), until the next call on the thread
        self._after_commit = after_commit
        self._quick = quick_commits
        self._ended: int | None = None  # SQLite's count of rows changed when the last transaction ended

    def at_once(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` here, on the event loop, with a busy timeout of 0: a lock held elsewhere fails it at once."""
        if not self._hasty:
            self._conn.execute("PRAGMA busy_timeout=0")
            self._hasty = True
        return fn(*args)

    def later(self, fn: Any) -> None:
        """Queue ``fn`` on the connection's thread, after what is queued there, without waiting for it."""
        self._tx.put_nowait((asyncio.get_running_loop().create_future(), fn))

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._hasty:  # the thread may wait for a lock: the connection's own timeout again
            return await super()._execute(self._patient, partial(fn, *args, **kwargs))  # type: ignore[no-untyped-call]
        return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    def _patient(self, call: Any) -> Any:
        self._conn.execute(self._patience)
        self._hasty = False
        return call()

    @contextmanager
    async def cursor(self) -> aiosqlite.Cursor:
        return Cursor(self, self._conn.cursor())

    async def commit(self) -> None:
        if self._quick and self._ended is not None and self._conn.total_changes - self._ended <= FEW:
            try:
                self.at_once(self._conn.commit)
            except sqlite3.OperationalError as e:
                if e.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                await super().commit()
        else:
            await super().commit()
        self._ended = self._conn.total_changes
        if self._after_commit is not None:
            self._after_commit()

    async def rollback(self) -> None:
        if self._conn.in_transaction:  # else sqlite3's rollback does nothing either
            await super().rollback()
        self._ended = self._conn.total_changes


def connect(path: Path, timeout: float = 5.0, *, after_commit: Callable[[], None] | None = None,
            quick_commits: bool = False, **kwargs: Any) -> Connection:
    """A connection to the SQLite file ``path`` (``timeout`` and ``kwargs`` as for sqlite3.connect), for
    ``async_creator``; ``after_commit`` is called after each of its commits; ``quick_commits``: its commits do not
    wait for the disk, and a small one runs on the event loop."""
    # check_same_thread: statements run on the event loop or on the worker thread, one at a time.
    conn = Connection(partial(sqlite3.connect, str(path), timeout=timeout, check_same_thread=False, **kwargs), 64,
                      timeout, after_commit, quick_commits)
    # As SQLAlchemy does for aiosqlite's own connections: a connection never closed (its task cancelled at
    # shutdown) must not keep the process alive after the event loop has stopped.
    conn._thread.daemon = True
    return conn
