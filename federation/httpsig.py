"""HTTP Message Signatures (RFC 9421, Ed25519) and Content-Digest (RFC 9530) for push requests.

A member node signs each push to the hub with its Ed25519 key; the hub verifies the signature, the
body's digest, the signature's age and that it has not been seen before. Everything here is pure:
strings, bytes and an injected clock in, values or typed errors out.

What is covered
    Derived components ``@method``, ``@target-uri``, ``@authority``, ``@scheme``, ``@path`` and
    ``@query`` (RFC 9421 §2.2) and plain header fields (§2.1) without component parameters
    (``sf``, ``key``, ``bs``, ``req``, ``tr``) and with one value each. Signature parameters
    ``created``, ``expires``, ``keyid``, ``alg``, ``nonce`` and ``tag`` (§2.3); ``created`` and
    ``keyid`` are required when verifying, and ``alg``, if present, must be ``ed25519``. Anything
    else is refused as malformed rather than half-understood.

Why not the ``http-message-signatures`` package
    It was evaluated first and does reproduce RFC 9421 B.2.6. It is not used here because:

    * Its verifier reads the wall clock (``datetime.now()`` inside ``validate_created_and_expires``),
      so the skew check cannot take an injected ``now`` without overriding its methods.
    * Every verification failure is one ``InvalidSignature`` with a message string; telling an
      expired signature from an unknown key from a bad signature (our error slugs and RFC 9457
      reasons) would mean matching on message text.
    * It works on a duck-typed ``requests``-like message object (``.method``, ``.url``, mutable
      ``.headers``) and builds the signature base in a private method (``_build_signature_base``);
      we need a public ``signature_base`` over plain values for conformance tests and for the
      aiohttp server side.
    * Its internals are untyped, so it would leak ``Any`` into this strictly typed module.

    The subset needed here is small: a strict RFC 8941 Dictionary parser, the signature base of
    §2.5 and the checks of §3.2. The tests check interoperability against the package in both
    directions, and this module's parser against ``http_sf`` (the package's RFC 8941 parser).

Using it on the hub (aiohttp): pass ``request.method``, the public target URI (the configured
public base URL plus ``request.raw_path``, never a value taken from Host or X-Forwarded-* headers),
``request.headers`` and the raw body bytes to :func:`verify_request`, then
:meth:`ReplayCache.check_and_remember` with the result. A header field that appears on more than
one line is refused if this module has to read it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import ipaddress
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "DEFAULT_COMPONENTS",
    "BadSignatureError",
    "ContentDigestError",
    "HttpSignatureError",
    "ReplayCache",
    "ReplayedSignatureError",
    "SignatureCoverageError",
    "SignatureExpiredError",
    "SignatureFromFutureError",
    "SignatureMalformedError",
    "SignatureMissingError",
    "SignatureParams",
    "UnknownKeyError",
    "VerifiedSignature",
    "content_digest",
    "format_signature_headers",
    "sign_request",
    "signature_base",
    "verify_content_digest",
    "verify_request",
]

#: What a push signature covers (the design brief: method, target, content digest; plus ``created``).
DEFAULT_COMPONENTS: tuple[str, ...] = ("@method", "@target-uri", "content-digest")

ALGORITHM = "ed25519"  # RFC 9421 §3.3.6

# -- errors -------------------------------------------------------------------------------------------


class HttpSignatureError(Exception):
    """Base class of the errors of this module; ``reason`` is a short, stable kebab-case slug."""

    reason: str = "http-signature-invalid"


class SignatureMissingError(HttpSignatureError):
    """The request carries no Signature-Input/Signature (or not the label asked for)."""

    reason = "signature-missing"


class SignatureMalformedError(HttpSignatureError):
    """Signature-Input or Signature cannot be parsed, or uses something this module does not support."""

    reason = "signature-malformed"


class SignatureCoverageError(HttpSignatureError):
    """The signature does not cover a component the verifier requires."""

    reason = "signature-coverage-insufficient"


class SignatureExpiredError(HttpSignatureError):
    """``created`` is older than the allowed clock skew, or ``expires`` has passed."""

    reason = "signature-expired"


class SignatureFromFutureError(HttpSignatureError):
    """``created`` lies further in the future than the allowed clock skew."""

    reason = "signature-from-future"


class UnknownKeyError(HttpSignatureError):
    """No public key is known (or valid) for the signature's ``keyid``."""

    reason = "unknown-key"


