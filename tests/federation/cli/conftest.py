"""Fixtures of the CLI tests: a small network's registry and QA's key, as an operator holds them (the hub key, QA
and KR are tests/conftest.py's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from federation.protocol.keys import SigningKey
from federation.protocol.registry import SignedRegistry
from tests.support.factories import Member, example_bodies
from tests.support.nodes import HUB_URL, make_registry


@pytest.fixture
def registry(hub_key: SigningKey, qa: Member, kr: Member) -> SignedRegistry:
    return make_registry(hub_key, HUB_URL, qa, kr)


@pytest.fixture
def files(tmp_path: Path, qa: Member, registry: SignedRegistry) -> tuple[Path, Path]:
    """QA's key file and the registry file, as the operator holds them before ``node init``."""
    key, reg = tmp_path / "QA.key.pem", tmp_path / "registry.json"
    qa.key.save(key)
    reg.write_bytes(registry.to_bytes())
    return key, reg


@pytest.fixture
def event() -> dict[str, Any]:
    return example_bodies("cultural-event")[0]
