"""Pulled pages verified in worker processes while the page before is applied (node/sync/verifier.py, ADR 32): the
verdicts, and so what the node holds, are those of the reference path (every envelope verified in the node's own
process, one page after the other), on a log with bad envelopes mixed in: a forged signature, a body its schema
refuses, a fork and a gap in an origin's chain, a key used after its end, payload bytes not in their RFC 8785 form,
two envelopes for one record version."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from federation.protocol import jws
from federation.protocol.envelope import TYP, Envelope, Payload, format_time
from federation.protocol.governance import next_version, sign_document
from federation.protocol.keys import SigningKey
from federation.protocol.registry import genesis
from federation.protocol.schemas import default_schemas
from node.store.tables import envelopes, quarantine, records
from node.sync.engine import SyncEngine
from node.sync.verifier import check_entries, envelope_of
from tests.support.factories import Member, example_bodies
from tests.support.fakehub import FakeHub
from tests.support.nodes import driven_engine, make_config

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)  # the genesis
T = T0 + timedelta(hours=1)  # HU's key ends (revoked, published at once)
NOW = T + timedelta(hours=2)  # the nodes' clock


class Clock:
    def __call__(self) -> datetime:
        return NOW


def forged_signature(env: Envelope) -> Envelope:
    d = env.jws
    return Envelope(jws.SignedDocument(d.protected_b64, d.payload_b64, bytes(64), d.header, d.payload), env.payload)


def not_canonical(member: Member, seq: int) -> Envelope:
    """An envelope whose payload bytes are JSON with spaces: refused at intake (payload-not-canonical)."""
    payload = Payload(origin=member.code, seq=seq, prev=member.prev, record_id=f"{member.code}:nc{seq}", version=1,
                      kind="cultural-event", schema="https://schemas.ipdn.network/cultural-event/v1", op="delete",
                      issued_at=format_time(T - timedelta(minutes=50)))
    data = b'{"issued_at": "%s"}' % payload.issued_at.encode()
    return Envelope(jws.sign(data, member.key, TYP), payload)


@pytest.fixture
def members() -> dict[str, Member]:
    return {c: Member(c) for c in ("QA", "KR", "TR", "HU")}


@pytest.fixture
async def hub(aiohttp_server: Any, hub_key: SigningKey, members: dict[str, Member]) -> FakeHub:
    """A log of about 700 entries of KR, TR and HU with every kind of bad envelope mixed in; HU's key ends at T,
    and the hub logs one of its envelopes an hour later (issued before T: only the receipt time gives it away)."""
    fake = FakeHub(hub_key)
    server = await aiohttp_server(fake.app())
    fake.registry = genesis(hub_key=hub_key, hub_url=str(server.make_url("/")), now=T0,
                            founders=[(m.public, {"en": f"institution of {c}"}) for c, m in members.items()])
    kr, tr, hu = members["KR"], members["TR"], members["HU"]
    bodies = example_bodies("cultural-event")
    at = T - timedelta(minutes=55)

    def log(env: Envelope) -> None:
        nonlocal at
        at += timedelta(milliseconds=50)
        fake.append(env, received_at=at)

    for i in range(300):
        body = bodies[i % len(bodies)]
        ahead = dataclasses.replace(kr)  # KR as it stands: what it signs takes the next seq again
        if i % 37 == 5:
            log(forged_signature(dataclasses.replace(kr).publish(body, issued=at)))
        if i % 41 == 7:
            log(ahead.publish({k: v for k, v in body.items() if k != "title"}, issued=at))  # schema-invalid
        good = kr.publish(body, issued=at, record_id=f"KR:r{i % 250}", version=1 + i // 250)
        log(good)
        if i % 53 == 11:
            log(dataclasses.replace(ahead).publish({**body, "tags": ["fork"]}, issued=at))  # another at that seq
        if i % 61 == 13:
            log(not_canonical(kr, kr.seq + 1))
        if i == 260:  # two envelopes for one record version
            log(kr.publish({**body, "tags": ["conflict"]}, issued=at, record_id="KR:r0", version=2))
        if i % 2 == 0:
            if i == 400 // 2:
                tr.publish(body, issued=at)  # never logged: TR's chain has a gap from here on
            log(tr.publish(body, issued=at))
        if i % 50 == 0:
            log(hu.publish(body, issued=at))
    doc = sign_document({"type": "revocation", "base": 1, "member": "HU", "kid": hu.key.kid}, hu.key, now=T)
    fake.history[1] = fake.registry
    fake.registry = next_version(fake.registry, {"action": "revoke", "documents": [doc.to_dict()]}, hub_key, now=T)
    fake.append(hu.publish(bodies[0], issued=T - timedelta(minutes=30)), received_at=T + timedelta(hours=1))
    return fake


async def held(engine: SyncEngine) -> dict[str, Any]:
    """Everything the node's verdicts decided: quarantine, envelopes, records, cursor and root."""
    async with engine.service.store.engine.connect() as conn:
        rows = {name: [tuple(r) for r in await conn.execute(sa.select(*cols).order_by(*order))]
                for name, cols, order in (
            ("quarantine", [quarantine.c[c] for c in ("position", "reason", "detail", "origin", "seq", "hash")],
             [quarantine.c.position]),
            ("envelopes", [envelopes.c[c] for c in ("origin", "seq", "hash", "position", "key_warning")],
             [envelopes.c.origin, envelopes.c.seq]),
            ("records", [records.c[c] for c in ("record_id", "version", "hash", "title", "countries", "last_day")],
             [records.c.record_id]))}
    view = await engine.service.trust.log_view()
    assert view.frontier is not None
    return {**rows, "cursor": view.cursor, "root": view.frontier.root()}


