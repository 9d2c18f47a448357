"""End-to-end fixtures: a federation of real processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.harness import Federation
from tests.support.postgres import pg_database

MEMBERS = ["QA", "KR", "TR"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def fed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Federation]:
    """Hub + Qatar, Korea, Türkiye nodes, initialised and running (each with its own database)."""
    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        if request.param == "postgres":
            for name in ["hub", *MEMBERS]:
                urls[name] = await stack.enter_async_context(pg_database())
        f = Federation(tmp_path, MEMBERS, urls).init()
        try:
            f.start_all()
            yield f
        finally:
            f.close()


@pytest.fixture
def fed_sqlite(tmp_path: Path) -> Iterator[Federation]:
    """The same federation on SQLite only (for tests about processes, not storage), not started; whatever the
    test starts is stopped after it."""
    f = Federation(tmp_path, MEMBERS).init()
    try:
        yield f
    finally:
        f.close()
