"""The OpenAPI 3.1 documents of the node's and the hub's HTTP interfaces, served at ``/api/v1/openapi.json``.

One document per role (:func:`document`), built here from small shared parts so that both say the same
thing about problems, envelopes and checkpoints. They describe docs/PROTOCOL.md §8, §9, §11 and §12 as the
handlers implement them (``node/app.py``, ``node/partners/feeds.py``, ``node/partners/oaipmh.py``,
``node/webhooks/api.py``,
``federation/hub/api/``); the node's document also describes the webhook requests it sends (``webhooks``);
``tests/test_openapi.py`` keeps them true: every registered route is documented, every documented path
exists, and schemathesis finds no server error and no response the document does not describe.

Schemas use the JSON Schema 2020-12 dialect (OpenAPI 3.1's default). Record bodies are described by the
network's own schemas, named by their ``$id`` (``https://schemas.ipdn.network/<kind>/v1``) rather than
referenced, so that no tool has to fetch them. Every ``GET`` route also answers ``HEAD`` (RFC 9110 §9.3.2:
the same status and headers, no body); those are not listed separately.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from aiohttp import web

from federation.protocol.schemas import default_schemas

Role = Literal["node", "hub"]
PATH = "/api/v1/openapi.json"
VERSION = "1.0.0"
SCHEMAS_BASE = "https://schemas.ipdn.network/"

_J = "application/json"
SESSION_COOKIES = {"node": "ipdn_node_status", "hub": "ipdn_hub_session"}
_PROBLEM = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


def _int(lo: int | None = None, hi: int | None = None, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", **kw}
    if lo is not None:
        out["minimum"] = lo
    if hi is not None:
        out["maximum"] = hi
    return out


_STR: dict[str, Any] = {"type": "string"}
_STR_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}
_TIME_OR_NULL: dict[str, Any] = {"type": ["string", "null"], "description": "RFC 3339 time"}
_HEX = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {_J: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_PROBLEM: {"schema": _ref("Problem")}}}


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


_CACHE = _header("Cache-Control: `no-cache`, or `public, max-age=31536000, immutable` for what never changes")


def _query(name: str, schema: dict[str, Any], description: str, *, empty: bool = False) -> dict[str, Any]:
    """A query parameter; ``empty``: the handler reads ``name=`` as if it were absent."""
    out = {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
    if empty:
        out["allowEmptyValue"] = True
    return out


# Parameter formats, as the handlers read them (node/records/filters.py, node/api/records.py, node/partners/).
_LANG_TAG = "^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$"  # the shape of a BCP 47 tag the filters accept
_COUNTRY: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z]{2}$"}
_FILTER: dict[str, Any] = {"type": "string", "maxLength": 200, "pattern": "^[^\\u0000]*$"}  # filters.MAX_VALUE
_DAY: dict[str, Any] = {"type": "string", "format": "date"}
_DAY_OR_TIME: dict[str, Any] = {"anyOf": [_DAY, {"type": "string", "format": "date-time"}]}
_UI_LANG: dict[str, Any] = {"type": "string", "description": "`en` or `ar`; any other value: the default"}


def _kinds() -> list[str]:
    return sorted(default_schemas().latest)


def _statuses(*, deleted: bool, events_only: bool = False) -> dict[str, Any]:
    """A comma-separated list of statuses the record schemas define (and `deleted`)."""
    schemas = default_schemas()
    names = {st for sid, kind in schemas.kind_of.items() if not events_only or kind == "cultural-event"
             for st in schemas.documents[sid].get("properties", {}).get("status", {}).get("enum", [])}
    one = "(" + "|".join(sorted(names | ({"deleted"} if deleted else set()))) + ")"
    return {"type": "string", "pattern": f"^{one}(,{one})*$"}


def _common_schemas() -> dict[str, Any]:
    return {
        "Problem": {
            **_obj(["type", "title", "status", "detail", "reason"],
                   type={"type": "string", "format": "uri", "description": "https://schemas.ipdn.network/problems/"
                                                                           "<reason>"},
                   title=_STR, status=_int(400, 599), detail=_STR,
                   reason={"type": "string", "description": "the slug, as in PROTOCOL.md"},
                   errors={"type": "array", "items": _ref("SchemaError")}),
            "description": "RFC 9457 problem details; `reason` repeats the last segment of `type`. "
                           "Some problems carry more members (e.g. `hub_url` with `hub-handed-over`).",
        },
        "SchemaError": _obj(["pointer", "keyword", "message"], pointer=_STR, keyword=_STR, message=_STR),
        "Envelope": {
            **_obj(["protected", "payload", "signature"], protected=_STR, payload=_STR, signature=_STR),
            "additionalProperties": False,
            "description": "A signed envelope: flattened JWS (RFC 7515 §7.2.2), members base64url (PROTOCOL.md §3, "
                           "§5). The payload names the record's schema by its `$id`, e.g. "
                           f"{SCHEMAS_BASE}cultural-event/v1.",
        },
        "Checkpoint": {
            **_obj(["payload", "signatures"], payload=_STR,
                   signatures={"type": "array", "minItems": 1,
                               "items": _obj(["protected", "signature"], protected=_STR, signature=_STR)}),
            "description": "A signed checkpoint of the hub's log, JWS general JSON serialization: the hub's "
                           "signature first, then members' co-signatures (PROTOCOL.md §11).",
        },
    }


def _info(role: Role) -> dict[str, Any]:
    what = {"node": "a member's node: authoring for its operator, reading and partner feeds for everyone",
            "hub": "the hub: the append-only, verifiable log of every member's envelopes, and the registry"}[role]
    return {"title": f"IPDN Exchange {role}", "version": VERSION,
            "description": f"The HTTP interface of {what} (docs/PROTOCOL.md). Every error is an RFC 9457 problem "
                           "(`application/problem+json`) with `type`, `title`, `status`, `detail` and `reason`.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}}


def _openapi_path(role: Role) -> dict[str, Any]:
    return {"get": {
        "operationId": "getOpenApi", "tags": ["meta"], "summary": "This document",
        "parameters": [{"name": "If-None-Match", "in": "header", "required": False, "schema": _STR}],
        "responses": {
            "200": {"description": "The OpenAPI 3.1 document",
                    "headers": {"ETag": _header("strong validator"), "Cache-Control": _CACHE},
                    "content": {_J: {"schema": {"type": "object", "required": ["openapi", "info", "paths"]}}}},
            "304": {"description": "Not modified (If-None-Match matched the ETag)"},
        }}}


# -- operator pages and metrics (hub dashboard, node status page) -------------------------------------------------

_HTML = {"text/html": {"schema": _STR}}
_UI_HEADERS = {"Content-Security-Policy": _header("script and style from this site's own files only, nothing inline"),
               "X-Request-Id": _header("the request's id (the caller's when well-formed)")}
_SEE_OTHER = {"description": "Not signed in (to the sign-in page), or done (to the next page)",
              "headers": {"Location": _header("where to go next")}}
_FORGED = _problem("A form without this session's anti-forgery token, or posted from another site (`csrf`)")


def _page(op_id: str, summary: str, *, tag: str, params: list[dict[str, Any]] | None = None,
          extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A signed-in HTML page: 200 with the page, 303 to the sign-in page without a session."""
    return {"get": {"operationId": op_id, "tags": [tag], "summary": summary, "security": [{"session": []}],
                    "parameters": [_query("lang", _UI_LANG, "the page's language (remembered in a cookie)"),
                                   *(params or [])],
                    "responses": {"200": {"description": "The page", "headers": _UI_HEADERS, "content": _HTML},
                                  "303": _SEE_OTHER, **(extra or {})}}}


def _sign_in_refused(description: str, *, retry: bool = False) -> dict[str, Any]:
    """A refused sign-in (federation/server/ui/signin.py): the form again for a browser (Accept with text/html),
    a problem (`sign-in-failed`, `-locked`, `-throttled`, `-busy`) for anything else."""
    out: dict[str, Any] = {"description": description + "; the form again (text/html in Accept), else a problem",
                           "content": {**_HTML, _PROBLEM: {"schema": _ref("Problem")}}}
    if retry:
        out["headers"] = {"Retry-After": _header("seconds")}
    return out


_SIGN_IN_REFUSALS = {
    "401": _sign_in_refused("Wrong credentials"),
    "429": _sign_in_refused("Too many failures: this account from this address, or this address", retry=True),
    "503": _sign_in_refused("Every password check is busy", retry=True)}


def _sign_in_paths(prefix: str, what: str, tag: str, secret: str, form: dict[str, Any]) -> dict[str, Any]:
    body = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        **_obj(["csrf_token", *form], csrf_token=_STR, **form)}}}}
    csrf_only = {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": _obj(
        ["csrf_token"], csrf_token=_STR)}}}
    name = prefix.strip("/").title()
    return {
        f"{prefix}/sign-in": {
            "get": {"operationId": f"get{name}SignIn", "tags": [tag], "summary": f"The sign-in form of {what}",
                    "parameters": [_query("lang", _UI_LANG, "the page's language")],
                    "responses": {"200": {"description": "The form; sets the form's anti-forgery cookie",
                                          "headers": _UI_HEADERS, "content": _HTML},
                                  "303": _SEE_OTHER}},
            "post": {"operationId": f"post{name}SignIn", "tags": [tag], "requestBody": body,
                     "summary": f"Sign in with {secret}: a session cookie (HttpOnly, SameSite=Strict, Secure "
                                "behind TLS)",
                     "responses": {"303": _SEE_OTHER, "403": _FORGED, **_SIGN_IN_REFUSALS}},
        },
        f"{prefix}/sign-out": {
            "post": {"operationId": f"post{name}SignOut", "tags": [tag], "summary": "End the session",
                     "security": [{"session": []}], "requestBody": csrf_only,
                     "responses": {"303": _SEE_OTHER, "401": _problem("Not signed in (`sign-in-required`)"),
                                   "403": _FORGED}},
        },
        f"{prefix}/static/{{name}}": {
            "get": {"operationId": f"get{name}Static", "tags": [tag], "summary": "The pages' stylesheet and script",
                    "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR}, _IF_NONE_MATCH],
                    "responses": {"200": {"description": "The file", "headers": {"ETag": _header("strong")},
                                          "content": {"text/css": {"schema": _STR},
                                                      "text/javascript": {"schema": _STR}}},
                                  "304": {"description": "Not modified"},
                                  "404": _problem("No such file (`not-found`)")}},
        },
    }


