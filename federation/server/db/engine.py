"""Database plumbing shared by the hub's and the node's stores (nothing else imports SQLAlchemy).

Embedded default: SQLite in WAL mode through aiosqlite, zero set-up. Past one machine: PostgreSQL
through asyncpg. The schema is owned by Alembic migrations, applied on start (``migrate``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from federation.server.db import sqlite_driver
from federation.server.db.checkpoint import BACKSTOP, Checkpointer


class Blob(sa.LargeBinary):
    """LargeBinary without SQLAlchemy's per-row ``Binary()`` wrapper: sqlite3 and asyncpg take ``bytes`` as they
    are, and the wrapper cost the hub's writer a few percent of its time (one call per blob per row)."""

    cache_ok = True

    def bind_processor(self, dialect: Any) -> None:
        return None


_INSERTS: dict[tuple[str, str, str], str] = {}
COPY_MIN = 64  # rows: below this an executemany costs less than starting a COPY


async def insert_many(conn: AsyncConnection, table: sa.Table, rows: list[tuple[Any, ...]]) -> None:
    """INSERT ``rows`` (tuples of every column of ``table``, in order, each value already in the form the driver
    takes: see :func:`driver_value`) by the driver's executemany. SQLAlchemy's per-row parameter processing cost
    the hub's writer about a third of its commit's CPU time; this is for such hot paths only.

    On PostgreSQL, inside a transaction, the rows go by binary ``COPY`` (asyncpg's copy_records_to_table):
    the server does a fraction of an INSERT's work per row (ADR 16)."""
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_MIN:
        pg = (await conn.get_raw_connection()).driver_connection
        if pg is not None and pg.is_in_transaction():  # else COPY would commit on its own
            await pg.copy_records_to_table(table.name, records=rows, columns=[c.name for c in table.columns])
            return
    key = (conn.dialect.name, conn.dialect.paramstyle, table.name)
    sql = _INSERTS.get(key)
    if sql is None:
        compiled = table.insert().compile(dialect=conn.dialect, column_keys=[c.key for c in table.columns])
        if list(compiled.positiontup or ()) != [c.key for c in table.columns]:
            raise RuntimeError(f"{conn.dialect.name} does not take {table.name}'s parameters in column order")
        sql = _INSERTS[key] = str(compiled)
    await conn.exec_driver_sql(sql, rows)


def driver_value(conn: AsyncConnection, column: sa.Column[Any], value: Any) -> Any:
    """``value`` for ``column`` as SQLAlchemy would hand it to the driver (a datetime becomes text on SQLite)."""
    process = conn.dialect.type_descriptor(column.type).bind_processor(conn.dialect)
    return process(value) if process else value


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database, or an in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return Path(parsed.database) if parsed.database and parsed.database != ":memory:" else None


def url_parts(url: str) -> dict[str, Any]:
    """host, port, username, password and database of a database URL (for external tools: pg_dump)."""
    parsed = make_url(url)
    return {"host": parsed.host, "port": parsed.port, "username": parsed.username, "password": parsed.password,
            "database": parsed.database}


def make_engine(url: str, *, durable: bool = True, checkpoints: Checkpointer | None = None) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys, a busy timeout and fsync at commit, through
    :mod:`federation.server.db.sqlite_driver` (statements on the event loop unless they must wait: ADR 34).

    ``durable`` (the default) sets ``synchronous=FULL``: a commit survives power loss, which is what
    an acknowledgement promises. Group commit keeps the fsync cost per batch, not per envelope.

    ``durable=False`` is for writes that can be made again (a node's applied pages, pulled again after a crash):
    the commit does not wait for the disk (SQLite ``synchronous=NORMAL`` in WAL mode, PostgreSQL
    ``synchronous_commit=off``). A power cut may lose such commits, the last ones only (the log is written in
    order, and a durable commit after them makes them durable too), never corrupt the database or lose a durable
    commit (docs/adr/0033).

    ``checkpoints`` (SQLite) copies the log back into the database after this engine's commits, in its own
    thread; the commits themselves then checkpoint only past ``BACKSTOP`` pages (docs/adr/0036).
    """
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is None:
            engine = create_async_engine(url, connect_args={"timeout": 30})
            checkpoints = None  # in memory: no file, no log
        else:
            engine = create_async_engine(url, async_creator=partial(
                sqlite_driver.connect, path, timeout=30, after_commit=checkpoints.wake if checkpoints else None,
                quick_commits=not durable))

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            cur.execute("PRAGMA foreign_keys=ON")
            if checkpoints is not None:
                cur.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP}")
            cur.close()

        return engine
    relaxed = {} if durable else {"connect_args": {"server_settings": {"synchronous_commit": "off"}}}
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **relaxed)


def _alembic_config(script_location: Path, version_table: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["version_table"] = version_table
    return cfg


async def migrate(engine: AsyncEngine, script_location: Path, version_table: str, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (idempotent; run at every start)."""
    cfg = _alembic_config(script_location, version_table)

    def upgrade(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)


async def current_revision(engine: AsyncEngine, script_location: Path, version_table: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def read(conn: Connection) -> str | None:
        ctx = MigrationContext.configure(conn, opts={"version_table": version_table})
        return ctx.get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(read)


def run_alembic_env() -> None:
    """The body of every migrations/env.py here: run on the connection :func:`migrate` handed over."""
    from alembic import context

    connection = context.config.attributes["connection"]
    context.configure(connection=connection, version_table=context.config.attributes["version_table"],
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
