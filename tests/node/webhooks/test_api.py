"""The partner webhook API (node/webhooks/api.py) behind partner keys with the ``webhooks`` scope, and the
whole path through the node's app: a partner subscribes, the operator publishes, a real receiver verifies."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from federation.protocol.keys import PublicKey, b64u_decode
from federation.protocol.webhooks import public_key_text
from node.app import create_app
from node.appkeys import WEBHOOKS
from node.config import NodeConfig
from node.webhooks.events import load_or_create_key
from tests.support.factories import Member
from tests.support.nodes import AUTH, PROBLEM, bearer, issue, publish, url
from tests.support.webhook_receiver import Receiver

HOOK = "https://hooks.example.org/ipdn"


@pytest.fixture
def hooks(config: NodeConfig) -> NodeConfig:
    return dataclasses.replace(config, webhook_allow_loopback=True, webhook_schedule="0,0.05,0.05",
                               webhook_jitter=0.0, webhook_timeout=2.0)


@pytest.fixture
async def client(aiohttp_client: Any, hooks: NodeConfig) -> TestClient:
    return await aiohttp_client(create_app(hooks, sync=False))


@pytest.fixture
async def partner(hooks: NodeConfig) -> dict[str, str]:
    return bearer(await issue(hooks, "Doha Culture Portal", "read,webhooks"))


async def subscribe(client: TestClient, headers: dict[str, str], target: str = HOOK, **extra: Any) -> dict[str, Any]:
    resp = await client.post("/api/v1/webhooks", json={"url": target, **extra}, headers=headers)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def problem(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    assert resp.content_type == PROBLEM
    return str((await resp.json())["reason"])


class TestSigningKey:
    async def test_the_public_key_is_public(self, client: TestClient, hooks: NodeConfig, qa: Member) -> None:
        """The whpk_ key and its JWK are served without a key, and are not the member's key."""
        resp = await client.get("/api/v1/webhooks/signing-key")
        assert resp.status == 200
        doc = await resp.json()
        key = load_or_create_key(hooks.webhook_key_path)
        assert doc["key"] == public_key_text(key) and doc["signature_version"] == "v1a"
        assert base64.b64decode(doc["key"][5:]) == b64u_decode(doc["jwk"]["x"])
        assert PublicKey.from_jwk(doc["jwk"]).kid == key.kid != qa.key.kid  # not the member's record-signing key
        assert doc["tolerance_seconds"] == 300 and resp.headers["Cache-Control"] == "public, max-age=3600"


class TestManaging:
    async def test_create_list_get_delete(self, client: TestClient, partner: dict[str, str]) -> None:
        """A partner creates (secret shown once), lists, reads and deletes its subscription."""
        made = await subscribe(client, partner, filters={"kind": "cultural-event", "country": "QA",
                                                         "types": ["record.cancelled"]})
        assert made["secret"].startswith("whsec_") and made["state"] == "active" and made["url"] == HOOK
        assert made["filters"] == {"kind": "cultural-event", "country": "QA", "types": ["record.cancelled"]}
        assert made["partner"] == "Doha Culture Portal"
        listed = await (await client.get("/api/v1/webhooks", headers=partner)).json()
        assert [s["id"] for s in listed["items"]] == [made["id"]] and "secret" not in listed["items"][0]
        resp = await client.get(f"/api/v1/webhooks/{made['id']}", headers=partner)
        assert resp.status == 200 and "secret" not in await resp.json()
        assert (await client.delete(f"/api/v1/webhooks/{made['id']}", headers=partner)).status == 204
        assert await problem(await client.get(f"/api/v1/webhooks/{made['id']}", headers=partner),
                             404) == "subscription-not-found"

    async def test_a_key_is_needed_with_the_webhooks_scope(self, client: TestClient, hooks: NodeConfig) -> None:
        """No key: 401; a read-only key or the operator token: refused."""
        assert await problem(await client.post("/api/v1/webhooks", json={"url": HOOK}), 401) == "partner-key-required"
        reader = bearer(await issue(hooks, "reader", "read"))
        assert await problem(await client.post("/api/v1/webhooks", json={"url": HOOK}, headers=reader),
                             403) == "partner-scope-missing"
        assert await problem(await client.get("/api/v1/webhooks", headers=reader), 403) == "partner-scope-missing"
        assert await problem(await client.get("/api/v1/webhooks", headers=AUTH), 401) == "partner-key-required"

    async def test_another_partners_subscription_is_invisible(self, client: TestClient, partner: dict[str, str],
                                               hooks: NodeConfig) -> None:
        """Another partner's subscription is 404 on every route, as if it did not exist."""
        mine = await subscribe(client, partner)
        other = bearer(await issue(hooks, "National Library", "webhooks"))
        assert (await (await client.get("/api/v1/webhooks", headers=other)).json())["items"] == []
        for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/deliveries"), ("POST", "/enable"),
                             ("POST", "/retry")):
            resp = await client.request(method, f"/api/v1/webhooks/{mine['id']}{path}", headers=other)
            assert await problem(resp, 404) == "subscription-not-found", (method, path)

    @pytest.mark.parametrize("target", ["http://hooks.example.org/ipdn", "https://u:p@hooks.example.org/",
                                        "https://10.0.0.7/hook", "https://169.254.169.254/latest", "gopher://x/"])
    async def test_ssrf_urls_refused(self, aiohttp_client: Any, config: NodeConfig,
                                                      target: str) -> None:
        """Non-https, credentials, private and metadata addresses, loopback: 422 webhook-url-refused."""
        client = await aiohttp_client(create_app(config, sync=False))  # loopback not allowed either
        headers = bearer(await issue(config, "p", "webhooks"))
        resp = await client.post("/api/v1/webhooks", json={"url": target}, headers=headers)
        assert await problem(resp, 422) == "webhook-url-refused"
        resp = await client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=headers)
        assert await problem(resp, 422) == "webhook-url-refused"

    @pytest.mark.parametrize(("doc", "reason"), [
        ({"url": HOOK, "filters": {"kind": "recipe"}}, "bad-query"),
        ({"url": HOOK, "filters": {"country": "Qatar"}}, "bad-query"),
        ({"url": HOOK, "filters": {"types": ["record.created"]}}, "bad-query"),
        ({"url": HOOK, "filters": ["kind"]}, "bad-query"),
        ({"url": HOOK, "events": []}, "malformed-request"),
        ({"filters": {}}, "malformed-request"),
        ([HOOK], "malformed-request"),
    ])
    async def test_malformed_subscriptions_are_refused(self, client: TestClient, partner: dict[str, str],
                                                       doc: Any, reason: str) -> None:
        """Malformed bodies and filters are 400 problems."""
        assert await problem(await client.post("/api/v1/webhooks", json=doc, headers=partner), 400) == reason

    async def test_at_most_so_many_subscriptions(self, client: TestClient, partner: dict[str, str],
                                                 hooks: NodeConfig) -> None:
        """A partner cannot make the node fan out without bound: webhook_max_subscriptions each."""
        for i in range(hooks.webhook_max_subscriptions):
            await subscribe(client, partner, target=f"{HOOK}/{i}")
        resp = await client.post("/api/v1/webhooks", json={"url": HOOK}, headers=partner)
        assert await problem(resp, 409) == "too-many-subscriptions"

    async def test_deliveries_query_is_checked(self, client: TestClient, partner: dict[str, str]) -> None:
        """An unknown state or a bad limit is 400 bad-query."""
        made = await subscribe(client, partner)
        for query in ("state=lost", "limit=0", "limit=x"):
            resp = await client.get(f"/api/v1/webhooks/{made['id']}/deliveries?{query}", headers=partner)
            assert await problem(resp, 400) == "bad-query"


