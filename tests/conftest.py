"""Shared fixtures: the conformance vectors beside the project, and a clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT.parent / "shared" / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    if not VECTORS.is_dir():
        pytest.fail(f"conformance vectors not found at {VECTORS} (../shared/vectors from the project root)")
    return VECTORS


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)