def _metrics_path(role: str) -> dict[str, Any]:
    return {"/metrics": {"get": {
        "operationId": "getMetrics", "tags": ["status"],
        "summary": f"Prometheus metrics of the {role} (text exposition format; docs/operating-{role}.md lists them)",
        "description": "Operator only: the operator's bearer token, the scrape token (`metrics_token_sha256` / "
                       "`metrics_token_hash`), or a client address in `operator_networks` (default loopback).",
        "security": [{"operatorToken": []}, {}],
        "responses": {"200": {"description": "The metrics", "content": {"text/plain": {"schema": _STR}}},
                      "401": _problem("Neither a token nor an `operator_networks` address (`operator-token-required` "
                                      "at the hub, `unauthorized` at a node; `WWW-Authenticate: Bearer`)")}}}}


def _status_page_paths() -> dict[str, Any]:
    tag = "status page"
    return {
        "/status": _page("getStatusPage", "The status page for the member's IT staff (hub reachable, outbox, "
                                          "cursor, refusals with reasons, keys, alarms)", tag=tag),
        "/status/document": {"get": {
            "operationId": "getStatusDocument", "tags": [tag], "security": [{"session": []}],
            "summary": "The full NodeStatus for the page's live figures (the signed-in operator, from anywhere)",
            "responses": {"200": _json(_ref("NodeStatus"), "The node's state"), "303": _SEE_OTHER}}},
        "/status/retry": {"post": {
            "operationId": "postStatusRetry", "tags": [tag], "security": [{"session": []}],
            "summary": "Push the refused own envelopes again (as POST /api/v1/outbox/retry)",
            "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": _obj(
                ["csrf_token"], csrf_token=_STR)}}},
            "responses": {"303": _SEE_OTHER, "401": _problem("Not signed in (`sign-in-required`)"),
                          "403": _FORGED}}},
        **_sign_in_paths("/status", "the status page", tag, "the node's operator token", {"token": _STR}),
    }


def _dashboard_paths() -> dict[str, Any]:
    tag, d = "dashboard", "/dashboard"
    code = {"name": "code", "in": "path", "required": True, "schema": _STR, "description": "a member code"}
    item = {"name": "id", "in": "path", "required": True, "schema": _STR, "description": "a quarantine item"}
    when = {"type": "string", "description": "a date and time, UTC unless it says otherwise"}
    missing = {"404": _problem("No such member or item (`no-such-member`, `no-such-item`)")}
    return {
        d: _page("getDashboard", "Every member's sync, live", tag=tag),
        f"{d}/events": {"get": {
            "operationId": "getDashboardEvents", "tags": [tag], "security": [{"session": []}],
            "summary": "Server-sent events: `event: status` with the HubStatus JSON whenever it changes",
            "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {
                "schema": _STR}}},
                "303": _SEE_OTHER, "401": _problem("Not signed in (`sign-in-required`)")}}},
        f"{d}/members/{{code}}": _page("getDashboardMember", "A member's figures, recent envelopes and refusals",
                                       tag=tag, params=[code], extra=missing),
        f"{d}/quarantine": _page("getDashboardQuarantine", "Refused inputs, filtered", tag=tag, params=[
            _query("member", _STR, "a member code"), _query("reason", _STR, "a reason slug"),
            _query("since", when, "received at or after"), _query("until", when, "received before")],
            extra={"400": _problem("A time that cannot be read (`bad-parameter`)")}),
        f"{d}/quarantine/{{id}}": _page("getDashboardRefusal", "One refusal: its reason, checks and schema errors",
                                        tag=tag, params=[item], extra=missing),
        f"{d}/quarantine/{{id}}/raw": {"get": {
            "operationId": "getDashboardRefusalRaw", "tags": [tag], "security": [{"session": []}],
            "summary": "The refused input byte for byte, as a download", "parameters": [item],
            "responses": {"200": {"description": "The bytes as received",
                                  "headers": {"Content-Disposition": _header("attachment")},
                                  "content": {"application/octet-stream": {"schema": _STR}}},
                          "303": _SEE_OTHER, **missing}}},
        f"{d}/checkpoint": _page("getDashboardCheckpoint", "The latest checkpoint and its co-signatures", tag=tag),
        f"{d}/registry": _page("getDashboardRegistry", "Registry versions, governance and operators' trail",
                               tag=tag),
        f"{d}/throughput": _page("getDashboardThroughput", "Envelopes per minute over the last hour (SVG chart)",
                                 tag=tag),
        **_sign_in_paths(d, "the dashboard", tag, "an operator account (`ipdn hub operator add`)",
                         {"name": _STR, "password": _STR}),
    }
def _health_path() -> dict[str, Any]:
    return {"get": {
        "operationId": "getHealth", "tags": ["meta"],
        "summary": "Liveness for container and load-balancer health checks: 200 once the service has started",
        "responses": {"200": _json(_obj(["status"], status={"const": "ok"}), "Running",
                                   {"Cache-Control": _header("no-store")})}}}


# -- node ---------------------------------------------------------------------------------------------------


_FEED_HEADERS = {"ETag": _header("strong validator of the rendering"),
                 "Cache-Control": _header("public, max-age=300"),
                 "Access-Control-Allow-Origin": _header("*")}
_PAGE_HEADERS = {"ETag": _header("strong validator"), "Cache-Control": _header("public, max-age=300"),
                 "Content-Security-Policy": _header("default-src 'none' and the page's one stylesheet")}
_IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False, "schema": _STR,
                  "description": "an ETag from an earlier answer: 304 if the rendering is still the same"}
_READ_HEADERS = {"ETag": _header("strong validator of the body"),
                 "Cache-Control": _header("public, max-age=60 (a list) or 300 (an item)"),
                 "Access-Control-Allow-Origin": _header("*")}
_ORIGIN = _query("origin", _COUNTRY, "a member code (ISO 3166-1 alpha-2, case-insensitive)", empty=True)
_STATUS = _query("status", _statuses(deleted=True), "comma-separated record statuses (e.g. `scheduled,cancelled`; "
                                                    "`deleted` in the JSON Feed and Atom); with `kind`, that kind's",
                 empty=True)
_LANG = _query("lang", {"type": "string", "maxLength": 35, "pattern": _LANG_TAG},
               "a BCP 47 language tag choosing the texts", empty=True)
_KIND = _query("kind", {"type": "string", "enum": _kinds()}, "a record kind", empty=True)


def _choices(*names: str) -> dict[str, Any]:
    """One of the values the record schemas allow for these properties (an enum, or an array's items' enum)."""
    schemas = default_schemas()
    values = {v for sid in schemas.kind_of for name in names
              for prop in [schemas.documents[sid].get("properties", {}).get(name, {})]
              for v in prop.get("enum") or prop.get("items", {}).get("enum") or []}
    return {"type": "string", "enum": sorted(values)}


def _selection(*, choices: bool) -> list[dict[str, Any]]:
    """The portal list's filters, by its names, in the list, the calendar views and every feed (docs/adr/0025);
    ``choices``: a type or audience is one the schemas know (the portal's pages answer 400 to another; the feeds an
    empty feed)."""
    return [
        _query("country", _COUNTRY, "a participating country (also a venue's or a programme's eligible country)",
               empty=True),
        _query("type", _choices("event_type", "programme_type") if choices else _FILTER,
               "an event_type or programme_type", empty=True),
        _query("audience", _choices("audience", "target_audience") if choices else _FILTER,
               "one of the audience (or target_audience)", empty=True),
        _query("language", {**_FILTER, "pattern": _LANG_TAG}, "a language of the titles (BCP 47)", empty=True),
        _query("tag", _FILTER, "a tag (case-insensitive, whole)", empty=True),
        _query("q", {"type": "string", "maxLength": 500, "pattern": "^[^\\u0000]*$"}, "full-text search",
               empty=True)]


_DAYS = [_query("from", _DAY, "a day, YYYY-MM-DD: records whose days (a recurring event's last) end on or after it",
                empty=True),
         _query("to", _DAY, "a day, YYYY-MM-DD: records whose days start on or before it", empty=True)]
_JSCALENDAR = "application/jscalendar+json"
_FORMAT = _query("format", {"type": "string", "enum": ["json", "jscalendar"]},
                 "`jscalendar`: RFC 8984 JSCalendar, as `Accept: application/jscalendar+json` asks (PROTOCOL.md §9); "
                 "`json` (the default) the record API's JSON", empty=True)


def _portal_page(op_id: str, summary: str, *params: dict[str, Any], media_type: str = "text/html",
                 not_found: str | None = None, bad: str | None = None) -> dict[str, Any]:
    """A public portal page (docs/adr/0025): HTML in the reader's language (``lang``, else Accept-Language),
    cacheable; 404 when the operator turned the portal off."""
    ok = {"description": summary, "headers": _PAGE_HEADERS, "content": {media_type: {"schema": _STR}}}
    html = {"content": {"text/html": {"schema": _STR}}}
    responses: dict[str, Any] = {"200": ok, "304": {"description": "Not modified", "headers": _PAGE_HEADERS},
                                 "404": {"description": (not_found or "The portal is turned off") + "; a path "
                                                        "no route matches is a problem+json",
                                         "content": {"text/html": {"schema": _STR},
                                                     "application/problem+json": {"schema": _ref("Problem")}}}}
    if bad:
        responses["400"] = {"description": bad, **html}
    return {"get": {"operationId": op_id, "tags": ["portal"], "summary": summary,
                    "parameters": [_query("lang", _UI_LANG, "the page's language"), *params, _IF_NONE_MATCH],
                    "responses": responses}}


