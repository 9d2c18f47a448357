"""A real Standard Webhooks receiver for the webhook tests: an aiohttp server on a loopback port.

It verifies every delivery as a partner would, with nothing of the node's code:

- ``v1`` with the ``standardwebhooks`` library (``Webhook(secret).verify(body, headers)``), when it was
  given the subscription's secret;
- ``v1a`` per the spec's text with ``cryptography``: Ed25519 over ``{webhook-id}.{webhook-timestamp}.{body}``
  with the node's public ``whpk_`` key, and the timestamp within 5 minutes of now.

It deduplicates by ``webhook-id`` (a repeat is answered 200 and not counted again), and it can be told to
fail the next N deliveries (with a status), to answer 410 Gone, or to hang past the sender's timeout.
Refused deliveries (bad signature) are answered 401 and kept in ``refused``.

Async tests start it on their loop (:meth:`Receiver.start`); the end-to-end tests, which are synchronous,
run it in a thread of its own (:func:`threaded`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks import Webhook, WebhookVerificationError

TOLERANCE = 300


class SignatureError(Exception):
    pass


def verify_v1a(public_key: str, headers: dict[str, str], body: bytes, *, now: float | None = None,
               tolerance: int = TOLERANCE) -> None:
    """Check a ``v1a`` signature as the Standard Webhooks spec describes it. Raises SignatureError."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, timestamp, signatures = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not timestamp.isdigit():
        raise SignatureError("webhook-timestamp is not an integer")
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        raise SignatureError("webhook-timestamp is outside the tolerance (replayed or forged)")
    if not public_key.startswith("whpk_"):
        raise SignatureError("not a whpk_ key")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[len("whpk_"):]))
    content = f"{msg_id}.{timestamp}.".encode() + body
    for sig in signatures.split(" "):
        version, _, value = sig.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(value), content)
            return
        except (InvalidSignature, ValueError):
            continue
    raise SignatureError("no valid v1a signature")


@dataclass
class Received:
    id: str
    timestamp: int
    body: bytes
    doc: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Receiver:
    public_key: str  # the node's whpk_ key
    secret: str | None = None  # the subscription's whsec_ (None: v1 not checked)
    received: list[Received] = field(default_factory=list)  # verified, first time each id
    duplicates: list[str] = field(default_factory=list)  # ids seen again
    attempts: list[str] = field(default_factory=list)  # every request's webhook-id, in arrival order
    refused: list[str] = field(default_factory=list)  # why deliveries failed verification
    fail_next: int = 0  # answer the next N deliveries with fail_status
    fail_status: int = 500
    retry_after: str | None = None  # sent with the failures
    gone: bool = False  # answer 410 Gone
    hang: float = 0.0  # sleep this long before answering
    url: str = ""
    _runner: web.AppRunner | None = None
    _seen: set[str] = field(default_factory=set)
    _event: asyncio.Event | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        msg_id = request.headers.get("webhook-id", "")
        self.attempts.append(msg_id)
        if self.hang:
            await asyncio.sleep(self.hang)
        try:
            verify_v1a(self.public_key, headers, body)
            if self.secret is not None:
                Webhook(self.secret).verify(body, headers)
        except (SignatureError, WebhookVerificationError) as e:
            self.refused.append(str(e))
            return web.Response(status=401, text=str(e))
        if self.gone:
            return web.Response(status=410, text="this endpoint is gone")
        if self.fail_next > 0:
            self.fail_next -= 1
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            if 300 <= self.fail_status < 400:
                headers["Location"] = self.url  # a redirect to itself: followed, it would succeed
            return web.Response(status=self.fail_status, text="receiver told to fail", headers=headers)
        if msg_id in self._seen:
            self.duplicates.append(msg_id)
        else:
            self._seen.add(msg_id)
            self.received.append(Received(msg_id, int(request.headers["webhook-timestamp"]), body, json.loads(body),
                                          headers))
        if self._event is not None:
            self._event.set()
        return web.Response(status=204)

    async def start(self) -> str:
        """Serve on a free loopback port of the running loop; the delivery URL."""
        self._event = asyncio.Event()
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def types(self) -> list[str]:
        return [r.doc["type"] for r in self.received]


@contextlib.contextmanager
def threaded(receiver: Receiver) -> Iterator[Receiver]:
    """Run ``receiver`` on a loopback port in its own thread and event loop (for synchronous tests)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(receiver.start(), loop).result(timeout=10)
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(receiver.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
