"""Shared fixtures: the conformance vectors beside the project, a clock, the databases, and a small network's
people (the hub's key, QA the member under test, KR another member)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from federation.protocol.keys import SigningKey
from tests.support import dbtemplates, paths
from tests.support.factories import Member
from tests.support.postgres import pg_database

ROOT = paths.ROOT
VECTORS = paths.VECTORS


@pytest.fixture(scope="session")
def vectors() -> Path:
    if not VECTORS.is_dir():
        pytest.fail(f"conformance vectors not found at {VECTORS} (tests/vectors/)")
    return VECTORS


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with pg_database() as url:
        yield url


def schema_role(request: pytest.FixtureRequest) -> str | None:
    """Whose schema a test's database starts with: the node's under tests/node, the hub's under
    tests/federation/hub, none elsewhere or where the test is marked ``empty_db`` (tests/support/dbtemplates.py)."""
    if request.node.get_closest_marker("empty_db"):
        return None
    parts = Path(request.node.path).resolve().relative_to(ROOT / "tests").parts
    return "node" if parts[0] == "node" else "hub" if parts[:2] == ("federation", "hub") else None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each storage test runs on the embedded default and on PostgreSQL, its schema already at head (a copy of
    this process's migrated template) unless ``schema_role`` says otherwise."""
    role = schema_role(request)
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        yield dbtemplates.copy_sqlite(role, path) if role else f"sqlite+aiosqlite:///{path}"
    else:
        template = None
        if role:
            with contextlib.suppress(OSError):  # unreachable: pg_database says why (a skip, or a failure in CI)
                template = dbtemplates.pg_template(role)
        async with pg_database(template) as url:
            yield url


@pytest.fixture
def hub_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def qa() -> Member:
    """The member whose node (or push) is under test."""
    return Member("QA")


@pytest.fixture
def kr() -> Member:
    """Another member, publishing through the hub."""
    return Member("KR")
