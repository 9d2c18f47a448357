"""Operator-only reads (federation/server/access.py): ``/metrics`` and the full ``/api/v1/status`` of the hub and
the nodes. Real sockets: an outsider is a client whose address is not in ``operator_networks`` (default
127.0.0.1 and ::1), here one connecting from 127.0.0.2, or a client relayed by a reverse proxy on the machine."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from federation.hub.app import create_app as create_hub
from federation.hub.config import HubConfig
from node.app import create_app as create_node
from node.config import NodeConfig
from tests.support.factories import Member
from tests.support.hubdir import make_hub_dir
from tests.support.nodes import TOKEN, make_config, make_registry

OUTSIDER = "127.0.0.2"  # a loopback address, but not one of the default operator_networks
HUB_TOKEN = "hub-operator-token"
SCRAPE = "prometheus-scrape-token"
INTERNET = {"X-Forwarded-For": "203.0.113.9"}  # what a reverse proxy adds for a client out there
# What an outsider must never read: keys, alarms, the outbox, webhooks, the log's evidence, members' figures.
SECRETS = ("keys", "alarms", "outbox", "webhooks", "log", "members", "quarantine", "cursor", "hub")


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def node_config(tmp_path: Path, hub_key: Any, qa: Member) -> NodeConfig:
    return make_config(tmp_path, qa, make_registry(hub_key, "http://127.0.0.1:9", qa),
                       metrics_token_hash=_sha(SCRAPE))


@pytest.fixture
def hub_config(tmp_path: Path, qa: Member) -> HubConfig:
    d = tmp_path / "hub"
    d.mkdir()
    make_hub_dir(d, {"QA": qa})
    return HubConfig.load(d, db_url=f"sqlite+aiosqlite:///{d / 'hub.db'}", verify_workers=0,
                          operator_token_sha256=_sha(HUB_TOKEN), metrics_token_sha256=_sha(SCRAPE))


class Server:
    def __init__(self, server: TestServer) -> None:
        self.server = server

    async def get(self, path: str, *, source: str = "127.0.0.1", headers: dict[str, str] | None = None
                  ) -> tuple[int, Any, dict[str, str]]:
        """GET from ``source`` (the client socket's address): the status, the body (JSON when JSON), headers."""
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
        async with aiohttp.ClientSession(connector=connector) as session, \
                session.get(self.server.make_url(path), headers=headers or {}) as r:
            body = await r.json(content_type=None) if "json" in r.content_type else await r.text()
            return r.status, body, dict(r.headers)


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[TestServer] = []

    async def start(app: Any) -> Server:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Server(server)

    yield start
    for server in servers:
        await server.close()


async def test_metrics_not_readable_by_outsiders(serve: Any, node_config: NodeConfig, hub_config: HubConfig
                                                 ) -> None:
    """Keys' ends, alarms, members' lag: an outsider reaching /metrics directly, or through the reverse proxy on
    the machine (declared trusted or not, so that every client looks like the proxy's loopback), gets 401."""
    node = await serve(create_node(node_config, sync=False))
    hub = await serve(create_hub(hub_config))
    for target, reason in ((node, "unauthorized"), (hub, "operator-token-required")):
        assert (await target.get("/metrics"))[0] == 200  # the operator on the machine
        for source, headers in ((OUTSIDER, {}), ("127.0.0.1", INTERNET)):
            status, body, resp_headers = await target.get("/metrics", source=source, headers=headers)
            assert status == 401 and body["reason"] == reason, (source, headers, body)
            assert resp_headers["WWW-Authenticate"].startswith("Bearer")
    proxied = await serve(create_node(dataclasses.replace(node_config, trusted_proxies="127.0.0.1")))
    assert (await proxied.get("/metrics", headers=INTERNET))[0] == 401  # proxy trusted: the client judged


async def test_node_status_details_not_readable_by_outsiders(serve: Any, node_config: NodeConfig) -> None:
    """An outsider reads that the node is up, whose it is and which registry it follows; nothing else."""
    node = await serve(create_node(node_config, sync=False))
    full = (await node.get("/api/v1/status"))[1]
    assert {"keys", "alarms", "outbox", "webhooks"} <= set(full)
    for source, headers in ((OUTSIDER, {}), ("127.0.0.1", INTERNET),
                            (OUTSIDER, {"Authorization": "Bearer wrong"}),
                            (OUTSIDER, {"Authorization": f"Bearer {SCRAPE}"})):  # the scrape token opens metrics only
        status, doc, resp_headers = await node.get("/api/v1/status", source=source, headers=headers)
        assert status == 200 and doc == {"role": "node", "member": "QA", "registry_version": 1,
                                         "registry_expires_at": full["registry_expires_at"], "time": doc["time"],
                                         "restricted": True}
        assert not set(SECRETS) & set(doc) and "no-store" in resp_headers["Cache-Control"]


async def test_hub_member_figures_not_readable_by_outsiders(serve: Any, hub_config: HubConfig) -> None:
    """The hub's status lists every member's sync, keys' ends and refusals: outsiders see the log's size and the
    registry only (what the log and registry endpoints publish anyway)."""
    hub = await serve(create_hub(hub_config))
    assert "members" in (await hub.get("/api/v1/status"))[1]
    status, doc, _ = await hub.get("/api/v1/status", source=OUTSIDER)
    assert status == 200 and doc["restricted"] is True and doc["log_size"] == 0 and doc["registry_version"] == 1
    assert set(doc) == {"role", "hub_url", "registry_version", "registry_expires_at", "log_size", "time", "restricted"}


async def test_operator_token_scrape_token_and_allowed_address_let_the_operator_in(
        serve: Any, node_config: NodeConfig, hub_config: HubConfig) -> None:
    """From anywhere: the operator's token opens both; the scrape token opens /metrics only; an address in
    operator_networks (directly, or as the client a trusted proxy names) opens both without a token."""
    node = await serve(create_node(node_config, sync=False))
    hub = await serve(create_hub(hub_config))
    for target, operator in ((node, TOKEN), (hub, HUB_TOKEN)):
        bearer = {"Authorization": f"Bearer {operator}"}
        assert (await target.get("/metrics", source=OUTSIDER, headers=bearer))[0] == 200
        assert "restricted" not in (await target.get("/api/v1/status", source=OUTSIDER, headers=bearer))[1]
        scrape = {"Authorization": f"Bearer {SCRAPE}"}
        status, text, _ = await target.get("/metrics", source=OUTSIDER, headers=scrape)
        assert status == 200 and "_http_requests_total" in text
        assert (await target.get("/metrics", source=OUTSIDER, headers={"Authorization": "Bearer nope"}))[0] == 401
    monitoring = await serve(create_node(dataclasses.replace(node_config, operator_networks=f"{OUTSIDER}/32")))
    assert (await monitoring.get("/metrics", source=OUTSIDER))[0] == 200
    assert "keys" in (await monitoring.get("/api/v1/status", source=OUTSIDER))[1]
    assert (await monitoring.get("/metrics"))[0] == 401  # the list replaces loopback; it does not add to it
    behind = await serve(create_node(dataclasses.replace(node_config, trusted_proxies="127.0.0.1",
                                                         operator_networks="10.1.2.0/24")))
    assert (await behind.get("/metrics", headers={"X-Forwarded-For": "10.1.2.7"}))[0] == 200
    forged = {"X-Forwarded-For": "10.1.2.7, 203.0.113.9"}  # the client wrote the first hop itself
    assert (await behind.get("/metrics", headers=forged))[0] == 401


async def test_status_page_reads_the_full_document_when_signed_in(serve: Any, node_config: NodeConfig) -> None:
    """The status page's live figures come from /status/document, which needs the page's sign-in, not an
    address: staff signed in from anywhere see them; without a session it answers the sign-in redirect."""
    node = await serve(create_node(node_config, sync=False))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(OUTSIDER, 0))) as session:
        r = await session.get(node.server.make_url("/status/document"), allow_redirects=False)
        assert r.status == 303
