"""A server-sent events client for tests, parsing as the WHATWG HTML standard's event stream interpretation does
(§9.2.6): lines end at LF, CRLF or CR; a blank line dispatches; ``:`` starts a comment; ``data`` lines join with
LF; ``id`` sets the last event id (kept across events, ignored when it holds NUL); ``retry`` takes digits only; an
event without data is not dispatched. No SSE client library is installed; this one reads an aiohttp response."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientResponse


@dataclass(frozen=True)
class SseEvent:
    type: str
    data: str
    last_event_id: str

    def json(self) -> Any:
        return json.loads(self.data)


class SseReader:
    def __init__(self, resp: ClientResponse) -> None:
        self.resp = resp
        self.last_event_id = ""
        self.retry: int | None = None
        self.comments: list[str] = []
        self._pending = b""
        self._lines: list[bytes] = []

    async def _line(self) -> bytes:
        while not self._lines:
            chunk = await self.resp.content.readany()
            if not chunk:
                raise EOFError("the stream ended")
            self._pending += chunk
            # CRLF, LF and CR each end a line; a CR at the very end may be the first half of a CRLF
            text = self._pending.replace(b"\r\n", b"\n")
            keep = b""
            if text.endswith(b"\r"):
                text, keep = text[:-1], b"\r"
            *lines, rest = text.replace(b"\r", b"\n").split(b"\n")
            self._lines, self._pending = lines, rest + keep
        return self._lines.pop(0)

    async def event(self, within: float = 5.0) -> SseEvent:
        """The next event dispatched (comments and retry are recorded on the way)."""
        async with asyncio.timeout(within):
            data: list[str] = []
            type_ = ""
            while True:
                line = (await self._line()).decode("utf-8")
                if not line:
                    if data:
                        return SseEvent(type_ or "message", "\n".join(data), self.last_event_id)
                    type_ = ""
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].removeprefix(" "))
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    type_ = value
                elif name == "data":
                    data.append(value)
                elif name == "id" and "\x00" not in value:
                    self.last_event_id = value
                elif name == "retry" and value.isdigit():
                    self.retry = int(value)

    async def comment(self, within: float = 5.0) -> str:
        """Read until a comment arrives (an event on the way is an error): the comment."""
        async with asyncio.timeout(within):
            while not self.comments:
                line = (await self._line()).decode("utf-8")
                if line.startswith(":"):
                    self.comments.append(line[1:].removeprefix(" "))
                elif line.startswith("retry:") and line[6:].strip().isdigit():
                    self.retry = int(line[6:].strip())
                elif line:
                    raise AssertionError(f"expected a comment, got {line!r}")
            return self.comments.pop(0)

    async def ended(self, within: float = 5.0) -> bool:
        """Whether the stream ends (EOF) within ``within`` seconds, reading whatever comes first."""
        try:
            async with asyncio.timeout(within):
                while await self.resp.content.readany():
                    pass
            return True
        except TimeoutError:
            return False
