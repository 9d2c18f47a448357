"""Structured logs for the hub and the nodes: one JSON object per line, each with the request id it belongs to.

- :class:`JsonFormatter` writes ``{"time", "level", "logger", "message", "request_id"?, ...}``; fields passed
  with ``extra={"fields": {...}}`` are added as they are. Secrets never reach the output: a field whose name
  says it holds one (authorization, cookie, token, password, secret, signature) is replaced by ``"[redacted]"``,
  and ``Bearer ...`` or a ``Cookie:`` value inside any text is masked too, in case a message quotes a header.
- :func:`request_id_middleware` gives every request an id: the caller's ``X-Request-Id`` when it is
  well-formed (so a proxy's id follows the request through), else a fresh one; it is echoed in the response
  and attached to every log line written while the request is handled (a context variable).
- :func:`access_middleware` logs one line per request: method, route (the route's canonical path, never
  the raw URL with its query), status, duration. Nothing of the request's headers or body.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from federation.protocol.envelope import format_time

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{8,128}")
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("ipdn_request_id", default=None)

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"authorization|cookie|token|password|secret|signature|api[_-]?key", re.IGNORECASE)
# A bearer token, a session cookie or a password quoted in free text.
_SECRET_TEXT = re.compile(r"(?i)(bearer\s+|cookie:\s*|set-cookie:\s*|password=|token=)[^\s,;\"']+")
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "fields", "request_id"}


def redact_text(text: str) -> str:
    return _SECRET_TEXT.sub(lambda m: m.group(1) + REDACTED, text)


def redact(value: Any, name: str = "") -> Any:
    """``value`` with every secret-named field (at any depth) and secret-looking text masked."""
    if name and _SECRET_NAME.search(name):
        return REDACTED
    if isinstance(value, dict):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(str(value))


def _stamp_request_ids() -> None:
    """Give every log record the id of the request being handled when it was made (records may be formatted
    later, elsewhere). Installed once, on import: it only adds an attribute."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "ipdn_request_ids", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id.get()
        return record

    factory.ipdn_request_ids = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_stamp_request_ids()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": format_time(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(), "logger": record.name, "message": redact_text(record.getMessage()),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(redact(fields))
        for key, value in vars(record).items():  # extra={...} given directly
            if key not in _STANDARD and key not in out:
                out[key] = redact(value, key)
        if record.exc_info:
            out["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: int = logging.INFO, stream: Any = None) -> None:
    """Send every log record to ``stream`` (stderr) as one JSON line; replaces the root logger's handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def new_request_id() -> str:
    return secrets.token_hex(16)


def route_of(request: web.Request) -> str:
    """The matched route's canonical path (``/api/v1/records/{record_id}``), never the raw URL."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    rid = given if _REQUEST_ID_RE.fullmatch(given) else new_request_id()
    token = request_id.set(rid)
    try:
        try:
            response = await handler(request)
        except web.HTTPException as e:  # redirects and the like: still echo the id
            e.headers[REQUEST_ID_HEADER] = rid
            raise
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = rid
        return response
    finally:
        request_id.reset(token)


access_log = logging.getLogger("ipdn.access")


async def observed(request: web.Request, handler: Handler,
                   done: Callable[[str, int, float], None]) -> web.StreamResponse:
    """Answer ``request`` and then call ``done(route, status, seconds)``, also when the handler raised (an
    HTTPException's status, 500 for anything else): the one way requests are logged and counted."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        done(route_of(request), status, time.perf_counter() - started)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    def log(route: str, status: int, seconds: float) -> None:
        access_log.info("%s %s %d", request.method, route, status, extra={"fields": {
            "method": request.method, "route": route, "status": status, "duration_ms": round(seconds * 1000, 2)}})

    return await observed(request, handler, log)