class BadSignatureError(HttpSignatureError):
    """The Ed25519 signature does not verify over the signature base rebuilt from the request."""

    reason = "bad-signature"


class ContentDigestError(HttpSignatureError):
    """Content-Digest is missing, malformed, has no supported algorithm, or does not match the body."""

    reason = "content-digest-mismatch"


class ReplayedSignatureError(HttpSignatureError):
    """The same signature by the same key was already accepted within the replay window."""

    reason = "signature-replayed"


# -- RFC 8941 structured fields: the parts used here ------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    """An sf-token (kept apart from sf-string so the two are never confused)."""

    value: str


_BareItem: TypeAlias = bool | int | float | str | bytes | _Token
_Params: TypeAlias = dict[str, _BareItem]


@dataclass(frozen=True)
class _Item:
    value: _BareItem
    params: _Params


@dataclass(frozen=True)
class _InnerList:
    items: tuple[_Item, ...]
    params: _Params


_LCALPHA = frozenset(string.ascii_lowercase)
_DIGITS = frozenset(string.digits)
_KEY_FIRST = _LCALPHA | {"*"}
_KEY_REST = _LCALPHA | _DIGITS | frozenset("_-.*")
_TCHAR = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
_TOKEN_FIRST = frozenset(string.ascii_letters + "*")
_TOKEN_REST = _TCHAR | {":", "/"}
_B64_CHARS = frozenset(string.ascii_letters + string.digits + "+/=")
_MAX_INTEGER = 999_999_999_999_999  # RFC 8941 §3.3.1: at most 15 digits


