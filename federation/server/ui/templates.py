"""How every server-rendered page of the hub and the nodes is made and served: jinja2 templates (autoescaping
always on, undefined names as errors), the strict security headers, and a page's fixed static files."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

import jinja2
from aiohttp import web

from federation.server.ui import formats
from federation.server.ui.i18n import Catalog, direction, install
from federation.server.web import Problem

# Scripts and styles only from this site's own files; nothing inline, nothing from elsewhere.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def secure_headers(response: web.StreamResponse, csp: str = PAGE_CSP) -> web.StreamResponse:
    response.headers.update({
        "Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    })
    response.headers.setdefault("Cache-Control", "no-store")
    return response


SHARED_TEMPLATES = Path(__file__).resolve().parent / "templates"  # frame.html: the operator pages' page frame


def template_env(directory: Path, catalog: Catalog) -> jinja2.Environment:
    """Templates from ``directory``, then the shared ones (SHARED_TEMPLATES), which any page may extend; their words
    from ``catalog`` in the page's language (``lang`` of the render: ``_``, ``ngettext``, ``pgettext``)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader([directory, SHARED_TEMPLATES]), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             extensions=["jinja2.ext.i18n"])
    env.globals["direction"] = direction
    install(env, catalog)
    formats.install(env)
    return env


SHARED_STATIC = Path(__file__).resolve().parent / "static"  # ipdn.css: the stylesheet of every operator page


class StaticFiles:
    """A fixed set of files (a page's stylesheet and script) served by name: only the files given, read
    once, with a strong ETag; anything else is a 404 problem."""

    TYPES: ClassVar[dict[str, str]] = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml",
                                       ".png": "image/png"}

    def __init__(self, files: Iterable[Path]) -> None:
        self.files = {p.name: p.read_bytes() for p in files}
        self.etags = {n: '"' + hashlib.sha256(b).hexdigest()[:32] + '"' for n, b in self.files.items()}

    async def handler(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self.files:
            raise Problem(404, "not-found", f"no static file {name!r}")
        headers = {"ETag": self.etags[name], "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if self.etags[name] in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        charset = "utf-8" if name.endswith((".css", ".js", ".svg")) else None
        return web.Response(body=self.files[name], headers=headers, content_type=self.TYPES[Path(name).suffix],
                            charset=charset)
