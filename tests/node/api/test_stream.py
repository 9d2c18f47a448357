"""The record stream (node/api/stream.py): server-sent events read with a real client over loopback, on SQLite and
PostgreSQL. A record published or applied after connecting arrives; ids are the record pages' cursors, so
Last-Event-ID resumes with exactly what was missed; the record filters apply; scopes and stream limits refuse;
shutdown ends open streams at once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from node.app import create_app
from node.appkeys import SERVICE
from node.config import NodeConfig
from tests.support.factories import Member
from tests.support.nodes import AUTH, PROBLEM, bearer, issue, publish, url
from tests.support.sse import SseReader
from tests.support.timing import eventually

STREAM = "/api/v1/records/stream"


async def node(aiohttp_client: Any, config: NodeConfig, **over: Any) -> TestClient:
    return await aiohttp_client(create_app(dataclasses.replace(config, **over), sync=False))


@pytest.fixture
async def client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    return await node(aiohttp_client, config)


@contextlib.asynccontextmanager
async def stream(client: TestClient, path: str = STREAM, headers: dict[str, str] | None = None
                 ) -> AsyncIterator[SseReader]:
    resp = await client.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    try:
        yield SseReader(resp)
    finally:
        resp.close()


async def apply_from_hub(client: TestClient, *envs: Any) -> None:
    """Apply envelopes as if pulled from the hub's log, after what the node applied so far."""
    applier = client.server.app[SERVICE].applier
    after = await applier.cursor()
    await applier.apply_log(after, [(after + 1 + i, e.to_dict()) for i, e in enumerate(envs)])


class TestLive:
    async def test_record_published_after_connecting_arrives_as_its_item(self, client: TestClient,
                                                                         event: dict[str, Any]) -> None:
        before = await publish(client, event)  # held before connecting: not sent (the stream starts now)
        async with stream(client) as sse:
            assert sse.resp.headers["Content-Type"].startswith("text/event-stream")
            assert sse.resp.headers["Cache-Control"] == "no-cache"
            assert sse.resp.headers["X-Accel-Buffering"] == "no"
            assert sse.resp.headers["Access-Control-Allow-Origin"] == "*"
            published = await publish(client, event)
            got = await sse.event()
            assert sse.retry == 2000
            assert got.type == "record" and got.json()["record_id"] == published["record_id"] != before["record_id"]
            assert got.json() == await (await client.get(url(published["record_id"]))).json()

    async def test_record_applied_from_the_hub_after_connecting_arrives(self, client: TestClient, kr: Member,
                                                                        event: dict[str, Any]) -> None:
        async with stream(client) as sse:
            env = kr.publish(event, record_id="KR:a")
            await apply_from_hub(client, env)
            got = await sse.event()
            assert (got.type, got.json()["hash"], got.json()["origin"]) == ("record", env.hash, "KR")

    async def test_deletion_is_a_tombstone_event(self, client: TestClient, event: dict[str, Any]) -> None:
        rid = (await publish(client, event))["record_id"]
        async with stream(client) as sse:
            assert (await client.delete(url(rid), headers=AUTH)).status == 200
            got = await sse.event()
            assert got.type == "tombstone"
            assert (got.json()["record_id"], got.json()["op"], got.json()["body"]) == (rid, "delete", None)

    async def test_idle_stream_gets_heartbeat_comments(self, aiohttp_client: Any, config: NodeConfig) -> None:
        client = await node(aiohttp_client, config, stream_heartbeat=0.02)
        async with stream(client) as sse:
            assert await sse.comment() == "keep-alive"
            assert await sse.comment() == "keep-alive"


class TestResume:
    async def test_last_event_id_resumes_with_exactly_the_missed_records(self, client: TestClient,
                                                                         event: dict[str, Any]) -> None:
        async with stream(client) as sse:
            a = (await publish(client, event))["record_id"]
            first = await sse.event()
            assert first.json()["record_id"] == a
        missed = [(await publish(client, event))["record_id"] for _ in range(3)]
        async with stream(client, headers={"Last-Event-ID": first.last_event_id}) as sse:
            assert [(await sse.event()).json()["record_id"] for _ in range(3)] == missed
            later = (await publish(client, event))["record_id"]
            assert (await sse.event()).json()["record_id"] == later  # no duplicate of what was resumed

    async def test_event_ids_are_the_record_pages_cursors(self, client: TestClient, event: dict[str, Any]) -> None:
        async with stream(client) as sse:
            await publish(client, event)
            await publish(client, event)
            first, second = await sse.event(), await sse.event()
        page = await (await client.get("/api/v1/records?limit=1")).json()
        assert page["next_cursor"] == first.last_event_id
        async with stream(client, f"{STREAM}?cursor={first.last_event_id}") as sse:  # for EventSource's first GET
            assert (await sse.event()).last_event_id == second.last_event_id

    async def test_updated_since_replays_held_records(self, client: TestClient, event: dict[str, Any]) -> None:
        held = [(await publish(client, event))["record_id"] for _ in range(2)]
        async with stream(client, f"{STREAM}?updated_since=2000-01-01T00:00:00Z") as sse:
            assert [(await sse.event()).json()["record_id"] for _ in range(2)] == held

    async def test_cursor_not_issued_by_the_node_is_a_problem(self, client: TestClient) -> None:
        resp = await client.get(STREAM, headers={"Last-Event-ID": "not-a-cursor"})
        assert resp.status == 400 and resp.content_type == PROBLEM
        assert (await resp.json())["reason"] == "bad-query"


