"""Ed25519 member keys (RFC 8032) and their JOSE forms: OKP JWK (RFC 8037), thumbprint ids (RFC 7638).

Private keys are PKCS#8 PEM files written with mode 0600; public keys travel as JWKs. A key's id is
its RFC 7638 thumbprint, so anyone holding the public key can recompute it and no registry can
attach a key to the wrong id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pybase64
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_core_ed25519_is_valid_point, crypto_sign_open
from nacl.exceptions import BadSignatureError

from federation.protocol.errors import KeyFileError


def b64u_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# The last character of a 2- or 3-character tail carries 4 or 2 bits that must be zero (RFC 4648 §3.5).
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}


def b64u_decode(text: str) -> bytes:
    """Strict base64url without padding (RFC 7515 §2): any other character or length is refused.

    Decoded by pybase64 (SIMD; a tenth of binascii's time on a 4 KB payload, and this is on the hot path of every
    envelope) with validation; :func:`b64u_decode_reference` is the definition, and tests hold the two to the
    same results."""
    try:
        data = text.encode("ascii")
    except (AttributeError, UnicodeEncodeError):
        raise ValueError("not unpadded base64url") from None
    tail = len(data) % 4
    # "+" and "/" would pass as the standard alphabet's; trailing bits must be zero (RFC 4648 §3.5)
    if b"=" in data or b"+" in data or b"/" in data or tail == 1 or (
            tail and text[-1] not in _CANONICAL_LAST[tail]):
        raise ValueError("not canonical base64url")
    try:
        return pybase64.b64decode(data + b"=" * (-tail % 4), altchars=b"-_", validate=True)
    except binascii.Error as e:
        raise ValueError(f"not base64url: {e}") from e


def b64u_decode_reference(text: str) -> bytes:
    if not isinstance(text, str) or len(text) % 4 == 1 or "=" in text:
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64u_encode(raw) != text:  # rejects non-alphabet characters and non-zero trailing bits
        raise ValueError("not canonical base64url")
    return raw


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def thumbprint(x: str) -> str:
    """RFC 7638 §3: SHA-256 over the required members of an OKP key, in lexicographic order."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return b64u_encode(hashlib.sha256(canonical.encode("ascii")).digest())


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A member's public key with the window in which it may sign (None: unbounded)."""

    key: Ed25519PublicKey
    kid: str
    raw: bytes = field(init=False, repr=False, compare=False)  # the key's 32 bytes, from ``key``
    member: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None

    def __post_init__(self) -> None:
        raw = raw_public(self.key)
        # A small-order or non-canonical point is a weak key: OpenSSL accepts forged signatures under some
        # of them (the all-zero key takes an all-zero signature for any message), libsodium none. Refused as
        # keys, so no envelope can depend on which library checks it.
        if not crypto_core_ed25519_is_valid_point(raw):
            raise ValueError("a small-order or non-canonical Ed25519 point is not a usable public key")
        object.__setattr__(self, "raw", raw)

    @classmethod
    def from_raw(cls, raw: bytes, **kw: Any) -> PublicKey:
        key = Ed25519PublicKey.from_public_bytes(raw)
        return cls(key=key, kid=thumbprint(b64u_encode(raw)), **kw)

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any]) -> PublicKey:
        """Parse an OKP/Ed25519 JWK (RFC 8037 §2). ``kid``, when present, must be the thumbprint.

        Raises:
            KeyFileError: (reason ``bad-key``, PROTOCOL.md §3.1) not an Ed25519 public JWK, a kid that is not its
                thumbprint, or an ``x`` that is not a usable public key (not 32 bytes, or a weak point).
        """
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
            raise KeyFileError("not an Ed25519 public JWK (kty OKP, crv Ed25519, no d)", reason="bad-key")
        member = jwk.get("ipdn_member")
        if member is not None and not (isinstance(member, str) and len(member) == 2 and member.isascii()
                                       and member.isupper()):
            raise KeyFileError(f"ipdn_member {member!r} is not a member code such as QA", reason="bad-key")
        try:
            raw = b64u_decode(jwk["x"])
            pub = cls.from_raw(raw, member=member)
        except (KeyError, ValueError) as e:
            raise KeyFileError(f"x is not a usable Ed25519 public key: {e}", reason="bad-key") from e
        if "kid" in jwk and jwk["kid"] != pub.kid:
            raise KeyFileError("JWK kid is not its RFC 7638 thumbprint", reason="bad-key")
        return pub

    def to_jwk(self) -> dict[str, str]:
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(raw_public(self.key)), "kid": self.kid}
        if self.member:
            jwk["ipdn_member"] = self.member
        return jwk

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Ed25519 verification by libsodium: it is the hot path of ingest and sync, and libsodium verifies in
        about 60 % of OpenSSL's time here (docs/BENCHMARKS.md). :meth:`verify_reference` is the same check by
        ``cryptography``; the tests hold both to the same verdict on every Wycheproof case and random inputs."""
        if len(signature) != 64:
            return False
        try:
            crypto_sign_open(signature + data, self.raw)
        except BadSignatureError:
            return False
        return True

    def verify_reference(self, signature: bytes, data: bytes) -> bool:
        try:
            self.key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def valid_at(self, when: datetime) -> bool:
        return (self.not_before is None or when >= self.not_before) and (
            self.not_after is None or when < self.not_after
        )

    def valid_near(self, when: datetime, skew: timedelta) -> bool:
        """Valid at ``when`` give or take ``skew``: ``not_before - skew <= when < not_after + skew`` (a receipt
        time, judged by a clock other than the signer's, PROTOCOL.md §5 step 2)."""
        return (self.not_before is None or when >= self.not_before - skew) and (
            self.not_after is None or when < self.not_after + skew
        )


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A member's private key."""

    key: Ed25519PrivateKey
    _public: PublicKey = field(init=False, repr=False, compare=False)  # derived once: kid is read per signature

    def __post_init__(self) -> None:
        object.__setattr__(self, "_public", PublicKey.from_raw(raw_public(self.key.public_key())))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public(self) -> PublicKey:
        return self._public

    @property
    def kid(self) -> str:
        return self._public.kid

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)

    def to_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise KeyFileError(f"not a PKCS#8 PEM private key: {e}") from e
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError("the private key is not Ed25519")
        return cls(key)

    def save(self, path: Path) -> None:
        """Write the PEM with mode 0600 from the first byte (never world-readable, even briefly)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.to_pem())

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            return cls.from_pem(path.read_bytes())
        except OSError as e:
            raise KeyFileError(f"cannot read {path}: {e.strerror}") from e


def load_public_jwk(path: Path) -> PublicKey:
    try:
        return PublicKey.from_jwk(json.loads(path.read_text()))
    except (OSError, ValueError) as e:
        raise KeyFileError(f"cannot read a JWK from {path}: {e}") from e
