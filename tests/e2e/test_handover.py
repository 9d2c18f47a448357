"""End to end: the chair (and with it the hub) is handed over while three nodes keep publishing."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from federation.protocol.registry import parse_registry
from tests.support.factories import example_bodies
from tests.support.harness import IPDN, Federation, http, log_entries, wait_for

pytestmark = pytest.mark.e2e

FAST = {"IPDN_NODE_REGISTRY_REFRESH": "1", "IPDN_NODE_BACKOFF_CAP": "1", "IPDN_NODE_BACKOFF_BASE": "0.1"}


def cli(*args: str) -> str:
    import subprocess

    p = subprocess.run([IPDN, *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"ipdn {' '.join(args)}: {p.stderr}"
    return p.stdout


class Publisher(threading.Thread):
    """Publishes at one node until stopped, keeping every record id the node acknowledged."""

    def __init__(self, f: Federation, member: str) -> None:
        super().__init__(daemon=True)
        self.f, self.member, self.ids, self.stop = f, member, [], threading.Event()

    def run(self) -> None:
        bodies = example_bodies("cultural-event")
        while not self.stop.is_set():
            code, doc = http("POST", self.f.url(self.member) + "/api/v1/records",
                             {"kind": "cultural-event", "body": bodies[len(self.ids) % len(bodies)]},
                             token=self.f.tokens[self.member])
            assert code == 201, doc  # authoring never depends on the hub
            self.ids.append(doc["record_id"])
            self.stop.wait(0.05)  # an operator's pace, not back to back; ends at once when stopped


def test_chair_handover_while_nodes_publish(tmp_path: Path) -> None:
    """QA's hub hands over to TR's: handover signed by the outgoing hub and voted by QA and KR; the new
    hub imports and verifies the log; nodes follow by themselves; every record published before, during
    and after arrives at every node exactly once, and no node raises an alarm."""
    f = Federation(tmp_path, ["QA", "KR", "TR"]).init()
    new_url = f.add_hub("hubB")
    genesis = f.root / "hub" / "registry.json"
    try:
        f.start("hub")
        for m in f.members:
            f.start(m, env=FAST)
        publishers = [Publisher(f, m) for m in f.members]
        for p in publishers:
            p.start()
        wait_for("records published before the handover", lambda: all(len(p.ids) >= 5 for p in publishers))

        # The incoming chair (TR) makes its hub key and keeps the genesis registry as its trust anchor.
        hub_b = f.root / "hubB"
        cli("hub", "keygen", "--dir", str(hub_b))
        shutil.copy(genesis, hub_b / "registry.json")
        out = cli("governance", "handover", "--hub", f.hub_url, "--hub-key", str(f.root / "hub" / "hub.key.pem"),
                  "--new-url", new_url, "--new-hub-key", str(hub_b / "hub.pub.jwk.json"), "--chair", "TR")
        proposal = out.split("submitted handover ")[1].split()[0]
        for voter in ("QA", "KR"):
            cli("governance", "vote", "--hub", f.hub_url, "--member", voter,
                "--key", str(f.root / "keys" / f"{voter}.key.pem"), "--proposal", proposal)
        code, raw = http("GET", f.hub_url + "/api/v1/governance")
        assert code == 200 and raw["registry_version"] == 2

        cli("hub", "import", "--dir", str(hub_b), "--from", f.hub_url, "--port", str(f.ports["hubB"]))
        f.start("hubB")
        imported = http("GET", new_url + "/api/v1/status")[1]["log_size"]
        published = [len(p.ids) for p in publishers]
        # Nodes keep publishing, now through the new hub: each publishes more, and the new hub's log grows.
        wait_for("records published through the new hub", lambda: all(
            len(p.ids) >= n + 5 for p, n in zip(publishers, published, strict=True)) and http(
            "GET", new_url + "/api/v1/status")[1]["log_size"] >= imported + 15, 60)
        for p in publishers:
            p.stop.set()
            p.join(timeout=30)

        everything = [rid for p in publishers for rid in p.ids]
        assert len(everything) > 30
        for m in f.members:
            for rid in everything:
                f.wait_record(m, rid, timeout=60)
            listed = [r["record_id"] for r in f.records(m)]
            assert sorted(listed) == sorted(everything)  # every record, once

        # One log, continued: the new hub holds every envelope once, positions 1..N.
        entries = log_entries(new_url)  # every page: more than one page's worth may have been published
        assert [e["position"] for e in entries] == list(range(1, len(entries) + 1)) == list(
            range(1, len(everything) + 1))
        reg = parse_registry(json.dumps(http("GET", new_url + "/api/v1/registry")[1]).encode())
        assert reg.registry.hub_url == new_url and reg.registry.member("TR").role == "chair"  # type: ignore[union-attr]
        for m in f.members:
            status = http("GET", f.url(m) + "/api/v1/status")[1]
            assert status["alarms"] == [] and status["quarantine"] == 0, status
            assert status["registry_version"] == 2
    finally:
        f.close()
