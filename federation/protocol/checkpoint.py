"""Signed checkpoints of the hub's log, and members' co-signatures (docs/PROTOCOL.md §11).

A checkpoint states the log's size and RFC 9162 root at a time. It travels as a JWS in the general
JSON serialization (RFC 7515 §7.2.1): one payload, several signatures. The first signature is the
hub's; members who verified the checkpoint add theirs (witnessing), each over the same payload bytes,
so any JOSE library verifies every signature and anyone holding the registry knows who vouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.protocol import jws, strictjson
from federation.protocol.canonical import canonical_bytes
from federation.protocol.envelope import HASH_RE, format_time, parse_time
from federation.protocol.errors import IpdnError, StrictJsonError, TrustError
from federation.protocol.keys import PublicKey, SigningKey, b64u_decode, b64u_encode

TYP = "ipdn-checkpoint+jws"
_LIMITS = strictjson.JsonLimits(max_bytes=64 * 1024, max_depth=4)


class CheckpointError(TrustError):
    reason = "checkpoint-invalid"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    network: str
    size: int
    root: str  # lower-case hex SHA-256
    issued_at: str

    def __post_init__(self) -> None:
        if type(self.size) is not int or self.size < 0 or not HASH_RE.fullmatch(str(self.root)):
            raise CheckpointError("checkpoint needs an integer size >= 0 and a hex SHA-256 root")
        parse_time(self.issued_at)

    @classmethod
    def from_dict(cls, d: Any) -> Checkpoint:
        if not isinstance(d, dict) or set(d) != {"network", "size", "root", "issued_at"}:
            raise CheckpointError("checkpoint payload has exactly network, size, root, issued_at")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, "size": self.size, "root": self.root, "issued_at": self.issued_at}

    @property
    def root_bytes(self) -> bytes:
        return bytes.fromhex(self.root)


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint with its payload bytes as signed and every signature (hub's first)."""

    checkpoint: Checkpoint
    payload: bytes
    signatures: tuple[dict[str, str], ...]  # {"protected", "signature"} as received

    def to_dict(self) -> dict[str, Any]:
        return {"payload": b64u_encode(self.payload), "signatures": list(self.signatures)}

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_dict())

    def signers(self) -> list[str]:
        return [_header(s)["kid"] for s in self.signatures]

    def with_signature(self, entry: dict[str, str]) -> SignedCheckpoint:
        """Add a co-signature (replacing an earlier one by the same key)."""
        kid = _header(entry)["kid"]
        kept = tuple(s for s in self.signatures if _header(s)["kid"] != kid)
        return SignedCheckpoint(self.checkpoint, self.payload, (*kept, entry))

    def verify(self, hub_keys: Mapping[str, PublicKey], member_keys: Mapping[str, PublicKey]) -> list[str]:
        """Check the hub's signature; return the member codes whose co-signatures verify.

        Raises:
            CheckpointError: the first signature is not a valid signature by a hub key.
        """
        if not self.signatures or not _verify_entry(self.signatures[0], self.payload, hub_keys):
            raise CheckpointError("checkpoint is not signed by the hub", reason="checkpoint-bad-signature")
        cosigners = []
        for entry in self.signatures[1:]:
            kid = _header(entry)["kid"]
            key = member_keys.get(kid)
            if key is not None and key.member and _verify_entry(entry, self.payload, member_keys):
                cosigners.append(key.member)
        return cosigners


def _header(entry: dict[str, str]) -> dict[str, Any]:
    try:
        header = strictjson.loads(b64u_decode(entry["protected"]), _LIMITS)
    except (KeyError, ValueError, TypeError, StrictJsonError) as e:
        raise CheckpointError(f"checkpoint signature header: {e}") from e
    if not isinstance(header, dict) or header.get("alg") != jws.ALG or header.get("typ") != TYP \
            or not isinstance(header.get("kid"), str):
        raise CheckpointError("checkpoint signatures are EdDSA with a kid and typ " + TYP)
    return header


def _signing_input(entry: dict[str, str], payload: bytes) -> bytes:
    return f"{entry['protected']}.{b64u_encode(payload)}".encode("ascii")


def _verify_entry(entry: dict[str, str], payload: bytes, keys: Mapping[str, PublicKey]) -> bool:
    key = keys.get(_header(entry)["kid"])
    try:
        sig = b64u_decode(entry["signature"])
    except (KeyError, ValueError):
        return False
    return key is not None and key.verify(sig, _signing_input(entry, payload))


def signature_entry(payload: bytes, key: SigningKey) -> dict[str, str]:
    protected = b64u_encode(canonical_bytes({"alg": jws.ALG, "kid": key.kid, "typ": TYP}))
    entry = {"protected": protected}
    return {**entry, "signature": b64u_encode(key.sign(_signing_input(entry, payload)))}


def sign_checkpoint(network: str, size: int, root: bytes, hub_key: SigningKey, when: Any) -> SignedCheckpoint:
    cp = Checkpoint(network=network, size=size, root=root.hex(), issued_at=format_time(when))
    payload = canonical_bytes(cp.to_dict())
    return SignedCheckpoint(cp, payload, (signature_entry(payload, hub_key),))


def cosign(signed: SignedCheckpoint, member_key: SigningKey) -> dict[str, str]:
    """A member's co-signature over a checkpoint it verified."""
    return signature_entry(signed.payload, member_key)


def parse_checkpoint(obj: Any) -> SignedCheckpoint:
    """Parse (not verify) a checkpoint document.

    Raises:
        CheckpointError: not a general-serialization JWS of a checkpoint.
    """
    if not isinstance(obj, dict) or set(obj) != {"payload", "signatures"} or not isinstance(obj["signatures"], list):
        raise CheckpointError("a checkpoint is {payload, signatures}")
    try:
        payload = b64u_decode(obj["payload"])
        cp = Checkpoint.from_dict(strictjson.loads(payload, _LIMITS))
    except (ValueError, TypeError, IpdnError) as e:
        raise CheckpointError(f"checkpoint payload: {e}") from e
    entries = []
    for entry in obj["signatures"]:
        if not isinstance(entry, dict) or set(entry) != {"protected", "signature"}:
            raise CheckpointError("a checkpoint signature is {protected, signature}")
        _header(entry)
        entries.append({"protected": entry["protected"], "signature": entry["signature"]})
    return SignedCheckpoint(cp, payload, tuple(entries))
