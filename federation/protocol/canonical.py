"""RFC 8785 (JCS) canonical bytes: what a signer signs. Verifiers never call this (they keep bytes)."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from federation.protocol.errors import InputError


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 serialization of ``value``.

    Raises:
        InputError: (reason not-canonicalizable) for values JCS cannot represent (non-finite floats,
            integers outside the I-JSON range, non-string keys, lone surrogates).
    """
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, UnicodeEncodeError) as e:
        raise InputError(f"cannot canonicalize: {e}", reason="not-canonicalizable") from e


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
