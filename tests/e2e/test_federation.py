"""End to end: real hub and node processes on loopback, talking HTTP, storing in real databases."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import pytest

from federation.protocol.keys import SigningKey, b64u_decode
from tests.support.factories import Member, example_bodies, push_request
from tests.support.harness import Federation, http, log_entries, verified_offline, wait_for

pytestmark = pytest.mark.e2e


def event(i: int = 0) -> dict[str, Any]:
    return example_bodies("cultural-event")[i % len(example_bodies("cultural-event"))]


class TestSync:
    def test_published_record_visible_and_verified_everywhere(self, fed: Federation) -> None:
        """Published at QA, the record appears at KR and TR, and its envelope verifies offline."""
        doc = fed.publish("QA", "cultural-event", event())
        for m in ("KR", "TR"):
            item = fed.wait_record(m, doc["record_id"])
            assert item["origin"] == "QA" and item["body"] == event()
            assert verified_offline(fed, item)

    def test_update_cancel_and_delete_propagate(self, fed: Federation) -> None:
        """An update, then a cancellation, then a tombstone reach the other nodes in order."""
        rid = fed.publish("QA", "cultural-event", event())["record_id"]
        token = fed.tokens["QA"]
        changed = {**event(), "title": {**event()["title"], "en": "Sixth General Assembly (updated)"}}
        assert http("PUT", fed.url("QA") + f"/api/v1/records/{rid}", {"body": changed}, token=token)[0] == 200
        assert fed.wait_record("KR", rid, version=2)["body"]["title"]["en"].endswith("(updated)")
        code, _ = http("POST", fed.url("QA") + f"/api/v1/records/{rid}/cancel", {"reason": "venue closed"},
                       token=token)
        assert code == 200
        assert fed.wait_record("TR", rid, version=3)["body"]["status"] == "cancelled"
        assert http("DELETE", fed.url("QA") + f"/api/v1/records/{rid}", token=token)[0] == 200
        gone = fed.wait_record("KR", rid, version=4)
        assert gone["op"] == "delete" and gone["body"] is None and verified_offline(fed, gone)

    def test_records_from_every_member_reach_every_node(self, fed: Federation) -> None:
        """Each member publishes; every node ends with all records, none twice."""
        ids = [fed.publish(m, "cultural-event", event(i))["record_id"] for i, m in enumerate(fed.members * 2)]
        for m in fed.members:
            for rid in ids:
                fed.wait_record(m, rid)
            listed = [r["record_id"] for r in fed.records(m)]
            assert sorted(listed) == sorted(ids)


# PROTOCOL.md §1: producers write every time as UTC with Z and exactly milliseconds.
TIME_FORM = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TIME_NAMES = frozenset({"time", "issued_at", "timestamp", "at"})


def times_not_in_form(doc: Any, path: str) -> list[str]:
    """The path and value of every time member (name ending in _at, or time, issued_at, timestamp, at) that is
    not in the §1 form, walking into the decoded payloads of signed documents (registry, envelopes, checkpoints)."""
    bad: list[str] = []
    if isinstance(doc, dict):
        for name, value in doc.items():
            where = f"{path}/{name}"
            if (name.endswith("_at") or name in TIME_NAMES) and value is not None:
                if not (isinstance(value, str) and TIME_FORM.fullmatch(value)):
                    bad.append(f"{where} = {value!r}")
            elif name == "payload" and isinstance(value, str) and ("protected" in doc or "signatures" in doc):
                bad += times_not_in_form(json.loads(b64u_decode(value)), where)
            else:
                bad += times_not_in_form(value, where)
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            bad += times_not_in_form(item, f"{path}/{i}")
    return bad


class TestTimes:
    def test_every_time_the_services_write_is_utc_with_milliseconds(self, fed: Federation) -> None:
        """Every JSON document the hub and a node serve (status, quarantine, registry, log page, checkpoint,
        governance; records list and item, status, webhook subscription and deliveries, JSON Feed) writes its
        times as YYYY-MM-DDTHH:MM:SS.sssZ (PROTOCOL.md §1); the failure names each member that does not."""
        rid = fed.publish("QA", "cultural-event", event())["record_id"]
        fed.wait_record("KR", rid)
        # something in the quarantine: a push nobody signed
        assert http("POST", fed.hub_url + "/api/v1/envelopes", {"envelopes": []})[0] == 401
        # a partner's subscription, to a host that does not resolve: its delivery is tried and fails
        key = fed.cli("node", "partner", "add", "--dir", str(fed.root / "QA"), "Portal", "--scope",
                      "webhooks").stdout.strip()
        partner = {"Authorization": f"Bearer {key}"}
        code, sub = http("POST", fed.url("QA") + "/api/v1/webhooks", {"url": "https://partner.invalid/hook"},
                         headers=partner)
        assert code == 201, sub
        fed.publish("QA", "cultural-event", event(1))

        def tried() -> Any:
            code, doc = http("GET", fed.url("QA") + f"/api/v1/webhooks/{sub['id']}/deliveries", headers=partner)
            return doc if code == 200 and any(d["tried"] for d in doc["items"]) else None

        deliveries = wait_for("a delivery attempt", tried, timeout=20)
        hub, qa, hub_token = fed.hub_url, fed.url("QA"), fed.tokens["hub"]
        documents = {
            "hub /api/v1/status": http("GET", hub + "/api/v1/status"),
            "hub /api/v1/quarantine": http("GET", hub + "/api/v1/quarantine", token=hub_token),
            "hub /api/v1/registry": http("GET", hub + "/api/v1/registry"),
            "hub /api/v1/log": http("GET", hub + "/api/v1/log?after=0"),
            "hub /api/v1/log/checkpoint": http("GET", hub + "/api/v1/log/checkpoint"),
            "hub /api/v1/governance": http("GET", hub + "/api/v1/governance"),
            "QA /api/v1/records": http("GET", qa + "/api/v1/records"),
            f"QA /api/v1/records/{rid}": http("GET", qa + f"/api/v1/records/{rid}"),
            "KR /api/v1/records": http("GET", fed.url("KR") + "/api/v1/records"),
            "QA /api/v1/status": http("GET", qa + "/api/v1/status", token=fed.tokens["QA"]),
            "QA /api/v1/log/checkpoint": http("GET", qa + "/api/v1/log/checkpoint"),
            f"QA /api/v1/webhooks/{sub['id']}": http("GET", qa + f"/api/v1/webhooks/{sub['id']}", headers=partner),
            "QA /api/v1/webhooks/.../deliveries": (200, deliveries),
            "QA /api/v1/feeds/feed.json": http("GET", qa + "/api/v1/feeds/feed.json"),
        }
        assert {name: code for name, (code, _) in documents.items() if code != 200} == {}
        assert documents["hub /api/v1/quarantine"][1]["items"] and deliveries["items"][0]["tried"]
        bad = [b for name, (_, doc) in documents.items() for b in times_not_in_form(doc, name)]
        assert bad == []


class TestFaults:
    def test_node_killed_mid_sync_resumes_without_loss_or_duplicates(self, fed_sqlite: Federation) -> None:
        """KR is down while QA publishes 60 records; KR restarts pulling one per page (with five, a fast host
        applied all 60 between two looks at its cursor), is SIGKILLed while catching up, restarts again, and
        ends with exactly those 60, its cursor at the log's end."""
        f = fed_sqlite.start_all()
        try:
            f.kill("KR")
            ids = [f.publish("QA", "cultural-event", event(i))["record_id"] for i in range(60)]
            small_pages = {"IPDN_NODE_PULL_LIMIT": "1"}
            f.start("KR", env=small_pages)
            # looked at often: a fast host applies an entry every few milliseconds
            wait_for("KR's cursor at 10", lambda: http("GET", f.url("KR") + "/api/v1/status")[1]["cursor"] >= 10,
                     30, interval=0.005)
            killed_at = http("GET", f.url("KR") + "/api/v1/status")[1]["cursor"]
            f.kill("KR")
            assert 10 <= killed_at < 60  # really mid-sync
            f.start("KR", env=small_pages)
            for rid in ids:
                f.wait_record("KR", rid)
            assert sorted(r["record_id"] for r in f.records("KR")) == sorted(ids)
            assert http("GET", f.url("KR") + "/api/v1/status")[1]["quarantine"] == 0
        finally:
            f.close()

    def test_node_keeps_authoring_while_hub_is_down_and_catches_up(self, fed_sqlite: Federation) -> None:
        """With the hub stopped, QA still publishes and serves; when it returns, KR gets everything."""
        f = fed_sqlite.start_all()
        try:
            f.stop("hub")
            ids = [f.publish("QA", "cultural-event", event(i))["record_id"] for i in range(5)]
            assert f.record("QA", ids[0])[0] == 200
            f.start("hub")
            for rid in ids:
                f.wait_record("KR", rid, timeout=60)
        finally:
            f.close()

    def test_hub_killed_mid_push_loses_no_acknowledged_envelope(self, fed_sqlite: Federation) -> None:
        """A pusher streams envelopes while the hub is SIGKILLed and restarted: every acknowledged one is in
        the log afterwards, at its acknowledged position, exactly once."""
        f = fed_sqlite
        f.start("hub")
        qa = Member("QA", key=SigningKey.load(f.root / "keys" / "QA.key.pem"))
        envs = [qa.publish(event(i)) for i in range(400)]
        acked: dict[str, int] = {}
        failures = [0]  # pushes refused or unanswered (the hub down)
        stop = threading.Event()

        def pusher() -> None:
            i = 0
            while i < len(envs) and not stop.is_set():
                data, headers = push_request(qa, envs[i:i + 20], f.hub_url)
                try:
                    code, doc = http("POST", f.hub_url + "/api/v1/envelopes", data=data, headers=headers, timeout=5)
                except OSError:
                    code = 0
                if code != 200:
                    failures[0] += 1
                    time.sleep(0.05)  # a client's pause before sending again
                    continue
                for r in doc["results"]:
                    assert r["status"] in ("accepted", "duplicate"), r
                    acked[r["hash"]] = r["position"]
                i += 20

        t = threading.Thread(target=pusher)
        t.start()
        try:
            wait_for("100 envelopes acknowledged", lambda: len(acked) >= 100 or not t.is_alive(), 60, interval=0.01)
            down = failures[0]
            f.kill("hub")
            wait_for("the pusher finding the hub down", lambda: failures[0] > down or not t.is_alive())
            f.start("hub")
            t.join(timeout=120)
            entries = log_entries(f.hub_url)
        finally:
            stop.set()
            f.close()
        log = {e["position"]: e["envelope"] for e in entries}
        assert len(acked) == 400
        assert sorted(log) == list(range(1, 401))  # no gaps, no duplicates
        by_hash = {envs[i].hash: i for i in range(400)}
        for h, pos in acked.items():
            assert log[pos] == envs[by_hash[h]].to_dict()


