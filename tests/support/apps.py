"""A node's and a hub's aiohttp applications over SQLite in a directory, each with /api/v1/openapi.json: for the
tests that look at every route (OpenAPI, metrics, alerts)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiohttp import web

from federation.hub.app import create_app as create_hub_app
from federation.hub.config import HubConfig
from federation.protocol.keys import SigningKey
from federation.server import openapi
from node.app import create_app as create_node_app
from tests.support.factories import Member
from tests.support.hubdir import make_hub_dir
from tests.support.nodes import HUB_URL as NODE_HUB_URL
from tests.support.nodes import make_config, make_registry

HUB_TOKEN = "hub-operator-token"


def with_openapi(app: web.Application, role: openapi.Role) -> web.Application:
    """The app with /api/v1/openapi.json, whether create_app already registers it or not."""
    if not any(r.resource is not None and r.resource.canonical == openapi.PATH for r in app.router.routes()):
        openapi.register_routes(app, role)
    return app


def node_app(directory: Path) -> web.Application:
    """QA's node (KR the other member), its hub unreachable, no sync."""
    qa, kr = Member("QA"), Member("KR")
    registry = make_registry(SigningKey.generate(), NODE_HUB_URL, qa, kr)
    # Rate limits high enough for the fuzzer to reach the handlers (429 is documented and allowed anyway).
    config = make_config(directory, qa, registry, db_url=f"sqlite+aiosqlite:///{directory / 'node.db'}",
                         anonymous_rate_per_minute=10**6)
    return with_openapi(create_node_app(config, sync=False), "node")


def hub_app(directory: Path, members: list[Member]) -> web.Application:
    """A hub whose registry (hub URL tests.support.hubdir.HUB_URL) lists ``members``; operator token HUB_TOKEN."""
    make_hub_dir(directory, {m.code: m for m in members})
    config = HubConfig.load(directory, db_url=f"sqlite+aiosqlite:///{directory / 'hub.db'}", verify_workers=0,
                            operator_token_sha256=hashlib.sha256(HUB_TOKEN.encode()).hexdigest(), max_wait=1,
                            governance_rate=10**6, governance_burst=10**6)  # the fuzzer reaches the handler
    return with_openapi(create_hub_app(config), "hub")
