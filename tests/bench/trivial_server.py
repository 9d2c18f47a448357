"""The reads benchmark's bare baseline: an aiohttp server whose one handler answers a fixed small JSON.

Run: ``python -m tests.bench.trivial_server PORT`` (loopback only).
"""

from __future__ import annotations

import sys

from aiohttp import web

BODY = b'{"ok":true}'


async def hello(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


def main() -> None:
    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()
