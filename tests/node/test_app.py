"""The node's HTTP API: authoring with the operator token, reading without, problems for every error."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from federation.protocol.registry import SignedRegistry
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import verify_envelope
from node.app import create_app
from node.appkeys import SERVICE
from node.config import NodeConfig
from tests.support.factories import Member
from tests.support.nodes import AUTH, PROBLEM, TOKEN, publish, url


@pytest.fixture
async def client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    return await aiohttp_client(create_app(config, sync=False))


class TestAuthoringApi:
    async def test_publish_returns_signed_envelope(self, client: TestClient, event: dict[str, Any],
                                                   registry: SignedRegistry) -> None:
        """201 with the record id, version, seq, hash and an envelope that verifies against the registry."""
        doc = await publish(client, event)
        assert (doc["version"], doc["seq"]) == (1, 1) and doc["record_id"].startswith("QA:")
        result = verify_envelope(json.dumps(doc["envelope"]).encode(),
                                 keys=registry.registry.member_keys().get, schemas=default_schemas(),
                                 now=datetime.now(UTC))
        assert result.ok and result.envelope is not None and result.envelope.hash == doc["hash"]

    async def test_publish_without_token_refused(self, client: TestClient, event: dict[str, Any]) -> None:
        """No token: 401 problem with a Bearer challenge, nothing stored."""
        resp = await client.post("/api/v1/records", json={"kind": "cultural-event", "body": event})
        assert resp.status == 401 and resp.content_type == PROBLEM
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await (await client.get("/api/v1/records")).json())["items"] == []

    async def test_publish_with_wrong_token_refused(self, client: TestClient, event: dict[str, Any]) -> None:
        """Another token, or another scheme, is refused like none."""
        for header in ("Bearer not-the-token", f"Basic {TOKEN}", "Bearer "):
            resp = await client.post("/api/v1/records", json={"kind": "cultural-event", "body": event},
                                     headers={"Authorization": header})
            assert resp.status == 401, header

    async def test_invalid_record_refused_with_pointers(self, client: TestClient, event: dict[str, Any]) -> None:
        """422 problem listing each issue with pointer, keyword and message; nothing stored."""
        body = {**event, "status": "maybe"}
        resp = await client.post("/api/v1/records", json={"kind": "cultural-event", "body": body}, headers=AUTH)
        assert resp.status == 422 and resp.content_type == PROBLEM
        doc = await resp.json()
        assert doc["reason"] == "schema-invalid"
        assert {"pointer": "/status", "keyword": "enum"} in [
            {k: e[k] for k in ("pointer", "keyword")} for e in doc["errors"]]
        assert (await (await client.get("/api/v1/status")).json())["records"]["own"] == 0

    async def test_unknown_kind_refused(self, client: TestClient, event: dict[str, Any]) -> None:
        """A kind without a schema is a 422 unknown-schema problem."""
        resp = await client.post("/api/v1/records", json={"kind": "recipe", "body": event}, headers=AUTH)
        assert resp.status == 422 and (await resp.json())["reason"] == "unknown-schema"

    async def test_malformed_request_refused(self, client: TestClient) -> None:
        """Not JSON, duplicate keys, or missing members: 400 problems."""
        for data in (b"{", b'{"kind":"cultural-event","kind":"x","body":{}}', b'{"body":{}}'):
            resp = await client.post("/api/v1/records", data=data, headers=AUTH)
            assert resp.status == 400 and resp.content_type == PROBLEM, data

    async def test_update_cancel_delete(self, client: TestClient, event: dict[str, Any]) -> None:
        """PUT bumps version and seq; cancel sets status cancelled; DELETE answers the tombstone."""
        rid = (await publish(client, event))["record_id"]
        resp = await client.put(url(rid), json={"body": {**event, "status": "postponed"}}, headers=AUTH)
        assert resp.status == 200 and (await resp.json())["version"] == 2
        resp = await client.post(url(rid) + "/cancel", json={"reason": "storm"}, headers=AUTH)
        assert resp.status == 200 and (await resp.json())["seq"] == 3
        assert (await (await client.get(url(rid))).json())["status"] == "cancelled"
        resp = await client.delete(url(rid), headers=AUTH)
        assert resp.status == 200 and (await resp.json())["version"] == 4
        item = await (await client.get(url(rid))).json()
        assert (item["op"], item["status"], item["body"]) == ("delete", "deleted", None)

    async def test_change_without_token_refused(self, client: TestClient, event: dict[str, Any]) -> None:
        """Update, cancel and delete need the token too."""
        rid = (await publish(client, event))["record_id"]
        for resp in (await client.put(url(rid), json={"body": event}), await client.post(url(rid) + "/cancel"),
                     await client.delete(url(rid))):
            assert resp.status == 401
        assert (await (await client.get(url(rid))).json())["version"] == 1

    async def test_update_of_other_members_record_refused(self, client: TestClient, kr: Member,
                                                          event: dict[str, Any]) -> None:
        """403 problem: only the origin can publish a version of its record."""
        await client.app[SERVICE].applier.apply_log(0, [(1, kr.publish(event, record_id="KR:a").to_dict())])
        resp = await client.put(url("KR:a"), json={"body": event}, headers=AUTH)
        assert resp.status == 403 and (await resp.json())["reason"] == "not-own-record"
        assert (await client.delete(url("KR:a"), headers=AUTH)).status == 403

    async def test_update_of_unknown_record_not_found(self, client: TestClient, event: dict[str, Any]) -> None:
        """404 problem for an own record id that does not exist."""
        resp = await client.put(url("QA:nothing"), json={"body": event}, headers=AUTH)
        assert resp.status == 404 and resp.content_type == PROBLEM


class TestReadingApi:
    async def test_get_record_item(self, client: TestClient, event: dict[str, Any]) -> None:
        """The item carries the record's fields, its body and its envelope; no token needed."""
        doc = await publish(client, event)
        item = await (await client.get(url(doc["record_id"]))).json()
        assert {k: item[k] for k in ("record_id", "origin", "kind", "version", "op", "seq", "hash")} == {
            "record_id": doc["record_id"], "origin": "QA", "kind": "cultural-event", "version": 1, "op": "put",
            "seq": 1, "hash": doc["hash"]}
        assert item["body"] == event and item["envelope"] == doc["envelope"] and item["status"] == event["status"]

    async def test_unknown_record_not_found(self, client: TestClient) -> None:
        """404 problem."""
        resp = await client.get(url("QA:nothing"))
        assert resp.status == 404 and resp.content_type == PROBLEM

    async def test_listing_pages_with_cursor(self, client: TestClient, event: dict[str, Any]) -> None:
        """Pages follow next_cursor until it is null; every record appears exactly once."""
        ids = {(await publish(client, event))["record_id"] for _ in range(5)}
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            doc = await (await client.get("/api/v1/records", params=params)).json()
            seen += [i["record_id"] for i in doc["items"]]
            cursor = doc["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids)

    async def test_listing_filters(self, client: TestClient, event: dict[str, Any]) -> None:
        """kind, origin and updated_since narrow the list."""
        await publish(client, event)
        get = client.get
        assert len((await (await get("/api/v1/records", params={"kind": "cultural-event"})).json())["items"]) == 1
        assert (await (await get("/api/v1/records", params={"kind": "capacity-programme"})).json())["items"] == []
        assert (await (await get("/api/v1/records", params={"origin": "KR"})).json())["items"] == []
        later = {"updated_since": "2999-01-01T00:00:00Z"}
        assert (await (await get("/api/v1/records", params=later)).json())["items"] == []
        # One instant written with two offsets selects the same records.
        cut = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        in_doha = cut.astimezone(timezone(timedelta(hours=3))).isoformat()
        z = (await (await get("/api/v1/records", params={"updated_since": cut.isoformat()})).json())["items"]
        plus3 = (await (await get("/api/v1/records", params={"updated_since": in_doha})).json())["items"]
        assert len(z) == len(plus3) == 1

    @pytest.mark.parametrize("params", [{"cursor": "not-a-cursor"}, {"limit": "0"}, {"limit": "x"},
                                        {"updated_since": "yesterday"}, {"updated_since": "2020-01-01T00:00:00"}])
    async def test_bad_query_refused(self, client: TestClient, params: dict[str, str]) -> None:
        """An unreadable cursor, limit or time is a 400 problem."""
        resp = await client.get("/api/v1/records", params=params)
        assert resp.status == 400 and resp.content_type == PROBLEM

    async def test_status(self, client: TestClient, event: dict[str, Any]) -> None:
        """The status document names the node, the registry, the hub, the outbox and the counts."""
        await publish(client, event)
        doc = await (await client.get("/api/v1/status")).json()
        assert (doc["role"], doc["member"], doc["registry_version"], doc["cursor"]) == ("node", "QA", 1, 0)
        assert set(doc["hub"]) >= {"url", "reachable", "last_push_at", "last_pull_at", "last_error"}
        assert doc["outbox"]["pending"] == 1 and doc["outbox"]["rejected"] == 0
        assert doc["records"] == {"own": 1, "received": 0}
        assert (doc["quarantine"], doc["alarms"]) == (0, [])
