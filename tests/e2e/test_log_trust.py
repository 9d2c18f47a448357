"""End to end: nodes check the hub's log against the math and witness it (docs/ARCHITECTURE.md, trust model),
real processes."""

from __future__ import annotations

from typing import Any

import pytest

from federation.protocol.checkpoint import parse_checkpoint
from federation.protocol.registry import load_registry
from tests.support.factories import example_bodies
from tests.support.harness import Federation, http, wait_for

pytestmark = pytest.mark.e2e


class TestLogTrust:
    def test_every_node_verifies_and_cosigns_the_full_log(self, fed_sqlite: Federation) -> None:
        """Three nodes publish; each accepts a checkpoint of the hub's full size, their peer checks find no
        split view, and the hub's latest checkpoint carries co-signatures that verify for all three."""
        f = fed_sqlite
        try:
            f.start("hub")
            for m in f.members:
                peers = ",".join(f.url(p) for p in f.members if p != m)
                f.start(m, env={"IPDN_NODE_PEERS": peers, "IPDN_NODE_PEER_INTERVAL": "0.2"})
            bodies = example_bodies("cultural-event")
            for i in range(6):
                f.publish(f.members[i % 3], "cultural-event", bodies[i % len(bodies)])
            size = wait_for("all six envelopes in the hub's log",
                            lambda: (n := http("GET", f.hub_url + "/api/v1/status")[1]["log_size"]) == 6 and n)

            def node_status(m: str) -> dict[str, Any]:
                return dict(http("GET", f.url(m) + "/api/v1/status")[1])

            for m in f.members:
                doc = wait_for(f"{m} accepting checkpoint {size}",
                               lambda m=m: (d := node_status(m))["log"]["checkpoint"] and
                               d["log"]["checkpoint"]["size"] == size and d)
                assert doc["alarms"] == [] and doc["log"]["halted"] is False, f.log(m)

            reg = load_registry(f.root / "hub" / "registry.json").registry

            def cosigners() -> set[str] | None:
                signed = parse_checkpoint(http("GET", f.hub_url + "/api/v1/log/checkpoint")[1])
                names = set(signed.verify(reg.hub_public_keys(), reg.member_keys()))
                return names if signed.checkpoint.size == size and names == set(f.members) else None

            assert wait_for("co-signatures of QA, KR and TR at the hub", cosigners) == {"QA", "KR", "TR"}
            for m in f.members:  # every node served its co-signed view to the others, and they agree
                peers = wait_for(f"{m} comparing with its peers",
                                 lambda m=m: (p := node_status(m)["log"]["peers"]) and len(p) == 2
                                 and all(x["size"] == size for x in p) and p)
                assert all(p["error"] is None for p in peers)
                code, served = http("GET", f.url(m) + "/api/v1/log/checkpoint")
                assert code == 200
                assert m in parse_checkpoint(served).verify(reg.hub_public_keys(), reg.member_keys())
        finally:
            f.close()