class TestRefusals:
    @pytest.fixture
    def hub_only(self, fed_sqlite: Federation) -> Any:
        fed_sqlite.start("hub")
        yield fed_sqlite
        fed_sqlite.close()

    def quarantine(self, f: Federation) -> list[dict[str, Any]]:
        code, doc = http("GET", f.hub_url + "/api/v1/quarantine", token=f.tokens["hub"])
        assert code == 200
        return list(doc["items"])

    def push(self, f: Federation, member: Member, envs: list[Any], **kw: Any) -> tuple[int, Any]:
        data, headers = push_request(member, envs, f.hub_url, **kw)
        return http("POST", f.hub_url + "/api/v1/envelopes", data=data, headers=headers)

    def test_attacks_refused_with_reasons_and_kept(self, hub_only: Federation) -> None:
        """Altered in transit, signed by a non-member, replayed, out of chain order, schema-invalid:
        each refused with its reason, and each refusal (of an envelope or a whole request) kept in the
        quarantine."""
        f = hub_only
        qa = Member("QA", key=SigningKey.load(f.root / "keys" / "QA.key.pem"))
        first, second = qa.publish(event()), qa.publish(event(1))

        altered = {**first.to_dict(), "payload": second.to_dict()["payload"]}
        _, doc = self.push(f, qa, [altered])
        assert doc["results"][0]["problem"]["reason"] == "bad-signature"

        intruder = Member("QA")  # claims QA, holds another key
        _, doc = self.push(f, qa, [intruder.publish(event())])
        assert doc["results"][0]["problem"]["reason"] == "key-unknown"

        code, doc = self.push(f, qa, [first], key=SigningKey.generate())
        assert code == 401 and doc["reason"] == "unknown-key"

        data, headers = push_request(qa, [first], f.hub_url)
        assert http("POST", f.hub_url + "/api/v1/envelopes", data=data, headers=headers)[0] == 200
        code, doc = http("POST", f.hub_url + "/api/v1/envelopes", data=data, headers=headers)
        assert code == 401 and doc["reason"] == "signature-replayed"

        third = qa.publish(event(2))
        _, doc = self.push(f, qa, [third])  # second is missing
        assert doc["results"][0]["problem"]["reason"] == "chain-gap"

        bad = Member("QA", key=qa.key, seq=qa.seq, prev=qa.prev).publish({**event(), "status": "postponed-ish"})
        _, doc = self.push(f, qa, [second, third, bad])
        assert [r["status"] for r in doc["results"]][:2] == ["accepted", "accepted"]
        assert doc["results"][2]["problem"]["reason"] == "schema-invalid"

        reasons = sorted(q["reason"] for q in self.quarantine(f))  # refused requests are kept too (ADR 12)
        assert reasons == ["bad-signature", "chain-gap", "key-unknown", "schema-invalid", "signature-replayed",
                           "unknown-key"]
