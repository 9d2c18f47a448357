"""The README's partner journey against real processes: a closed node (public read off), a partner key from
the operator's CLI, then a calendar app, an OAI-PMH harvester (Sickle) and a JSON Feed reader each get the
network's records, verify them offline, and see an update and a cancellation at the origin; revoking the
key shuts the partner out."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import icalendar
import pytest
import vobject
from sickle import Sickle

from federation.cli.main import main as ipdn_main
from tests.support.factories import example_bodies
from tests.support.harness import Federation, http, verified_offline, wait_for

pytestmark = pytest.mark.e2e
NO_PROXY = {"http": None, "https": None}
IPDN_NS = {"ipdn": "https://schemas.ipdn.network/oai-ipdn/v1"}


def fetch(url: str, key: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (loopback)
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def calendar_event(kr: str, key: str, rid: str) -> Any:
    """What a calendar app subscribed to the ICS URL (key in the URL) holds for the record."""
    status, body = fetch(f"{kr}/api/v1/feeds/events.ics?key={key}")
    assert status == 200
    vobject.readOne(body.decode())  # a second, independent parser accepts it too
    events = [c for c in icalendar.Calendar.from_ical(body).walk("VEVENT") if str(c["X-IPDN-RECORD-ID"]) == rid]
    return events[0] if events else None


def test_partner_reads_a_closed_node_in_every_format_and_verifies_offline(fed_sqlite: Federation) -> None:
    fed = fed_sqlite
    fed.start("hub")
    fed.start("QA")
    fed.start("KR", env={"IPDN_NODE_PUBLIC_READ": "false"})
    kr = fed.url("KR")
    key = fed.cli("node", "partner", "add", "--dir", str(fed.root / "KR"), "Doha Culture Portal",
                  "--scope", "read").stdout.strip()

    body = example_bodies("cultural-event")[0]
    rid = fed.publish("QA", "cultural-event", body)["record_id"]
    wait_for("the record at KR", lambda: http("GET", f"{kr}/api/v1/records/{rid}",
                                              headers={"Authorization": f"Bearer {key}"})[0] == 200)
    assert fetch(f"{kr}/api/v1/feeds/events.ics")[0] == 401  # closed: no key, no calendar

    ev = calendar_event(kr, key, rid)
    assert ev is not None and int(ev["SEQUENCE"]) == 1 and str(ev["SUMMARY"]) == body["title"]["en"]

    # An update, then a cancellation, at the origin.
    token = fed.tokens["QA"]
    changed = {**body, "title": {**body["title"], "en": body["title"]["en"] + " (new hall)"}}
    assert http("PUT", fed.url("QA") + f"/api/v1/records/{rid}", {"body": changed}, token=token)[0] == 200
    assert http("POST", fed.url("QA") + f"/api/v1/records/{rid}/cancel", {"reason": "storm"}, token=token)[0] == 200
    ev = wait_for("the cancellation in the calendar",
                  lambda: (e := calendar_event(kr, key, rid)) is not None and int(e["SEQUENCE"]) == 3 and e)
    assert str(ev["STATUS"]) == "CANCELLED" and str(ev["SUMMARY"]).endswith("(new hall)")

    # A library's harvester, with the key in a header.
    sickle = Sickle(f"{kr}/oai", headers={"Authorization": f"Bearer {key}"}, proxies=NO_PROXY, timeout=10)
    harvested = {r.header.identifier: r for r in sickle.ListRecords(metadataPrefix="ipdn", ignore_deleted=False)}
    native = harvested[f"oai:ipdn.network:{rid}"]
    envelope = json.loads(native.xml.find(".//ipdn:envelope", IPDN_NS).text)
    item = fed.wait_record("QA", rid, version=3)
    assert verified_offline(fed, {"envelope": envelope, "body": item["body"]})

    # A JSON Feed reader saves the feed; `ipdn verify --registry` checks every item offline.
    status, feed = fetch(f"{kr}/api/v1/feeds/feed.json", key)
    assert status == 200
    items = [i for i in json.loads(feed)["items"] if i["_ipdn"]["record_id"] == rid]
    assert items and items[0]["_ipdn"]["version"] == 3
    (fed.root / "feed.json").write_bytes(feed)
    assert ipdn_main(["verify", "--registry", str(fed.root / "hub" / "registry.json"),
                      str(fed.root / "feed.json")]) == 0

    # Revoked by the operator: refused from the next request.
    fed.cli("node", "partner", "revoke", "--dir", str(fed.root / "KR"), "Doha Culture Portal")
    status, problem = fetch(f"{kr}/api/v1/feeds/feed.json", key)
    assert status == 401 and json.loads(problem)["reason"] == "partner-key-revoked"