async def catch_up(engine: SyncEngine, size: int) -> None:
    assert await engine.refresh_registry()  # the node knows of HU's key's end
    while await engine.service.applier.cursor() < size:
        await engine.pull_once()


async def test_workers_verdicts_equal_the_reference_path(hub: FakeHub, tmp_path: Path,
                                                         members: dict[str, Member]) -> None:
    size = len(hub.log)
    (tmp_path / "fast").mkdir()
    (tmp_path / "reference").mkdir()
    fast = make_config(tmp_path / "fast", members["QA"], hub.history[1], verify_workers=2, pull_limit=100)
    reference = make_config(tmp_path / "reference", members["QA"], hub.history[1], verify_workers=0, pull_limit=1000)
    async with driven_engine(fast, key=members["QA"].key, clock=Clock()) as engine:
        engine.verifier.parallel_min = 2
        await engine.verifier.start()
        assert len(engine.verifier.worker_pids()) == 2
        await catch_up(engine, size)
        got = await held(engine)
    async with driven_engine(reference, key=members["QA"].key, clock=Clock()) as engine:
        assert engine.verifier.workers == 0
        await catch_up(engine, size)
        want = await held(engine)
    assert got == want
    reasons = {r[1] for r in want["quarantine"]}
    assert reasons == {"bad-signature", "schema-invalid", "chain-fork", "chain-gap", "payload-not-canonical",
                       "version-conflict", "key-not-valid-at-receipt"}
    assert len(want["records"]) > 250 and want["cursor"] == size


def test_in_process_verdicts_name_each_failure(members: dict[str, Member], hub_key: SigningKey) -> None:
    """check_entries itself: the failures of verify_envelope but the chain, a leaf for every JWS entry."""
    registry = genesis(hub_key=hub_key, hub_url="https://hub.example", now=T0,
                       founders=[(m.public, {"en": c}) for c, m in members.items()])
    kr = members["KR"]
    body = example_bodies("cultural-event")[0]
    good = kr.publish(body, issued=T)
    entries = [good.to_dict(), forged_signature(kr.publish(body, issued=T)).to_dict(), {"payload": "x"}]
    out = check_entries(registry, default_schemas(), entries, NOW)
    assert [[f.reason for f in c.failures] for c in out] == [[], ["bad-signature"], ["malformed-envelope"]]
    assert [c.leaf is not None for c in out] == [True, True, False]
    assert out[0].fields is not None and out[2].fields is None
    assert envelope_of(entries[0], out[0].fields) == Envelope.from_dict(entries[0])  # what the applier holds
    assert envelope_of(entries[0], out[0].fields).payload.issued == good.payload.issued
    assert out[0].derived is not None and out[0].derived["search"]
