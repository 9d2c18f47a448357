"""Webhooks end to end, with real processes: a partner with a key from the operator's CLI subscribes over
HTTP; a real receiver (tests/support/webhook_receiver.py) verifies every delivery with the standardwebhooks library
and the node's published ``whpk_`` key; publish, update, cancel and delete at the origin arrive as four
events whose envelopes ``ipdn verify`` accepts offline; a record from another member arrives via the hub;
a subscription for capacity programmes gets none of it; a delivery pending when the node is killed is
delivered after the restart with the same webhook-id. And the receiver in the README, run as written, works."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.cli.main import main as ipdn_main
from tests.support import paths
from tests.support.factories import example_bodies
from tests.support.harness import Federation, free_port, http, wait_for
from tests.support.webhook_receiver import Receiver, threaded

pytestmark = pytest.mark.e2e
# Loopback receivers allowed (the test's), retries a fraction of a second apart: in node.toml, so that the
# operator's CLI reads the same rule as the node.
QA_TOML = """
webhook_allow_loopback = true
webhook_schedule = "0,0.2,0.2,0.5,1,1,1,1,1,1"
webhook_poll_interval = 0.2
"""


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    """Hub, QA (the node partners subscribe at, loopback receivers allowed) and KR; not started."""
    f = Federation(tmp_path / "fed", ["QA", "KR"]).init()
    with open(f.root / "QA" / "node.toml", "a", encoding="utf-8") as toml:
        toml.write(QA_TOML)
    try:
        yield f
    finally:
        f.close()


def ipdn(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The operator's command line, in-process (a process per command costs seconds here); its stdout."""
    capsys.readouterr()
    assert ipdn_main(list(args)) == 0
    return capsys.readouterr().out


def event() -> dict[str, Any]:
    return dict(example_bodies("cultural-event")[0])


def failed_attempt_recorded(qa: str, sub_id: str, partner: dict[str, str]) -> bool:
    code, doc = http("GET", f"{qa}/api/v1/webhooks/{sub_id}/deliveries?state=pending", headers=partner)
    return code == 200 and any(d["tried"] for d in doc["items"])


