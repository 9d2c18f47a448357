"""Benchmark: envelopes signed and verified per second by the protocol core, against a bare loop.

The bare loop does only what cannot be skipped (parse, schema check, Ed25519, SHA-256; for signing, JCS
and Ed25519); the ratio shows what the protocol core's checks and objects cost on top. One core, in-process.

Run alone: ``.venv/bin/python -m tests.bench envelope``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import rfc8785

from federation.protocol.envelope import Payload, format_time, sign_envelope
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import keys_resolver, verify_envelope
from tests.bench.common import Context, Figure, bare_check, median
from tests.support.factories import Member, example_bodies

NAME = "envelope"


def rate(fn: Callable[[], None], n: int, rounds: int) -> tuple[float, list[float]]:
    """Median envelopes per second over ``rounds`` runs of ``fn`` (which handles n envelopes), and each."""
    fn()  # warm up caches and compiled validators
    rates = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t))
    return median(rates), rates


async def run(ctx: Context) -> list[Figure]:
    n = ctx.size(2000, 100)
    rounds = max(ctx.rounds, 5) if not ctx.quick else 1
    schemas = default_schemas()
    qa = Member("QA")
    bodies = example_bodies("cultural-event")
    sid = schemas.schema_id("cultural-event")
    wires = [qa.publish(bodies[i % len(bodies)]).to_bytes() for i in range(n)]
    avg = sum(map(len, wires)) / len(wires)
    keys = keys_resolver({qa.key.kid: qa.public})
    raw = qa.public.raw
    now = datetime.now(UTC)

    def bare_verify() -> None:
        for w in wires:
            bare_check(raw, w)

    def ours_verify() -> None:
        for w in wires:
            r = verify_envelope(w, keys=keys, schemas=schemas, now=now)
            assert r.ok
            _ = r.envelope.hash  # type: ignore[union-attr]

    payloads = [dict(origin="QA", seq=i + 1, prev=None if i == 0 else "0" * 64, record_id=f"QA:b{i}",
                     version=1, kind="cultural-event", schema=sid, op="put",
                     issued_at=format_time(now), body=bodies[i % len(bodies)]) for i in range(n)]

    def bare_sign() -> None:
        for p in payloads:
            qa.key.sign(rfc8785.dumps(p))

    def ours_sign() -> None:
        for p in payloads:
            sign_envelope(qa.key, Payload(**p))  # type: ignore[arg-type]

    figures = []
    for name, bare, ours in (("verify", bare_verify, ours_verify), ("sign", bare_sign, ours_sign)):
        (b, _), (o, samples) = rate(bare, n, rounds), rate(ours, n, rounds)
        figures.append(Figure(NAME, f"{name} (protocol core)", o, "envelopes/s", b, f"bare {name} loop, 1 core",
                              note=f"{n} envelopes of {avg:.0f} bytes, median of {rounds}; {1e6 / o:.0f} us each",
                              samples=samples))
    return figures
