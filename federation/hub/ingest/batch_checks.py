"""Envelope checks for ingest, shaped to run in worker processes (both cores verify).

``check_batch`` is a plain function of picklable values: the registry's bytes (parsed once per worker
and cached by hash), the envelope objects as received, and the reference time. It returns, per
envelope, the facts the writer needs and every failed check, so the parent never parses twice.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import NamedTuple

from federation.protocol import merkle, strictjson
from federation.protocol.envelope import Envelope
from federation.protocol.errors import IpdnError
from federation.protocol.registry import SignedRegistry, parse_registry
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import Failure, verify_envelope


class Checked(NamedTuple):
    """One envelope after verification (no chain check yet: that is the writer's, in order). A tuple, since it
    travels back from the verify workers: a slotted dataclass pickles several times slower."""

    wire: bytes  # the envelope's bytes (as received when it did not parse)
    failures: tuple[Failure, ...]
    origin: str | None = None
    seq: int | None = None
    prev: str | None = None
    hash: str | None = None
    record_id: str = ""
    version: int = 0
    kind: str = ""
    op: str = ""
    kid: str = ""
    leaf_hash: bytes = b""  # the Merkle leaf hash of its compact JWS (hashed here: 32 bytes back, not 4 KB)


_registries: dict[bytes, SignedRegistry] = {}


def _registry(data: bytes) -> SignedRegistry:
    reg = _registries.get(data)
    if reg is None:
        _registries.clear()
        reg = _registries[data] = parse_registry(data)
    return reg


def check_batch(registry: bytes, member: str, objs: list[object], now: datetime) -> list[Checked]:
    reg = _registry(registry).registry
    keys = reg.member_keys()
    schemas = default_schemas()
    skew = timedelta(seconds=reg.policies.clock_skew_seconds)
    limits = strictjson.JsonLimits(max_bytes=reg.policies.max_envelope_bytes)
    out = []
    for obj in objs:
        try:
            env = Envelope.from_dict(obj, limits)
        except IpdnError as e:
            raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
            out.append(Checked(raw, (Failure("intake", e.reason, e.message),)))
            continue
        p = env.payload
        # The key's window is judged at ``now``, the hub's receipt time, as well as at issued_at (the signer's
        # claim): a rotated-out or revoked key gets no new envelope into the log however it dates it (ADR 18).
        failures = verify_envelope(env, keys=keys.get, schemas=schemas, now=now, max_future_skew=skew,
                                   received_at=now).failures
        if p.origin != member:
            failures.append(Failure("origin", "not-own-envelope", f"{member} pushed an envelope of {p.origin}"))
        out.append(Checked(env.to_bytes(), tuple(failures), p.origin, p.seq, p.prev, env.hash, p.record_id,
                           p.version, p.kind, p.op, env.kid, merkle.leaf_hash(env.leaf)))
    return out
