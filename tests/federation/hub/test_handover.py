"""Chair handover, incoming side: the import verifies everything the outgoing hub serves."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from federation.hub.handover import import_hub
from federation.hub.store.log import HubStore
from federation.protocol import merkle
from federation.protocol.checkpoint import sign_checkpoint
from federation.protocol.errors import TrustError
from federation.protocol.governance import next_version, sign_document
from federation.protocol.keys import SigningKey
from federation.protocol.registry import genesis
from tests.support.factories import Member, example_bodies

RECEIVED = "2026-01-02T03:04:05.678Z"  # when the outgoing hub received every entry
FOUNDERS = ("QA", "KR", "TR")


class Outgoing:
    """What the outgoing hub serves, as path -> bytes; built from real signed objects."""

    def __init__(self, *, decided: bool = True, entries: int = 12) -> None:
        self.key_a, self.key_b = SigningKey.generate(), SigningKey.generate()
        self.members = {c: Member(c) for c in FOUNDERS}
        self.v1 = genesis(hub_key=self.key_a, hub_url="https://hub.qa.example",
                          founders=[(m.public, {"en": c}) for c, m in self.members.items()], now=datetime.now(UTC))
        self.versions = [self.v1]
        if decided:
            doc = sign_document({"type": "handover", "base": 1, "chair": "TR",
                                 "hub": {"url": "https://hub.tr.example", "keys": [self.key_b.public.to_jwk()]}},
                                self.key_a, now=datetime.now(UTC))
            votes = [sign_document({"type": "vote", "base": 1, "proposal": doc.hash, "voter": c,
                                    "decision": "approve"}, self.members[c].key, now=datetime.now(UTC))
                     for c in ("QA", "KR")]
            self.versions.append(next_version(self.v1, {"action": "handover", "documents": [
                d.to_dict() for d in (doc, *votes)]}, self.key_a, now=datetime.now(UTC)))
        body = example_bodies("cultural-event")[0]
        self.log = [self.members[FOUNDERS[i % 3]].publish(body).to_dict() for i in range(entries)]

    def routes(self, served: list[dict[str, str]] | None = None, tree: list[dict[str, str]] | None = None,
               registry_override: bytes | None = None) -> dict[str, bytes]:
        served = self.log if served is None else served
        tree = self.log if tree is None else tree
        leaves = [merkle.leaf_hash(f"{e['protected']}.{e['payload']}.{e['signature']}".encode()) for e in tree]
        cp = sign_checkpoint("IPDN", len(tree), merkle.root(leaves), self.key_a, datetime.now(UTC))
        routes = {"/api/v1/registry": registry_override or self.versions[-1].to_bytes(),
                  "/api/v1/log/checkpoint": cp.to_bytes()}
        for v in self.versions:
            routes[f"/api/v1/registry?version={v.registry.version}"] = v.to_bytes()
        for after in range(len(served) + 1):
            page = [{"position": i + 1, "received_at": RECEIVED, "envelope": e}
                    for i, e in enumerate(served) if i >= after][:1000]
            routes[f"/api/v1/log?after={after}&limit=1000"] = json.dumps({"entries": page}).encode()
        return routes


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    return tmp_path / "hubB"


def prepare(out: Outgoing, hub_dir: Path) -> None:
    hub_dir.mkdir()
    out.key_b.save(hub_dir / "hub.key.pem")
    (hub_dir / "registry.json").write_bytes(out.v1.to_bytes())  # the incoming chair's own genesis copy


async def run(out: Outgoing, hub_dir: Path, routes: dict[str, bytes]) -> int:
    prepare(out, hub_dir)
    return await import_hub(hub_dir, f"sqlite+aiosqlite:///{hub_dir / 'hub.db'}", "https://hub.qa.example",
                            fetch=routes.__getitem__, progress=None)


class TestImport:
    async def test_honest_log_imported_at_same_positions(self, hub_dir: Path) -> None:
        """Every entry verified and stored at its position; the registry chain ends naming this hub."""
        out = Outgoing()
        assert await run(out, hub_dir, out.routes()) == 12
        store = await HubStore.open(f"sqlite+aiosqlite:///{hub_dir / 'hub.db'}")
        rows = await store.read_log(0, 100)
        await store.close()
        assert [json.loads(e.envelope) for e in rows] == out.log
        assert {e.received_at for e in rows} == {datetime(2026, 1, 2, 3, 4, 5, 678000, UTC)}  # kept, not the import's
        assert (hub_dir / "registry.json").read_bytes().strip() == out.versions[-1].to_bytes()

    async def test_handover_that_truncates_the_log_refused(self, hub_dir: Path) -> None:
        """The outgoing hub serves fewer entries than its own checkpoint covers: no import."""
        out = Outgoing()
        with pytest.raises(TrustError, match="ends at 9"):
            await run(out, hub_dir, out.routes(served=out.log[:9]))

    async def test_rewritten_entry_refused(self, hub_dir: Path) -> None:
        """An entry replaced by another validly signed envelope breaks the chain (or the root): refused."""
        out = Outgoing()
        forged = list(out.log)
        twin = Member("QA", key=out.members["QA"].key)
        forged[0] = twin.publish({**example_bodies("cultural-event")[0], "status": "cancelled"}).to_dict()
        with pytest.raises(TrustError):
            await run(out, hub_dir, out.routes(served=forged))

    async def test_import_before_handover_decided_refused(self, hub_dir: Path) -> None:
        """Without a decided handover naming this hub's key, the incoming hub does not take over."""
        out = Outgoing(decided=False)
        with pytest.raises(TrustError, match="does not name this hub"):
            await run(out, hub_dir, out.routes())

    async def test_forged_handover_registry_refused(self, hub_dir: Path) -> None:
        """A version 2 naming a new hub without the members' votes fails the governance check."""
        out = Outgoing(decided=False)
        bogus = next_version(out.v1, {"action": "renew", "documents": []}, out.key_a, now=datetime.now(UTC))
        from dataclasses import replace

        from federation.protocol.registry import KeyEntry, sign_registry

        reg = replace(bogus.registry, hub_keys=(*bogus.registry.hub_keys, KeyEntry(jwk=out.key_b.public.to_jwk())))
        out.versions.append(sign_registry(reg, out.key_a))
        with pytest.raises(TrustError) as e:
            await run(out, hub_dir, out.routes())
        assert e.value.reason == "unjustified-change"

    async def test_import_into_nonempty_database_refused(self, hub_dir: Path) -> None:
        """Importing twice (or over another log) is refused rather than mixing two logs."""
        out = Outgoing()
        routes: Any = out.routes()
        await run(out, hub_dir, routes)
        with pytest.raises(TrustError, match="already holds"):
            await import_hub(hub_dir, f"sqlite+aiosqlite:///{hub_dir / 'hub.db'}", "x", fetch=routes.__getitem__,
                             progress=None)