class TestThroughTheNode:
    async def test_subscribe_publish_receive_fail_disable_enable_retry(
            self, client: TestClient, partner: dict[str, str], event: dict[str, Any]) -> None:
        """A partner's whole journey over HTTP, against a real receiver verifying v1 (its secret) and v1a
        (the key the node publishes)."""
        worker = client.app[WEBHOOKS]
        key = (await (await client.get("/api/v1/webhooks/signing-key")).json())["key"]
        receiver = Receiver(key)
        await receiver.start()
        try:
            made = await subscribe(client, partner, target=receiver.url)
            receiver.secret = made["secret"]
            doc = await publish(client, event)
            await worker.drain()
            [got] = receiver.received
            assert got.doc["type"] == "record.published" and got.doc["data"]["record_id"] == doc["record_id"]
            assert got.doc["data"] == await (await client.get(url(doc["record_id"]))).json()

            receiver.gone = True
            resp = await client.post(url(doc["record_id"]) + "/cancel", headers=AUTH)
            assert resp.status == 200
            await worker.drain()
            sub = await (await client.get(f"/api/v1/webhooks/{made['id']}", headers=partner)).json()
            assert sub["state"] == "disabled" and sub["disabled"]["reason"] == "gone"
            failed = await (await client.get(f"/api/v1/webhooks/{made['id']}/deliveries?state=failed",
                                             headers=partner)).json()
            [d] = failed["items"]
            assert (d["type"], d["last_status"], d["tried"][0]["status"]) == ("record.cancelled", 410, 410)
            status = await (await client.get("/api/v1/status")).json()
            assert status["webhooks"] == {"subscriptions": {"active": 0, "disabled": 1},
                                          "deliveries": {"pending": 0, "failed": 1}}

            receiver.gone = False
            resp = await client.post(f"/api/v1/webhooks/{made['id']}/enable", headers=partner)
            assert resp.status == 200 and (await resp.json())["state"] == "active"
            resp = await client.post(f"/api/v1/webhooks/{made['id']}/retry", headers=partner)
            assert (await resp.json()) == {"requeued": 1}
            await worker.drain()
            assert receiver.types() == ["record.published", "record.cancelled"]
            assert receiver.received[1].id == d["id"]  # the same webhook-id as the attempt refused with 410
            everything = await (await client.get(f"/api/v1/webhooks/{made['id']}/deliveries",
                                                 headers=partner)).json()
            assert [x["state"] for x in everything["items"]] == ["delivered", "delivered"]
            assert receiver.refused == []
        finally:
            await receiver.stop()

    async def test_operator_disabled_cannot_be_enabled_by_the_partner(self, client: TestClient,
                                                                      partner: dict[str, str]) -> None:
        """What the operator disabled only the operator enables (409)."""
        made = await subscribe(client, partner)
        store = client.app[WEBHOOKS].store
        await store.disable(made["id"], "operator", "abuse report", datetime.now(UTC))
        resp = await client.post(f"/api/v1/webhooks/{made['id']}/enable", headers=partner)
        assert await problem(resp, 409) == "subscription-disabled-by-operator"