class _SfParser:
    """A strict RFC 8941 §4.2 parser for Dictionaries.

    Stricter than the RFC in one way only: a duplicated dictionary key or parameter name fails
    instead of the last one winning, so two parties can never read one field differently.
    RFC 9651 additions (Dates, Display Strings) are not accepted. Raises ``ValueError``.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _fail(self, what: str) -> ValueError:
        return ValueError(f"{what} at offset {self.pos}")

    def _skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def parse_dictionary(self) -> dict[str, _Item | _InnerList]:
        # §4.2: discard leading SP, parse, discard trailing SP, nothing may remain.
        self._skip(" ")
        result: dict[str, _Item | _InnerList] = {}
        if self.pos == len(self.text):
            return result
        while True:
            # §4.2.2
            key = self._parse_key()
            if key in result:
                raise self._fail(f"duplicate dictionary key {key!r}")
            if self._peek() == "=":
                self.pos += 1
                result[key] = self._parse_item_or_inner_list()
            else:
                result[key] = _Item(True, self._parse_parameters())
            self._skip(" \t")
            if self.pos == len(self.text):
                return result
            if self._peek() != ",":
                raise self._fail("expected ','")
            self.pos += 1
            self._skip(" \t")
            if self.pos == len(self.text):
                raise self._fail("trailing ','")

    def _parse_item_or_inner_list(self) -> _Item | _InnerList:
        # §4.2.1.1
        if self._peek() == "(":
            return self._parse_inner_list()
        return self._parse_item()

    def _parse_inner_list(self) -> _InnerList:
        # §4.2.1.2
        self.pos += 1
        items: list[_Item] = []
        while self.pos < len(self.text):
            self._skip(" ")
            if self._peek() == ")":
                self.pos += 1
                return _InnerList(tuple(items), self._parse_parameters())
            items.append(self._parse_item())
            if self._peek() not in (" ", ")"):
                raise self._fail("expected ' ' or ')' in inner list")
        raise self._fail("unterminated inner list")

    def _parse_item(self) -> _Item:
        # §4.2.3
        value = self._parse_bare_item()
        return _Item(value, self._parse_parameters())

    def _parse_bare_item(self) -> _BareItem:
        # §4.2.3.1
        c = self._peek()
        if c == "-" or c in _DIGITS:
            return self._parse_number()
        if c == '"':
            return self._parse_string()
        if c in _TOKEN_FIRST:
            return self._parse_token()
        if c == ":":
            return self._parse_byte_sequence()
        if c == "?":
            return self._parse_boolean()
        raise self._fail("expected an item")

    def _parse_parameters(self) -> _Params:
        # §4.2.3.2
        params: _Params = {}
        while self._peek() == ";":
            self.pos += 1
            self._skip(" ")
            key = self._parse_key()
            if key in params:
                raise self._fail(f"duplicate parameter {key!r}")
            value: _BareItem = True
            if self._peek() == "=":
                self.pos += 1
                value = self._parse_bare_item()
            params[key] = value
        return params

    def _parse_key(self) -> str:
        # §4.2.3.3
        if self._peek() not in _KEY_FIRST:
            raise self._fail("expected a key")
        start = self.pos
        self.pos += 1
        while self._peek() in _KEY_REST:
            self.pos += 1
        return self.text[start : self.pos]

    def _parse_number(self) -> int | float:
        # §4.2.4
        start = self.pos
        if self._peek() == "-":
            self.pos += 1
        if self._peek() not in _DIGITS:
            raise self._fail("expected a digit")
        digits_start = self.pos
        is_decimal = False
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in _DIGITS:
                self.pos += 1
            elif c == "." and not is_decimal:
                if self.pos - digits_start > 12:
                    raise self._fail("decimal has more than 12 integer digits")
                is_decimal = True
                self.pos += 1
            else:
                break
            length = self.pos - digits_start
            if not is_decimal and length > 15:
                raise self._fail("integer has more than 15 digits")
            if is_decimal and length > 16:
                raise self._fail("decimal is too long")
        text = self.text[start : self.pos]
        if not is_decimal:
            return int(text)
        if text.endswith(".") or len(text.rpartition(".")[2]) > 3:
            raise self._fail("decimal must have 1 to 3 fraction digits")
        return float(text)

    def _parse_string(self) -> str:
        # §4.2.5
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c == "\\":
                nxt = self._peek()
                if nxt not in ('"', "\\"):
                    raise self._fail("bad escape in string")
                out.append(nxt)
                self.pos += 1
            elif c == '"':
                return "".join(out)
            elif not " " <= c <= "~":
                raise self._fail("non-printable or non-ASCII character in string")
            else:
                out.append(c)
        raise self._fail("unterminated string")

    def _parse_token(self) -> _Token:
        # §4.2.6
        start = self.pos
        self.pos += 1
        while self._peek() in _TOKEN_REST:
            self.pos += 1
        return _Token(self.text[start : self.pos])

    def _parse_byte_sequence(self) -> bytes:
        # §4.2.7; missing "=" padding is tolerated as the RFC asks, misplaced padding is not.
        self.pos += 1
        end = self.text.find(":", self.pos)
        if end < 0:
            raise self._fail("unterminated byte sequence")
        content = self.text[self.pos : end]
        if not set(content) <= _B64_CHARS:
            raise self._fail("bad character in byte sequence")
        unpadded = content.rstrip("=")
        if "=" in unpadded or len(content) - len(unpadded) > 2 or (content and not unpadded):
            raise self._fail("bad padding in byte sequence")
        try:
            value = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
        except binascii.Error as e:
            raise self._fail("byte sequence is not base64") from e
        self.pos = end + 1
        return value

    def _parse_boolean(self) -> bool:
        # §4.2.8
        self.pos += 1
        c = self._peek()
        if c not in ("0", "1"):
            raise self._fail("expected ?0 or ?1")
        self.pos += 1
        return c == "1"


def _parse_dictionary(text: str) -> dict[str, _Item | _InnerList]:
    """Parse an RFC 8941 Dictionary field value; raises ``ValueError``."""
    return _SfParser(text).parse_dictionary()


def _serialize_string(value: str) -> str:
    # RFC 8941 §4.1.6
    if not all(" " <= c <= "~" for c in value):
        raise ValueError(f"not serializable as an sf-string: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _serialize_integer(value: int) -> str:
    # RFC 8941 §4.1.4
    if isinstance(value, bool) or not -_MAX_INTEGER <= value <= _MAX_INTEGER:
        raise ValueError(f"not serializable as an sf-integer: {value!r}")
    return str(value)


def _serialize_byte_sequence(value: bytes) -> str:
    # RFC 8941 §4.1.8
    return ":" + base64.b64encode(value).decode("ascii") + ":"


def _is_key(value: str) -> bool:
    return bool(value) and value[0] in _KEY_FIRST and all(c in _KEY_REST for c in value[1:])


# -- RFC 9530 Content-Digest --------------------------------------------------------------------------

_DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "sha-256": lambda body: hashlib.sha256(body).digest(),
    "sha-512": lambda body: hashlib.sha512(body).digest(),
}


def content_digest(body: bytes) -> str:
    """The Content-Digest field value for ``body`` (RFC 9530 §2), SHA-256: ``sha-256=:<base64>:``."""
    return "sha-256=" + _serialize_byte_sequence(_DIGESTS["sha-256"](body))


def verify_content_digest(header: str | None, body: bytes) -> None:
    """Check a Content-Digest field value against the body received.

    Algorithms other than sha-256 and sha-512 are ignored (RFC 9530 §5: the insecure ones are
    never relied on); every supported one listed must match, and at least one must be listed.

    Raises:
        ContentDigestError: the field is missing or malformed, lists no supported algorithm, or a
            listed digest does not match ``body``.
    """
    if header is None:
        raise ContentDigestError("Content-Digest is missing")
    try:
        members = _parse_dictionary(header)
    except ValueError as e:
        raise ContentDigestError(f"Content-Digest is not a structured-field dictionary: {e}") from e
    checked = 0
    for algorithm, member in members.items():
        digest = _DIGESTS.get(algorithm)
        if digest is None:
            continue
        if not isinstance(member, _Item) or not isinstance(member.value, bytes):
            raise ContentDigestError(f"Content-Digest {algorithm} is not a byte sequence")
        if not hmac.compare_digest(member.value, digest(body)):
            raise ContentDigestError(f"Content-Digest {algorithm} does not match the body")
        checked += 1
    if checked == 0:
        raise ContentDigestError("Content-Digest lists no supported algorithm (sha-256, sha-512)")


# -- RFC 9421 signature parameters and base -----------------------------------------------------------

_PARAM_NAMES = ("created", "keyid", "alg", "nonce", "expires", "tag")
_INT_PARAMS = frozenset({"created", "expires"})


@dataclass(frozen=True)
class SignatureParams:
    """Signature parameters (RFC 9421 §2.3), serialized in a fixed order.

    ``order`` names the present parameters in the order they are serialized; when empty, the field
    order of this class is used (``created``, ``keyid``, ``alg``, ``nonce``, ``expires``, ``tag``).
    A verifier keeps the sender's order, because it is part of the signed ``@signature-params``.

    Raises:
        ValueError: a value is not serializable (times must be non-negative sf-integers, strings
            printable ASCII) or ``order`` does not name exactly the present parameters.
    """

    created: int | None = None
    keyid: str | None = None
    alg: str | None = None
    nonce: str | None = None
    expires: int | None = None
    tag: str | None = None
    order: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in _PARAM_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            if name in _INT_PARAMS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"signature parameter {name} must be a non-negative integer")
                _serialize_integer(value)
            else:
                if not isinstance(value, str):
                    raise ValueError(f"signature parameter {name} must be a string")
                _serialize_string(value)
        if self.order and sorted(self.order) != sorted(self._present()):
            raise ValueError(f"order {self.order!r} does not name exactly the present parameters")

    def _present(self) -> tuple[str, ...]:
        return tuple(n for n in _PARAM_NAMES if getattr(self, n) is not None)

    def serialize(self) -> str:
        """The parameters as they follow the inner list: ``;created=1618884473;keyid="k"``."""
        out: list[str] = []
        for name in self.order or self._present():
            value = getattr(self, name)
            text = _serialize_integer(value) if name in _INT_PARAMS else _serialize_string(value)
            out.append(f";{name}={text}")
        return "".join(out)


_DERIVED = frozenset({"@method", "@target-uri", "@authority", "@scheme", "@path", "@query"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_URI_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")
_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=%]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")


@dataclass(frozen=True)
class _Target:
    uri: str
    scheme: str
    authority: str
    path: str
    query: str


def _parse_target(target_uri: str) -> _Target:
    """Split an absolute http(s) target URI (RFC 9110 §4.2) into the values of §2.2's components.

    No percent-decoding and no dot-segment removal: components carry the URI as sent. Userinfo and
    fragments are refused because they are never part of a request target.
    """
    if not target_uri or not set(target_uri) <= _URI_CHARS or _PCT.search(target_uri):
        raise SignatureMalformedError(f"target URI is not an encoded URI: {target_uri!r}")
    if "#" in target_uri:
        raise SignatureMalformedError("target URI must not have a fragment")
    scheme, sep, rest = target_uri.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme) or scheme.lower() not in _DEFAULT_PORTS:
        raise SignatureMalformedError(f"target URI must be absolute http or https: {target_uri!r}")
    scheme = scheme.lower()
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path_query = rest[:cut], rest[cut:]
    path, _, query = path_query.partition("?")
    if "@" in authority:
        raise SignatureMalformedError("target URI must not have userinfo")
    if authority.startswith("["):
        host, bracket, port_part = authority[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError as e:
            raise SignatureMalformedError(f"target URI has a bad IPv6 host: {authority!r}") from e
        if not bracket or (port_part and not port_part.startswith(":")):
            raise SignatureMalformedError(f"target URI has a bad authority: {authority!r}")
        host, port = f"[{host}]", port_part[1:] if port_part else None
    else:
        host, colon, port_text = authority.partition(":")
        port = port_text if colon else None
    if not host or (not host.startswith("[") and not _REG_NAME.fullmatch(host)):
        raise SignatureMalformedError(f"target URI has no valid host: {target_uri!r}")
    if port is not None and not port.isdigit() and port != "":
        raise SignatureMalformedError(f"target URI has a bad port: {target_uri!r}")
    # §2.2.3 and RFC 9110 §4.2.3: lowercase host, no port when empty or the scheme's default.
    norm_authority = host.lower()
    if port and port.lstrip("0") != _DEFAULT_PORTS[scheme]:
        norm_authority += ":" + port
    return _Target(uri=target_uri, scheme=scheme, authority=norm_authority, path=path, query=query)


def _derived_value(name: str, method: str, target: _Target) -> str:
    if name == "@method":  # §2.2.1, as sent (methods are case-sensitive)
        return method
    if name == "@target-uri":  # §2.2.2
        return target.uri
    if name == "@authority":  # §2.2.3
        return target.authority
    if name == "@scheme":  # §2.2.4
        return target.scheme
    if name == "@path":  # §2.2.6: an empty path is "/"
        return target.path or "/"
    # §2.2.7 @query: "?" plus the query, "?" alone when there is none
    return "?" + target.query


def _field_value(headers: Mapping[str, str], name: str) -> str:
    """The value of one header field for the signature base (RFC 9421 §2.1), looked up case-insensitively."""
    values = [v for k, v in headers.items() if k.lower() == name]
    if not values:
        raise SignatureMalformedError(f"covered header field {name!r} is not in the request")
    if len(values) > 1:
        raise SignatureMalformedError(f"covered header field {name!r} appears more than once")
    # §2.1: strip leading and trailing whitespace, and replace obsolete line folding with one space.
    value = re.sub(r"\r\n[ \t]+", " ", values[0]).strip(" \t")
    if not all(" " <= c <= "~" or c == "\t" for c in value):
        raise SignatureMalformedError(f"header field {name!r} has control or non-ASCII characters")
    return value


def _check_component(name: str) -> None:
    if name.startswith("@"):
        if name not in _DERIVED:
            raise SignatureMalformedError(f"unsupported derived component {name!r}")
    elif not name or not set(name) <= _TCHAR or name != name.lower():
        raise SignatureMalformedError(f"component {name!r} is not a lower-case field name")


def _signature_params_value(components: Sequence[str], params: SignatureParams) -> str:
    return "(" + " ".join(f'"{c}"' for c in components) + ")" + params.serialize()


def signature_base(
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    components: Sequence[str],
    params: SignatureParams,
) -> str:
    """The signature base of RFC 9421 §2.5 for a request.

    ``components`` are bare component names (``"@method"``, ``"content-digest"``), in the order
    they are covered. ``headers`` is looked up case-insensitively.

    Raises:
        SignatureMalformedError: a component is unsupported, repeated or absent from the request;
            a value would break the base (control or non-ASCII characters); the method is not an
            HTTP token; or ``target_uri`` is not an absolute http(s) URI.
    """
    if isinstance(components, str):
        raise SignatureMalformedError("components must be a sequence of names, not one string")
    if not method or not set(method) <= _TCHAR:
        raise SignatureMalformedError(f"method is not an HTTP token: {method!r}")
    target = _parse_target(target_uri)
    lines: list[str] = []
    seen: set[str] = set()
    for name in components:
        _check_component(name)
        # §2.5 step 2.1: a component identifier must not be covered twice.
        if name in seen:
            raise SignatureMalformedError(f"component {name!r} is covered twice")
        seen.add(name)
        value = _derived_value(name, method, target) if name.startswith("@") else _field_value(headers, name)
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {_signature_params_value(components, params)}')
    return "\n".join(lines)


def format_signature_headers(
    label: str, components: Sequence[str], params: SignatureParams, signature: bytes
) -> dict[str, str]:
    """The ``Signature-Input`` and ``Signature`` field values (RFC 9421 §4.1, §4.2) for one signature.

    Raises:
        ValueError: ``label`` is not an sf-key or a component name is invalid.
    """
    if not _is_key(label):
        raise ValueError(f"signature label must be an sf-key (lower-case): {label!r}")
    for name in components:
        try:
            _check_component(name)
        except SignatureMalformedError as e:
            raise ValueError(str(e)) from e
    return {
        "Signature-Input": f"{label}={_signature_params_value(components, params)}",
        "Signature": f"{label}={_serialize_byte_sequence(signature)}",
    }


# -- signing ------------------------------------------------------------------------------------------

_GENERATED = frozenset({"content-digest", "signature-input", "signature"})


def sign_request(
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    private_key: Ed25519PrivateKey,
    keyid: str,
    created: int,
    label: str = "sig1",
    nonce: str | None = None,
    components: Sequence[str] = DEFAULT_COMPONENTS,
) -> dict[str, str]:
    """Sign a request; return the headers to add: ``Content-Digest``, ``Signature-Input``, ``Signature``.

    The signature covers ``components`` (by default ``"@method" "@target-uri" "content-digest"``)
    with ``;created=<created>;keyid="<keyid>";alg="ed25519"`` and ``;nonce="<nonce>"`` if given.
    Content-Digest is the SHA-256 of ``body``; ``headers`` supplies any other covered fields and
    must not already hold Content-Digest, Signature-Input or Signature.

    Raises:
        ValueError: ``headers`` already has one of the generated fields; or the label, keyid,
            nonce, created, method, target URI or a component is invalid or absent.
    """
    present = {k.lower() for k in headers} & _GENERATED
    if present:
        raise ValueError(f"headers already contain {sorted(present)}; sign_request generates them")
    added = {"Content-Digest": content_digest(body)}
    params = SignatureParams(created=created, keyid=keyid, alg=ALGORITHM, nonce=nonce)
    try:
        base = signature_base(method, target_uri, {**headers, **added}, components, params)
    except SignatureMalformedError as e:
        raise ValueError(str(e)) from e
    signature = private_key.sign(base.encode("ascii"))
    return {**added, **format_signature_headers(label, components, params, signature)}


# -- verifying ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified: who signed, when, and what it covers."""

    keyid: str
    created: int
    label: str
    signature: bytes
    components: tuple[str, ...]
    nonce: str | None = None


