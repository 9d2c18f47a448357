"""Shared fixtures: the conformance vectors beside the project, a clock, the databases, and a small network's
people (the hub's key, QA the member under test, KR another member)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from federation.protocol.keys import SigningKey
from tests.support import paths
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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each storage test runs on the embedded default and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    else:
        async with pg_database() as url:
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
