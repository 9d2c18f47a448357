"""Operator and staff passwords: scrypt hashes (memory-hard, in the standard library through OpenSSL).

The encoded hash carries its parameters, so they can be raised later without invalidating old hashes; the
password itself is never stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from functools import cache

from federation.protocol.keys import b64u_decode, b64u_encode

# scrypt N=2^15, r=8: 32 MiB and ~0.1 s per hash on this project's small servers.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=32)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` for storing."""
    salt = secrets.token_bytes(16)
    return f"scrypt${n}${r}${p}${b64u_encode(salt)}${b64u_encode(_scrypt(password, salt, n, r, p))}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, b64u_decode(salt), int(n), int(r), int(p))
        expected = b64u_decode(digest)
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


async def password_matches(password: str, encoded: str | None) -> bool:
    """:func:`verify_password` off the event loop (it is ~0.1 s of CPU). ``None`` (no such account, or a
    disabled one) is checked against a dummy hash and is never a match: a wrong name then costs as long as a
    wrong password, so timing does not tell which names exist."""
    stored = _dummy_hash() if encoded is None else encoded
    ok = await asyncio.get_running_loop().run_in_executor(None, verify_password, password, stored)
    return ok and encoded is not None
