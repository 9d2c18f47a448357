"""aiosqlite with one thread hop per statement (ADR 15).

aiosqlite runs every call on the connection's own thread, and SQLAlchemy's adapter makes four such calls per
SELECT (open a cursor, execute, fetch the rows, close the cursor), three per INSERT or UPDATE, and a rollback
each time a connection goes back to the pool. On the small VMs nodes run on, one hop (queue to the thread, wake
the event loop from it) costs about 120 us of CPU, several times the statement itself: a node's pull of one
envelope took about 36 hops.

Here only what can wait goes to the thread: the statement, with up to ``READ_AHEAD`` of its rows read in the
same call (SQLAlchemy reads every row of a result right after executing it); the rest of the rows, a commit, a
real rollback. Opening and closing a cursor, and a rollback outside any transaction (SQLite's own no-op), run
on the event loop: none touches the disk or waits on a lock. A connection is still used by one task at a time
(SQLAlchemy's pool), so the two threads never use it at once.
"""

from __future__ import annotations

import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager

READ_AHEAD = 512  # rows read with the statement; a larger result is read in a second hop (streaming stays bounded)


class Cursor(aiosqlite.Cursor):
    def __init__(self, conn: aiosqlite.Connection, cursor: sqlite3.Cursor) -> None:
        super().__init__(conn, cursor)
        self._ahead: list[Any] = []
        self._done = True  # no rows left in SQLite's cursor beyond _ahead

    async def _hop(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` on the connection's thread (the one hop)."""
        return await self._execute(fn, *args)  # type: ignore[no-untyped-call]

    def _run(self, sql: str, parameters: Any) -> tuple[list[Any], bool]:
        """In the connection's thread: execute, then read ahead."""
        self._cursor.execute(sql, parameters)
        if self._cursor.description is None:
            return [], True
        rows = self._cursor.fetchmany(READ_AHEAD)
        return rows, len(rows) < READ_AHEAD

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        self._ahead, self._done = await self._hop(self._run, sql, () if parameters is None else parameters)
        return self

    async def executemany(self, sql: str, parameters: Any) -> Cursor:
        self._ahead, self._done = [], True
        await self._hop(self._cursor.executemany, sql, parameters)
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
        self._cursor.close()  # resets the statement: no disk, no lock


class Connection(aiosqlite.Connection):
    @contextmanager
    async def cursor(self) -> aiosqlite.Cursor:
        return Cursor(self, self._conn.cursor())

    async def rollback(self) -> None:
        if self._conn.in_transaction:  # else sqlite3's rollback does nothing either
            await super().rollback()


def connect(path: Path, **kwargs: Any) -> Connection:
    """A connection to the SQLite file ``path`` (``kwargs`` for sqlite3.connect), for ``async_creator``."""
    # check_same_thread: cursors are opened and closed on the event loop, statements run on the worker thread.
    conn = Connection(partial(sqlite3.connect, str(path), check_same_thread=False, **kwargs), 64)
    # As SQLAlchemy does for aiosqlite's own connections: a connection never closed (its task cancelled at
    # shutdown) must not keep the process alive after the event loop has stopped.
    conn._thread.daemon = True
    return conn
