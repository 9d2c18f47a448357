"""Structured logs (federation/server/logs.py): one JSON object per line, request ids, secrets masked."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from aiohttp import web

from federation.server.logs import REDACTED, JsonFormatter, access_middleware, configure, redact, request_id


def _line(logger: logging.Logger, stream: io.StringIO) -> dict:
    return json.loads(stream.getvalue().splitlines()[-1])


def test_one_json_object_per_line_with_request_id() -> None:
    stream = io.StringIO()
    configure(stream=stream)
    try:
        token = request_id.set("req-0123456789")
        try:
            logging.getLogger("ipdn.test").info("hello %s", "world", extra={"fields": {"member": "QA"}})
        finally:
            request_id.reset(token)
        line = _line(logging.getLogger(), stream)
        assert line["message"] == "hello world" and line["request_id"] == "req-0123456789"
        assert line["member"] == "QA" and line["level"] == "info" and line["time"].endswith("Z")
    finally:
        logging.getLogger().handlers.clear()


def test_secrets_in_fields_and_text_are_masked() -> None:
    """Fields named like secrets and bearer tokens or cookies quoted in messages never reach the output."""
    record = logging.LogRecord("ipdn.test", logging.WARNING, __file__, 1,
                               "got Authorization: Bearer s3cr3t-token and Cookie: ipdn_hub_session=abc.def", None,
                               None)
    record.fields = {"authorization": "Bearer x", "nested": {"password": "hunter2", "ok": 1}, "api_key": "k"}
    out = JsonFormatter().format(record)
    assert "s3cr3t-token" not in out and "abc.def" not in out and "hunter2" not in out and '"k"' not in out
    doc = json.loads(out)
    assert doc["authorization"] == REDACTED and doc["nested"] == {"password": REDACTED, "ok": 1}


def test_redact_keeps_ordinary_values() -> None:
    assert redact({"route": "/api/v1/log", "status": 200, "ms": 1.5}) == {"route": "/api/v1/log", "status": 200,
                                                                           "ms": 1.5}


async def test_access_line_for_answered_and_failed_requests(aiohttp_client: Any, caplog: Any) -> None:
    """Each request gives one access line with its route pattern, status and duration; a handler that raises
    is logged as the 500 the client gets."""
    async def ok(_request: web.Request) -> web.Response:
        return web.json_response({})

    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("bug")

    app = web.Application(middlewares=[access_middleware])
    app.router.add_get("/things/{id}", ok)
    app.router.add_get("/broken", broken)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.INFO, logger="ipdn.access"):
        assert (await client.get("/things/7")).status == 200
        assert (await client.get("/broken")).status == 500
    fields = [r.fields for r in caplog.records if r.name == "ipdn.access"]
    assert [(f["method"], f["route"], f["status"]) for f in fields] == [
        ("GET", "/things/{id}", 200), ("GET", "/broken", 500)]
    assert all(isinstance(f["duration_ms"], float) and f["duration_ms"] >= 0 for f in fields)
