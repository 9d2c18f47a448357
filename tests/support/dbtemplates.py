"""Databases migrated once per test process, then copied for each test that needs one.

A fresh node or hub database runs every Alembic migration when its store opens: about a second on PostgreSQL and
half that on SQLite, paid again by every storage test. Instead each test process migrates one template per role
(node, hub) and engine the first time it is asked, and each test gets a copy: the SQLite file copied, on
PostgreSQL ``CREATE DATABASE … TEMPLATE``. The store then finds its schema at head and only checks it.

A copy is what a fresh database is after ``migrate(head)``, nothing more (no rows: opening a store still writes
what it writes). Tests of the migrations themselves take an empty database (``empty_db_url``, ``pg_database()``).
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import asyncpg

from federation.hub.store import log as hub_log
from federation.server.db import engine as db
from node.store import records as node_records
from tests.support.postgres import PG_ADMIN

ROLES = {"node": (node_records.MIGRATIONS, node_records.VERSION_TABLE),
         "hub": (hub_log.MIGRATIONS, hub_log.VERSION_TABLE)}

_lock = threading.Lock()
_dir: Path | None = None
_sqlite: dict[str, Path] = {}
_pg: dict[str, str] = {}


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on a loop of its own in another thread (callers may be inside a running loop)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if errors:
        raise errors[0]


async def _migrate(url: str, role: str) -> None:
    engine = db.make_engine(url, durable=False)
    try:
        await db.migrate(engine, *ROLES[role])
    finally:
        await engine.dispose()


def sqlite_template(role: str) -> Path:
    """This process's SQLite file of ``role``'s schema at head (made on first use)."""
    global _dir
    with _lock:
        if role not in _sqlite:
            if _dir is None:
                _dir = Path(tempfile.mkdtemp(prefix="ipdn-db-templates-"))
                atexit.register(shutil.rmtree, _dir, True)
            path = _dir / f"{role}.db"
            _run(_migrate(db.sqlite_url(path), role))
            with sqlite3.connect(path) as con:  # everything in the main file: a copy of it is the whole database
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            _sqlite[role] = path
        return _sqlite[role]


def copy_sqlite(role: str, dest: Path) -> str:
    """A copy of ``role``'s SQLite template at ``dest``; its SQLAlchemy URL."""
    shutil.copyfile(sqlite_template(role), dest)
    return db.sqlite_url(dest)


def pg_template(role: str) -> str:
    """The name of this process's PostgreSQL database of ``role``'s schema at head (made on first use, dropped
    when the process ends)."""
    with _lock:
        if role not in _pg:
            name = f"ipdn_tmpl_{role}_{uuid.uuid4().hex[:12]}"
            _run(_create_template(name, role))
            _pg[role] = name
            atexit.register(lambda: _run(_drop(name)))
        return _pg[role]


def _pg_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"


async def _create_template(name: str, role: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await _migrate(_pg_url(name), role)


async def _drop(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