class TestFilters:
    async def test_status_filter_sends_only_matching_versions(self, client: TestClient,
                                                              event: dict[str, Any]) -> None:
        async with stream(client, f"{STREAM}?status=cancelled") as sse:
            await publish(client, event)
            rid = (await publish(client, event))["record_id"]
            assert (await client.post(url(rid) + "/cancel", headers=AUTH)).status == 200
            got = (await sse.event()).json()
            assert (got["record_id"], got["version"], got["status"]) == (rid, 2, "cancelled")

    async def test_origin_filter(self, client: TestClient, kr: Member, event: dict[str, Any]) -> None:
        async with stream(client, f"{STREAM}?origin=KR") as sse:
            await publish(client, event)
            env = kr.publish(event, record_id="KR:b")
            await apply_from_hub(client, env)
            await publish(client, event)
            assert (await sse.event()).json()["hash"] == env.hash
            later = kr.publish(event, record_id="KR:c")
            await apply_from_hub(client, later)
            assert (await sse.event()).json()["hash"] == later.hash  # the QA record between was not sent

    async def test_malformed_filter_is_a_problem(self, client: TestClient) -> None:
        resp = await client.get(f"{STREAM}?from=2026-13-01")
        assert resp.status == 400 and (await resp.json())["reason"] == "bad-query"


class TestAccess:
    async def test_stream_of_a_closed_node_without_read_scope_refused(self, aiohttp_client: Any,
                                                                      config: NodeConfig) -> None:
        client = await node(aiohttp_client, config, public_read=False)
        resp = await client.get(STREAM)
        assert resp.status == 401 and (await resp.json())["reason"] == "partner-key-required"
        hooks_only = await issue(config, "Hooks Only", "webhooks")
        resp = await client.get(STREAM, headers=bearer(hooks_only))
        assert resp.status == 403 and (await resp.json())["reason"] == "partner-scope-missing"
        async with stream(client, headers=bearer(await issue(config, "Reader"))) as sse:
            assert sse.resp.status == 200

    async def test_one_partner_holding_many_streams_refused(self, aiohttp_client: Any, config: NodeConfig) -> None:
        client = await node(aiohttp_client, config, stream_max_per_client=2, stream_heartbeat=0.02)
        key = await issue(config, "Greedy")
        async with stream(client, headers=bearer(key)), stream(client, headers=bearer(key)) as second:
            resp = await client.get(STREAM, headers=bearer(key))
            assert resp.status == 429 and resp.content_type == PROBLEM
            assert (await resp.json())["reason"] == "too-many-streams" and resp.headers["Retry-After"] == "2"
            async with stream(client, headers=bearer(await issue(config, "Other"))):  # another key is not held back
                pass
            second.resp.close()

            async def admitted() -> bool:
                r = await client.get(STREAM, headers=bearer(key))
                r.close()
                return r.status == 200

            await eventually(admitted)  # the slot is freed once the node sees the client gone

    async def test_streams_beyond_the_node_total_refused(self, aiohttp_client: Any, config: NodeConfig) -> None:
        client = await node(aiohttp_client, config, stream_max_total=2)
        async with stream(client, headers=bearer(await issue(config, "A"))), \
                stream(client, headers=bearer(await issue(config, "B"))):
            resp = await client.get(STREAM, headers=bearer(await issue(config, "C")))
            assert resp.status == 503 and (await resp.json())["reason"] == "streams-full"
            assert "Retry-After" in resp.headers


async def test_shutdown_ends_open_streams_at_once(config: NodeConfig) -> None:
    """A graceful stop does not wait for streams (aiohttp would wait up to its shutdown timeout, 60 s here)."""
    runner = web.AppRunner(create_app(config, sync=False), shutdown_timeout=60)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as session:
        readers = [SseReader(await session.get(f"http://{host}:{port}{STREAM}")) for _ in range(3)]
        assert all(r.resp.status == 200 for r in readers)
        async with asyncio.timeout(5):
            await runner.cleanup()
        for r in readers:
            assert await r.ended(within=5)
