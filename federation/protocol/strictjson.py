"""Strict JSON intake: the first thing every byte string from outside goes through.

RFC 8259 leaves duplicate names, huge numbers and unpaired surrogates to implementations; RFC 7493
(I-JSON) and RFC 8785 forbid them because two parsers could then read one document two ways, and a
signature over it would mean different things to different verifiers. Everything here is checked
before any other processing, and each rejection is a ``StrictJsonError`` with its own reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jiter
import orjson

from federation.protocol.errors import StrictJsonError

# I-JSON (RFC 7493 §2.2): integers outside this range cannot be exchanged exactly.
MAX_SAFE_INTEGER = 2**53 - 1

# Unicode bidirectional formatting characters (Trojan Source, CVE-2021-42574). They are legitimate in
# Arabic prose, so they are refused only in identifiers, where they can make two ids look alike.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """Limits applied by :func:`loads`. Defaults suit one envelope; batches pass larger ones."""

    max_bytes: int = 256 * 1024
    max_depth: int = 32


DEFAULT_LIMITS = JsonLimits()


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise StrictJsonError(f"duplicate member name {k!r}", reason="duplicate-key")
            seen.add(k)
    return obj


def _constant(name: str) -> Any:
    raise StrictJsonError(f"{name} is not a JSON number", reason="non-finite-number")


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e400 overflows to infinity: not an IEEE double
        raise StrictJsonError(f"number {text} is out of range", reason="number-out-of-range")
    return value


def _int(text: str) -> int:
    value = int(text)
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise StrictJsonError(f"integer {text} is outside the I-JSON range", reason="number-out-of-range")
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float, parse_int=_int)
# A lone surrogate can only come from an escape; documents without one skip the string walk.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_depth(value: Any, max_depth: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise StrictJsonError(f"nesting deeper than {max_depth}", reason="too-deep")
        children = node.values() if type(node) is dict else node
        stack.extend((c, depth + 1) for c in children if type(c) is dict or type(c) is list)


def _check_strings(value: Any) -> None:
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is str:
            try:
                node.encode("utf-8")
            except UnicodeEncodeError as e:
                raise StrictJsonError("string holds an unpaired surrogate escape", reason="lone-surrogate") from e
        elif type(node) is dict:
            stack.extend(node)
            stack.extend(node.values())
        elif type(node) is list:
            stack.extend(node)


def _checked_bytes(data: bytes, limits: JsonLimits) -> None:
    if len(data) > limits.max_bytes:
        raise StrictJsonError(f"document of {len(data)} bytes exceeds {limits.max_bytes}", reason="too-large")
    if data.startswith(b"\xef\xbb\xbf"):
        raise StrictJsonError("byte order mark before JSON text (RFC 8259 §8.1)", reason="bom")


def loads_reference(data: bytes, limits: JsonLimits = DEFAULT_LIMITS) -> Any:
    """:func:`loads` by the standard library's parser with a hook per object and number: the definition of
    strict JSON here, and the path that names the reason of every refusal."""
    _checked_bytes(data, limits)
    try:
        text = data.decode("utf-8")  # strict: also refuses encoded surrogates and overlongs
    except UnicodeDecodeError as e:
        raise StrictJsonError(f"invalid UTF-8 at byte {e.start}", reason="invalid-utf8") from e
    try:
        value = _DECODER.decode(text)
    except StrictJsonError:
        raise
    except RecursionError as e:
        raise StrictJsonError(f"nesting deeper than {limits.max_depth}", reason="too-deep") from e
    except ValueError as e:
        raise StrictJsonError(f"not JSON: {e}", reason="malformed-json") from e
    # Fewer brackets than the limit cannot nest past it (a C-speed count spares most walks).
    if text.count("[") + text.count("{") > limits.max_depth:
        _check_depth(value, limits.max_depth)
    if _SURROGATE_ESCAPE.search(text):
        _check_strings(value)
    return value


_INFINITY = float("inf")


def _within_limits(value: Any, max_depth: int) -> bool:
    """Whether every number is inside the I-JSON range and no container nests deeper than ``max_depth``: what
    the fast parser does not check itself (it reads 2**60 exactly and 1e400 as infinity). One walk over the
    parsed value; a text scan costs more on big documents, whose bytes are mostly base64."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return False
        for child in node.values() if type(node) is dict else node:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is int:
                if not -MAX_SAFE_INTEGER <= child <= MAX_SAFE_INTEGER:
                    return False
            elif kind is float and (child == _INFINITY or child == -_INFINITY):
                return False
    return True


def loads(data: bytes, limits: JsonLimits = DEFAULT_LIMITS) -> Any:
    """Parse ``data`` as strict JSON.

    The fast path is jiter (Rust; it refuses duplicate names, NaN and Infinity, lone surrogates and invalid
    UTF-8 itself) and a walk for numbers and depth; every document it refuses or doubts goes to
    :func:`loads_reference`, which decides and names the reason. Tests hold the two to the same results.

    Raises:
        StrictJsonError: with reason too-large, invalid-utf8, bom, malformed-json, duplicate-key,
            non-finite-number, number-out-of-range, lone-surrogate or too-deep.
    """
    _checked_bytes(data, limits)
    try:
        value = jiter.from_json(data, allow_inf_nan=False, catch_duplicate_keys=True, cache_mode="none")
    except ValueError:
        pass  # refused: the reference names the reason
    else:
        kind = type(value)
        if kind is dict or kind is list:
            if _within_limits(value, limits.max_depth):
                return value
        elif not (kind is int or kind is float):  # a lone string, true, false or null
            return value
    return loads_reference(data, limits)


def loads_accepted(data: bytes) -> Any:
    """:func:`loads` of bytes it accepted before, again: the same value, by orjson (half jiter's time; it takes the
    last of duplicate names, which an accepted document has none of), without the walk for numbers and depth,
    which gave its verdict then. (A node parses again the payloads its verify worker accepted.)"""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return loads(data)  # a document only the reference parser takes


def check_identifier(name: str, value: str) -> None:
    """Refuse bidirectional controls (and other invisible format characters) in an identifier."""
    if not value.isascii() and not BIDI_CONTROLS.isdisjoint(value):
        raise StrictJsonError(f"{name} contains a bidirectional control character", reason="bidi-in-identifier")