def _single_header(headers: Mapping[str, str], name: str) -> str | None:
    values = [v for k, v in headers.items() if k.lower() == name]
    if len(values) > 1:
        raise SignatureMalformedError(f"{name} appears on more than one header line")
    return values[0] if values else None


def _select(
    inputs: dict[str, _Item | _InnerList], signatures: dict[str, _Item | _InnerList], label: str | None
) -> str:
    if label is not None:
        if label not in inputs or label not in signatures:
            raise SignatureMissingError(f"no signature labelled {label!r}")
        return label
    if not inputs or not signatures:
        raise SignatureMissingError("Signature-Input or Signature is empty")
    if len(inputs) != 1 or len(signatures) != 1:
        raise SignatureMalformedError("several signatures present; the verifier must name the label")
    (only,) = inputs
    if only not in signatures:
        raise SignatureMalformedError("Signature-Input and Signature have different labels")
    return only


def _parse_components(member: _Item | _InnerList) -> tuple[str, ...]:
    if not isinstance(member, _InnerList):
        raise SignatureMalformedError("Signature-Input member is not an inner list")
    components: list[str] = []
    for item in member.items:
        if not isinstance(item.value, str):
            raise SignatureMalformedError("covered component identifiers must be sf-strings")
        if item.params:
            raise SignatureMalformedError(f"component parameters are not supported: {sorted(item.params)}")
        _check_component(item.value)
        components.append(item.value)
    return tuple(components)


