"""The hub's test fixtures (a hub directory with a genesis registry, its founding members), for every test here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.factories import Member
from tests.support.hubdir import make_hub_dir


@pytest.fixture
def members() -> dict[str, Member]:
    return {c: Member(c) for c in ("QA", "KR", "TR")}


@pytest.fixture
def hub_dir(tmp_path: Path, members: dict[str, Member]) -> Path:
    return make_hub_dir(tmp_path, members)
