"""Benchmark: envelopes signed and verified per second, against a bare loop of the same primitives.

Run: ``make bench`` (or ``.venv/bin/python -m tests.bench.bench_envelope [--n 2000] [--rounds 7]``).
The bare loop does only what cannot be skipped (parse, schema check, Ed25519, SHA-256; for signing,
JCS and Ed25519); the ratio shows what the protocol core's checks and objects cost on top.
The machine is shared: figures are medians of several rounds, and the ratio is what to compare.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import rfc8785

from federation.envelope import Payload, format_time, sign_envelope
from federation.schemas import default_schemas
from federation.verify import keys_resolver, verify_envelope
from tests.factories import Member, example_bodies


def rate(fn: Callable[[], None], n: int, rounds: int) -> float:
    """Median envelopes per second over ``rounds`` runs of ``fn`` (which handles n envelopes)."""
    fn()  # warm up caches and compiled validators
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()

    schemas = default_schemas()
    qa = Member("QA")
    bodies = example_bodies("cultural-event")
    sid = schemas.schema_id("cultural-event")
    wires = [qa.publish(bodies[i % len(bodies)]).to_bytes() for i in range(args.n)]
    avg = sum(map(len, wires)) / len(wires)
    keys = keys_resolver({qa.key.kid: qa.public})
    pub = qa.key.public.key
    validator = schemas._compiled(sid)
    now = datetime.now(UTC)

    def bare_verify() -> None:
        for w in wires:
            doc = json.loads(w)
            payload = base64.urlsafe_b64decode(doc["payload"] + "==")
            body = json.loads(payload)["body"]
            assert validator.is_valid(body)
            pub.verify(base64.urlsafe_b64decode(doc["signature"] + "=="),
                       f"{doc['protected']}.{doc['payload']}".encode())
            hashlib.sha256(payload).digest()

    def ours_verify() -> None:
        for w in wires:
            r = verify_envelope(w, keys=keys, schemas=schemas, now=now)
            assert r.ok
            _ = r.envelope.hash  # type: ignore[union-attr]

    payloads = [dict(origin="QA", seq=i + 1, prev=None if i == 0 else "0" * 64, record_id=f"QA:b{i}",
                     version=1, kind="cultural-event", schema=sid, op="put",
                     issued_at=format_time(now), body=bodies[i % len(bodies)]) for i in range(args.n)]

    def bare_sign() -> None:
        for p in payloads:
            qa.key.sign(rfc8785.dumps(p))

    def ours_sign() -> None:
        for p in payloads:
            sign_envelope(qa.key, Payload(**p))  # type: ignore[arg-type]

    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}; "
          f"{args.n} envelopes of {avg:.0f} bytes, median of {args.rounds} rounds, one core")
    for name, bare, ours in (("verify", bare_verify, ours_verify), ("sign", bare_sign, ours_sign)):
        b, o = rate(bare, args.n, args.rounds), rate(ours, args.n, args.rounds)
        print(f"{name:7s} bare {b:9,.0f}/s   ipdn {o:9,.0f}/s   ratio {o / b:.2f}  ({1e6 / o:.0f} us/envelope)")


if __name__ == "__main__":
    main()