def _parse_params(raw: _Params) -> tuple[SignatureParams, int, str]:
    """The signature parameters, and the required ``created`` and ``keyid`` among them."""
    ints: dict[str, int] = {}
    strs: dict[str, str] = {}
    for name, value in raw.items():
        if name not in _PARAM_NAMES:
            raise SignatureMalformedError(f"unknown signature parameter {name!r}")
        if name in _INT_PARAMS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise SignatureMalformedError(f"signature parameter {name} must be an integer")
            ints[name] = value
        elif isinstance(value, str):
            strs[name] = value
        else:
            raise SignatureMalformedError(f"signature parameter {name} must be a string")
    created, keyid = ints.get("created"), strs.get("keyid")
    if created is None or keyid is None:
        raise SignatureMalformedError("signature parameters created and keyid are required")
    try:
        params = SignatureParams(
            created=created,
            keyid=keyid,
            alg=strs.get("alg"),
            nonce=strs.get("nonce"),
            expires=ints.get("expires"),
            tag=strs.get("tag"),
            order=tuple(raw),  # the sender's order is part of what was signed
        )
    except ValueError as e:
        raise SignatureMalformedError(str(e)) from e
    if params.alg is not None and params.alg != ALGORITHM:
        raise SignatureMalformedError(f"unsupported signature algorithm {params.alg!r}")
    return params, created, keyid


