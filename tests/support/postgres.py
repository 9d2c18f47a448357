"""Scratch PostgreSQL databases for the tests that run on both engines (IPDN_TEST_PG names the cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

PG_ADMIN = os.environ.get("IPDN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def _pg_admin() -> Any:
    """A connection to the test cluster, or a skip (a failure when CI=true) saying why not."""
    try:
        return await asyncpg.connect(PG_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError) as e:
        msg = f"PostgreSQL not reachable at {PG_ADMIN} ({e}); start it or set IPDN_TEST_PG"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI requires PostgreSQL: {msg}")
        pytest.skip(msg)


@contextlib.asynccontextmanager
async def pg_database(template: str | None = None) -> AsyncIterator[str]:
    """A fresh PostgreSQL database (its SQLAlchemy URL), empty or a copy of ``template``, dropped afterwards."""
    admin = await _pg_admin()
    name = f"ipdn_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@contextlib.contextmanager
def pg_database_sync() -> Iterator[str]:
    """:func:`pg_database` for synchronous fixtures (e.g. module-scoped ones around real processes)."""
    loop = asyncio.new_event_loop()
    cm = pg_database()
    try:
        url = loop.run_until_complete(cm.__aenter__())
        try:
            yield url
        finally:
            loop.run_until_complete(cm.__aexit__(None, None, None))
    finally:
        loop.close()
