"""Verification of an envelope: a pure function of (bytes, keys, schemas, reference time, chain head).

The steps, in order (docs/PROTOCOL.md §5). Intake failures stop early, since nothing after them
can be read; every later check runs even when an earlier one failed, so the result names every
problem at once.

1. intake: strict JSON, JWS container, payload fields (reasons from strictjson / envelope);
2. key: the ``kid`` is known, belongs to the envelope's origin, and was valid at ``issued_at`` and, when the
   verifier knows it, at the time the hub received the envelope (within the skew);
3. time: ``issued_at`` is not later than the reference time plus the allowed skew;
4. signature: Ed25519 over the signing input exactly as received;
5. schema: the pinned schema is held and the body satisfies it and its kind's rules;
6. chain: the envelope extends the given chain head (no gap, no fork, no reordering).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from federation.protocol import strictjson
from federation.protocol.envelope import Envelope
from federation.protocol.errors import IpdnError, UnknownSchemaError, VerificationError
from federation.protocol.keys import PublicKey
from federation.protocol.schemas import Issue, SchemaSet

KeyResolver = Callable[[str], PublicKey | None]
# A key outside its window at the hub's receipt time (PROTOCOL.md §5 step 2): refused whatever issued_at says.
RECEIPT_REASON = "key-not-valid-at-receipt"
# A logged envelope whose key's end was published after the hub logged it (judge_logged_key): kept, not verified.
REVOKED_AFTER_REASON = "key-revoked-after-the-fact"


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last envelope a receiver holds from one origin."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Failure:
    check: str  # intake, key, time, signature, schema, chain
    reason: str  # a stable slug (docs/PROTOCOL.md §6)
    message: str
    issues: tuple[Issue, ...] = ()


@dataclass(slots=True)
class VerificationResult:
    envelope: Envelope | None
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def reason(self) -> str | None:
        return self.failures[0].reason if self.failures else None

    def raise_for_failures(self) -> Envelope:
        """The verified envelope, or VerificationError naming every failed check."""
        if self.failures or self.envelope is None:
            text = "; ".join(f"{f.check}: {f.message}" for f in self.failures)
            raise VerificationError(text, failures=tuple((f.reason, f.message) for f in self.failures))
        return self.envelope


def keys_resolver(keys: Mapping[str, PublicKey]) -> KeyResolver:
    """Look keys up by kid. A key bound to no member (``member`` None) is found but verifies no envelope:
    :func:`verify_envelope` refuses it as ``key-not-origin`` (PROTOCOL.md §3.1, §5 step 2)."""
    return keys.get


def chain_position(seq: int, prev: str | None, head: ChainHead | None) -> Failure | None:
    """Where envelope (seq, prev) stands against a receiver's chain head (None: it extends it).

    An envelope at or below the head is ``chain-stale``: the caller looks up what it holds at that
    number to tell a duplicate (same hash) from a fork (different hash).
    """
    expected = 1 if head is None else head.seq + 1
    if seq > expected:
        return Failure("chain", "chain-gap", f"seq {seq} after {expected - 1}: envelopes are missing")
    if seq < expected:
        return Failure("chain", "chain-stale", f"seq {seq} is at or below the chain head {expected - 1}")
    if head is not None and prev != head.hash:
        return Failure("chain", "chain-fork", f"seq {seq} names prev {prev}, the chain has {head.hash}")
    return None


def judge_logged_key(key: PublicKey, issued: datetime, received_at: datetime, skew: timedelta,
                     end_known_at: datetime | None) -> Failure | None:
    """The window of an envelope's key judged for a log entry: at its ``issued_at`` and at ``received_at``, the
    hub's receipt time the log serves (PROTOCOL.md §5 step 2, §10; docs/adr/0019). None: within it.

    The entry's time is when the hub committed it, a little after it judged the push, so the receipt allowance is
    twice the skew: a verifier never refuses what an honest hub accepted. A key that ended before the entry was
    logged is refused (``key-not-valid`` / ``key-not-valid-at-receipt``) unless its end was published only after
    that (``end_known_at``: the ``issued_at`` of the registry version that first carried it, or the expiry of the
    version before if earlier, since a hub must renew before then; an end dated back, say to a key's compromise):
    the log kept the envelope and later ones chain on it, so it is kept but marked, ``key-revoked-after-the-fact``.
    """
    allowance = 2 * skew
    if key.not_before is not None and (issued < key.not_before or received_at < key.not_before - allowance):
        early = "key-not-valid" if issued < key.not_before else RECEIPT_REASON
        return Failure("key", early, f"key {key.kid} starts at {key.not_before.isoformat()}, after the envelope")
    end = key.not_after
    if end is None or (issued < end and received_at < end + allowance):
        return None
    if end_known_at is not None and received_at < end_known_at:
        return Failure("key", "key-revoked-after-the-fact", f"key {key.kid} ended at {end.isoformat()}, an end "
                       f"published only at {end_known_at.isoformat()}, after the hub logged the envelope "
                       f"({received_at.isoformat()})")
    late = "key-not-valid" if issued >= end else RECEIPT_REASON
    return Failure("key", late, f"key {key.kid} ended at {end.isoformat()}, before the hub logged the envelope "
                   f"({received_at.isoformat()}), whatever its issued_at ({issued.isoformat()})")


def check_chain(env: Envelope, head: ChainHead | None) -> Failure | None:
    """:func:`chain_position` of a parsed envelope."""
    return chain_position(env.payload.seq, env.payload.prev, head)


def verify_envelope(
    data: bytes | Envelope,
    *,
    keys: KeyResolver,
    schemas: SchemaSet,
    now: datetime,
    chain_head: ChainHead | None = None,
    check_chain_head: bool = False,
    max_future_skew: timedelta = timedelta(minutes=5),
    limits: strictjson.JsonLimits = strictjson.DEFAULT_LIMITS,
    received_at: datetime | None = None,
) -> VerificationResult:
    """Verify one envelope; never raises for bad input (see :meth:`VerificationResult.raise_for_failures`).

    ``data`` is the envelope's bytes as received, or an :class:`Envelope` parsed from them (batch
    intake parses the batch document once). The chain is checked when ``check_chain_head`` is set
    (``chain_head`` None then means: nothing held from this origin yet). ``received_at`` is when the hub
    received the envelope (its own clock at intake; a log entry's ``received_at`` for a node): the key must be
    valid then too, within ``max_future_skew``, since ``issued_at`` is the signer's to choose (ADR 18).
    """
    if isinstance(data, Envelope):
        env = data
    else:
        try:
            env = Envelope.from_bytes(data, limits)
        except IpdnError as e:
            return VerificationResult(None, [Failure("intake", e.reason, e.message)])
    p = env.payload
    result = VerificationResult(env)
    fail = result.failures.append

    key = keys(env.kid)
    if key is None:
        fail(Failure("key", "key-unknown", f"no key {env.kid} in the trust anchor"))
    elif key.member != p.origin:  # a key bound to no member vouches for no origin
        fail(Failure("key", "key-not-origin", f"key {env.kid} belongs to {key.member}, not {p.origin}"))
    elif not key.valid_at(p.issued):
        fail(Failure("key", "key-not-valid", f"key {env.kid} was not valid at {p.issued_at}"))
    elif received_at is not None and not key.valid_near(received_at, max_future_skew):
        fail(Failure("key", "key-not-valid-at-receipt", f"key {env.kid} was not valid when the hub received "
                     f"the envelope ({received_at.isoformat()}), whatever its issued_at ({p.issued_at})"))

    if p.issued > now + max_future_skew:
        fail(Failure("time", "issued-in-future", f"issued_at {p.issued_at} is later than {now.isoformat()}"))

    if key is not None and not env.jws.verify_with(key):
        fail(Failure("signature", "bad-signature", "the Ed25519 signature does not verify"))

    if p.op == "put":
        try:
            issues = schemas.validate(p.schema, p.body)
        except UnknownSchemaError as e:
            fail(Failure("schema", e.reason, e.message))
        else:
            if schemas.kind_of[p.schema] != p.kind:
                fail(Failure("schema", "kind-mismatch", f"schema {p.schema} is not for kind {p.kind}"))
            if issues:
                first = issues[0]
                msg = f"{len(issues)} schema issue(s); first at {first.pointer or '/'}: {first.message}"
                fail(Failure("schema", "schema-invalid", msg, tuple(issues)))

    if check_chain_head:
        chain = check_chain(env, chain_head)
        if chain is not None:
            fail(chain)
    return result
