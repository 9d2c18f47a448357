"""Whole answers to the public pages, kept until the node's data changes (docs/adr/0025-portal-urls-and-caching.md).

A portal page or a record page is a function of the request (path, query, the language it negotiates), the
records held, the registry and today's date. The records held change only in a commit, after which the store's
``changed`` broadcast moves to a new generation (node/store/records.py). An answer is therefore kept under
(path and query, the language asked, the generation, the registry version, the day) and served again, without a
query or a render, until one of them moves; nothing is ever invalidated by hand, and the key is taken before the
handler reads, so an answer made from data older than a commit is filed under the generation before it and never
served after it. Another process writing the same database (``ipdn node import``, a second server on PostgreSQL)
wakes nobody here (ADR 0026), so an answer is also kept at most ``ANSWER_SECONDS``. The middlewares (access, rate
limits, logs, metrics) run for every request as before.

``BoundedCache`` is the byte-bounded LRU the feeds' renderings use too (node/partners/feeds.py).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from time import monotonic
from typing import Generic, TypeVar

from aiohttp import web
from multidict import CIMultiDict

from node.appkeys import SERVICE

ANSWERS_BYTES = 32 * 1024 * 1024  # answers kept in all
ANSWER_SECONDS = 5.0  # the longest an answer is served again
HEADERS_SIZE = 1024  # what an answer's headers are counted as, beside its body
CACHED_STATUSES = (200, 410)  # what is the same for everyone until the data changes (404s are not kept: cheap)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """The latest values by key, least recently used dropped first, at most ``max_bytes`` in all (as ``size`` counts
    them)."""

    def __init__(self, max_bytes: int, size: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self._size_of = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._size = 0

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        size = self._size_of(value)
        if size > self.max_bytes or key in self._items:
            return
        self._items[key] = value
        self._size += size
        while self._size > self.max_bytes:
            self._size -= self._size_of(self._items.popitem(last=False)[1])


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: CIMultiDict[str]

    def size(self) -> int:
        return len(self.body) + HEADERS_SIZE


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ANSWERS = web.AppKey("portal_answers", BoundedCache[Hashable, Answer])


def cached(handler: Handler) -> Handler:
    """``handler``'s answers kept (see the module's text); 304 when ``If-None-Match`` names a kept answer's ETag."""

    async def answer(request: web.Request) -> web.StreamResponse:
        cache = request.app.get(ANSWERS)
        if cache is None:
            return await handler(request)
        service = request.app[SERVICE]
        key = (handler, request.path_qs, request.headers.get("Accept-Language", ""), service.store.changed.generation,
               service.registry.registry.version, service.clock().date(), int(monotonic() // ANSWER_SECONDS))
        kept = cache.get(key)
        if kept is None:
            response = await handler(request)
            if isinstance(response, web.Response) and response.status in CACHED_STATUSES and isinstance(
                    response.body, bytes):
                headers = CIMultiDict(response.headers)
                headers.popall("Content-Length", None)
                cache.put(key, Answer(response.status, response.body, headers))
            return response
        etag = kept.headers.get("ETag", "").strip('"')
        if kept.status == 200 and etag and any(t.value in (etag, "*") for t in request.if_none_match or ()):
            headers = CIMultiDict(kept.headers)
            headers.popall("Content-Type", None)
            return web.Response(status=304, headers=headers)
        return web.Response(status=kept.status, body=kept.body, headers=kept.headers)

    return answer


def install(app: web.Application, max_bytes: int = ANSWERS_BYTES) -> None:
    app[ANSWERS] = BoundedCache(max_bytes, Answer.size)
