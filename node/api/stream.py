"""The record stream: ``GET /api/v1/records/stream``, server-sent events of the records this node holds as they change
(docs/PROTOCOL.md §9.2, docs/adr/0026-record-stream.md).

Each event is a record page's item (``data:``) under the cursor a page would continue from after it (``id:``), so
a client resumes with ``Last-Event-ID`` (or ``cursor``) exactly where it stopped, and pages and stream are one
sequence. The stream takes the record page's filters.

Live and resume are one code path: the store's :class:`~federation.server.broadcast.Broadcast` wakes every stream
after a commit that changes records (pulled from the hub or published here), and each stream reads from the store
what lies after its own cursor, in pages. Nothing is queued in memory for a stream: a slow client only reads more
at its next wake, and a client that cannot take a write within ``stream_write_timeout`` is dropped (it resumes).
An idle stream gets a comment every ``stream_heartbeat`` seconds, which also re-reads the store (a commit by
another process sharing the database is seen by then at the latest). Streams are counted per partner key (per
client address without one) and in all; on shutdown every stream ends at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web

from federation.server.web import Problem
from node.api.records import read_filters
from node.appkeys import CONFIG, SERVICE
from node.partners.access import PARTNER
from node.store.records import StoredRecord

log = logging.getLogger("ipdn.node")

PATH = "/api/v1/records/stream"
BATCH = 100  # records per read from the store
HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
           # nginx buffers answers unless told not to; browsers on another origin need CORS (no cookies are used)
           "X-Accel-Buffering": "no", "Access-Control-Allow-Origin": "*"}


@dataclass
class Streams:
    """The open streams, counted per client and in all, and whether the node is shutting down."""

    per_client: int
    total: int
    retry_after: str
    open: Counter[str] = field(default_factory=Counter)
    stopping: bool = False

    @contextlib.contextmanager
    def admit(self, client: str) -> Iterator[None]:
        """Hold one stream slot of ``client`` while the block runs.

        Raises:
            Problem: 503 ``streams-full`` (the node's limit, or shutting down), 429 ``too-many-streams`` (the
                client's), both with Retry-After.
        """
        if self.stopping or self.open.total() >= self.total:
            raise Problem(503, "streams-full", f"this node serves at most {self.total} record streams at once",
                          headers={"Retry-After": self.retry_after})
        if self.open[client] >= self.per_client:
            raise Problem(429, "too-many-streams", f"at most {self.per_client} record streams at once per partner key "
                          "(per client address without one)", headers={"Retry-After": self.retry_after})
        self.open[client] += 1
        try:
            yield
        finally:
            self.open[client] -= 1
            if self.open[client] <= 0:
                del self.open[client]


STREAMS = web.AppKey("record_streams", Streams)


def _event(record: StoredRecord, event_id: str) -> bytes:
    name = b"tombstone" if record.op == "delete" else b"record"
    data = b"".join(b"data: " + line + b"\n" for line in record.item_json().splitlines())  # compact JSON: one line
    return b"id: " + event_id.encode() + b"\nevent: " + name + b"\n" + data + b"\n"


async def stream_records(request: web.Request) -> web.StreamResponse:
    config, service, streams = request.app[CONFIG], request.app[SERVICE], request.app[STREAMS]
    changed = service.store.changed
    filters = read_filters(request)
    cursor = request.headers.get("Last-Event-ID") or request.query.get("cursor") or None
    if cursor is None and filters["updated_since"] is None:
        cursor = await service.latest_cursor()  # from now on; updated_since replays from that time
    partner = request.get(PARTNER)
    with streams.admit(f"key:{partner.key_id}" if partner else f"addr:{request.remote}"):
        generation = changed.generation  # taken before each read: a commit after it wakes the wait below
        page = await service.list_records(**filters, cursor=cursor, limit=BATCH)  # a bad cursor: 400, not a stream
        resp = web.StreamResponse(headers=HEADERS)
        await resp.prepare(request)

        async def send(data: bytes) -> None:
            async with asyncio.timeout(config.stream_write_timeout):
                await resp.write(data)

        try:
            await send(f"retry: {round(config.stream_retry * 1000)}\n\n".encode())
            while True:
                items, more = page
                if items:
                    ids = [service.cursor_of(r) for r in items]
                    await send(b"".join(_event(r, i) for r, i in zip(items, ids, strict=True)))
                    cursor = ids[-1]
                if more is None:  # caught up: wait for a commit, or send a heartbeat
                    woke = await changed.wait(generation, config.stream_heartbeat)
                    if streams.stopping or request.transport is None or request.transport.is_closing():
                        break
                    if woke == generation:
                        await send(b": keep-alive\n\n")
                generation = changed.generation
                page = await service.list_records(**filters, cursor=cursor, limit=BATCH)
        except TimeoutError:
            log.warning("record stream to %s dropped: a write waited over %ss", request.remote,
                        config.stream_write_timeout)
            if request.transport is not None:
                request.transport.abort()  # the client resumes with Last-Event-ID
        except ConnectionError:
            pass  # the client went away
        return resp


def register_routes(app: web.Application) -> None:
    """The stream's route (before the record API's ``/api/v1/records/{record_id}``: register this first) and its
    limits; on shutdown every open stream ends, so none holds the graceful stop."""
    config = app[CONFIG]
    streams = app[STREAMS] = Streams(config.stream_max_per_client, config.stream_max_total,
                                     str(max(1, math.ceil(config.stream_retry))))

    async def stop(app: web.Application) -> None:
        streams.stopping = True
        if SERVICE in app:
            app[SERVICE].store.changed.notify()

    app.on_shutdown.append(stop)
    app.router.add_get(PATH, stream_records, allow_head=False)
