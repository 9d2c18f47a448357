"""JWS in the flattened JSON serialization (RFC 7515 §7.2.2) with EdDSA/Ed25519 (RFC 8037).

Every signed document of the protocol (envelopes, the registry, checkpoints) is one of these:
``{"protected": B64U(header), "payload": B64U(payload bytes), "signature": B64U(sig)}``. The payload
bytes are the signer's RFC 8785 canonical bytes, carried base64url-encoded so that they arrive
exactly as signed; the signing input is ``protected || "." || payload`` as received (RFC 7515 §5.2),
so verification never re-serializes anything. Any JOSE library can verify these documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from federation.protocol import strictjson
from federation.protocol.canonical import canonical_bytes, is_canonical
from federation.protocol.errors import EnvelopeFormatError, StrictJsonError
from federation.protocol.keys import PublicKey, SigningKey, b64u_decode, b64u_encode

ALG = "EdDSA"
_MEMBERS = frozenset({"protected", "payload", "signature"})
HEADER_LIMITS = strictjson.JsonLimits(max_bytes=2048, max_depth=2)


@dataclass(frozen=True, slots=True)
class SignedDocument:
    """A parsed (not yet verified) flattened JWS; every field is kept as received."""

    protected_b64: str
    payload_b64: str
    signature: bytes
    header: dict[str, Any]
    payload: bytes

    @property
    def kid(self) -> str:
        return str(self.header["kid"])

    @property
    def signing_input(self) -> bytes:
        return f"{self.protected_b64}.{self.payload_b64}".encode("ascii")

    def verify_with(self, key: PublicKey) -> bool:
        return key.verify(self.signature, self.signing_input)

    def to_dict(self) -> dict[str, str]:
        return {"protected": self.protected_b64, "payload": self.payload_b64,
                "signature": b64u_encode(self.signature)}


def sign(payload: bytes, key: SigningKey, typ: str) -> SignedDocument:
    header = {"alg": ALG, "kid": key.kid, "typ": typ}
    protected_b64 = b64u_encode(canonical_bytes(header))
    payload_b64 = b64u_encode(payload)
    signature = key.sign(f"{protected_b64}.{payload_b64}".encode("ascii"))
    return SignedDocument(protected_b64, payload_b64, signature, header, payload)


def parse(obj: Any, typ: str) -> SignedDocument:
    """Check the container's shape and header; does not verify the signature.

    Raises:
        EnvelopeFormatError: not a flattened JWS of ``typ`` with alg EdDSA and a kid; the
            ``reason`` says which part (malformed-envelope, header-not-canonical, unsupported-alg, wrong-typ).
    """
    if not isinstance(obj, dict) or set(obj) != _MEMBERS:
        raise EnvelopeFormatError("a JWS here has exactly the members protected, payload, signature")
    try:
        protected = b64u_decode(obj["protected"])
        payload = b64u_decode(obj["payload"])
        signature = b64u_decode(obj["signature"])
    except (ValueError, TypeError) as e:
        raise EnvelopeFormatError(f"JWS member is not base64url: {e}") from e
    try:
        header = strictjson.loads(protected, HEADER_LIMITS)
    except StrictJsonError as e:
        raise EnvelopeFormatError(f"protected header: {e.message}", reason=e.reason) from e
    if not isinstance(header, dict):
        raise EnvelopeFormatError("protected header is not a JSON object")
    if not is_canonical(protected, header):  # one header, one byte string (PROTOCOL.md §3.1)
        raise EnvelopeFormatError("protected header bytes are not the RFC 8785 form of the header",
                                  reason="header-not-canonical")
    # RFC 8725 §3.1: the algorithm is fixed, never taken from the token; "crit" we do not understand.
    if header.get("alg") != ALG:
        raise EnvelopeFormatError(f"alg must be {ALG}, not {header.get('alg')!r}", reason="unsupported-alg")
    if header.get("typ") != typ:
        raise EnvelopeFormatError(f"typ must be {typ}, not {header.get('typ')!r}", reason="wrong-typ")
    if not isinstance(header.get("kid"), str) or "crit" in header or "b64" in header:
        raise EnvelopeFormatError("protected header needs a string kid and no crit or b64")
    strictjson.check_identifier("kid", header["kid"])
    if len(signature) != 64:
        raise EnvelopeFormatError("an Ed25519 signature is 64 bytes", reason="bad-signature")
    return SignedDocument(obj["protected"], obj["payload"], signature, header, payload)
