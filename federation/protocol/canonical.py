"""RFC 8785 (JCS) canonical bytes: what a signer signs. Verifiers never call this (they keep bytes)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson
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


# orjson (OPT_SORT_KEYS) writes the RFC 8785 form of strings (only '"', '\\' and the C0 controls escaped, as
# \b \t \n \f \r or lower-case \u00xx), of integers, and of member names sorted as long as no name holds a character
# beyond U+FFFF (code point and UTF-16 order agree below it); floats only when non-integral with
# 1e-4 <= |x| < 1e16, where it and ECMAScript's Number.toString write the same shortest digits the same way.
# The lead bytes of a character beyond U+FFFF in UTF-8, each looked for by memchr (a class in a regex took seven
# times as long).
_ASTRAL_LEADS = (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")
# Where the encoder writes a float (and, harmlessly, look-alikes inside strings: a doubt only sends the bytes to
# rfc8785): its fixed form ends ".digits" and its exponent form "e±digits", each followed by , } or ]. Both
# patterns start with a literal, which the regex engine scans for at C speed (a tenth of a general pattern's time).
_FRACTION = re.compile(rb"\.[0-9]+[,}\]]")
_EXPONENT = re.compile(rb"e[+-][0-9]+[,}\]]")
_DIGITS = frozenset(b"0123456789-")


def _plain_floats(data: bytes) -> bool:
    """Whether every float in the encoder's ``data`` is written the same by RFC 8785: non-integral with
    1e-4 <= |x| < 1e16 (orjson and ECMAScript's Number.toString agree there; exponent forms never are)."""
    if _EXPONENT.search(data) is not None:
        return False
    for m in _FRACTION.finditer(data):
        start = m.start()
        while start > 0 and data[start - 1] in _DIGITS:
            start -= 1
        try:
            x = float(data[start:m.end() - 1])
        except ValueError:
            return False
        if not (1e-4 <= abs(x) < 1e16 and x != int(x)):
            return False
    return True


def is_canonical(data: bytes, value: Any) -> bool:
    """Whether ``data`` are exactly the RFC 8785 bytes of ``value`` (the value parsed from them): one record,
    one byte string, one hash (PROTOCOL.md §3.1, §3.2).

    orjson answers yes when it writes ``data`` and agrees with RFC 8785 on them (an object or array, no character
    beyond U+FFFF, only plain floats): 5 µs for a 2.8 KB payload, where the standard library's C encoder, used
    before, took 45 (ADR 14), and every hub and node checks each envelope. Every other case rfc8785 decides.
    :func:`is_canonical_reference` is the definition, and tests hold the two to the same verdicts."""
    if data[:1] in (b"{", b"["):
        try:
            fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # an integer beyond 64 bits, a lone surrogate: the reference says why
            fast = None
        if fast == data and not any(lead in data for lead in _ASTRAL_LEADS) and _plain_floats(data):
            return True
    return is_canonical_reference(data, value)


def is_canonical_reference(data: bytes, value: Any) -> bool:
    try:
        return canonical_bytes(value) == data
    except InputError:
        return False


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
