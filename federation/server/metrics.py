"""Prometheus metrics (prometheus-client) for the hub and the nodes, served at ``GET /metrics``.

Each application owns its :class:`Metrics` and with it its own ``CollectorRegistry`` (never the process-wide
default), so several apps in one process, as in the tests, do not collide. HTTP requests are counted by
method, route (the route's canonical path, never the raw URL, so the label set stays bounded) and status.
Figures that are states rather than events (log size, lag, key expiry) are gauges set by the app's
``refresh`` coroutine just before each scrape, from the same code that answers the status API. Only the operator
reads them (federation/server/access.py: a token, the scrape token, or an ``operator_networks`` address).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from federation.server.access import operator_access
from federation.server.logs import Handler, observed

PATH = "/metrics"
METRICS = web.AppKey("metrics", object)


class Metrics:
    """The registry of one app, with the HTTP metrics every app has; roles add their own to ``registry``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(f"{prefix}_http_requests", "HTTP requests answered, by route and status",
                                     ["method", "route", "status"], registry=self.registry)
        self.http_seconds = Histogram(f"{prefix}_http_request_duration_seconds", "Time to answer, by route",
                                      ["route"], registry=self.registry,
                                      buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.refresh: Callable[[], Awaitable[None]] | None = None

    def middleware(self) -> Middleware:
        @web.middleware
        async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
            def count(route: str, status: int, seconds: float) -> None:
                self.http_requests.labels(request.method, route, str(status)).inc()
                if request.headers.get("Accept") != "text/event-stream":  # a stream's duration is its life
                    self.http_seconds.labels(route).observe(seconds)

            return await observed(request, handler, count)
        return count_requests

    async def handler(self, request: web.Request) -> web.Response:
        operator_access(request).require(request, scrape=True)  # keys, alarms, members: not for outsiders
        if self.refresh is not None:
            await self.refresh()
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def register(self, app: web.Application) -> None:
        app.router.add_get(PATH, self.handler)
