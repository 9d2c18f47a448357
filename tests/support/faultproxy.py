"""A fault-injecting TCP proxy for the end-to-end tests: it sits at the registry's hub_url, in front of the hub.

For each HTTP request that crosses it (the first client bytes after the previous answer began), it draws one
action from a seeded random schedule:

- ``pass``: forward as is;
- ``delay``: hold the request for up to ``max_delay`` seconds, then forward it;
- ``drop``: close the client's connection without forwarding anything;
- ``cut_request``: forward part of the request, then close both sides (the hub sees a truncated body);
- ``cut_response``: forward the request, then only part of the answer, then close (the hub did the work; the
  client never learns it: a push acknowledged but not received);
- ``duplicate``: forward as is and, once the answer begins, send the same request bytes again on a new upstream
  connection (a replay: idempotent push and RFC 9421 replay protection must both hold).

It knows nothing of HTTP beyond "the client speaks first, then the server answers" (aiohttp's client does not
pipeline). The seed makes the mix of faults reproducible; which request meets which fault depends on timing.
The proxy runs its own event loop in a thread so that synchronous tests can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

ACTIONS = ("pass", "delay", "drop", "cut_request", "cut_response", "duplicate")
DEFAULT_WEIGHTS = {"pass": 50, "delay": 15, "drop": 8, "cut_request": 7, "cut_response": 10, "duplicate": 10}


@dataclass
class Replay:
    """A duplicated request and the status line the hub answered it with."""

    request_line: str
    status: int | None


@dataclass
class _Conn:
    action: str = "pass"
    in_request: bool = False
    request: bytearray = field(default_factory=bytearray)


class FaultProxy:
    def __init__(self, listen_port: int, upstream_port: int, *, seed: int, max_delay: float = 0.4,
                 weights: dict[str, int] | None = None) -> None:
        self.listen_port, self.upstream_port = listen_port, upstream_port
        self.rng = random.Random(seed)
        self.max_delay = max_delay
        self.weights = weights or DEFAULT_WEIGHTS
        self.counts: Counter[str] = Counter()
        self.replays: list[Replay] = []
        self.enabled = True  # False: forward everything untouched
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- control, from the test's thread ------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the proxy ----------------------------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._spawn, "127.0.0.1", self.listen_port)

    async def _close(self) -> None:
        if self._server:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _draw(self) -> str:
        if not self.enabled:
            return "pass"
        action = self.rng.choices(list(self.weights), weights=list(self.weights.values()))[0]
        self.counts[action] += 1
        return action

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:  # the hub is down: the client sees a closed connection, as it would without us
            client_w.close()
            return
        conn = _Conn()
        closed = asyncio.Event()

        def close_all() -> None:
            for w in (client_w, up_w):
                with contextlib.suppress(Exception):
                    w.transport.abort()
            closed.set()

        async def upstream() -> None:  # client -> hub
            while data := await client_r.read(65536):
                if not conn.in_request:
                    conn.in_request, conn.action = True, self._draw()
                    conn.request.clear()
                    if conn.action == "drop":
                        return close_all()
                    if conn.action == "delay":
                        await asyncio.sleep(self.rng.uniform(0, self.max_delay))
                    if conn.action == "cut_request" and len(data) > 1:
                        up_w.write(data[:self.rng.randrange(1, len(data))])
                        await up_w.drain()
                        await asyncio.sleep(0.05)
                        return close_all()
                conn.request.extend(data)
                up_w.write(data)
                await up_w.drain()
            close_all()

        async def downstream() -> None:  # hub -> client
            while data := await up_r.read(65536):
                if conn.in_request:
                    conn.in_request = False
                    if conn.action == "duplicate":
                        self._spawn_replay(bytes(conn.request))
                    if conn.action == "cut_response":
                        client_w.write(data[:self.rng.randrange(0, len(data))])
                        await client_w.drain()
                        return close_all()
                client_w.write(data)
                await client_w.drain()
            close_all()

        pumps = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await closed.wait()
        finally:
            for p in pumps:
                p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    def _spawn_replay(self, request: bytes) -> None:
        task = asyncio.ensure_future(self._replay(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replay(self, request: bytes) -> None:
        line = request.split(b"\r\n", 1)[0].decode("latin-1")
        status = None
        try:
            r, w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            w.write(request)
            await w.drain()
            head = await asyncio.wait_for(r.readline(), 10)
            status = int(head.split()[1]) if head.startswith(b"HTTP/") else None
            w.transport.abort()
        except (OSError, TimeoutError, ValueError, IndexError):
            pass
        self.replays.append(Replay(line, status))
