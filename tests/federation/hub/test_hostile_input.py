"""Property tests: hypothesis-generated hostile pushes against the hub (in-process app, real store).

From a valid batch of three chained envelopes, hypothesis makes bodies that are bit-flipped, truncated, spliced,
re-typed, stripped of members, given extra or duplicate members, reordered, or whose envelope payloads are
mutated and then validly signed (so they pass the signature and reach the parsers behind it). Each request is
properly RFC 9421-signed over the bytes as mutated, so it is the hub's intake, not the signature check, that
must refuse it. For every one:

- the answer is never a server error; a refusal is an RFC 9457 problem whose status is the HTTP status;
- nothing partial is written: the log only ever holds the original, valid envelopes, at positions 1..n;
- every refusal (of the request, or of one envelope in it) is kept in the quarantine: one row each.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.hub.app import create_app
from federation.hub.appkeys import SERVICE
from federation.hub.config import HubConfig
from federation.protocol import httpsig, jws
from federation.protocol.envelope import TYP, Envelope
from federation.protocol.keys import b64u_encode
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import ChainHead, verify_envelope
from federation.server.web import PROBLEM_BASE
from tests.support.factories import Member, example_bodies
from tests.support.hubdir import HUB_URL

SETTINGS = settings(max_examples=75, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), st.floats(allow_nan=False),
                        st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)


class Hub:
    """An in-process hub, the member QA, three valid envelopes, and what the hub has been sent."""

    def __init__(self, client: Any, qa: Member) -> None:
        self.client, self.qa = client, qa
        self.envelopes = [qa.publish(example_bodies("cultural-event")[0]) for _ in range(3)]
        self.legit = {e.hash: e.to_dict() for e in self.envelopes}
        self.batch: dict[str, Any] = {"envelopes": [e.to_dict() for e in self.envelopes]}

    async def push(self, body: bytes) -> tuple[int, str, Any]:
        headers = {"Content-Type": "application/json"}
        headers.update(httpsig.sign_request("POST", HUB_URL + "/api/v1/envelopes", headers, body,
                                            private_key=self.qa.key.key, keyid=self.qa.key.kid,
                                            created=int(time.time()), nonce=secrets.token_urlsafe(12)))
        r = await self.client.post("/api/v1/envelopes", data=body, headers=headers)
        raw = await r.read()
        return r.status, r.content_type, json.loads(raw) if raw else None

    async def check(self, body: bytes) -> None:
        """Push ``body``; assert every invariant of the module docstring."""
        store = self.client.server.app[SERVICE].store
        held = len(await store.quarantined(limit=100_000))
        status, content_type, doc = await self.push(body)
        assert status < 500, (status, doc)
        if status == 200:
            assert content_type == "application/json"
            refused = [r for r in doc["results"] if r["status"] == "rejected"]
            for r in refused:
                assert r["problem"]["type"] == PROBLEM_BASE + r["problem"]["reason"]
            for r in doc["results"]:
                if r["status"] != "rejected":  # only an envelope as signed by its member is ever taken
                    assert r["hash"] in self.legit
        else:
            assert content_type == "application/problem+json"
            assert doc["status"] == status and doc["type"] == PROBLEM_BASE + doc["reason"]
            refused = [doc]
        assert len(await store.quarantined(limit=100_000)) == held + len(refused)
        log = await store.read_log(0, 1000)
        assert [e.position for e in log] == list(range(1, len(log) + 1))
        # Only envelopes QA signed, each verifying offline in chain order (nothing partial, nothing forged).
        reg = self.client.server.app[SERVICE].registry.registry
        head = None
        for _, wire, _received in log:
            assert json.loads(wire) == self.legit[Envelope.from_bytes(wire).hash]
            result = verify_envelope(wire, keys=reg.member_keys().get, schemas=default_schemas(),
                                     now=datetime.now(UTC), chain_head=head, check_chain_head=True)
            assert result.ok and result.envelope, result.failures
            head = ChainHead(result.envelope.payload.seq, result.envelope.hash)


@pytest.fixture
async def hub(aiohttp_client: Any, hub_dir: Path, members: dict[str, Member], db_url: str) -> Hub:
    cfg = HubConfig.load(hub_dir, db_url=db_url, verify_workers=0, push_burst=10_000, refusal_burst=10_000)
    return Hub(await aiohttp_client(create_app(cfg)), members["QA"])


def _compact(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# -- byte-level mutations ------------------------------------------------------------------------------------


@st.composite
def byte_mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """Bit flips, truncation, a spliced run of random bytes, or a deleted run."""
    kind = draw(st.sampled_from(["flip", "truncate", "splice", "delete"]))
    buf = bytearray(data)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del buf[draw(st.integers(0, len(buf) - 1)):]
    elif kind == "splice":
        i = draw(st.integers(0, len(buf)))
        buf[i:i] = draw(st.binary(min_size=1, max_size=16))
    else:
        i = draw(st.integers(0, len(buf) - 1))
        del buf[i:i + draw(st.integers(1, 64))]
    return bytes(buf)


# -- structure-level mutations -----------------------------------------------------------------------------


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*at, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*at, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _set(doc[head], rest, value)}
    return [_set(v, rest, value) if i == head else v for i, v in enumerate(doc)]


def _drop(doc: Any, path: tuple[Any, ...]) -> Any:
    parent, last = path[:-1], path[-1]

    def go(node: Any, rest: tuple[Any, ...]) -> Any:
        if not rest:
            return {k: v for k, v in node.items() if k != last} if isinstance(node, dict) else \
                [v for i, v in enumerate(node) if i != last]
        head = rest[0]
        if isinstance(node, dict):
            return {**node, head: go(node[head], rest[1:])}
        return [go(v, rest[1:]) if i == head else v for i, v in enumerate(node)]

    return go(doc, parent)


@st.composite
def tree_mutations(draw: st.DrawFn, doc: dict[str, Any]) -> bytes:
    """A value swapped for another type, a member dropped or added, members reordered, or a key duplicated."""
    paths = _paths(doc)
    kind = draw(st.sampled_from(["retype", "drop", "add", "reorder", "duplicate"]))
    if kind == "retype":
        return _compact(_set(doc, draw(st.sampled_from(paths)), draw(JSON_VALUES)))
    if kind == "drop":
        return _compact(_drop(doc, draw(st.sampled_from([p for p in paths if p]))))
    if kind == "add":
        objects = [p for p in paths if isinstance(_get(doc, p), dict)]
        where = draw(st.sampled_from(objects))
        return _compact(_set(doc, where, {**_get(doc, where), draw(st.text(max_size=8)): draw(JSON_VALUES)}))
    if kind == "reorder":  # the same document: must be answered as the original would be (no refusal needed)
        envs = [dict(reversed(list(e.items()))) for e in doc["envelopes"]]
        return _compact({"envelopes": envs})
    text = _compact(doc)
    member = draw(st.sampled_from([b'"protected":', b'"payload":', b'"signature":', b'"envelopes":']))
    return text.replace(member, member + b'"x",' + member, 1)


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


# -- payload mutations, validly signed -------------------------------------------------------------------------


@st.composite
def resigned_payloads(draw: st.DrawFn, hub: Hub) -> bytes:
    """The second envelope's payload bytes mutated (bytes or tree), then signed by QA's real key: the
    signature verifies, so the payload's own parsing, schema and chain checks must refuse it."""
    original = hub.envelopes[1].jws.payload
    if draw(st.booleans()):
        payload = draw(byte_mutations(original))
    else:
        payload = draw(tree_mutations({"envelopes": [json.loads(original)]}))
        payload = _compact(json.loads(payload)["envelopes"][0]) if payload.startswith(b'{"envelopes":[') and \
            _parses(payload) else payload
    signed = jws.sign(payload, hub.qa.key, TYP).to_dict()
    assert signed["payload"] == b64u_encode(payload)
    # QA did sign it: should the mutation happen to be a valid envelope, the hub may rightly take it.
    hub.legit[hashlib.sha256(payload).hexdigest()] = signed
    envs = [e.to_dict() for e in hub.envelopes]
    envs[1] = signed
    return _compact({"envelopes": envs})


def _parses(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


class TestHostilePushes:
    @SETTINGS
    @given(data=st.data())
    async def test_byte_mutated_push_never_crashes_or_writes_garbage(self, hub: Hub, data: st.DataObject) -> None:
        """Bit flips, truncations, splices and deletions of a signed push body."""
        await hub.check(data.draw(byte_mutations(_compact(hub.batch))))

    @SETTINGS
    @given(data=st.data())
    async def test_tree_mutated_push_never_crashes_or_writes_garbage(self, hub: Hub, data: st.DataObject) -> None:
        """Type swaps, dropped, added, duplicated and reordered members anywhere in the batch."""
        await hub.check(data.draw(tree_mutations(hub.batch)))

    @SETTINGS
    @given(data=st.data())
    async def test_validly_signed_garbage_payload_refused_and_kept(self, hub: Hub, data: st.DataObject) -> None:
        """Mutated payloads under a valid signature of a registered key: refused by what follows the signature."""
        await hub.check(data.draw(resigned_payloads(hub)))