def _catalog(op_id: str, summary: str, *params: dict[str, Any]) -> dict[str, Any]:
    """The DCAT-AP catalogue (node/partners/dcat.py): RDF, cacheable, 304 on If-None-Match."""
    headers = {"ETag": _header("strong validator"), "Cache-Control": _header("public, max-age=3600"),
               "Link": _header("the catalogue's other formats, rel=alternate")}
    rdf = {media: {"schema": _STR} for media in ("text/turtle", "application/rdf+xml")}
    return {"get": {"operationId": op_id, "tags": ["feeds"], "summary": summary,
                    "parameters": [*params, _IF_NONE_MATCH],
                    "responses": {"200": {"description": summary, "headers": headers,
                                          "content": {"application/ld+json": {"schema": {"type": "object"}}, **rdf}},
                                  "304": {"description": "Not modified", "headers": headers}}}}


def _feed(op_id: str, summary: str, params: list[dict[str, Any]], description: str, media_type: str,
          schema: dict[str, Any]) -> dict[str, Any]:
    """A feed's GET: the feed with its caching headers, 304 on If-None-Match, 400 on a bad parameter."""
    return {"get": {"operationId": op_id, "tags": ["feeds"], "summary": summary,
                    "parameters": [*params, _IF_NONE_MATCH],
                    "responses": {"200": {"description": description, "headers": _FEED_HEADERS,
                                          "content": {media_type: {"schema": schema}}},
                                  "304": {"description": "Not modified", "headers": _FEED_HEADERS},
                                  "400": _problem("A parameter that cannot be read (`bad-query`)")}}}


_OAI_ARGS: dict[str, dict[str, Any]] = {
    "verb": {"type": "string", "description": "Identify, ListMetadataFormats, ListSets, ListIdentifiers, "
                                              "ListRecords or GetRecord (another: `badVerb`)"},
    "identifier": {"type": "string", "description": "oai:ipdn.network:<record_id>"},
    "metadataPrefix": {"type": "string", "description": "oai_dc or ipdn (another: `cannotDisseminateFormat`)"},
    "from": {"type": "string", "description": "YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ"},
    "until": {"type": "string", "description": "YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ"},
    "set": {"type": "string", "description": "kind, kind:<kind>, origin or origin:<CC>"},
    "resumptionToken": {"type": "string"},
}
_OAI_OK = {"description": "An OAI-PMH 2.0 response; protocol errors are `<error>` elements in a 200 answer",
           "content": {"text/xml": {"schema": {"type": "string"}}}}


def _node_schemas() -> dict[str, Any]:
    return {
        "Item": _obj(
            ["record_id", "origin", "kind", "version", "op", "status", "seq", "hash", "issued_at", "body", "envelope"],
            record_id=_STR, origin=_STR, kind=_STR, version=_int(1), op={"type": "string", "enum": ["put", "delete"]},
            status=_STR_OR_NULL, seq=_int(1), hash=_STR, issued_at=_STR,
            body={"type": ["object", "null"],
                  "description": f"the record body, valid by the schema its envelope pins ({SCHEMAS_BASE}<kind>/v<N>); "
                                 "null for a tombstone"},
            envelope=_ref("Envelope")),
        "Page": _obj(["items", "next_cursor"], items={"type": "array", "items": _ref("Item")},
                     next_cursor=_STR_OR_NULL),
        # RFC 8984 (node/partners/jscalendar.py; PROTOCOL.md §9): what a reader relies on, the rest as the RFC says.
        "JSCalendarEvent": {**_obj(["@type", "uid", "updated", "start"], **{
            "@type": {"const": "Event"}, "uid": _STR, "updated": _STR, "start": _STR, "duration": _STR,
            "timeZone": {"type": ["string", "null"]}, "status": {"enum": ["confirmed", "cancelled", "tentative"]},
            "ipdn.network:recordId": _STR}),
            "description": "An RFC 8984 Event: one record (either kind); vendor properties `ipdn.network:*`"},
        "JSCalendarGroup": {**_obj(["@type", "uid", "updated", "entries"], **{
            "@type": {"const": "Group"}, "uid": _STR, "updated": _STR,
            "entries": {"type": "array", "items": _ref("JSCalendarEvent")},
            "ipdn.network:nextCursor": _STR_OR_NULL}),
            "description": "An RFC 8984 Group: a page of records (tombstones left out)"},
        "Published": _obj(["record_id", "version", "seq", "hash", "envelope"], record_id=_STR, version=_int(1),
                          seq=_int(1), hash=_STR, envelope=_ref("Envelope")),
        "NodeStatus": _obj(
            ["role", "member", "registry_version", "hub", "outbox", "cursor", "records", "quarantine", "webhooks",
             "log", "keys", "alarms", "time"],
            role={"const": "node"}, member=_STR, registry_version=_int(1), registry_expires_at=_STR,
            hub=_obj(["url", "reachable"], url=_STR, reachable={"type": ["boolean", "null"]},
                     last_push_at=_TIME_OR_NULL, last_pull_at=_TIME_OR_NULL, last_error=_STR_OR_NULL,
                     last_error_reason=_STR_OR_NULL, last_error_at=_TIME_OR_NULL,
                     log_size={"type": ["integer", "null"]}),
            outbox=_obj(["pending", "rejected", "accepted"], pending=_int(0), rejected=_int(0), accepted=_int(0)),
            cursor=_int(0), records=_obj(["own", "received"], own=_int(0), received=_int(0)),
            quarantine=_int(0),
            webhooks=_obj(["subscriptions", "deliveries"],
                          subscriptions=_obj(["active", "disabled"], active=_int(0), disabled=_int(0)),
                          deliveries=_obj(["pending", "failed"], pending=_int(0), failed=_int(0))),
            log=_obj(["checkpoint", "cosigned_size", "halted", "peers", "evidence"],
                     checkpoint={"type": ["object", "null"]}, cosigned_size={"type": ["integer", "null"]},
                     halted={"type": "boolean"}, peers={"type": "array"}, evidence={"type": "array"}),
            keys={"description": "each own key's validity window and any rotation in progress"},
            alarms={"type": "array"}, time=_STR),
        "Rotation": _obj(["kid", "file", "effective", "base", "registry_version", "hub_registry_version",
                          "resubmitted", "documents"],
                         kid=_STR, file=_STR, effective=_STR, base=_int(1), registry_version={"type": ["integer",
                                                                                                       "null"]},
                         hub_registry_version={"type": ["integer", "null"]}, resubmitted={"type": "boolean"},
                         documents={"type": "array"}),
    }


