"""The OpenAPI 3.1 documents (federation/server/openapi.py) are valid, complete and true.

- valid OpenAPI 3.1 (openapi-spec-validator);
- every route each app registers is documented, and every documented operation is a route;
- served at /api/v1/openapi.json with an ETag (304 on If-None-Match);
- schemathesis, against a node and a hub serving on loopback ports with a few records, finds no server
  error and no response the document does not describe (status code, content type, headers, schema), in
  every operation (the node's anonymous rate limit out of the way, the operators' tokens sent, so none is
  "mostly untested"): data the document allows is accepted by the public reads (positive_data_acceptance)
  and data it does not allow is refused (negative_data_rejection) where nothing but the data decides;
- every 405 is a problem with ``Allow`` (RFC 9110 §15.5.6) naming the path's documented methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from federation.server import openapi
from tests.support.apps import HUB_TOKEN, hub_app, node_app
from tests.support.factories import Member, example_bodies, push_request
from tests.support.hubdir import HUB_URL
from tests.support.nodes import TOKEN as NODE_TOKEN

METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
MAX_EXAMPLES = 12  # per operation and mode: ~90 operations, two modes, the whole file well under 2 min


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    return {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource is not None}


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m, path) for path, item in doc["paths"].items() for m in item if m in METHODS}


# -- the documents --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["node", "hub"])
def test_valid_openapi_31(role: openapi.Role) -> None:
    from openapi_spec_validator import OpenAPIV31SpecValidator

    doc = openapi.document(role)
    assert doc["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(doc).validate()
    json.dumps(doc)  # plain JSON
    ids = [op["operationId"] for item in doc["paths"].values() for m, op in item.items() if m in METHODS]
    assert len(ids) == len(set(ids))


def test_unknown_role() -> None:
    with pytest.raises(ValueError, match="role"):
        openapi.document("partner")  # type: ignore[arg-type]


@pytest.mark.parametrize("role", ["node", "hub"])
def test_every_route_documented_and_every_path_routed(role: openapi.Role, tmp_path: Path) -> None:
    app = node_app(tmp_path) if role == "node" else hub_app(tmp_path, [Member("QA")])
    routes, doc = app_routes(app), documented(openapi.document(role))
    gets = {p for m, p in routes if m == "get"}
    heads = {p for m, p in routes if m == "head"}
    assert heads <= gets, "HEAD is documented as implied by GET; a HEAD-only route needs its own operation"
    routes = {(m, p) for m, p in routes if m != "head"}
    assert routes - doc == set(), "routes missing from the OpenAPI document"
    assert doc - routes == set(), "documented operations the app does not route"


# -- serving and fuzzing ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def serve(app: web.Application) -> Iterator[str]:
    """Run ``app`` on a loopback port in its own thread and event loop (schemathesis calls are blocking)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(app)

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    try:
        run(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        run(site.start())
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        run(runner.cleanup())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310 (loopback)
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
        return r.status, json.loads(r.read() or b"null")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """A node with records of both kinds, a cancelled (the first) and a deleted (the second) one: its URL and
    the record ids."""
    with serve(node_app(tmp_path_factory.mktemp("node"))) as url:
        auth = {"Authorization": f"Bearer {NODE_TOKEN}", "Content-Type": "application/json"}
        ids = []
        for kind in ("cultural-event", "capacity-programme"):
            for b in example_bodies(kind)[:3]:
                status, doc = http("POST", f"{url}/api/v1/records", json.dumps({"kind": kind, "body": b}).encode(),
                                   auth)
                assert status == 201
                ids.append(doc["record_id"])
        http("POST", f"{url}/api/v1/records/{ids[0]}/cancel", b'{"reason": "rain"}', auth)
        http("DELETE", f"{url}/api/v1/records/{ids[1]}", None, auth)
        yield url, ids


@pytest.fixture(scope="module")
def node_url(node: tuple[str, list[str]]) -> str:
    return node[0]


@pytest.fixture(scope="module")
def hub_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A hub whose log holds a few envelopes of two members."""
    members = [Member("QA"), Member("KR")]
    body = example_bodies("cultural-event")[0]
    with serve(hub_app(tmp_path_factory.mktemp("hub"), members)) as url:
        for m in members:
            data, headers = push_request(m, [m.publish(body) for _ in range(3)], HUB_URL)
            status, doc = http("POST", f"{url}/api/v1/envelopes", data, headers)
            assert status == 200 and {r["status"] for r in doc["results"]} == {"accepted"}
        yield url


def test_served_with_etag(node_url: str, hub_url: str) -> None:
    for role, url in (("node", node_url), ("hub", hub_url)):
        with urllib.request.urlopen(f"{url}{openapi.PATH}", timeout=10) as r:  # noqa: S310 (loopback)
            assert r.headers["Content-Type"].startswith("application/json")
            assert json.loads(r.read()) == openapi.document(role)  # type: ignore[arg-type]
            etag = r.headers["ETag"]
        req = urllib.request.Request(f"{url}{openapi.PATH}", headers={"If-None-Match": etag})  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as e:  # urllib treats 304 as an error
            urllib.request.urlopen(req, timeout=10)  # noqa: S310
        assert e.value.code == 304


# Never fuzzed: it never ends, so each call takes the whole timeout (test_stream.py reads it); and a recovery round
# run for real (with the operator's token it would call the random endpoints it is given: test_recovery*.py).
NOT_FUZZED = {("get", "/api/v1/records/stream")}
NO_OPERATOR_TOKEN = {("post", "/api/v1/recovery")}
# A documented 503, the test node having no hub to submit a rotation to (tests/node/test_own_keys.py rotates).
HUB_NEEDED = {("post", "/api/v1/keys/rotate")}
# Where data the document allows may still be refused for what the server holds, not for its form: a cursor or a
# size the log does not have, a signature, a session, a record id. The public reads outside this list must accept
# every request the document allows (positive_data_acceptance).
STATE_DEPENDENT = {"/api/v1/log", "/api/v1/log/proof/inclusion", "/api/v1/log/proof/consistency"}


def _operations(role: openapi.Role) -> list[Any]:
    """What schemathesis fuzzes: every documented operation, with data the document allows (positive) and, where
    there is any to make (parameters or a body), data outside it (negative)."""
    doc = openapi.document(role)
    out = []
    for m, p in sorted(documented(doc)):
        if (m, p) in NOT_FUZZED:
            continue
        op = doc["paths"][p][m]
        out.append(pytest.param(m, p, "positive", id=f"{m} {p} positive"))
        query = [x for x in op.get("parameters", []) if x["in"] == "query"]
        if "requestBody" in op or any(_constrained(x["schema"]) for x in query):
            out.append(pytest.param(m, p, "negative", id=f"{m} {p} negative"))
    return out


def _constrained(schema: dict[str, Any]) -> bool:
    """Whether a query parameter's schema leaves out some strings (there is a negative example to make)."""
    return schema.get("type") != "string" or bool({"enum", "pattern", "format", "maxLength", "anyOf"} & set(schema))


def _public_read(op: dict[str, Any], method: str, path: str) -> bool:
    """A read anyone may make, whose answer depends on the request's form only."""
    anonymous = "security" not in op or {} in op["security"]
    return method == "get" and anonymous and path not in STATE_DEPENDENT and "{" not in path


def _fuzz(role: openapi.Role, base_url: str, method: str, path: str, mode: str, headers: dict[str, str]) -> None:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        positive_data_acceptance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.generation.modes import GenerationMode

    doc = openapi.document(role)
    schema = schemathesis.openapi.from_dict(doc)
    calls: list[Any] = []
    operation = schema[path][method.upper()]
    op = doc["paths"][path][method]
    public = _public_read(op, method, path)
    checks: list[Any] = [*([] if (method, path) in HUB_NEEDED else [not_a_server_error]), status_code_conformance,
                         content_type_conformance, response_schema_conformance]
    if mode == "positive":
        checks += [response_headers_conformance, *([positive_data_acceptance] if public else [])]
    elif public:  # a browser page without its session is sent to sign in (303): not a refusal by status
        checks.append(negative_data_rejection)
    if (method, path) in NO_OPERATOR_TOKEN:
        headers = {k: v for k, v in headers.items() if k != "Authorization"}

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    def run(case: Any) -> None:
        if mode == "positive" and case.query:
            case.query.pop("cursor", None)  # a cursor is the node's own; a made-up one is a 400 by design
            days = [str(case.query.get(k) or "")[:10] for k in ("from", "to")]
            if all(days) and days[0] > days[1]:  # "to: not before from", which the document says in words only
                case.query["from"], case.query["to"] = case.query["to"], case.query["from"]
        calls.append(case.call_and_validate(base_url=base_url, headers=headers, checks=checks, timeout=10))

    run()
    assert calls, "no request was made"


@pytest.mark.parametrize(("method", "path", "mode"), _operations("node"))
def test_schemathesis_node(node_url: str, method: str, path: str, mode: str) -> None:
    _fuzz("node", node_url, method, path, mode, {"Authorization": f"Bearer {NODE_TOKEN}"})


def test_records_as_documented(node: tuple[str, list[str]]) -> None:
    """Records that exist (live, cancelled, deleted), which random ids never hit, answer as documented."""
    import schemathesis

    url, ids = node
    schema = schemathesis.openapi.from_dict(openapi.document("node"))
    for rid in ids:
        response = schema["/api/v1/records/{record_id}"]["GET"].Case(path_parameters={"record_id": rid})\
            .call_and_validate(base_url=url)
        assert response.status_code == 200
    pages = [schema["/events/{record_id}"]["GET"].Case(path_parameters={"record_id": rid})
             .call_and_validate(base_url=url).status_code for rid in ids]
    assert pages == [200, 410, 200, 200, 200, 200]  # cancelled, deleted, live; other kinds have pages too


@pytest.mark.parametrize(("method", "path", "mode"), _operations("hub"))
def test_schemathesis_hub(hub_url: str, method: str, path: str, mode: str) -> None:
    _fuzz("hub", hub_url, method, path, mode, {"Authorization": f"Bearer {HUB_TOKEN}"})


@pytest.mark.parametrize("role", ["node", "hub"])
def test_method_not_allowed_names_the_allowed_methods(role: openapi.Role, node_url: str, hub_url: str) -> None:
    """RFC 9110 §15.5.6: a 405 carries Allow; here naming every documented method of the path (and HEAD with most
    GETs), as a problem. Path parameters are filled with a value of the form the route matches."""
    doc, url = openapi.document(role), node_url if role == "node" else hub_url
    for path, item in doc["paths"].items():
        methods = {m.upper() for m in item if m in METHODS}
        params = [x for op in (item, *(item[m] for m in item if m in METHODS)) for x in op.get("parameters", [])]
        fill = {x["name"]: x["schema"].get("enum", ["QA" if "pattern" in x["schema"] else "x"])[0]
                for x in params if x["in"] == "path"}  # a value of the form the route matches
        target = url + re.sub(r"\{(\w+)\}", lambda m, fill=fill: fill[m.group(1)], path)
        req = urllib.request.Request(target, method="PATCH")  # noqa: S310 (loopback)
        assert "PATCH" not in methods
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)  # noqa: S310
        if e.value.code == 401 and item.get("patch") is None and path.startswith("/api/v1/webhooks"):
            continue  # who first (PROTOCOL.md §9.1): without a partner key, a 401 before the method is looked at
        assert e.value.code == 405, (path, e.value.code)
        assert e.value.headers["Content-Type"].startswith("application/problem+json")
        allowed = {m.strip() for m in e.value.headers["Allow"].split(",")}
        assert methods <= allowed, (path, allowed)
