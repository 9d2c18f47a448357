"""What the portal's tests share (tests/node/partners/test_portal*.py): every example published, and a page read."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from node.records.service import NodeService
from tests.support.factories import example_bodies


async def publish_examples(service: NodeService) -> dict[str, str]:
    """Every example of both kinds published by the node's member (their origins in the examples do not matter),
    keyed by the English title's first word (``-p`` after a programme's)."""
    ids = {}
    for kind in ("cultural-event", "capacity-programme"):
        for body in example_bodies(kind):
            env = await service.create(kind, body)
            ids[body["title"]["en"].split()[0] + ("-p" if kind == "capacity-programme" else "")] = env.payload.record_id
    return ids


async def get(client: TestClient, path: str, status: int = 200, **headers: str) -> tuple[str, Any]:
    """The page's text and the response, asserting its status."""
    resp = await client.get(path, headers=headers)
    text = await resp.text()
    assert resp.status == status, text[:2000]
    return text, resp
