"""A hub directory as ``ipdn hub init`` leaves it (hub key, genesis registry), for the in-process hub tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from federation.protocol.keys import SigningKey
from federation.protocol.registry import genesis
from tests.support import dbtemplates
from tests.support.factories import Member

HUB_URL = "http://hub.test"  # the registry's hub URL: pushes and pulls are signed for it


def make_hub_dir(path: Path, members: dict[str, Member], names: dict[str, dict[str, str]] | None = None) -> Path:
    """A new hub key and a genesis registry listing ``members`` as founders (``names``: their names by code)."""
    hub_key = SigningKey.generate()
    hub_key.save(path / "hub.key.pem")
    founders = [(m.public, (names or {}).get(c, {"en": c})) for c, m in members.items()]
    (path / "registry.json").write_bytes(genesis(hub_key=hub_key, hub_url=HUB_URL, founders=founders,
                                                      now=datetime.now(UTC)).to_bytes())
    if not (path / "hub.db").exists():  # the default database, its schema at head
        dbtemplates.copy_sqlite("hub", path / "hub.db")
    return path
