"""The signed envelope: one record version (or tombstone) from one origin, in its origin's chain.

Wire form (docs/PROTOCOL.md §3): a flattened JWS whose payload is the RFC 8785 canonical JSON of
:class:`Payload`. The envelope's hash is SHA-256 over the payload bytes exactly as signed; the next
envelope of the same origin names it in ``prev``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from federation.protocol import jws, strictjson
from federation.protocol.canonical import canonical_bytes, is_canonical, sha256_hex
from federation.protocol.errors import EnvelopeFormatError, StrictJsonError
from federation.protocol.keys import SigningKey, b64u_encode

TYP = "ipdn-envelope+jws"
OPS = ("put", "delete")

ORIGIN_RE = re.compile(r"[A-Z]{2}")
RECORD_ID_RE = re.compile(r"([A-Z]{2}):[A-Za-z0-9._-]{1,64}")
KIND_RE = re.compile(r"[a-z][a-z0-9-]{0,63}")
SCHEMA_ID_RE = re.compile(r"https://[A-Za-z0-9.-]+/[A-Za-z0-9._/-]+")
HASH_RE = re.compile(r"[0-9a-f]{64}")
# RFC 3339 date-time (§5.6), as consumers read it (PROTOCOL.md §1): any offset, any fraction, T/t and Z/z.
ISSUED_AT_RE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})")

_PAYLOAD_FIELDS = frozenset(
    {"origin", "seq", "prev", "record_id", "version", "kind", "schema", "op", "issued_at", "body"}
)
_MAX_SEQ = strictjson.MAX_SAFE_INTEGER


def format_time(when: datetime) -> str:
    """RFC 3339 in UTC with a Z and exactly milliseconds (``2026-12-06T18:22:05.051Z``): the one form producers
    write every time in, in every JSON document (PROTOCOL.md §1)."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Any RFC 3339 date-time with an offset, as an instant in UTC to the microsecond (digits beyond the sixth
    are ignored; PROTOCOL.md §1). An impossible date or a leap second is malformed."""
    m = ISSUED_AT_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise EnvelopeFormatError(f"time {text!r} is not RFC 3339 (YYYY-MM-DDTHH:MM:SS[.s]Z or ±hh:mm)")
    day, clock, fraction, offset = m.groups()
    fraction = f".{fraction[:6].ljust(6, '0')}" if fraction else ""
    try:
        return datetime.fromisoformat(f"{day}T{clock}{fraction}{'+00:00' if offset in 'Zz' else offset}"
                                      ).astimezone(UTC)
    except ValueError as e:
        raise EnvelopeFormatError(f"time {text!r}: {e}") from e


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise EnvelopeFormatError(what)


@dataclass(frozen=True, slots=True)
class Payload:
    """The signed fields. Rules are checked on construction; parse functions never mutate input."""

    origin: str
    seq: int
    prev: str | None
    record_id: str
    version: int
    kind: str
    schema: str
    op: Literal["put", "delete"]
    issued_at: str
    body: dict[str, Any] | None = None
    issued: datetime = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("origin", "record_id", "kind", "schema"):
            value = getattr(self, name)
            _need(isinstance(value, str), f"{name} must be a string")
            strictjson.check_identifier(name, value)
        _need(bool(ORIGIN_RE.fullmatch(self.origin)), "origin must be an ISO 3166-1 alpha-2 code")
        m = RECORD_ID_RE.fullmatch(self.record_id)
        _need(m is not None, "record_id must be ORIGIN:[A-Za-z0-9._-]{1,64}")
        if m and m.group(1) != self.origin:
            raise EnvelopeFormatError("record_id belongs to another origin", reason="foreign-record-id")
        _need(bool(KIND_RE.fullmatch(self.kind)), "kind must be a lower-case slug")
        _need(bool(SCHEMA_ID_RE.fullmatch(self.schema)), "schema must be an https $id")
        for name in ("seq", "version"):
            v = getattr(self, name)
            _need(type(v) is int and 1 <= v <= _MAX_SEQ, f"{name} must be an integer >= 1")
        if self.seq == 1:
            _need(self.prev is None, "the first envelope of an origin has prev null")
        else:
            _need(isinstance(self.prev, str) and bool(HASH_RE.fullmatch(self.prev)),
                  "prev must be the previous envelope's lower-case hex SHA-256")
        _need(self.op in OPS, "op must be put or delete")
        if self.op == "put":
            _need(isinstance(self.body, dict), "a put carries a body object")
        else:
            _need(self.body is None, "a delete (tombstone) carries no body")
        _need(isinstance(self.issued_at, str), "issued_at must be a string")
        object.__setattr__(self, "issued", parse_time(self.issued_at))

    @classmethod
    def from_dict(cls, obj: Any) -> Payload:
        _need(isinstance(obj, dict), "payload must be a JSON object")
        extra = set(obj) - _PAYLOAD_FIELDS
        _need(not extra, f"unknown payload members: {sorted(extra)}")
        missing = (_PAYLOAD_FIELDS - {"body"}) - set(obj)
        _need(not missing, f"missing payload members: {sorted(missing)}")
        return cls(**obj)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "origin": self.origin, "seq": self.seq, "prev": self.prev, "record_id": self.record_id,
            "version": self.version, "kind": self.kind, "schema": self.schema, "op": self.op,
            "issued_at": self.issued_at,
        }
        if self.body is not None:
            d["body"] = self.body
        return d


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope: the JWS as received and its decoded payload. Not yet verified."""

    jws: jws.SignedDocument
    payload: Payload
    # SHA-256 (lower-case hex) of the payload bytes as signed: the chain link and identity. Hashed once: a node
    # applying an envelope reads it about ten times (its chain, its record, its row, its mark).
    hash: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", sha256_hex(self.jws.payload))

    @property
    def kid(self) -> str:
        return self.jws.kid

    def to_dict(self) -> dict[str, str]:
        return self.jws.to_dict()

    @property
    def leaf(self) -> bytes:
        """The log's Merkle leaf input: the compact JWS serialization (PROTOCOL.md §11)."""
        return leaf_bytes(self.to_dict())

    def to_bytes(self) -> bytes:
        """The wire bytes: compact JSON, members in this order. Formatted directly, since base64url members need
        no escaping (json.dumps gives the same bytes in five times the time; a test holds them equal)."""
        d = self.jws
        return (f'{{"protected":"{d.protected_b64}","payload":"{d.payload_b64}",'
                f'"signature":"{b64u_encode(d.signature)}"}}').encode("ascii")

    @classmethod
    def from_dict(cls, obj: Any, limits: strictjson.JsonLimits = strictjson.DEFAULT_LIMITS) -> Envelope:
        """Parse a JWS object already read from strict JSON.

        Raises:
            EnvelopeFormatError: container, header or payload fields are not as specified, or the header or
                payload bytes are not their RFC 8785 form (header-not-canonical, payload-not-canonical).
            StrictJsonError: the payload bytes are not strict JSON.
        """
        doc = jws.parse(obj, TYP)
        try:
            payload_obj = strictjson.loads(doc.payload, limits)
        except StrictJsonError as e:
            raise EnvelopeFormatError(f"payload: {e.message}", reason=e.reason) from e
        if not is_canonical(doc.payload, payload_obj):  # one record, one byte string, one hash (§3.2)
            raise EnvelopeFormatError("payload bytes are not the RFC 8785 form of the payload",
                                      reason="payload-not-canonical")
        return cls(doc, Payload.from_dict(payload_obj))

    @classmethod
    def from_bytes(cls, data: bytes, limits: strictjson.JsonLimits = strictjson.DEFAULT_LIMITS) -> Envelope:
        return cls.from_dict(strictjson.loads(data, limits), limits)


def leaf_bytes(jws_obj: dict[str, str]) -> bytes:
    """``protected.payload.signature`` (RFC 7515 §7.1) of an envelope's JWS members, as received."""
    return f"{jws_obj['protected']}.{jws_obj['payload']}.{jws_obj['signature']}".encode("ascii")


def sign_envelope(key: SigningKey, payload: Payload) -> Envelope:
    """Canonicalize the payload (RFC 8785) and sign it; the returned envelope keeps those bytes."""
    return Envelope(jws.sign(canonical_bytes(payload.to_dict()), key, TYP), payload)
