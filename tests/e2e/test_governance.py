"""End to end: governance with real processes: a member admitted by vote, a key rotated at a running node
while it publishes, and the hub's audit trail (docs/PROTOCOL.md §12)."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest

from federation.protocol.envelope import parse_time
from federation.protocol.keys import SigningKey
from federation.protocol.registry import SignedRegistry, parse_registry
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import verify_envelope
from tests.support.factories import example_bodies
from tests.support.harness import IPDN, Federation, free_port, http, wait_for

pytestmark = pytest.mark.e2e

REFRESH = {"IPDN_NODE_REGISTRY_REFRESH": "1"}  # nodes fetch the registry every second


def event(i: int = 0) -> dict[str, Any]:
    bodies = example_bodies("cultural-event")
    return bodies[i % len(bodies)]


def hub_registry(f: Federation) -> tuple[bytes, SignedRegistry]:
    """The hub's current registry, as served (bytes) and parsed (its own signature checked)."""
    with urllib.request.urlopen(f.hub_url + "/api/v1/registry", timeout=10) as r:  # noqa: S310 (loopback)
        data = r.read()
    return data, parse_registry(data)


def start_federation(f: Federation) -> Federation:
    f.start("hub")
    for m in f.members:
        f.start(m, env=REFRESH)
    return f


def admit_mz(f: Federation) -> str:
    """MZ makes its key and applies; QA and KR (2 of 3 active members: the quorum) approve. The
    application's hash."""
    keys = f.root / "keys"
    f.cli("keygen", "--member", "MZ", "--out", str(keys))
    f.ports["MZ"] = free_port()
    out = f.cli("governance", "apply", "--hub", f.hub_url, "--member", "MZ", "--key", str(keys / "MZ.key.pem"),
                "--name", "en=Mozambique Cultural Institute", "--name", "pt=Instituto Cultural de Moçambique",
                "--endpoint", f.url("MZ")).stdout
    found = re.search(r"submitted application ([0-9a-f]{64})", out)
    assert found, out
    application = found.group(1)
    vote = ("governance", "vote", "--hub", f.hub_url, "--proposal", application)
    f.cli(*vote, "--member", "QA", "--key", str(keys / "QA.key.pem"))
    assert hub_registry(f)[1].registry.version == 1  # one approval of the two needed
    f.cli(*vote, "--member", "KR", "--key", str(keys / "KR.key.pem"))
    return application


def verified(item: dict[str, Any], registry: SignedRegistry) -> bool:
    """Verify an item's envelope as a partner would, against a registry file: no hub, no node."""
    result = verify_envelope(json.dumps(item["envelope"]).encode(), keys=registry.registry.member_keys().get,
                             schemas=default_schemas(), now=datetime.now(UTC))
    return result.ok and result.envelope is not None and result.envelope.payload.body == item["body"]


def header_kid(item: dict[str, Any]) -> str:
    """The ``kid`` of an envelope's protected header, decoded by hand (B64U, JSON)."""
    protected = item["envelope"]["protected"]
    return str(json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))["kid"])


def node_status(f: Federation, m: str) -> dict[str, Any]:
    code, doc = http("GET", f.url(m) + "/api/v1/status")
    assert code == 200, doc
    return dict(doc)