def test_partner_receives_signed_events_that_verify_offline(fed: Federation, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Publish, update, cancel, delete at QA and a publication at KR reach the partner signed and in order,
    verify offline, skip a capacity-programme subscription, and survive QA being killed mid-retry."""
    fed.start("hub")
    fed.start("QA")
    fed.start("KR")
    qa, token = fed.url("QA"), fed.tokens["QA"]

    # The partner: a key from the operator, the node's public webhook key, a subscription.
    key = ipdn(capsys, "node", "partner", "add", "--dir", str(fed.root / "QA"), "Doha Culture Portal",
               "--scope", "webhooks").strip()
    partner = {"Authorization": f"Bearer {key}"}
    code, signing = http("GET", qa + "/api/v1/webhooks/signing-key")
    assert code == 200 and signing["key"].startswith("whpk_")

    with threaded(Receiver(signing["key"])) as receiver, threaded(Receiver(signing["key"])) as programmes:
        code, sub = http("POST", qa + "/api/v1/webhooks", {"url": receiver.url}, headers=partner)
        assert code == 201, sub
        receiver.secret = sub["secret"]
        # The operator subscribes another URL of the partner, for capacity programmes only.
        added = json.loads(ipdn(capsys, "node", "webhook", "add", "--dir", str(fed.root / "QA"), "--partner",
                                "Doha Culture Portal", "--url", programmes.url, "--kind", "capacity-programme",
                                "--json"))
        programmes.secret = added["secret"]

        # Publish, update, cancel, delete at the origin.
        rid = fed.publish("QA", "cultural-event", event())["record_id"]
        changed = {**event(), "title": {**event()["title"], "en": "Sixth General Assembly (moved)"}}
        assert http("PUT", f"{qa}/api/v1/records/{rid}", {"body": changed}, token=token)[0] == 200
        assert http("POST", f"{qa}/api/v1/records/{rid}/cancel", token=token)[0] == 200
        assert http("DELETE", f"{qa}/api/v1/records/{rid}", token=token)[0] == 200
        wait_for("four events at the receiver", lambda: len(receiver.received) >= 4, timeout=20)
        assert receiver.types() == ["record.published", "record.updated", "record.cancelled", "record.deleted"]
        assert [r.doc["data"]["version"] for r in receiver.received] == [1, 2, 3, 4]
        assert receiver.received[1].doc["data"]["body"]["title"]["en"].endswith("(moved)")
        assert receiver.received[2].doc["data"]["status"] == "cancelled"
        assert receiver.received[3].doc["data"]["body"] is None
        assert receiver.refused == []  # every one verified: v1 with the secret, v1a with the whpk_ key

        # Every item verifies offline, from the bodies as received.
        saved = tmp_path / "webhooks.jsonl"
        saved.write_bytes(b"\n".join(r.body for r in receiver.received) + b"\n")
        assert ipdn_main(["verify", "--registry", str(fed.root / "hub" / "registry.json"), str(saved)]) == 0
        assert "4 verified, 0 failed" in capsys.readouterr().err

        # Another member's record, arriving through the hub, is an event too.
        kr_rid = fed.publish("KR", "cultural-event", event())["record_id"]
        wait_for("KR's record at the receiver", lambda: len(receiver.received) >= 5, timeout=20)
        assert receiver.received[4].doc["data"]["record_id"] == kr_rid
        assert receiver.received[4].doc["data"]["origin"] == "KR"

        # A delivery pending when the node dies is delivered after the restart, same webhook-id.
        receiver.fail_next = 10**6
        fed.publish("QA", "cultural-event", event())
        wait_for("a failed attempt", lambda: len(receiver.attempts) >= 6, timeout=20)
        pending = receiver.attempts[-1]
        wait_for("the failure recorded", lambda: failed_attempt_recorded(qa, sub["id"], partner), timeout=20)
        fed.kill("QA")
        receiver.fail_next = 0
        fed.start("QA")
        wait_for("the pending delivery after the restart", lambda: len(receiver.received) >= 6, timeout=20)
        assert receiver.received[5].id == pending and receiver.duplicates == []

        assert programmes.attempts == []  # kind=capacity-programme: none of these events

    # The operator sees the failed attempts, with their errors.
    deliveries = json.loads(ipdn(capsys, "node", "webhook", "deliveries", "--dir", str(fed.root / "QA"), "--json"))
    retried = next(d for d in deliveries if d["id"] == pending)
    assert retried["state"] == "delivered" and retried["tried"][0]["status"] == 500
    status = http("GET", qa + "/api/v1/status")[1]
    assert status["webhooks"]["subscriptions"] == {"active": 2, "disabled": 0}


def test_the_readme_receiver_verifies_and_keeps_each_event_once(fed: Federation, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The receiver in the README, run as written (only the node's URL and the port changed), gets a
    publication and a cancellation; what it saved verifies offline."""
    fed.start("hub")
    fed.start("QA")
    qa = fed.url("QA")
    readme = (paths.ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"<!-- receiver -->\n```python\n(.*?)\n```", readme, re.S)
    assert code is not None
    port = free_port()
    script = code.group(1).replace('"https://ipdn.qa.example"', repr(qa)).replace("8000", str(port))
    (tmp_path / "receiver.py").write_text(script, encoding="utf-8")
    log = open(tmp_path / "receiver.log", "wb")  # noqa: SIM115 (kept open for the process)
    proc = subprocess.Popen([sys.executable, "receiver.py"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("the README receiver listening", lambda: _listening(port), timeout=20)
        key = ipdn(capsys, "node", "partner", "add", "--dir", str(fed.root / "QA"), "Museum", "--scope",
                   "webhooks").strip()
        code_, sub = http("POST", qa + "/api/v1/webhooks", {"url": f"http://127.0.0.1:{port}/",
                                                             "filters": {"kind": "cultural-event"}},
                          headers={"Authorization": f"Bearer {key}"})
        assert code_ == 201, sub
        rid = fed.publish("QA", "cultural-event", event())["record_id"]
        assert http("POST", f"{qa}/api/v1/records/{rid}/cancel", token=fed.tokens["QA"])[0] == 200
        saved = tmp_path / "events.jsonl"
        wait_for("two events saved", lambda: saved.exists() and len(saved.read_bytes().splitlines()) == 2,
                 timeout=20)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    types = [json.loads(line)["type"] for line in saved.read_bytes().splitlines()]
    assert types == ["record.published", "record.cancelled"]
    capsys.readouterr()
    assert ipdn_main(["verify", "--registry", str(fed.root / "hub" / "registry.json"), str(saved)]) == 0
    assert "2 verified, 0 failed" in capsys.readouterr().err


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
