"""The node's record API: authoring for the operator (``POST``/``PUT``/``DELETE`` under ``/api/v1/records``, the
outbox retry, key rotation), reading for everyone (a record, a filtered page with ETags), the log checkpoint
this node vouches for, and its copy of the hub's log (which a recovering hub reads back).

Handlers parse and authenticate, the service decides, the store persists. Writes need the operator's bearer
token (compared as SHA-256 digests in constant time); reads need none. Node errors become problems in the
app's middleware (node/app.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence, Set
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web

from federation.protocol import strictjson
from federation.protocol.envelope import Envelope, format_time
from federation.server.web import Problem, json_response, read_json
from node.appkeys import CONFIG, ENGINE, SERVICE
from node.errors import BadQueryError, OperatorAuthError
from node.own_keys import MAX_EFFECTIVE_IN
from node.partners import jscalendar
from node.records.filters import RecordFilter
from node.store.records import StoredRecord

# -- helpers -------------------------------------------------------------------------------------------


def _authorize(request: web.Request) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    expected = request.app[CONFIG].operator_token_hash
    if scheme.lower() != "bearer" or not token.strip() or not hmac.compare_digest(digest, expected):
        raise OperatorAuthError("publishing needs this node's operator token (Authorization: Bearer ...)")


async def _read_object(request: web.Request, required: Set[str], optional: Set[str] = frozenset()) -> dict[str, Any]:
    limits = strictjson.JsonLimits(max_bytes=request.app[CONFIG].max_request_bytes)
    doc = await read_json(request, limits)
    if not isinstance(doc, dict) or not required <= set(doc) or set(doc) - required - optional:
        want = ", ".join(sorted(required)) + (f" (optional {', '.join(sorted(optional))})" if optional else "")
        raise Problem(400, "malformed-request", f"the request body is a JSON object with members {want}")
    return doc


def _published(env: Envelope) -> dict[str, Any]:
    p = env.payload
    return {"record_id": p.record_id, "version": p.version, "seq": p.seq, "hash": env.hash,
            "envelope": env.to_dict()}


def _record_url(record_id: str) -> str:
    return "/api/v1/records/" + quote(record_id, safe="")


# -- authoring -----------------------------------------------------------------------------------------


async def create_record(request: web.Request) -> web.Response:
    _authorize(request)
    doc = await _read_object(request, {"kind", "body"})
    if not isinstance(doc["kind"], str):
        raise Problem(400, "malformed-request", "kind is a string such as cultural-event")
    env = await request.app[SERVICE].create(doc["kind"], doc["body"])
    return json_response(_published(env), status=201, headers={"Location": _record_url(env.payload.record_id)})


async def update_record(request: web.Request) -> web.Response:
    _authorize(request)
    doc = await _read_object(request, {"body"})
    env = await request.app[SERVICE].update(request.match_info["record_id"], doc["body"])
    return json_response(_published(env))


async def cancel_record(request: web.Request) -> web.Response:
    _authorize(request)
    reason, lang = None, "en"
    if request.can_read_body:
        doc = await _read_object(request, set(), {"reason", "lang"})
        reason, lang = doc.get("reason"), doc.get("lang", lang)
        if (reason is not None and not isinstance(reason, str)) or not isinstance(lang, str):
            raise Problem(400, "malformed-request", "reason and lang (a BCP 47 tag, the reason's language) are strings")
    # A lang that is no language tag makes the body invalid (schema-invalid at /status_reason), as any field would.
    env = await request.app[SERVICE].cancel(request.match_info["record_id"], reason, lang=lang)
    return json_response(_published(env))


async def delete_record(request: web.Request) -> web.Response:
    _authorize(request)
    env = await request.app[SERVICE].delete(request.match_info["record_id"])
    return json_response(_published(env))


async def retry_outbox(request: web.Request) -> web.Response:
    _authorize(request)
    return json_response({"requeued": await request.app[SERVICE].retry_rejected()})


async def rotate_key(request: web.Request) -> web.Response:
    """Start a key rotation (``{"effective_in": seconds}``, default 60): a new key, the rotation documents
    submitted to the hub, the next registry fetched; the new key signs from ``effective`` on."""
    _authorize(request)
    effective_in: Any = 60
    if request.can_read_body:
        effective_in = (await _read_object(request, set(), {"effective_in"})).get("effective_in", 60)
    limit = MAX_EFFECTIVE_IN.total_seconds()
    if type(effective_in) not in (int, float) or not 0 <= effective_in <= limit:
        raise Problem(400, "malformed-request", f"effective_in is a number of seconds, 0 to {limit:.0f}")
    outcome = await request.app[ENGINE].rotate_key(timedelta(seconds=effective_in))
    r = outcome.rotation
    return json_response({"kid": r.kid, "file": r.file, "effective": r.effective, "base": r.base,
                          "registry_version": outcome.registry_version,
                          "hub_registry_version": outcome.hub_registry_version,
                          "resubmitted": outcome.resubmitted, "documents": list(r.documents)},
                         status=200 if outcome.resubmitted else 201)


# -- reading -------------------------------------------------------------------------------------------


LIST_CACHE, ITEM_CACHE = "public, max-age=60", "public, max-age=300"
MAX_Q = 500


# Part of every record API ETag: bump it whenever the same records would be encoded differently.
RECORDS_REVISION = b"records-2"  # 2: bodies spliced from the envelope, in its compact RFC 8785 form (ADR 30)


def _records_etag(records: Sequence[StoredRecord], cursor: str | None) -> str:
    """A strong ETag derived from what the response is made of (each record's status and envelope, which fix its
    item; the next cursor): a 304 costs no encoding."""
    h = hashlib.sha256(RECORDS_REVISION)
    for part in (cursor or "").encode(), *(p for r in records for p in (r.status.encode(), r.envelope)):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return '"' + h.hexdigest()[:32] + '"'


def _cached(request: web.Request, etag: str, cache_control: str, body: Callable[[], bytes]) -> web.Response:
    """``body()`` as JSON with its ``ETag``, ``Cache-Control`` and CORS for browser partners; 304 (and no body
    made) when ``If-None-Match`` names the ETag (or is ``*``)."""
    headers = {"ETag": etag, "Cache-Control": cache_control, "Vary": "Accept", "Access-Control-Allow-Origin": "*"}
    wanted = {t.strip().removeprefix("W/") for t in request.headers.get("If-None-Match", "").split(",")}
    if etag in wanted or "*" in wanted:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body(), content_type="application/json", headers=headers)


async def get_record(request: web.Request) -> web.Response:
    as_calendar = jscalendar.wanted(request)  # JSCalendar by Accept or ?format= (node/partners/jscalendar.py)
    record = await request.app[SERVICE].get(request.match_info["record_id"])
    if as_calendar:
        return jscalendar.item_response(request, record, base=request.app[CONFIG].public_base,
                                        member=request.app[SERVICE].member, cache_control=ITEM_CACHE)
    return _cached(request, _records_etag([record], None), ITEM_CACHE, record.item_json)


def _day(name: str, value: str | None) -> date | None:
    """``from``/``to``: a calendar day, or an RFC 3339 time (its day at its own offset)."""
    if not value:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        when = datetime.fromisoformat(value)
    except ValueError as e:
        raise BadQueryError(f"{name} is a day (YYYY-MM-DD) or an RFC 3339 time: {e}") from e
    if when.tzinfo is None:
        raise BadQueryError(f"{name} as a time needs an offset or Z")
    return when.date()


def read_filters(request: web.Request) -> dict[str, Any]:
    """The record filters of the query (every parameter of a record page but ``limit`` and ``cursor``), as keywords
    of :meth:`NodeService.list_records`: the record page and the record stream (node/api/stream.py) read them alike.

    Raises:
        BadQueryError: a malformed filter.
    """
    q = request.query
    try:
        since = datetime.fromisoformat(q["updated_since"]) if q.get("updated_since") else None
    except ValueError as e:
        raise BadQueryError(f"updated_since is an RFC 3339 time: {e}") from e
    if since is not None and since.tzinfo is None:
        raise BadQueryError("updated_since needs an offset or Z")
    date_from, date_to = _day("from", q.get("from")), _day("to", q.get("to"))
    if date_from and date_to and date_from > date_to:
        raise BadQueryError("from is after to")
    text = q.get("q") or None
    if text is not None and len(text) > MAX_Q:
        raise BadQueryError(f"q is at most {MAX_Q} characters")
    if any("\x00" in v for v in q.values()):
        raise BadQueryError("a parameter holds a NUL character")
    f = RecordFilter.parse(q)
    return {"kind": f.kind, "origin": f.origin, "updated_since": since, "country": f.country, "date_from": date_from,
            "date_to": date_to, "lang": f.lang, "status": f.status, "tag": f.tag, "q": text, "type_": f.type,
            "audience": f.audience}


async def list_records(request: web.Request) -> web.Response:
    config, q = request.app[CONFIG], request.query
    try:
        limit = int(q.get("limit", config.page_size))
    except ValueError as e:
        raise BadQueryError(f"limit is an integer: {e}") from e
    if not 1 <= limit <= config.max_page_size:
        raise BadQueryError(f"limit is between 1 and {config.max_page_size}")
    as_calendar = jscalendar.wanted(request)
    items, next_cursor = await request.app[SERVICE].list_records(
        **read_filters(request), cursor=q.get("cursor") or None, limit=limit)
    if as_calendar:
        return _calendar_page(request, items, next_cursor)

    def page() -> bytes:  # {"items": [...], "next_cursor": ...}
        return b'{"items":[' + b",".join(r.item_json() for r in items) + b'],"next_cursor":' + json.dumps(
            next_cursor).encode() + b"}"

    return _cached(request, _records_etag(items, next_cursor), LIST_CACHE, page)


def _calendar_page(request: web.Request, items: Sequence[StoredRecord], next_cursor: str | None) -> web.Response:
    """A page of records as a JSCalendar Group; the next page (same query, its cursor) in ``Link: rel="next"``."""
    base, member = request.app[CONFIG].public_base, request.app[SERVICE].member
    source = base + str(request.rel_url)
    headers = {}
    if next_cursor is not None:
        headers["Link"] = f'<{base}{request.rel_url.update_query(cursor=next_cursor)}>; rel="next"'
    tag = jscalendar.etag([source, next_cursor, *((r.hash, r.status) for r in items)])
    return jscalendar.response(request, lambda: jscalendar.group(items, base=base, member=member, source=source,
                                                                 next_cursor=next_cursor), tag, LIST_CACHE, headers)


# -- the log -------------------------------------------------------------------------------------------


async def get_log_checkpoint(request: web.Request) -> web.Response:
    """The last checkpoint this node verified and accepted, with its own co-signature: what it vouches for,
    so partners, auditors and other nodes can compare views (a split view shows up as two roots)."""
    doc = await request.app[SERVICE].trust.witnessed_checkpoint()
    if doc is None:
        raise Problem(404, "no-checkpoint", "this node has not accepted a checkpoint of the hub's log yet")
    return json_response(doc, headers={"Cache-Control": "no-cache"})


LOG_PAGE_LIMIT = 1000


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name, str(default))
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadQueryError(f"{name} must be an integer from {low} to {high}")
    return int(raw)


async def get_log(request: web.Request) -> web.Response:
    """This node's copy of the hub's log, after position ``after``, in the hub's page format (PROTOCOL.md §9,
    §11.1): every entry it pulled, applied or quarantined, up to its cursor, with the receipt time the hub's log
    gave it (§8.3; absent if the node never got one). A hub restored from an old backup (or rebuilt after losing its
    disk) reads its log back from here; the entries are public signed envelopes and the hub checks them against a
    checkpoint it signed, so anyone may read them."""
    after = _int_query(request, "after", 0, 0, 2**53)
    limit = _int_query(request, "limit", 100, 1, LOG_PAGE_LIMIT)
    store = request.app[SERVICE].store.trust
    size = await store.cursor()
    rows = await store.logged_envelopes(size, after, limit)
    # Held envelopes are the node's compact JSON of the envelope as pulled: spliced in, never re-encoded.
    entries = ",".join(f'{{"position":{p},' + (f'"received_at":"{format_time(at)}",' if at is not None else "")
                       + f'"envelope":{env.decode()}}}' for p, env, at in rows)
    nxt = rows[-1][0] if rows else after
    return web.Response(text=f'{{"entries":[{entries}],"next":{nxt},"size":{size}}}',
                        content_type="application/json", headers={"Cache-Control": "no-cache"})


# -- routes --------------------------------------------------------------------------------------------


def register_routes(app: web.Application) -> None:
    """The record API, the outbox retry, key rotation and the log checkpoint (CONFIG, SERVICE and ENGINE are the
    app's: node/app.py)."""
    app.router.add_routes([
        web.post("/api/v1/records", create_record),
        web.get("/api/v1/records", list_records),
        web.get("/api/v1/records/{record_id}", get_record),
        web.put("/api/v1/records/{record_id}", update_record),
        web.delete("/api/v1/records/{record_id}", delete_record),
        web.post("/api/v1/records/{record_id}/cancel", cancel_record),
        web.post("/api/v1/outbox/retry", retry_outbox),
        web.post("/api/v1/keys/rotate", rotate_key),
        web.get("/api/v1/log/checkpoint", get_log_checkpoint),
        web.get("/api/v1/log", get_log),
    ])
