"""The record stream across real processes: a partner holding KR's stream sees a record published at QA as soon
as KR has applied it (hub and nodes as processes on SQLite), and a node stopped gracefully ends its streams."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from tests.support.factories import example_bodies
from tests.support.harness import Federation
from tests.support.sse import SseReader

pytestmark = pytest.mark.e2e


async def test_record_published_at_one_node_arrives_on_anothers_stream(fed_sqlite: Federation) -> None:
    fed = fed_sqlite
    fed.start("hub")
    fed.start_many(["QA", "KR"])
    body = example_bodies("cultural-event")[0]
    async with aiohttp.ClientSession() as session:
        resp = await session.get(fed.url("KR") + "/api/v1/records/stream?origin=QA")
        assert resp.status == 200
        sse = SseReader(resp)
        ids = []
        for _ in range(3):
            published = await asyncio.to_thread(fed.publish, "QA", "cultural-event", body)
            got = await sse.event(within=10)  # a deadline, not a pause: the event ends the wait
            assert (got.type, got.json()["record_id"], got.json()["hash"]) == (
                "record", published["record_id"], published["hash"])
            ids.append(got.last_event_id)
        # The ids are KR's page cursors: what a partner resumes from.
        page = await (await session.get(fed.url("KR") + "/api/v1/records?origin=QA&limit=1")).json()
        assert page["next_cursor"] == ids[0]

        started = time.monotonic()
        await asyncio.to_thread(fed.stop, "KR", signal.SIGTERM)  # graceful (SIGKILL only after 15 s)
        assert time.monotonic() - started < 10, "the open stream held up the node's graceful stop"
        assert await sse.ended(within=5)