def _node_paths() -> dict[str, Any]:
    bearer: list[dict[str, list[str]]] = [{"operatorToken": []}]
    unauth = _problem("No or a wrong operator token (`unauthorized`; `WWW-Authenticate: Bearer`)")
    bad = _problem("Malformed request: not strict JSON, or not the expected members")
    big = _problem("Body over the node's limit (`too-large`)")
    invalid = _problem("The body is not valid by its kind's schema (`schema-invalid`, with `errors`)")
    not_own = _problem("Only the origin may change its records (`not-own-record`)")
    missing = _problem("No such record (`record-not-found`)")
    deleted = _problem("The record is deleted (`record-deleted`)")
    key = _problem("No own key valid now (`key-not-valid`)")
    record_id = {"name": "record_id", "in": "path", "required": True, "schema": _STR,
                 "description": "`<CC>:<local id>`, e.g. `QA:ga6-2020` (percent-encode the colon if you like)"}
    published = _json(_ref("Published"), "The signed envelope as stored and queued for the hub")

    def body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
        return {"required": required, "content": {_J: {"schema": schema}}}

    change = {"400": bad, "401": unauth, "403": not_own, "404": missing, "409": deleted, "413": big, "503": key}
    # Unknown kinds, origins and statuses are not refused: they match nothing (an empty page).
    list_params = [
        _query("kind", _FILTER, "a record kind, e.g. `cultural-event`", empty=True),
        _query("origin", _FILTER, "a member code", empty=True),
        _query("updated_since", {"type": "string", "format": "date-time"}, "RFC 3339 time with an offset or Z",
               empty=True),
        _query("country", _COUNTRY, "a participating country (also a venue's or a programme's eligible country)",
               empty=True),
        _query("from", _DAY_OR_TIME, "a day (YYYY-MM-DD) or RFC 3339 time: records whose event or programme "
                                     "days (a recurring event's last occurrence) end on or after it", empty=True),
        _query("to", _DAY_OR_TIME, "a day (YYYY-MM-DD) or RFC 3339 time: records whose days start on "
                                   "or before it (not before `from`)", empty=True),
        _query("lang", {**_FILTER, "pattern": _LANG_TAG}, "a language of the record's title (BCP 47)", empty=True),
        _query("status", _FILTER, "a record status, e.g. `cancelled`", empty=True),
        _query("tag", _FILTER, "a tag (case-insensitive, whole)", empty=True),
        _query("type", _FILTER, "an event_type or programme_type, e.g. `screening`", empty=True),
        _query("audience", _FILTER, "one of the audience (or target_audience), e.g. `youth`", empty=True),
        _query("q", {"type": "string", "maxLength": 500, "pattern": "^[^\\u0000]*$"},
               "full text: every word in a title or description, any language", empty=True),
        _query("limit", _int(1, 500, default=50), "page size (at most the node's `max_page_size`)"),
        _query("cursor", _STR, "`next_cursor` of the previous page; never expires; one this node did not "
                               "make is a 400", empty=True)]
    return {
        "/api/v1/records": {
            "post": {"operationId": "createRecord", "tags": ["authoring"], "security": bearer,
                     "summary": "Publish a new record (PROTOCOL.md §9)",
                     "requestBody": body({**_obj(["kind", "body"], kind=_STR, body={"type": "object"}),
                                          "additionalProperties": False}),
                     "responses": {"201": {**published, "headers": {"Location": _header("the record's URL")}},
                                   "400": bad, "401": unauth, "413": big, "422": invalid, "503": key}},
            "get": {"operationId": "listRecords", "tags": ["reading"],
                    "summary": "Records this node holds, by (update time, record id)",
                    "parameters": [*list_params, _FORMAT, _IF_NONE_MATCH],
                    "responses": {"200": {"description": "A page of items (JSON), or a JSCalendar Group of them",
                                          "headers": {**_READ_HEADERS, "Vary": _header("Accept"), "Link": _header(
                                              'JSCalendar: the next page, `<...>; rel="next"`')},
                                          "content": {_J: {"schema": _ref("Page")},
                                                      _JSCALENDAR: {"schema": _ref("JSCalendarGroup")}}},
                                  "304": {"description": "Not modified", "headers": _READ_HEADERS},
                                  "400": _problem("A parameter that cannot be read (`bad-query`)")}},
        },
        "/api/v1/records/stream": {
            "get": {"operationId": "streamRecords", "tags": ["reading"],
                    "summary": "Server-sent events of the records as they change (PROTOCOL.md §9.2)",
                    "description": "`event: record` (a put) or `event: tombstone` (a deletion); `data:` the item, as "
                                   "a record page gives it; `id:` the cursor a page would continue from after it. "
                                   "Starts now, at `cursor` or `Last-Event-ID` (which wins), or with `updated_since` "
                                   "at that time; a `: keep-alive` comment on an idle stream every "
                                   "`stream_heartbeat` seconds; `retry:` once at the start.",
                    "parameters": [
                        *[p for p in list_params if p["name"] not in ("limit", "cursor")],
                        _query("cursor", _STR, "start after this cursor (a page's `next_cursor`, an event's id)"),
                        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": _STR,
                         "description": "the id of the last event received: resume after it"}],
                    "responses": {"200": {"description": "The stream, held open; each event:",
                                          "content": {"text/event-stream": {"schema": _obj(
                                              ["data"], event={"enum": ["record", "tombstone"]}, id=_STR,
                                              retry={"type": "integer", "minimum": 0},
                                              data={"type": "string", "contentMediaType": _J,
                                                    "contentSchema": _ref("Item")})}}},
                                  "400": _problem("A parameter or cursor that cannot be read (`bad-query`)"),
                                  "429": {**_problem("Over the rate limit (`rate-limited`: a stream counts as one "
                                                     "request), or the key (without a key, the client address) "
                                                     "holds its maximum of open streams (`too-many-streams`)"),
                                          "headers": {"Retry-After": _header("seconds")}},
                                  "503": {**_problem("The node serves its maximum of streams, or is stopping "
                                                     "(`streams-full`)"),
                                          "headers": {"Retry-After": _header("seconds")}}}},
        },
        "/api/v1/records/{record_id}": {
            "parameters": [record_id],
            "get": {"operationId": "getRecord", "tags": ["reading"], "summary": "One record (a tombstone too)",
                    "parameters": [_FORMAT, _IF_NONE_MATCH],
                    "responses": {"200": {"description": "The record (JSON), or a JSCalendar Event",
                                          "headers": {**_READ_HEADERS, "Vary": _header("Accept")},
                                          "content": {_J: {"schema": _ref("Item")},
                                                      _JSCALENDAR: {"schema": _ref("JSCalendarEvent")}}},
                                  "304": {"description": "Not modified", "headers": _READ_HEADERS},
                                  "400": _problem("A `format` other than json or jscalendar (`bad-query`)"),
                                  "404": missing,
                                  "406": _problem("JSCalendar asked for a body that gives no start "
                                                  "(`not-representable`)"),
                                  "410": _problem("JSCalendar asked for a deleted record (`record-deleted`)")}},
            "put": {"operationId": "updateRecord", "tags": ["authoring"], "security": bearer,
                    "summary": "A new version of an own record",
                    "requestBody": body({**_obj(["body"], body={"type": "object"}), "additionalProperties": False}),
                    "responses": {"200": published, **change, "422": invalid}},
            "delete": {"operationId": "deleteRecord", "tags": ["authoring"], "security": bearer,
                       "summary": "Delete an own record (a tombstone is published)",
                       "responses": {"200": published, "401": unauth, "403": not_own, "404": missing,
                                     "409": deleted, "503": key}},
        },
        "/api/v1/records/{record_id}/cancel": {
            "parameters": [record_id],
            "post": {"operationId": "cancelRecord", "tags": ["authoring"], "security": bearer,
                     "summary": "Publish an update with status cancelled",
                     "requestBody": body({**_obj(reason=_STR, lang={
                         "type": "string", "description": "the reason's language (BCP 47; default en): the reason is "
                         "published in the body's status_reason when the node writes cultural-event/v2 (ADR 0031)"}),
                         "additionalProperties": False}, required=False),
                     "responses": {"200": published, **change, "422": invalid}},
        },
        "/api/v1/outbox/retry": {
            "post": {"operationId": "retryOutbox", "tags": ["authoring"], "security": bearer,
                     "summary": "Push again the own envelopes the hub rejected",
                     "responses": {"200": _json(_obj(["requeued"], requeued=_int(0)), "How many were requeued"),
                                   "401": unauth}},
        },
        "/api/v1/keys/rotate": {
            "post": {"operationId": "rotateKey", "tags": ["authoring"], "security": bearer,
                     "summary": "Start a key rotation (PROTOCOL.md §12)",
                     "requestBody": body({**_obj(effective_in={"type": "number", "minimum": 0,
                                                               "description": "seconds until the new key signs "
                                                                              "(default 60)"}),
                                          "additionalProperties": False}, required=False),
                     "responses": {"201": _json(_ref("Rotation"), "A new key, the rotation submitted to the hub"),
                                   "200": _json(_ref("Rotation"), "A rotation in progress, resubmitted"),
                                   "400": bad, "401": unauth, "409": _problem("Rotation refused (`rotation-*`)"),
                                   "413": big, "502": _problem("The hub answered outside the protocol"),
                                   "503": _problem("The hub is unreachable, or no own key is valid")}},
        },
        "/api/v1/status": {
            "get": {"operationId": "getNodeStatus", "tags": ["reading"], "summary": "The node's state",
                    "description": "The full document to the operator (bearer token, or an `operator_networks` "
                                   "address); to anyone else only its public part (`restricted: true`).",
                    "security": [{"operatorToken": []}, {}],
                    "responses": {"200": _json({"oneOf": [_ref("NodeStatus"), _obj(
                        ["role", "member", "registry_version", "registry_expires_at", "time", "restricted"],
                        role={"const": "node"}, member=_STR, registry_version=_int(1), registry_expires_at=_STR,
                        time=_STR, restricted={"const": True})]}, "Member, hub, outbox, log, keys, alarms; or the "
                                                                  "public part")}},
        },
        "/api/v1/log": {
            "get": {"operationId": "getLogCopy", "tags": ["reading"],
                    "summary": "This node's copy of the hub's log, in the hub's page format (§9, §11.1): what a "
                               "restored hub reads back",
                    "parameters": [_query("after", _int(0, 2**53, default=0), "the last position seen"),
                                   _query("limit", _int(1, 1000, default=100), "how many entries")],
                    "responses": {"200": _json(_obj(["entries", "next", "size"], entries={"type": "array"},
                                                    next=_int(0), size=_int(0)), "Entries in position order"),
                                  "400": _problem("A parameter out of range or not an integer (`bad-parameter`)")}},
        },
        "/api/v1/log/checkpoint": {
            "get": {"operationId": "getWitnessedCheckpoint", "tags": ["reading"],
                    "summary": "The last hub checkpoint this node verified, with its own co-signature (§11)",
                    "responses": {"200": _json(_ref("Checkpoint"), "The checkpoint",
                                               {"Cache-Control": _header("no-cache")}),
                                  "404": _problem("No checkpoint accepted yet (`no-checkpoint`)")}},
        },
        "/api/v1/feeds/events.ics": _feed("getCalendar", "iCalendar (RFC 5545): one VEVENT per cultural event",
                                          [_ORIGIN, _query("status", _statuses(deleted=False, events_only=True),
                                                           "comma-separated event statuses", empty=True), _LANG,
                                           *_selection(choices=False), *_DAYS],
                                          "The calendar", "text/calendar", _STR),
        "/api/v1/feeds/feed.json": _feed(
            "getJsonFeed", "JSON Feed 1.1, newest change first; each item's `_ipdn` carries the envelope",
            [_KIND, _ORIGIN, _STATUS, _LANG, *_selection(choices=False), *_DAYS,
             _query("limit", _int(1, 500), "how many items (at most `max_page_size`)")],
            "The feed", "application/feed+json",
            _obj(["version", "title", "items"], version={"const": "https://jsonfeed.org/version/1.1"},
                 title=_STR, items={"type": "array", "items": {"type": "object"}})),
        "/api/v1/feeds/atom.xml": _feed(
            "getAtomFeed", "Atom (RFC 4287)",
            [_KIND, _ORIGIN, _STATUS, _LANG, *_selection(choices=False), *_DAYS,
             _query("limit", _int(1, 500), "how many entries (at most `max_page_size`)")],
            "The feed", "application/atom+xml", _STR),
        "/events/{record_id}": {
            "get": {"operationId": "getEventPage", "tags": ["feeds"],
                    "summary": "The public HTML page of a record (both kinds), with schema.org JSON-LD",
                    "parameters": [record_id, _query("lang", _STR, "a language tag preferred for the texts "
                                                                  "(any other value: the default)"),
                                   _IF_NONE_MATCH],
                    "responses": {"200": {"description": "The page", "headers": _PAGE_HEADERS,
                                          "content": {"text/html": {"schema": _STR}}},
                                  "304": {"description": "Not modified", "headers": _PAGE_HEADERS},
                                  "404": {"description": "No such record: an HTML page",
                                          "content": {"text/html": {"schema": _STR}}},
                                  "410": {"description": "The event was deleted: a page naming the tombstone",
                                          "headers": _PAGE_HEADERS, "content": {"text/html": {"schema": _STR}}}}},
        },
        "/": _portal_page("getPortalHome", "The portal's home: what is coming up across the network"),
        "/events": _portal_page(
            "getPortalList", "Events and programmes of the whole network, filtered and searched",
            _KIND, _ORIGIN, _query("status", _FILTER, "a record status", empty=True), *_selection(choices=True),
            *_DAYS, _query("cursor", _STR, "the next page's cursor", empty=True),
            bad="A filter the page cannot read (an HTML page naming it)"),
        "/calendar": _portal_page(
            "getPortalCalendar", "A month of the list's records, each occurrence on its local day",
            _KIND, _ORIGIN, _query("status", _FILTER, "a record status", empty=True), *_selection(choices=True),
            _query("month", {"type": "string", "pattern": "^[1-9][0-9]{3}-(0[1-9]|1[0-2])$"}, "the month, YYYY-MM "
                   "(this month when absent)", empty=True),
            bad="A filter or month the page cannot read (an HTML page naming it)"),
        "/agenda": _portal_page(
            "getPortalAgenda", "The coming days' occurrences of the list's records, by day",
            _KIND, _ORIGIN, _query("status", _FILTER, "a record status", empty=True), *_selection(choices=True),
            _query("from", _DAY, "the first day, YYYY-MM-DD (today when absent)", empty=True),
            bad="A filter the page cannot read (an HTML page naming it)"),
        "/about": _portal_page("getPortalAbout", "The node operator's own page",
                               not_found="The operator has no page, or the portal is turned off"),
        "/members": _portal_page("getPortalMembers", "The network's member institutions"),
        "/members/{code}": _portal_page(
            "getPortalMember", "One member institution and its records",
            {"name": "code", "in": "path", "required": True, "schema": _COUNTRY,
             "description": "a member code (lower case: a permanent redirect to upper case)"},
            not_found="No such member, or the portal is turned off"),
        "/sitemap.xml": _portal_page("getSitemap", "The portal's pages (sitemaps.org)", media_type="application/xml"),
        "/robots.txt": _portal_page("getRobots", "Crawling rules, naming the sitemap", media_type="text/plain"),
        "/portal.css": {"get": {"operationId": "getPortalStylesheet", "tags": ["portal"],
                                "summary": "The portal's stylesheet (with the operator's colours)",
                                "responses": {"200": {"description": "The stylesheet",
                                                      "content": {"text/css": {"schema": _STR}}}}}},
        "/events/{record_id}/calendar.ics": {
            "get": {"operationId": "getEventCalendar", "tags": ["portal"],
                    "summary": "One event as iCalendar (RFC 5545): \"add to calendar\"",
                    "parameters": [record_id],
                    "responses": {"200": {"description": "The event", "content": {"text/calendar": {"schema": _STR}}},
                                  "404": {"description": "No such event", "content": {"text/html": {"schema": _STR}}},
                                  "410": {"description": "The event was deleted",
                                          "content": {"text/html": {"schema": _STR}}}}},
        },
        "/events/{record_id}/envelope.json": {
            "get": {"operationId": "getEventEnvelope", "tags": ["portal"],
                    "summary": "The signed envelope of the record's current version, to verify it yourself (§3)",
                    "parameters": [record_id],
                    "responses": {"200": {"description": "The envelope as the node holds it",
                                          "content": {"application/jose+json": {"schema": _ref("Envelope")}}},
                                  "404": {"description": "No such record",
                                          "content": {"text/html": {"schema": _STR}}}}},
        },
        "/catalog": _catalog("getCatalog", "The DCAT-AP 3 catalogue of the network: JSON-LD, Turtle or RDF/XML "
                                           "by Accept (JSON-LD by default)"),
        "/catalog.{suffix}": _catalog("getCatalogFile", "The DCAT-AP 3 catalogue in the format the suffix names",
                                      {"name": "suffix", "in": "path", "required": True,
                                       "schema": {"type": "string", "enum": ["jsonld", "ttl", "rdf"]},
                                       "description": "`jsonld` (application/ld+json), `ttl` (text/turtle) or `rdf` "
                                                      "(application/rdf+xml)"}),
        "/oai": {
            "get": {"operationId": "oaiGet", "tags": ["feeds"], "summary": "OAI-PMH 2.0, all six verbs",
                    "parameters": [_query(k, v, v.get("description", k)) for k, v in _OAI_ARGS.items()],
                    "responses": {"200": _OAI_OK}},
            "post": {"operationId": "oaiPost", "tags": ["feeds"], "summary": "OAI-PMH 2.0 as a form",
                     "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {
                         "schema": {"type": "object", "properties": _OAI_ARGS,
                                    "description": "other arguments are `badArgument` errors"}}}},
                     "responses": {"200": _OAI_OK, "413": _problem("Body over the node's limit")}},
        },
    }