def verify_request(
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    resolve_key: Callable[[str], Ed25519PublicKey | None],
    now: int,
    max_skew: int = 300,
    required: Sequence[str] = DEFAULT_COMPONENTS,
    label: str | None = None,
) -> VerifiedSignature:
    """Verify the RFC 9421 signature of a request (§3.2), then its Content-Digest if covered.

    ``target_uri`` must be the URI the verifier itself is reached at (its public base URL plus the
    raw path and query), never one built from headers the client controls. Exactly one signature
    is expected unless ``label`` names the one to verify. Replays are not checked here: pass the
    result to :meth:`ReplayCache.check_and_remember` once the request is otherwise accepted.

    Raises:
        SignatureMissingError: no Signature-Input/Signature, or none labelled ``label``.
        SignatureMalformedError: the fields do not parse, use unsupported features, lack
            ``created`` or ``keyid``, name another ``alg``, or cover a field the request lacks.
        SignatureCoverageError: a component in ``required`` is not covered.
        SignatureExpiredError: ``created`` is more than ``max_skew`` seconds before ``now``, or
            ``expires`` is more than ``max_skew`` seconds before ``now``.
        SignatureFromFutureError: ``created`` is more than ``max_skew`` seconds after ``now``.
        UnknownKeyError: ``resolve_key`` returns None for the keyid.
        BadSignatureError: the signature does not verify.
        ContentDigestError: Content-Digest is covered but missing, malformed or wrong for ``body``.
    """
    if max_skew < 0:
        raise ValueError("max_skew must not be negative")
    # 1. Find the signature (§3.2 steps 1-3).
    input_text = _single_header(headers, "signature-input")
    signature_text = _single_header(headers, "signature")
    if input_text is None and signature_text is None:
        raise SignatureMissingError("the request has no Signature-Input and no Signature")
    if input_text is None or signature_text is None:
        raise SignatureMalformedError("Signature-Input and Signature must both be present")
    try:
        inputs = _parse_dictionary(input_text)
        signatures = _parse_dictionary(signature_text)
    except ValueError as e:
        raise SignatureMalformedError(f"not a structured-field dictionary: {e}") from e
    chosen = _select(inputs, signatures, label)
    signature_member = signatures[chosen]
    if (
        not isinstance(signature_member, _Item)
        or not isinstance(signature_member.value, bytes)
        or signature_member.params
    ):
        raise SignatureMalformedError("Signature member is not a byte sequence")
    signature = signature_member.value
    input_member = inputs[chosen]
    components = _parse_components(input_member)
    params, created, keyid = _parse_params(input_member.params)

    # 2. Coverage: the verifier's policy, before any expensive work (§3.2 step 4, §7.2.1).
    missing = [c for c in required if c not in components]
    if missing:
        raise SignatureCoverageError(f"the signature does not cover {missing}")

    # 3. Freshness of created and expires (§3.2 step 4, §7.2.2).
    if created < now - max_skew:
        raise SignatureExpiredError(f"signature created {now - created}s ago (limit {max_skew}s)")
    if created > now + max_skew:
        raise SignatureFromFutureError(f"signature created {created - now}s in the future")
    if params.expires is not None and params.expires < now - max_skew:
        raise SignatureExpiredError("signature expires parameter has passed")

    # 4. Key by keyid (§3.2 step 5).
    public_key = resolve_key(keyid)
    if public_key is None:
        raise UnknownKeyError(f"no key known for keyid {keyid!r}")

    # 5. Rebuild the signature base from the request as received and verify (§3.2 steps 6-8).
    base = signature_base(method, target_uri, headers, components, params)
    try:
        public_key.verify(signature, base.encode("ascii"))
    except InvalidSignature as e:
        raise BadSignatureError("the signature does not verify") from e

    # 6. The body, through the signed digest (RFC 9530 §1.1: the signature covers the digest).
    if "content-digest" in components:
        verify_content_digest(_field_value(headers, "content-digest"), body)

    return VerifiedSignature(
        keyid=keyid,
        created=created,
        label=chosen,
        signature=signature,
        components=components,
        nonce=params.nonce,
    )


