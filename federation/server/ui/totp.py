"""The second factor of operators and staff who enrol one: RFC 6238 time-based one-time codes (pyotp).

30-second steps, 6 digits, HMAC-SHA-1: what every authenticator app reads from an ``otpauth://`` URI. A code is
taken for its step and the one on either side (a phone's clock drifts), and only once: the account keeps the
last step it signed in with, and a code of that step or an earlier one is refused (RFC 6238 §5.2), so a code
read over a shoulder, from a screen or from a log cannot be used again.
"""

from __future__ import annotations

import hmac

import pyotp

STEP = 30  # seconds
DIGITS = 6


def new_secret() -> str:
    """A new shared secret: 160 random bits in base32 (RFC 4226 §4 asks for at least 128)."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app takes (as text, or as a QR code made from it)."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def code_at(secret: str, when: float) -> str:
    """The code of the step holding ``when`` (seconds since the epoch)."""
    return pyotp.TOTP(secret).generate_otp(int(when // STEP))


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The step, within one of ``now``'s, whose code is ``code`` (spaces ignored), else None. Every candidate is
    compared, in constant time, so the answer's timing does not say which step matched."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp, current = pyotp.TOTP(secret), int(now // STEP)
    found = None
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code) and found is None:
            found = step
    return found