# -- hub ----------------------------------------------------------------------------------------------------


def _hub_schemas() -> dict[str, Any]:
    int_or_null: dict[str, Any] = {"type": ["integer", "null"]}
    member = _obj(["code", "names", "role", "status", "envelopes", "head_seq", "refused", "accepted_today",
                   "refused_today", "last_push_at", "last_pull_at", "cursor", "cursor_source", "lag_envelopes",
                   "lag_seconds", "valid_keys", "key_expires_at", "last_cosigned_size", "silent"],
                  code=_STR, names={"type": "object"}, role=_STR, status=_STR, envelopes=_int(0), head_seq=_int(0),
                  refused=_int(0), accepted_today=_int(0), refused_today=_int(0), last_push_at=_TIME_OR_NULL,
                  last_pull_at={**_TIME_OR_NULL, "description": "its latest signed pull (docs/adr/0008)"},
                  cursor={**int_or_null, "description": "how far it has read: the `after` of its latest signed "
                                                        "pull, else its latest co-signed checkpoint"},
                  cursor_source={"type": ["string", "null"], "enum": ["pull", "cosignature", None]},
                  lag_envelopes=int_or_null,
                  lag_seconds={"type": ["number", "null"], "description": "age of the oldest entry not read"},
                  valid_keys=_int(0), key_expires_at=_TIME_OR_NULL, last_cosigned_size=int_or_null,
                  silent={"type": "boolean", "description": "active, and no push or pull within `silent_after`"})
    result = _obj(["index", "status", "hash"], index=_int(0),
                  status={"type": "string", "enum": ["accepted", "duplicate", "rejected"]}, position=_int(1),
                  hash=_STR, problem=_ref("Problem"))
    return {
        "LogPage": _obj(["entries", "next", "size"], entries={"type": "array", "items": _obj(
            ["position", "envelope", "received_at"], position=_int(1), envelope=_ref("Envelope"),
            received_at={**_STR, "description": "when the hub logged it (§8.3)"})}, next=_int(0), size=_int(0),
            checkpoint={**_ref("Checkpoint"), "description": "the hub's, of size `next`: only on a page ending at the "
                                                             "end of the log (§8.3)"}),
        "HubStatus": _obj(["role", "hub_url", "registry_version", "log_size", "quarantine", "time", "silent_after",
                           "checkpoint", "members"],
                          role={"const": "hub"}, hub_url=_STR, registry_version=_int(1),
                          registry_expires_at=_STR, log_size=_int(0),
                          quarantine=_int(0), time=_STR, silent_after={"type": "number"},
                          checkpoint={"oneOf": [{"type": "null"}, _obj(["size", "root", "issued_at"], size=_int(0),
                                                                       root=_STR, issued_at=_STR)]},
                          members={"type": "array", "items": member},
                          worker=_int(1, description="the process id of the hub worker that answered (several share "
                                                     "one log on PostgreSQL)")),
        "PushResult": _obj(["results", "log_size", "checkpoint"], results={"type": "array", "items": result},
                           log_size=_int(0), checkpoint={"oneOf": [_ref("Checkpoint"), {"type": "null"}]}),
        "Registry": {"type": "object", "description": "A signed registry document, byte for byte as signed "
                                                      "(PROTOCOL.md §7)"},
        "Quarantine": _obj(["items"], items={"type": "array", "items": _obj(
            ["id", "received_at", "member", "reason", "detail", "envelope"], id={}, received_at=_TIME_OR_NULL,
            member=_STR_OR_NULL, origin=_STR_OR_NULL, seq={"type": ["integer", "null"]}, hash=_STR_OR_NULL,
            reason=_STR, detail={}, conflicts_with={"type": ["integer", "null"]},
            envelope={"type": "string", "description": "the bytes as received (invalid UTF-8 replaced)"},
            sha256={"type": "string", "description": "SHA-256 (hex) of the bytes kept, exactly as received"},
            size=_int(0, description="the input's length as received (what was read, for a request)"),
            kept_bytes=_int(0, description="how many of its bytes are kept"),
            truncated={"type": "boolean", "description": "fewer bytes kept than received: a prefix, or none"},
            bound={"enum": ["item", "member", "total", None], "description": "the quarantine bound that cut them"},
            input_sha256={"type": "string", "description": "SHA-256 (hex) of the whole input as received"})}),
        "RecoveryReport": _obj(
            ["outcome", "detail", "size_before", "size_after", "members", "recovering"],
            outcome={"enum": ["recovered", "up-to-date", "waiting", "refused", "dry-run"]}, detail=_STR,
            size_before=_int(0), size_after=_int(0), target=int_or_null, source=_STR_OR_NULL, appended=_int(0),
            taken=_int(0), receipts_disputed=_int(0), receipts_unknown=_int(0), recovering={"type": "boolean"},
            members={"type": "array", "items": _obj(
                ["member", "url"], member=_STR, url=_STR, checkpoint_size=int_or_null, root=_STR_OR_NULL,
                cosigners={"type": "array", "items": _STR}, log_size=int_or_null, error=_STR_OR_NULL)}),
        "Governance": _obj(["registry_version", "quorum", "pending", "trail"], registry_version=_int(1),
                           quorum=_int(0), pending={"type": "array", "items": {"type": "object"}},
                           trail={"type": "array", "items": {"type": "object"}}),
    }


