"""``GET /api/v1/registry``: the current registry, or any earlier version of it (PROTOCOL.md §8.1)."""

from __future__ import annotations

from aiohttp import web

from federation.hub.api.intake import int_param
from federation.hub.appkeys import SERVICE
from federation.server.web import Problem


async def get_registry(request: web.Request) -> web.Response:
    """The current registry, or ``?version=N`` (every version stays available, so nodes can follow
    the chain one justified step at a time)."""
    if "version" in request.query:
        version = int_param(request, "version", 1, 1, 2**31)
        doc = await request.app[SERVICE].store.registry_version(version)
        if doc is None:
            raise Problem(404, "no-such-registry-version", f"no registry version {version}")
        return web.Response(body=doc, content_type="application/json",
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})
    await request.app[SERVICE].fresh()
    reg = request.app[SERVICE].registry
    return web.Response(body=reg.to_bytes(), content_type="application/json",
                        headers={"Cache-Control": "no-cache", "ETag": f'"{reg.hash}"'})


def register_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/registry", get_registry)
