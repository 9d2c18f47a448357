"""Partner access (node/partners/access.py): keys stored hashed, scopes, the public-read switch, rate limits with
429 + Retry-After, CORS preflight, and ``ipdn node partner add|list|revoke``. Store-backed tests run on
SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from node.app import create_app
from node.config import NodeConfig
from node.store.records import NodeStore
from tests.support.factories import Member
from tests.support.nodes import HUB_URL, PROBLEM, bearer, issue, make_registry, publish, url

READ_URLS = ["/api/v1/records", "/api/v1/feeds/events.ics", "/api/v1/feeds/feed.json", "/api/v1/feeds/atom.xml",
             "/oai?verb=Identify"]


@pytest.fixture
async def closed(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    """QA's node with public read switched off."""
    return await aiohttp_client(create_app(dataclasses.replace(config, public_read=False), sync=False))


@pytest.fixture
async def open_node(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    return await aiohttp_client(create_app(config, sync=False))


class TestPublicReadSwitch:
    @pytest.mark.parametrize("path", READ_URLS)
    async def test_reading_a_closed_node_without_a_key_is_refused(self, closed: TestClient, path: str) -> None:
        resp = await closed.get(path)
        assert resp.status == 401 and resp.content_type == PROBLEM
        assert (await resp.json())["reason"] == "partner-key-required"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert resp.headers["Access-Control-Allow-Origin"] == "*"  # a browser partner can read the refusal

    @pytest.mark.parametrize("path", READ_URLS)
    async def test_read_key_opens_every_partner_format(self, closed: TestClient, config: NodeConfig,
                                                       path: str) -> None:
        key = await issue(config, "Doha Culture Portal")
        resp = await closed.get(path, headers=bearer(key))
        assert resp.status == 200, await resp.text()
        assert resp.headers["Vary"] == "Authorization"
        assert "public" not in resp.headers.get("Cache-Control", "private")

    async def test_calendar_apps_can_pass_the_key_in_the_url(self, closed: TestClient, config: NodeConfig,
                                                             event: dict[str, Any]) -> None:
        await publish(closed, event)
        key = await issue(config, "calendar")
        resp = await closed.get("/api/v1/feeds/events.ics", params={"key": key})
        assert resp.status == 200 and "BEGIN:VEVENT" in await resp.text()

    async def test_harvester_posting_to_oai_pmh_cannot_bypass_the_switch(self, closed: TestClient,
                                                                         config: NodeConfig) -> None:
        resp = await closed.post("/oai", data={"verb": "Identify"})
        assert resp.status == 401
        key = await issue(config, "archive")
        resp = await closed.post("/oai", data={"verb": "Identify"}, headers=bearer(key))
        assert resp.status == 200 and "<Identify>" in await resp.text()

    async def test_key_in_the_oai_pmh_url_is_not_an_illegal_argument(self, closed: TestClient,
                                                                     config: NodeConfig) -> None:
        key = await issue(config, "archive")
        text = await (await closed.get("/oai", params={"verb": "Identify", "key": key})).text()
        assert "<Identify>" in text and "badArgument" not in text

    async def test_event_page_and_item_need_the_key_too(self, closed: TestClient, config: NodeConfig,
                                                        event: dict[str, Any]) -> None:
        rid = (await publish(closed, event))["record_id"]
        for path in (url(rid), "/events/" + rid):
            assert (await closed.get(path)).status == 401
            assert (await closed.get(path, headers=bearer(await issue(config, "p")))).status == 200

    async def test_status_openapi_and_authoring_stay_as_they_were(self, closed: TestClient,
                                                                  event: dict[str, Any]) -> None:
        assert (await closed.get("/api/v1/status")).status == 200
        assert (await closed.get("/api/v1/openapi.json")).status == 200
        await publish(closed, event)  # the operator token, no partner key

    async def test_open_node_reads_without_a_key(self, open_node: TestClient) -> None:
        resp = await open_node.get("/api/v1/records")
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Authorization" not in resp.headers.get("Vary", "")  # Vary: Accept only (JSON or JSCalendar)


class TestKeys:
    async def test_forged_key_is_refused_even_where_reading_is_public(self, open_node: TestClient,
                                                                      config: NodeConfig) -> None:
        real = await issue(config, "p")
        forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
        for key in (forged, "ipdn_pk_000000000000_" + "A" * 43, "ipdn_pk_junk"):
            resp = await open_node.get("/api/v1/records", headers=bearer(key))
            assert resp.status == 401 and (await resp.json())["reason"] == "partner-key-invalid"

    async def test_revoked_key_is_refused_from_the_next_request(self, closed: TestClient,
                                                                config: NodeConfig) -> None:
        key = await issue(config, "Library")
        assert (await closed.get("/api/v1/records", headers=bearer(key))).status == 200
        store = await NodeStore.open(config.db_url, config.member)
        try:
            assert await store.partners.revoke("Library", datetime.now(UTC)) == 1
        finally:
            await store.close()
        resp = await closed.get("/api/v1/records", headers=bearer(key))
        assert resp.status == 401 and (await resp.json())["reason"] == "partner-key-revoked"

    async def test_key_without_read_scope_cannot_read_a_closed_node(self, closed: TestClient,
                                                                    config: NodeConfig) -> None:
        key = await issue(config, "hooks only", "webhooks")
        resp = await closed.get("/api/v1/records", headers=bearer(key))
        assert resp.status == 403 and (await resp.json())["reason"] == "partner-scope-missing"

    async def test_stolen_database_does_not_reveal_keys(self, open_node: TestClient, config: NodeConfig) -> None:
        """Only the SHA-256 digest is stored: a copy of the database gives no usable key."""
        key = await issue(config, "p")
        assert (await open_node.get("/api/v1/records", headers=bearer(key))).status == 200
        store = await NodeStore.open(config.db_url, config.member)
        try:
            async with store.engine.connect() as conn:
                rows = [tuple(r) for r in await conn.execute(sa.text("SELECT * FROM partner_keys"))]
            used = (await store.partners.keys())[0].last_used_at
        finally:
            await store.close()
        secret = key.removeprefix("ipdn_pk_")[13:]  # after the 12-hex key id and its "_" (the secret may hold "_")
        assert len(secret) >= 40 and key not in repr(rows) and secret not in repr(rows)
        assert hashlib.sha256(key.encode()).hexdigest() in repr(rows)
        assert used is not None  # last use is recorded for the operator's list


class TestRateLimits:
    async def test_flooding_partner_gets_429_with_retry_after_and_others_are_unaffected(
            self, aiohttp_client: Any, config: NodeConfig) -> None:
        client = await aiohttp_client(create_app(config, sync=False))
        flooder, quiet = await issue(config, "flooder", rate=6), await issue(config, "quiet", rate=6)
        assert (await client.get("/api/v1/records", headers=bearer(flooder))).status == 200
        resp = await client.get("/api/v1/records", headers=bearer(flooder))
        assert resp.status == 429 and resp.content_type == PROBLEM
        assert (await resp.json())["reason"] == "rate-limited"
        assert resp.headers["Retry-After"] == "10"  # 6 a minute: one token every 10 s
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert (await client.get("/api/v1/records", headers=bearer(quiet))).status == 200

    async def test_anonymous_flood_is_limited_per_address_but_the_operator_is_not(
            self, aiohttp_client: Any, config: NodeConfig, event: dict[str, Any]) -> None:
        client = await aiohttp_client(create_app(dataclasses.replace(config, anonymous_rate_per_minute=1),
                                                 sync=False))
        assert (await client.get("/api/v1/feeds/feed.json")).status == 200
        assert (await client.get("/api/v1/feeds/feed.json")).status == 429
        for _ in range(3):
            await publish(client, event | {"title": {"en": f"t{_}"}})  # authoring is not a partner route

    async def test_rate_limit_never_hides_a_missing_or_wrong_key(self, aiohttp_client: Any,
                                                                 config: NodeConfig) -> None:
        """An address that spent its anonymous allowance still learns what is missing: 401, not 429 (issue 19)."""
        for public in (True, False):
            client = await aiohttp_client(create_app(dataclasses.replace(
                config, anonymous_rate_per_minute=1, public_read=public), sync=False))
            await client.get("/api/v1/webhooks/signing-key")  # the one anonymous webhook route: spends the budget
            assert (await client.get("/api/v1/webhooks/signing-key")).status == 429
            for path in ("/api/v1/webhooks", *([] if public else ["/api/v1/records"])):
                resp = await client.get(path)
                assert resp.status == 401 and (await resp.json())["reason"] == "partner-key-required", path
            resp = await client.get("/api/v1/records", headers=bearer("ipdn_pk_000000000000_" + "A" * 43))
            assert resp.status == 401 and (await resp.json())["reason"] == "partner-key-invalid"

    @pytest.mark.parametrize("over", [{"partner_rate_per_minute": 0}, {"anonymous_rate_per_minute": 0}])
    def test_zero_rate_refused_in_config(self, config: NodeConfig, over: dict[str, int]) -> None:
        from node.errors import ConfigError
        with pytest.raises(ConfigError):
            dataclasses.replace(config, **over)


class TestCors:
    @pytest.mark.parametrize("path", ["/api/v1/records", "/api/v1/feeds/feed.json", "/oai", "/api/v1/records/QA:x"])
    async def test_preflight_allows_reading_with_a_key(self, closed: TestClient, path: str) -> None:
        resp = await closed.options(path, headers={"Origin": "https://portal.example",
                                                   "Access-Control-Request-Method": "GET",
                                                   "Access-Control-Request-Headers": "authorization"})
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "GET" in resp.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        assert int(resp.headers["Access-Control-Max-Age"]) > 0

    async def test_etag_is_exposed_to_browser_scripts(self, open_node: TestClient) -> None:
        resp = await open_node.get("/api/v1/records", headers={"Origin": "https://portal.example"})
        assert "ETag" in resp.headers["Access-Control-Expose-Headers"]


class TestPartnerCli:
    def test_add_list_revoke(self, tmp_path: Path, qa: Member, hub_key: Any) -> None:
        reg = tmp_path / "registry.json"
        key_file = tmp_path / "QA.key.pem"
        qa.key.save(key_file)
        reg.write_bytes(make_registry(hub_key, HUB_URL, qa).to_bytes())
        node = tmp_path / "qa"

        def ipdn(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "federation", *args], capture_output=True, text=True,
                                  timeout=60, check=False)

        assert ipdn("node", "init", "--dir", str(node), "--member", "QA", "--key", str(key_file),
                    "--registry", str(reg)).returncode == 0
        added = ipdn("node", "partner", "add", "--dir", str(node), "National Library", "--scope", "read,webhooks",
                     "--rate", "120")
        assert added.returncode == 0, added.stderr
        key = added.stdout.strip()
        assert key.startswith("ipdn_pk_") and "shown only now" in added.stderr
        listed = ipdn("node", "partner", "list", "--dir", str(node), "--json")
        [doc] = json.loads(listed.stdout)
        assert doc["name"] == "National Library" and doc["scopes"] == ["read", "webhooks"]
        assert doc["rate_per_minute"] == 120 and doc["revoked_at"] is None and key not in listed.stdout
        assert ipdn("node", "partner", "revoke", "--dir", str(node), "National Library").returncode == 0
        [doc] = json.loads(ipdn("node", "partner", "list", "--dir", str(node), "--json").stdout)
        assert doc["revoked_at"] is not None
        again = ipdn("node", "partner", "revoke", "--dir", str(node), "National Library")
        assert again.returncode == 2 and "no live key" in again.stderr
        bad = ipdn("node", "partner", "add", "--dir", str(node), "x", "--scope", "admin")
        assert bad.returncode == 2 and "scopes are" in bad.stderr