def _hub_paths() -> dict[str, Any]:
    signed: list[dict[str, list[str]]] = [{"httpSignature": []}]
    bad_param = _problem("A parameter out of range or not an integer (`bad-parameter`)")
    unsigned = _problem("Missing, malformed, expired, replayed or wrong RFC 9421 signature "
                        "(`signature-*`, `unknown-key`, `bad-signature`, `content-digest-mismatch`)")
    immutable = {"Cache-Control": _CACHE}
    big = _problem("Body over the limit (`too-large`, `batch-too-large`)")
    slow = _problem("The body did not arrive within the hub's `body_timeout` (`request-timeout`)")
    limited = {**_problem("The member sends faster than the hub's `push_rate` (`rate-limited`)"),
               "headers": {"Retry-After": _header("seconds to wait before sending again")}}
    pos = 2**53

    def body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {_J: {"schema": schema}}}

    return {
        "/api/v1/envelopes": {
            "post": {"operationId": "pushEnvelopes", "tags": ["log"], "security": signed,
                     "summary": "Push own envelopes (PROTOCOL.md §8.2), RFC 9421-signed with Content-Digest",
                     "requestBody": body({**_obj(["envelopes"], envelopes={"type": "array",
                                                                          "items": _ref("Envelope")}),
                                          "additionalProperties": False}),
                     "responses": {"200": _json(_ref("PushResult"), "One result per envelope, in order"),
                                   "400": _problem("Not strict JSON or not a batch (`malformed-batch`)"),
                                   "401": unsigned, "403": _problem("Not the member's own envelopes"),
                                   "408": slow, "413": big, "422": _problem("Refused"), "429": limited,
                                   "503": _problem("This hub handed over (`hub-handed-over`, with `hub_url`)")}},
        },
        "/api/v1/log": {
            "get": {"operationId": "getLog", "tags": ["log"], "summary": "Pull log entries after a position (§8.3)",
                    "parameters": [_query("after", _int(0, pos, default=0), "the last position seen"),
                                   {"name": "If-None-Match", "in": "header", "required": False, "schema": _STR,
                                    "description": "the ETag of a full page fetched before: 304"},
                                   _query("limit", _int(1, 1000, default=100), "at most the hub's `page_limit`"),
                                   _query("wait", _int(0, 30, default=0),
                                          "long-poll seconds while nothing is after `after` (the hub holds it "
                                          "its `max_wait` at most)")],
                    "responses": {"200": _json(_ref("LogPage"), "Entries in position order", {
                        **immutable, "ETag": _header("weak validator of a full page's entries (full pages only)")}),
                                  "304": {"description": "A full page, not modified (If-None-Match matched)"},
                                  "400": bad_param}},
        },
        "/api/v1/registry": {
            "get": {"operationId": "getRegistry", "tags": ["registry"], "summary": "The registry (§8.1, §12)",
                    "parameters": [_query("version", _int(1, 2**31), "a registry version; every one stays")],
                    "responses": {"200": _json(_ref("Registry"), "The signed registry",
                                               {**immutable, "ETag": _header("the payload hash (current only)")}),
                                  "400": bad_param,
                                  "404": _problem("No such version (`no-such-registry-version`)")}},
        },
        "/api/v1/status": {
            "get": {"operationId": "getHubStatus", "tags": ["status"], "summary": "The hub's state (§8.4)",
                    "description": "The full document to the operator (bearer token, or an `operator_networks` "
                                   "address); to anyone else only its public part (`restricted: true`).",
                    "security": [{"operatorToken": []}, {}],
                    "responses": {"200": _json({"oneOf": [_ref("HubStatus"), _obj(
                        ["role", "hub_url", "registry_version", "registry_expires_at", "log_size", "time",
                         "restricted"], role={"const": "hub"}, hub_url=_STR, registry_version=_int(1),
                        registry_expires_at=_STR, log_size=_int(0), time=_STR, restricted={"const": True})]},
                        "Log size, quarantine, members; or the public part")}},
        },
        "/api/v1/quarantine": {
            "get": {"operationId": "getQuarantine", "tags": ["status"], "security": [{"operatorToken": []}],
                    "summary": "Refused inputs, newest first (§8.4)",
                    "parameters": [_query("member", _STR, "a member code"), _query("reason", _STR, "a reason slug"),
                                   _query("limit", _int(1, 1000, default=100), "how many")],
                    "responses": {"200": _json(_ref("Quarantine"), "Quarantined inputs"), "400": bad_param,
                                  "401": _problem("No or a wrong operator token (`operator-token-required`)")}},
        },
        "/api/v1/log/checkpoint": {
            "get": {"operationId": "getCheckpoint", "tags": ["log"],
                    "summary": "The latest checkpoint, or the one of exactly `size`, with every co-signature (§11)",
                    "parameters": [_query("size", _int(1, pos), "a tree size the hub signed")],
                    "responses": {"200": _json(_ref("Checkpoint"), "The checkpoint", immutable), "400": bad_param,
                                  "404": _problem("The log is empty, or no checkpoint of that size")}},
        },
        "/api/v1/log/proof/inclusion": {
            "get": {"operationId": "getInclusionProof", "tags": ["log"],
                    "summary": "RFC 9162 §2.1.3 inclusion proof of leaf `index` in the tree of `size`",
                    "parameters": [_query("index", _int(0, pos - 1, default=0), "0-based: log position - 1, < size"),
                                   _query("size", _int(1, pos), "a tree size up to the log's; default the log's")],
                    "responses": {"200": _json(_obj(["index", "size", "proof"], index=_int(0), size=_int(1),
                                                    proof={"type": "array", "items": _HEX}), "The proof", immutable),
                                  "400": bad_param, "404": _problem("The log is empty (`no-checkpoint`)")}},
        },
        "/api/v1/log/proof/consistency": {
            "get": {"operationId": "getConsistencyProof", "tags": ["log"],
                    "summary": "RFC 9162 §2.1.4 consistency proof between the trees of sizes `from` and `to`",
                    "parameters": [_query("from", _int(1, pos, default=1), "0 < from <= to"),
                                   _query("to", _int(1, pos), "up to the log's size; default the log's")],
                    "responses": {"200": _json(_obj(["from", "to", "proof"], **{"from": _int(1)}, to=_int(1),
                                                    proof={"type": "array", "items": _HEX}), "The proof", immutable),
                                  "400": bad_param, "404": _problem("The log is empty (`no-checkpoint`)")}},
        },
        "/api/v1/log/cosignatures": {
            "post": {"operationId": "postCosignature", "tags": ["log"], "security": signed,
                     "summary": "A member's co-signature of a checkpoint it verified (§11), RFC 9421-signed",
                     "requestBody": body({**_obj(["size", "signature"], size=_int(1), signature=_obj(
                         ["protected", "signature"], protected=_STR, signature=_STR)), "additionalProperties": False}),
                     "responses": {"201": _json(_obj(["size", "member", "cosigned"], size=_int(1), member=_STR,
                                                     cosigned={"const": True}), "Kept"),
                                   "400": _problem("Not a co-signature (`malformed-cosignature`)"), "401": unsigned,
                                   "404": _problem("No checkpoint of that size"), "408": slow, "413": big,
                                   "422": _problem("Not that member's signature (`bad-cosignature`)"),
                                   "429": limited}},
        },
        "/api/v1/recovery": {
            "get": {"operationId": "getRecovery", "tags": ["status"], "security": [{"operatorToken": []}],
                    "summary": "Recovery of the log from the members (§11.1): read-only or not, the last round",
                    "responses": {"200": _json(_obj(["recovering", "size", "last", "members"],
                                                    recovering={"type": "boolean"}, size=_int(0),
                                                    last={"oneOf": [_ref("RecoveryReport"), {"type": "null"}]},
                                                    members={"type": "object"}), "The recovery state"),
                                  "401": _problem("No or a wrong operator token (`operator-token-required`)")}},
            "post": {"operationId": "runRecovery", "tags": ["status"], "security": [{"operatorToken": []}],
                     "summary": "Run a recovery round now (what `ipdn hub recover --from-members` calls)",
                     "requestBody": {"required": False, "content": {_J: {"schema": {
                         **_obj(members={"type": "array", "items": _STR},
                                endpoints={"type": "object", "additionalProperties": _STR},
                                dry_run={"type": "boolean"}, force={"type": "boolean"}, begin={"type": "boolean"}),
                         "additionalProperties": False}}}},
                     "responses": {"200": _json(_ref("RecoveryReport"), "The round's report"),
                                   "400": _problem("Not a recovery request (`malformed-request`)"),
                                   "401": _problem("No or a wrong operator token (`operator-token-required`)")}},
        },
        "/api/v1/governance": {
            "post": {"operationId": "postGovernance", "tags": ["registry"],
                     "summary": "Submit signed governance documents (§12.3; self-authenticating)",
                     "requestBody": body({**_obj(["documents"], documents={
                         "type": "array", "items": {**_ref("Envelope"), "description": "a governance document: a "
                                                                                       "flattened JWS (§12.3)"}}),
                                          "additionalProperties": False}),
                     "responses": {"202": _json(_obj(["accepted", "registry_version"],
                                                     accepted={"type": "array", "items": _STR},
                                                     registry_version=_int(1)), "Accepted"),
                                   "400": _problem("Malformed (`malformed-request`)"),
                                   "403": _problem("A signature that does not verify"), "413": big,
                                   "422": _problem("Refused (e.g. `stale-governance-document`)"),
                                   "429": {**_problem("Over the governance rate of the client address or the "
                                                      "signing key (`rate-limited`)"),
                                           "headers": {"Retry-After": _header("seconds")}},
                                   "503": {**_problem("The hub holds its maximum of undecided applications "
                                                      "(`too-many-pending-applications`)"),
                                           "headers": {"Retry-After": _header("seconds")}}}},
            "get": {"operationId": "getGovernance", "tags": ["registry"],
                    "summary": "Pending subjects with their tallies, and the audit trail",
                    "responses": {"200": _json(_ref("Governance"), "Pending and trail")}},
        },
    }