class TestGovernance:
    def test_member_admitted_publishes_and_is_synced(self, fed_sqlite: Federation) -> None:
        """MZ applies, QA and KR approve: the hub publishes registry version 2 listing MZ. MZ's node is set up
        from that registry, publishes, and its record is visible and verified at QA, KR and TR, whose
        registries moved to version 2 by themselves (each recomputed the admission from the votes)."""
        f = start_federation(fed_sqlite)
        try:
            admit_mz(f)
            data, v2 = hub_registry(f)
            mz = v2.registry.member("MZ")
            assert v2.registry.version == 2 and v2.registry.change and v2.registry.change["action"] == "admit"
            mz_kid = SigningKey.load(f.root / "keys" / "MZ.key.pem").kid
            assert mz is not None and mz.status == "active" and [k.jwk["kid"] for k in mz.keys] == [mz_kid]
            anchor = f.root / "registry-v2.json"
            anchor.write_bytes(data)
            f.cli("node", "init", "--dir", str(f.root / "MZ"), "--member", "MZ",
                  "--key", str(f.root / "keys" / "MZ.key.pem"), "--registry", str(anchor),
                  "--port", str(f.ports["MZ"]))
            f.tokens["MZ"] = (f.root / "MZ" / "operator.token").read_text().strip()
            f.start("MZ", env=REFRESH)

            doc = f.publish("MZ", "cultural-event", event())
            for m in f.members:
                item = f.wait_record(m, doc["record_id"], timeout=30)
                assert item["origin"] == "MZ" and verified(item, v2), f.log(m)
                status = node_status(f, m)
                assert status["registry_version"] == 2 and status["quarantine"] == 0 and status["alarms"] == []
        finally:
            f.close()

    def test_key_rotated_mid_stream_every_envelope_delivered(self, fed_sqlite: Federation) -> None:
        """KR publishes ten records, then goes on publishing (one every ~0.2 s) while ``ipdn node rotate-key --dir
        KR --effective-in 3`` runs and until its envelopes carry the new key, then ten more. Every record reaches
        QA and TR; the hub rejected nothing (outbox, quarantine); each envelope issued before ``effective``
        carries KR's old kid, each after it the new one. The stream spans the switch by construction, however
        slowly the machine runs: it ends only once an envelope was signed with the new key."""
        f = start_federation(fed_sqlite)
        try:
            old_kid = SigningKey.load(f.root / "keys" / "KR.key.pem").kid
            rotate: list[subprocess.CompletedProcess[str]] = []
            thread = threading.Thread(target=lambda: rotate.append(subprocess.run(
                [IPDN, "node", "rotate-key", "--dir", str(f.root / "KR"), "--effective-in", "3"],
                capture_output=True, text=True, timeout=60)))
            ids: list[str] = []

            def publish_one() -> str:
                """Publish the next record at KR; the kid its envelope was signed with."""
                doc = f.publish("KR", "cultural-event", event(len(ids)))
                ids.append(doc["record_id"])
                return header_kid(doc)

            for _ in range(10):
                assert publish_one() == old_kid
            thread.start()
            while thread.is_alive():  # the stream goes on while rotate-key runs
                publish_one()
                thread.join(0.2)
            assert rotate and rotate[0].returncode == 0, rotate[0].stderr if rotate else "rotate-key did not run"

            [rotation] = json.loads((f.root / "KR" / "keys.json").read_text())["rotations"]
            effective, new_kid = parse_time(rotation["effective"]), rotation["kid"]
            # ... and past effective: until KR's node signs with the new key, then ten more
            wait_for("an envelope signed with the new key", lambda: publish_one() == new_kid, 60, interval=0.2)
            for _ in range(10):
                publish_one()
            assert f"rotation to key {new_kid}" in rotate[0].stdout
            _, registry = hub_registry(f)
            kr = registry.registry.member("KR")
            assert registry.registry.version == 2 and kr is not None
            assert [(k.jwk["kid"], k.not_before, k.not_after) for k in kr.keys] == [
                (old_kid, None, rotation["effective"]), (new_kid, rotation["effective"], None)]

            for m in ("QA", "TR"):
                items = {}
                for rid in ids:
                    items[rid] = f.wait_record(m, rid, timeout=30)
                # before or after the switch: as each envelope says (its issued_at), and its kid must agree
                kids = [(parse_time(it["issued_at"]) >= effective, header_kid(it)) for it in items.values()]
                assert all(kid == (new_kid if after else old_kid) for after, kid in kids), kids
                assert {after for after, _ in kids} == {False, True}  # the stream spans the switch
                assert all(verified(it, registry) for it in items.values())
                assert node_status(f, m)["quarantine"] == 0

            kr_status = wait_for("KR's outbox emptied", lambda: (
                (d := node_status(f, "KR"))["outbox"]["pending"] == 0 and d))
            assert kr_status["outbox"] == {"pending": 0, "rejected": 0, "accepted": len(ids)}
            assert kr_status["alarms"] == [] and kr_status["registry_version"] == 2
            assert [(k["kid"], k["current"]) for k in kr_status["keys"]] == [(old_kid, False), (new_kid, True)]
            code, quarantine = http("GET", f.hub_url + "/api/v1/quarantine", token=f.tokens["hub"])
            assert code == 200 and quarantine["items"] == []
        finally:
            f.close()

    def test_governance_audit_trail_served(self, fed_sqlite: Federation) -> None:
        """After the admission, GET /api/v1/governance lists the application and both votes, each decided in
        registry version 2, and nothing pending."""
        f = fed_sqlite
        try:
            f.start("hub")
            application = admit_mz(f)
            code, doc = http("GET", f.hub_url + "/api/v1/governance")
            assert code == 200 and doc["registry_version"] == 2 and doc["pending"] == []
            trail = doc["trail"]
            [applied] = [t for t in trail if t["type"] == "application"]
            assert applied["subject"] == application and applied["decided_in"] == 2 and applied["base"] == 1
            votes = [t for t in trail if t["type"] == "vote"]
            voters = sorted(json.loads(_payload(t["document"]))["voter"] for t in votes)
            assert voters == ["KR", "QA"]
            assert all(v["subject"] == application and v["decided_in"] == 2 for v in votes)
            assert all(t["received_at"] for t in trail)
        finally:
            f.close()


def _payload(document: dict[str, str]) -> bytes:
    p = document["payload"]
    return base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))
