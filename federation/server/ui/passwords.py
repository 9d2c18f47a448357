"""Operator and staff passwords: scrypt hashes (memory-hard, in the standard library through OpenSSL).

The encoded hash carries its parameters, so they can be raised later without invalidating old hashes; the
password itself is never stored.

Checking a password is ~0.1 s of CPU and 32 MiB: it runs on its own small thread pool, never on the event loop's
thread, and never more at once than :data:`HASH_WORKERS` (the cores but one, so the loop keeps a core whatever
arrives). At most :data:`HASH_QUEUE` more wait; beyond that a check is refused at once (:class:`PasswordCheckBusy`)
rather than queued without end: a spray of sign-ins costs the node a bounded share of its CPU and memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
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
    """A stored hash of the production cost that no password matches (a random digest: nothing to compute)."""
    salt, digest = b64u_encode(secrets.token_bytes(16)), b64u_encode(secrets.token_bytes(32))
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt}${digest}"


HASH_WORKERS = max(1, (os.cpu_count() or 2) - 1)  # checks at once: every core but the event loop's
HASH_QUEUE = 4 * HASH_WORKERS  # checks waiting for a worker; more are refused (about 0.4 s of wait at most)


class PasswordCheckBusy(Exception):
    """Every password worker is busy and the queue is full: try again in a moment."""


class PasswordChecker:
    """Password checks on ``workers`` threads with at most ``queue`` waiting (all on one event loop's thread)."""

    def __init__(self, workers: int = HASH_WORKERS, queue: int = HASH_QUEUE) -> None:
        self.workers, self.queue = workers, queue
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="password-check")
        self.pending = 0  # running or waiting

    async def matches(self, password: str, encoded: str | None) -> bool:
        """:func:`verify_password` on the pool. ``None`` (no such account, or a disabled one) is checked against
        a dummy hash, through the same pool, and is never a match: a wrong name then costs as long as a wrong
        password, so timing does not tell which names exist.

        Raises:
            PasswordCheckBusy: ``workers + queue`` checks are pending already.
        """
        if self.pending >= self.workers + self.queue:
            raise PasswordCheckBusy
        stored = _dummy_hash() if encoded is None else encoded
        self.pending += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(self._pool, verify_password, password, stored)
        finally:
            self.pending -= 1
        return ok and encoded is not None


CHECKER = PasswordChecker()  # the process's one pool: the bound holds across every page that signs people in


async def password_matches(password: str, encoded: str | None) -> bool:
    """:meth:`PasswordChecker.matches` on the process's pool."""
    return await CHECKER.matches(password, encoded)