# -- webhooks (node/webhooks/api.py, PROTOCOL.md §13) ----------------------------------------------------------

_EVENT_TYPES = ["record.published", "record.updated", "record.cancelled", "record.deleted"]


def _webhook_schemas() -> dict[str, Any]:
    time_ = {"type": "string", "description": "RFC 3339 time"}
    filters = {**_obj(kind=_STR, origin={"type": "string", "pattern": "^[A-Za-z]{2}$"},
                      country={"type": "string", "pattern": "^[A-Za-z]{2}$"}, lang=_STR,
                      status={"type": "string", "maxLength": 200}, tag={"type": "string", "maxLength": 200},
                      types={"type": "array", "items": {"enum": _EVENT_TYPES}}),
               "additionalProperties": False,
               "description": "The record API's filters (AND), plus event types; an event is sent when the new "
                              "version or the one it replaces passes them."}
    subscription = _obj(
        ["id", "partner", "url", "filters", "state", "created_at", "disabled"], id=_STR, partner=_STR, url=_STR,
        filters=_ref("WebhookFilters"), state={"enum": ["active", "disabled"]}, created_at=time_,
        disabled={"oneOf": [{"type": "null"}, _obj(["reason", "detail", "at"],
                                                   reason={"enum": ["gone", "failing", "operator"]},
                                                   detail=_STR_OR_NULL, at=_TIME_OR_NULL)]},
        failing_since=_TIME_OR_NULL, last_success_at=_TIME_OR_NULL, last_failure_at=_TIME_OR_NULL,
        secret={"type": "string", "description": "`whsec_...`, only in the answer that created the subscription"})
    attempt = _obj(["attempt", "at", "status", "error", "duration_ms"], attempt=_int(1), at=time_,
                   status={"type": ["integer", "null"]}, error=_STR_OR_NULL, duration_ms=_int(0))
    delivery = _obj(["id", "subscription", "type", "record_id", "version", "state", "attempts", "tried"],
                    id={"type": "string", "description": "the `webhook-id` of every attempt"}, subscription=_STR,
                    type={"enum": _EVENT_TYPES}, record_id=_STR, version=_int(1),
                    state={"enum": ["pending", "delivered", "failed"]}, attempts=_int(0), created_at=time_,
                    next_attempt_at=_TIME_OR_NULL, delivered_at=_TIME_OR_NULL,
                    last_status={"type": ["integer", "null"]}, last_error=_STR_OR_NULL,
                    tried={"type": "array", "items": attempt})
    return {
        "WebhookFilters": filters,
        "Subscription": subscription,
        "Delivery": delivery,
        "WebhookEvent": _obj(["type", "timestamp", "data"], type={"enum": _EVENT_TYPES}, timestamp=time_,
                             data=_ref("Item")),
        "WebhookKey": _obj(["key", "algorithm", "signature_version", "jwk", "tolerance_seconds"],
                           key={"type": "string", "pattern": "^whpk_"}, algorithm={"const": "Ed25519"},
                           signature_version={"const": "v1a"}, jwk={"type": "object"},
                           tolerance_seconds=_int(0)),
    }


def _webhook_paths() -> dict[str, Any]:
    key: list[dict[str, list[str]]] = [{"partnerKey": []}]
    retry = {"Retry-After": _header("seconds until a request is allowed again")}
    refusals = {
        "401": _problem("No partner key, or not a valid one (`partner-key-required`, `partner-key-invalid`, "
                        "`partner-key-revoked`); `WWW-Authenticate: Bearer`"),
        "403": _problem("The key lacks the `webhooks` scope (`partner-scope-missing`)"),
        "429": {**_problem("Over the key's rate limit (`rate-limited`)"), "headers": retry},
    }
    missing = _problem("No subscription of this partner with that id (`subscription-not-found`)")
    sub_id = {"name": "id", "in": "path", "required": True, "schema": _STR, "description": "`sub_...`"}
    sub = _json(_ref("Subscription"), "The subscription")
    no_store = {"Cache-Control": _header("no-store")}
    return {
        "/api/v1/webhooks/signing-key": {
            "get": {"operationId": "getWebhookKey", "tags": ["webhooks"], "security": [{}],
                    "summary": "The node's public webhook key: `v1a` signatures verify against it",
                    "responses": {"200": _json(_ref("WebhookKey"), "The key (`whpk_` and as a JWK)",
                                               {"Cache-Control": _header("public, max-age=3600")}),
                                  "429": refusals["429"]}},
        },
        "/api/v1/webhooks": {
            "post": {"operationId": "createSubscription", "tags": ["webhooks"], "security": key,
                     "summary": "Subscribe a URL to record events (the secret is in this answer only)",
                     "requestBody": {"required": True, "content": {_J: {"schema": {
                         **_obj(["url"], url={"type": "string", "description": "https:// (PROTOCOL.md §13)"},
                                filters=_ref("WebhookFilters")), "additionalProperties": False}}}},
                     "responses": {"201": {**_json(_ref("Subscription"), "Made; `secret` is shown once"),
                                           "headers": {"Location": _header("the subscription's URL")}},
                                   "400": _problem("Malformed body or filters (`malformed-request`, `bad-query`)"),
                                   **refusals,
                                   "409": _problem("The partner has too many subscriptions (`too-many-subscriptions`)"),
                                   "413": _problem("Body too large (`too-large`)"),
                                   "422": _problem("The URL is refused (`webhook-url-refused`): not https, "
                                                   "credentials in it, or not a public address")}},
            "get": {"operationId": "listSubscriptions", "tags": ["webhooks"], "security": key,
                    "summary": "The partner's subscriptions",
                    "responses": {"200": _json(_obj(["items"], items={"type": "array", "items": _ref("Subscription")}),
                                               "Every subscription of the partner", no_store), **refusals}},
        },
        "/api/v1/webhooks/{id}": {
            "parameters": [sub_id],
            "get": {"operationId": "getSubscription", "tags": ["webhooks"], "security": key,
                    "summary": "One subscription: state, why it was disabled, failure streak",
                    "responses": {"200": {**sub, "headers": no_store}, **refusals, "404": missing}},
            "delete": {"operationId": "deleteSubscription", "tags": ["webhooks"], "security": key,
                       "summary": "Remove a subscription and its queued deliveries",
                       "responses": {"204": {"description": "Removed"}, **refusals, "404": missing}},
        },
        "/api/v1/webhooks/{id}/deliveries": {
            "parameters": [sub_id],
            "get": {"operationId": "listDeliveries", "tags": ["webhooks"], "security": key,
                    "summary": "Recent deliveries, newest first, with every attempt's status and error",
                    "parameters": [_query("state", {"enum": ["pending", "delivered", "failed"]}, "only these"),
                                   _query("limit", _int(1, 500, default=50), "how many")],
                    "responses": {"200": _json(_obj(["items"], items={"type": "array", "items": _ref("Delivery")}),
                                               "The deliveries", no_store),
                                  "400": _problem("A parameter that cannot be read (`bad-query`)"),
                                  **refusals, "404": missing}},
        },
        "/api/v1/webhooks/{id}/enable": {
            "parameters": [sub_id],
            "post": {"operationId": "enableSubscription", "tags": ["webhooks"], "security": key,
                     "summary": "Deliver again after a 410 or a long failure; queued deliveries are due at once",
                     "responses": {"200": sub, **refusals, "404": missing,
                                   "409": _problem("Disabled by the node's operator "
                                                   "(`subscription-disabled-by-operator`)")}},
        },
        "/api/v1/webhooks/{id}/retry": {
            "parameters": [sub_id],
            "post": {"operationId": "retryDeliveries", "tags": ["webhooks"], "security": key,
                     "summary": "Queue the failed deliveries again (fresh schedule, same webhook-id)",
                     "responses": {"200": _json(_obj(["requeued"], requeued=_int(0)), "How many"), **refusals,
                                   "404": missing}},
        },
    }


def _webhook_events() -> dict[str, Any]:
    """The requests the node sends (OpenAPI 3.1 ``webhooks``)."""
    def header(name: str, description: str) -> dict[str, Any]:
        return {"name": name, "in": "header", "required": True, "schema": _STR, "description": description}

    return {"recordEvent": {"post": {
        "operationId": "recordEvent", "tags": ["webhooks"],
        "summary": "A record was published, updated, cancelled or deleted (Standard Webhooks, PROTOCOL.md §13)",
        "parameters": [
            header("webhook-id", "`msg_<ULID>`, the same on every attempt: deduplicate by it"),
            header("webhook-timestamp", "the attempt's time, integer Unix seconds: refuse it 5 minutes off"),
            header("webhook-signature", "`v1,<base64 HMAC-SHA256>` (with the subscription's secret) and "
                                        "`v1a,<base64 Ed25519>` (the node's `whpk_` key), space-separated, over "
                                        "`{webhook-id}.{webhook-timestamp}.{body}`")],
        "requestBody": {"required": True, "content": {_J: {"schema": _ref("WebhookEvent")}}},
        "responses": {"2XX": {"description": "Delivered"},
                      "410": {"description": "Gone: the subscription is disabled"},
                      "default": {"description": "Any other answer (or none within 15 s) is retried"}}}}}