# -- replay ------------------------------------------------------------------------------------------------


class ReplayCache:
    """Signatures accepted within the last ``window`` seconds, to refuse them a second time.

    ``window`` must be at least the verifier's ``max_skew``: a signature with ``created = t`` passes
    the skew check while ``now`` is within ``t ± max_skew``, so it is remembered until
    ``t + window``. Memory holds only signatures of that window. In memory and per process: hub
    workers behind a load balancer need a shared store with the same method. Not thread-safe.
    """

    def __init__(self, window: int = 300) -> None:
        if window < 0:
            raise ValueError("window must not be negative")
        self.window = window
        self._seen: set[tuple[str, bytes]] = set()
        self._expiry: list[tuple[int, str, bytes]] = []  # min-heap by the time an entry may go

    def __len__(self) -> int:
        return len(self._seen)

    def _evict(self, now: int) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, keyid, signature = heapq.heappop(self._expiry)
            self._seen.discard((keyid, signature))

    def check_and_remember(self, keyid: str, signature: bytes, created: int, now: int) -> None:
        """Refuse a signature seen before within the window; otherwise remember it.

        Call it only for requests that passed every other check, so that a request refused for
        another reason can be sent again.

        Raises:
            ReplayedSignatureError: the same ``(keyid, signature)`` was remembered and is still
                within the window.
            SignatureExpiredError, SignatureFromFutureError: ``created`` is outside
                ``now ± window``, where this cache could not vouch for it.
        """
        if created < now - self.window:
            raise SignatureExpiredError("signature is older than the replay window")
        if created > now + self.window:
            raise SignatureFromFutureError("signature is further in the future than the replay window")
        self._evict(now)
        key = (keyid, signature)
        if key in self._seen:
            raise ReplayedSignatureError(f"signature by {keyid!r} was already used")
        self._seen.add(key)
        heapq.heappush(self._expiry, (created + self.window, keyid, signature))