# -- partner access (node/partners/access.py) ------------------------------------------------------------------------

PARTNER_READ_PREFIXES = ("/api/v1/records", "/api/v1/feeds/", "/oai", "/events/")


def _partner_read(paths: dict[str, Any]) -> dict[str, Any]:
    """Every partner read operation: anonymous or with a partner key, and the refusals partner access adds."""
    key_param = _query("key", _STR, "a partner key, for clients that cannot send `Authorization`")
    retry = {"Retry-After": _header("seconds until a request is allowed again")}
    refusals = {
        "401": _problem("A key is needed (`partner-key-required`: public read is off) or the key given is not "
                        "valid (`partner-key-invalid`, `partner-key-revoked`); `WWW-Authenticate: Bearer`"),
        "403": _problem("The key lacks the `read` scope (`partner-scope-missing`)"),
        "429": {**_problem("Over the rate limit of the key or, without a key, of the client address "
                           "(`rate-limited`)"), "headers": retry},
    }
    for path, item in paths.items():
        if not path.startswith(PARTNER_READ_PREFIXES) or "get" not in item:
            continue
        op = item["get"]
        op["security"] = [{}, {"partnerKey": []}]
        op["parameters"] = [*op.get("parameters", []), key_param]
        op["responses"] = {**refusals, **op["responses"]}
    return paths


def _author_paths() -> dict[str, Any]:
    """The node's authoring pages for member staff (server-rendered HTML forms, docs/operating-node.md)."""
    session: list[dict[str, list[str]]] = [{"staffSession": []}]
    html = {"description": "The page", "content": {"text/html": {"schema": _STR}}}
    to_sign_in = {"description": "No session: to the sign-in page (GET), or after a form: to the next page",
                  "headers": {"Location": _header("where to go next")}}
    unauth = _problem("No session (`sign-in-required`)")
    csrf = _problem("No or a stale anti-forgery token, or a post from another site's page (`csrf`)")
    missing = _problem("No such draft, record, import or file")
    form = {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
    upload = {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object"}}}}
    draft_id = {"name": "draft_id", "in": "path", "required": True, "schema": _STR, "description": "a draft's id"}
    record_id = {"name": "record_id", "in": "path", "required": True, "schema": _STR, "description": "a record id"}

    def page(op: str, summary: str, *params: dict[str, Any], secure: bool = True) -> dict[str, Any]:
        return {"operationId": op, "tags": ["authoring pages"], "summary": summary, "parameters": list(params),
                **({"security": session} if secure else {}),
                "responses": {"200": html, "303": to_sign_in, "400": _problem("A parameter that cannot be read"),
                              "404": missing}}

    def post(op: str, summary: str, *params: dict[str, Any], body: dict[str, Any] = form,
             secure: bool = True) -> dict[str, Any]:
        return {"operationId": op, "tags": ["authoring pages"], "summary": summary, "parameters": list(params),
                **({"security": session} if secure else {}), "requestBody": body,
                "responses": {"200": html, "303": to_sign_in, "401": unauth, "403": csrf, "404": missing,
                              "409": _problem("The record changed meanwhile, or is deleted"),
                              "413": _problem("The upload is over the limit"),
                              "415": _problem("The upload is not multipart/form-data"),
                              "422": {"description": "The form again, with every problem in plain words",
                                      "content": {"text/html": {"schema": _STR}}},
                              "429": {"description": "Sign-in locked after repeated failures",
                                      "content": {"text/html": {"schema": _STR}}}}}

    what = {"name": "what", "in": "path", "required": True, "schema": {"enum": ["cancel", "delete"]}}
    kind = {"name": "kind", "in": "path", "required": True, "schema": _STR, "description": "a record kind"}
    job = {"name": "job_id", "in": "path", "required": True, "schema": _STR, "description": "an import's id"}
    name = {"name": "name", "in": "path", "required": True, "schema": _STR, "description": "author.css or author.js"}
    return {
        "/author/": {"get": page("authorList", "Own drafts and records, and records received; search and filters")},
        "/author/signin": {"get": page("authorSignInPage", "The sign-in form", secure=False),
                           "post": {**post("authorSignIn", "Sign in (locked after repeated failures)", secure=False),
                                    "requestBody": {"required": True, "content": {
                                        "application/x-www-form-urlencoded": {"schema": _obj(
                                            ["csrf_token", "name", "password"], csrf_token=_STR, name=_STR,
                                            password=_STR, code={**_STR, "description": "a one-time code"},
                                            next={**_STR, "description": "where to go after"})}}},
                                    "responses": {"303": to_sign_in, "403": csrf, **_SIGN_IN_REFUSALS}}},
        "/author/signout": {"post": post("authorSignOut", "Sign out")},
        "/author/new/{kind}": {"get": page("authorNew", "An empty form for a new record of a kind", kind)},
        "/author/drafts": {"post": post("authorCreateDraft", "Save a new draft (unsigned, kept on this node)")},
        "/author/drafts/{draft_id}": {
            "get": page("authorDraft", "A draft in its form, with its problems and a preview", draft_id),
            "post": post("authorSaveDraft", "Save, add or remove a language, preview, publish or discard", draft_id)},
        "/author/drafts/{draft_id}/publish": {
            "get": page("authorConfirmPublish", "Confirm publishing: the version it will be", draft_id),
            "post": post("authorPublish", "Sign and publish the draft", draft_id)},
        "/author/records/{record_id}": {"get": page("authorRecord", "A record as partners see it", record_id)},
        "/author/records/{record_id}/edit": {"post": post("authorEdit", "Open a draft of an own record", record_id)},
        "/author/records/{record_id}/history": {
            "get": page("authorHistory", "Every version: when, who, what changed", record_id)},
        "/author/records/{record_id}/{what}": {
            "get": page("authorConfirmChange", "Confirm cancelling (with a reason) or deleting", record_id, what),
            "post": post("authorChange", "Cancel or delete an own record", record_id, what)},
        "/author/import": {"get": page("authorImportPage", "The upload form for CSV or JSON Lines"),
                           "post": post("authorImport", "Check or import a file", body=upload)},
        "/author/import/{job_id}": {"get": page("authorImportJob", "An import's progress and report", job)},
        "/author/static/{name}": {"get": {
            "operationId": "authorStatic", "tags": ["authoring pages"], "summary": "The pages' stylesheet and script",
            "parameters": [name],
            "responses": {"200": {"description": "The file", "content": {"text/css": {"schema": _STR},
                                                                          "text/javascript": {"schema": _STR}}},
                          "404": missing}}},
    }


# -- the documents ------------------------------------------------------------------------------------------


def document(role: Role) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``role``'s interface (a new dict each call)."""
    schemes: dict[str, Any] = {"operatorToken": {
        "type": "http", "scheme": "bearer",
        "description": f"The {role} operator's token (`Authorization: Bearer ...`), compared as SHA-256 digests"}}
    if role in SESSION_COOKIES:
        schemes["session"] = {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIES[role],
                              "description": "The signed session cookie set by signing in (federation/server/ui/)"}
    if role == "node":
        schemes["partnerKey"] = {
            "type": "http", "scheme": "bearer",
            "description": "A partner API key `ipdn_pk_<id>_<secret>` issued by the node's operator (`ipdn node "
                           "partner add`), scopes `read` and/or `webhooks`; on GET it may instead be given as the "
                           "`key` query parameter (calendar apps, harvesters). Reading needs none while the node's "
                           "public read is on; a presented key is always checked."}
        schemes["staffSession"] = {"type": "apiKey", "in": "cookie", "name": "ipdn_author",
                                   "description": "A staff member's session on the authoring pages (signed, HttpOnly, "
                                                  "SameSite=Strict); every POST also carries its CSRF token"}
        schemas = {**_common_schemas(), **_node_schemas(), **_webhook_schemas()}
        paths = {**_partner_read(_node_paths()), **_webhook_paths(), **_status_page_paths(), **_metrics_path("node"),
                 **_author_paths()}
    elif role == "hub":
        schemas = {**_common_schemas(), **_hub_schemas()}
        paths = {**_hub_paths(), **_dashboard_paths(), **_metrics_path("hub")}
        schemes["httpSignature"] = {
            "type": "apiKey", "in": "header", "name": "Signature",
            "description": "RFC 9421 HTTP Message Signature by an active member's key (Ed25519), covering "
                           '`("@method" "@target-uri" "content-digest")` with `created`, `keyid`, `alg="ed25519"` '
                           "and a random `nonce`, sent with `Signature-Input` and an RFC 9530 `Content-Digest: "
                           "sha-256=:...:`; `@target-uri` is the hub URL from the registry plus the path "
                           "(PROTOCOL.md §8.2)."}
    else:
        raise ValueError(f"no OpenAPI document for role {role!r}")
    out = {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": _info(role),
        "paths": {PATH: _openapi_path(role), "/healthz": _health_path(), **paths},
        "components": {"schemas": schemas, "securitySchemes": schemes},
    }
    if role == "node":
        out["webhooks"] = _webhook_events()
    return out


def register_routes(app: web.Application, role: Role) -> None:
    """Serve ``GET /api/v1/openapi.json`` (and HEAD): the document, a strong ETag, 304 on If-None-Match."""
    body = json.dumps(document(role), ensure_ascii=False, separators=(",", ":")).encode()
    etag = hashlib.sha256(body).hexdigest()[:32]
    headers = {"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"}

    async def get_openapi(request: web.Request) -> web.Response:
        if any(t.value in (etag, "*") for t in request.if_none_match or ()):
            resp = web.Response(status=304, headers=headers)
        else:
            resp = web.Response(body=body, content_type="application/json", headers=headers)
        resp.etag = etag
        return resp

    app.router.add_get(PATH, get_openapi)
