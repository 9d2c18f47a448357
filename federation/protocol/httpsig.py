"""HTTP Message Signatures (RFC 9421, Ed25519) and Content-Digest (RFC 9530) for push requests.

A member node signs each push to the hub with its Ed25519 key; the hub verifies the signature, the
body's digest, the signature's age and that it has not been seen before. Everything here is pure:
strings, bytes and an injected clock in, values or typed errors out. RFC 8941 Structured Fields are
parsed and serialized by ``http_sf``, except the sf-strings and sf-integers of signature parameters
and component names, serialized by an equivalent that the tests check against ``http_sf``.

What is covered
    Derived components ``@method``, ``@target-uri``, ``@authority``, ``@scheme``, ``@path`` and
    ``@query`` (RFC 9421 §2.2) and plain header fields (§2.1) without component parameters
    (``sf``, ``key``, ``bs``, ``req``, ``tr``) and with one value each. Signature parameters
    ``created``, ``expires``, ``keyid``, ``alg``, ``nonce`` and ``tag`` (§2.3); ``created`` and
    ``keyid`` are required when verifying, and ``alg``, if present, must be ``ed25519``. Anything
    else is refused as malformed rather than half-understood.

Why not the ``http-message-signatures`` package
    It reproduces RFC 9421 B.2.6, and the tests check interoperability with it both ways, but its
    verifier reads the wall clock (no injected ``now`` for the skew check), reports every failure
    as one ``InvalidSignature`` (telling an expired signature from an unknown key from a bad one
    would mean matching message text), builds the signature base in a private method over a
    ``requests``-like message object, and is untyped.

Using it on the hub (aiohttp): pass ``request.method``, the public target URI (the configured
public base URL plus ``request.raw_path``, never a value taken from Host or X-Forwarded-* headers),
``request.headers`` to :func:`verify_signature` before reading the body (an unsigned or unknown sender's
body is never read), then the body to :func:`verify_body`; or everything at once to :func:`verify_request`.
Then :meth:`ReplayCache.check_and_remember` with the result. A header field that appears on more than
one line is refused if this module has to read it.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeAlias, cast

import http_sf
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_sf.types import BareItemType, DictionaryType, InnerListType, ItemType, ParamsType

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
    "verify_body",
    "verify_content_digest",
    "verify_request",
    "verify_signature",
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


# -- RFC 8941 structured fields, through http_sf ----------------------------------------------------------

#: A parsed dictionary member or inner-list item: (bare item or inner list, parameters).
_Member: TypeAlias = tuple[BareItemType | list[ItemType], ParamsType]


def _member(value: ItemType | InnerListType) -> _Member:
    # http_sf.parse always yields (value, parameters) pairs; this only narrows the declared type.
    return value if isinstance(value, tuple) else (value, {})


def _refuse_duplicate(key: str, context: str) -> None:
    raise ValueError(f"duplicate {context} key {key!r}")


def _parse_dictionary(text: str) -> dict[str, _Member]:
    """Parse an RFC 8941 Dictionary field value; raises ``ValueError``.

    Stricter than the RFC in one way: a repeated dictionary key or parameter fails instead of the
    last one winning, so two parties can never read one field differently.
    """
    parsed = http_sf.parse(text.encode("ascii"), tltype="dictionary", on_duplicate_key=_refuse_duplicate)
    return {key: _member(value) for key, value in cast(DictionaryType, parsed).items()}


# Serializing only: http_sf checks a string a character at a time in Python, and signing serializes
# the same few strings and integers several times; a regex does the same check. Parsing stays with
# http_sf alone, so a verifier never reads a field differently from the reference parser.
_SF_STRING = re.compile(r"[\x20-\x7e]*")  # RFC 8941 §4.1.6: printable ASCII only
_SF_INTEGER_MAX = 999_999_999_999_999  # RFC 8941 §4.1.4: at most 15 digits


def _sf_string(value: str) -> str:
    """``http_sf.ser(value)`` for a str; raises ``ValueError`` where it does."""
    if not _SF_STRING.fullmatch(value):
        raise ValueError("String contains disallowed characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sf_integer(value: int) -> str:
    """``http_sf.ser(value)`` for an int; raises ``ValueError`` where it does, and for a bool."""
    if isinstance(value, bool):  # http_sf.ser would write an sf-boolean ("?1"), not an integer
        raise ValueError("a bool is not an sf-integer")
    if not -_SF_INTEGER_MAX <= value <= _SF_INTEGER_MAX:
        raise ValueError("Input is out of Integer range.")
    return str(value)


def _ser_bare(value: BareItemType) -> str:
    """``http_sf.ser(value)``, faster for an exact str or int (subclasses and the rest go to http_sf)."""
    if type(value) is str:
        return _sf_string(value)
    if type(value) is int:
        return _sf_integer(value)
    return http_sf.ser(value)


# -- RFC 9530 Content-Digest --------------------------------------------------------------------------

_DIGESTS = {"sha-256": "sha256", "sha-512": "sha512"}  # RFC 9530 algorithm key -> hashlib name


def content_digest(body: bytes) -> str:
    """The Content-Digest field value for ``body`` (RFC 9530 §2), SHA-256: ``sha-256=:<base64>:``."""
    return http_sf.ser({"sha-256": hashlib.sha256(body).digest()})


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
    checked = [(algorithm, value) for algorithm, (value, _) in members.items() if algorithm in _DIGESTS]
    if not checked:
        raise ContentDigestError("Content-Digest lists no supported algorithm (sha-256, sha-512)")
    for algorithm, value in checked:
        if not isinstance(value, bytes):
            raise ContentDigestError(f"Content-Digest {algorithm} is not a byte sequence")
        if not hmac.compare_digest(value, hashlib.new(_DIGESTS[algorithm], body).digest()):
            raise ContentDigestError(f"Content-Digest {algorithm} does not match the body")


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
        for name in self._present():
            value = getattr(self, name)
            if name in _INT_PARAMS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"signature parameter {name} must be a non-negative integer")
            elif not isinstance(value, str):
                raise ValueError(f"signature parameter {name} must be a string")
        if self.order and sorted(self.order) != sorted(self._present()):
            raise ValueError(f"order {self.order!r} does not name exactly the present parameters")
        self.serialize()  # refuses integers of more than 15 digits and non-printable strings

    def _present(self) -> tuple[str, ...]:
        return tuple(n for n in _PARAM_NAMES if getattr(self, n) is not None)

    @cached_property
    def _serialized(self) -> str:
        # Computed once, when constructed; the dataclass is frozen, so it cannot go stale.
        return "".join(f";{name}={_ser_bare(getattr(self, name))}" for name in self.order or self._present())

    def serialize(self) -> str:
        """The parameters as they follow the inner list: ``;created=1618884473;keyid="k"``."""
        return self._serialized


_DERIVED = frozenset({"@method", "@target-uri", "@authority", "@scheme", "@path", "@query"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.6.2
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")  # a token, lower-cased
_URI = re.compile(r"(?:[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")  # RFC 3986, no fragment
_HTTP_URI = re.compile(r"(?P<scheme>https?)://(?P<authority>[^/?]*)(?P<path>[^?]*)(?:\?(?P<query>.*))?", re.I)
_AUTHORITY = re.compile(r"(?P<host>\[[^\]]*\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::(?P<port>[0-9]*))?")


def _derived_components(method: str, target_uri: str) -> dict[str, str]:
    """The values of RFC 9421 §2.2's derived components for a request to an absolute http(s) URI.

    No percent-decoding and no dot-segment removal: components carry the URI as sent. Userinfo and
    fragments are refused because they are never part of a request target (RFC 9110 §4.2).
    """
    if not _TOKEN.fullmatch(method):
        raise SignatureMalformedError(f"method is not an HTTP token: {method!r}")
    uri = _HTTP_URI.fullmatch(target_uri) if _URI.fullmatch(target_uri) else None
    if uri is None:
        raise SignatureMalformedError(f"target URI must be an encoded absolute http(s) URI: {target_uri!r}")
    authority = _AUTHORITY.fullmatch(uri["authority"])
    if authority is None:
        raise SignatureMalformedError(f"target URI has a bad authority or userinfo: {target_uri!r}")
    host, port, scheme = authority["host"].lower(), authority["port"], uri["scheme"].lower()
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as e:
            raise SignatureMalformedError(f"target URI has a bad IPv6 host: {target_uri!r}") from e
    # §2.2.3 and RFC 9110 §4.2.3: lowercase host, no port when empty or the scheme's default.
    if port and port.lstrip("0") != _DEFAULT_PORTS[scheme]:
        host += ":" + port
    return {
        "@method": method,  # §2.2.1, as sent (methods are case-sensitive)
        "@target-uri": target_uri,  # §2.2.2
        "@authority": host,  # §2.2.3
        "@scheme": scheme,  # §2.2.4
        "@path": uri["path"] or "/",  # §2.2.6: an empty path is "/"
        "@query": "?" + (uri["query"] or ""),  # §2.2.7: "?" alone when there is no query
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The one value of a header field, looked up case-insensitively; None when absent."""
    values = [v for k, v in headers.items() if k.lower() == name]
    if len(values) > 1:
        raise SignatureMalformedError(f"header field {name!r} appears on more than one header line")
    return values[0] if values else None


_FIELD_CHARS = re.compile(r"[\t\x20-\x7e]*")  # a tab or printable ASCII: a regex, not a Python loop per character


def _field_value(headers: Mapping[str, str], name: str) -> str:
    """The value of a covered header field for the signature base (RFC 9421 §2.1)."""
    value = _header(headers, name)
    if value is None:
        raise SignatureMalformedError(f"covered header field {name!r} is not in the request")
    # §2.1: strip leading and trailing whitespace, and replace obsolete line folding with one space.
    value = re.sub(r"\r\n[ \t]+", " ", value).strip(" \t")
    if not _FIELD_CHARS.fullmatch(value):
        raise SignatureMalformedError(f"header field {name!r} has control or non-ASCII characters")
    return value


def _check_component(name: str) -> None:
    if name.startswith("@"):
        if name not in _DERIVED:
            raise SignatureMalformedError(f"unsupported derived component {name!r}")
    elif not _FIELD_NAME.fullmatch(name):
        raise SignatureMalformedError(f"component {name!r} is not a lower-case field name")


def _signature_params_value(components: Sequence[str], params: SignatureParams) -> str:
    return "(" + " ".join(_ser_bare(c) for c in components) + ")" + params.serialize()


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
    derived = _derived_components(method, target_uri)
    if len(set(components)) != len(components):  # §2.5 step 2.1
        raise SignatureMalformedError(f"a component identifier is covered twice: {list(components)}")
    lines: list[str] = []
    for name in components:
        _check_component(name)
        value = derived[name] if name.startswith("@") else _field_value(headers, name)
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
    try:
        signature_field = http_sf.ser({label: signature})
    except ValueError as e:
        raise ValueError(f"signature label must be an sf-key (lower-case): {label!r}") from e
    for name in components:
        try:
            _check_component(name)
        except SignatureMalformedError as e:
            raise ValueError(str(e)) from e
    return {"Signature-Input": f"{label}={_signature_params_value(components, params)}", "Signature": signature_field}


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


def _select(inputs: Mapping[str, object], signatures: Mapping[str, object], label: str | None) -> str:
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


def _parse_components(items: BareItemType | list[ItemType]) -> tuple[str, ...]:
    if not isinstance(items, list):
        raise SignatureMalformedError("Signature-Input member is not an inner list")
    components: list[str] = []
    for item in items:
        name, params = _member(item)
        if not isinstance(name, str):
            raise SignatureMalformedError("covered component identifiers must be sf-strings")
        if params:
            raise SignatureMalformedError(f"component parameters are not supported: {sorted(params)}")
        _check_component(name)
        components.append(name)
    return tuple(components)


def _parse_params(raw: ParamsType) -> tuple[SignatureParams, int, str]:
    """The signature parameters, and the required ``created`` and ``keyid`` among them."""
    unknown = sorted(set(raw) - set(_PARAM_NAMES))
    if unknown:
        raise SignatureMalformedError(f"unknown signature parameters {unknown}")
    try:
        # SignatureParams checks the types; the sender's order is part of what was signed.
        params = SignatureParams(**cast("dict[str, Any]", raw), order=tuple(raw))
    except ValueError as e:
        raise SignatureMalformedError(str(e)) from e
    if params.created is None or params.keyid is None:
        raise SignatureMalformedError("signature parameters created and keyid are required")
    if params.alg not in (None, ALGORITHM):
        raise SignatureMalformedError(f"unsupported signature algorithm {params.alg!r}")
    return params, params.created, params.keyid


def verify_signature(
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    *,
    resolve_key: Callable[[str], Ed25519PublicKey | None],
    now: int,
    max_skew: int = 300,
    required: Sequence[str] = DEFAULT_COMPONENTS,
    label: str | None = None,
) -> VerifiedSignature:
    """Verify the RFC 9421 signature of a request from its headers alone (§3.2), before its body is read.

    The signature covers the Content-Digest field, not the body: a verifier checks who signed, when and
    with which key first, reads the body only then (an outsider's body is never read), and checks the
    body against the signed digest with :func:`verify_body`. :func:`verify_request` does both.

    Raises:
        everything :func:`verify_request` raises but :class:`ContentDigestError`.
    """
    if max_skew < 0:
        raise ValueError("max_skew must not be negative")
    # 1. Find the signature (§3.2 steps 1-3).
    input_text = _header(headers, "signature-input")
    signature_text = _header(headers, "signature")
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
    signature, signature_params = signatures[chosen]
    if not isinstance(signature, bytes) or signature_params:
        raise SignatureMalformedError("Signature member is not a byte sequence")
    covered, raw_params = inputs[chosen]
    components = _parse_components(covered)
    params, created, keyid = _parse_params(raw_params)

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

    return VerifiedSignature(
        keyid=keyid, created=created, label=chosen, signature=signature, components=components, nonce=params.nonce
    )


def verify_body(signature: VerifiedSignature, headers: Mapping[str, str], body: bytes) -> None:
    """Check ``body`` against the Content-Digest that ``signature`` covers (RFC 9530 §1.1: the signature
    covers the digest, the digest the body); nothing to check when it covers none.

    Raises:
        ContentDigestError: Content-Digest is covered but missing, malformed or wrong for ``body``.
    """
    if "content-digest" in signature.components:
        verify_content_digest(_field_value(headers, "content-digest"), body)


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
    """Verify the RFC 9421 signature of a request (§3.2), then its Content-Digest if covered
    (:func:`verify_signature`, then :func:`verify_body`).

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
    sig = verify_signature(method, target_uri, headers, resolve_key=resolve_key, now=now, max_skew=max_skew,
                           required=required, label=label)
    verify_body(sig, headers, body)
    return sig


# -- replay ------------------------------------------------------------------------------------------------


class ReplayCache:
    """Signatures accepted within the last ``window`` seconds, to refuse them a second time.

    ``window`` must be at least the verifier's ``max_skew``: a signature with ``created = t`` passes
    the skew check while ``now`` is within ``t ± max_skew``, so it is remembered until
    ``t + window``. Memory holds only signatures of that window. In memory and per process: hub
    workers behind a load balancer need a shared store with the same method. Not thread-safe.

    ``since`` is when the cache started (the process's start): it has not seen what came before, so a
    signature created earlier is refused as expired rather than taken on trust (a request captured before a
    restart cannot be replayed after it). Honest clients sign each attempt when they send it.
    """

    def __init__(self, window: int = 300, *, since: int | None = None) -> None:
        if window < 0:
            raise ValueError("window must not be negative")
        self.window = window
        self.since = since
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
                ``now ± window`` or before ``since``, where this cache could not vouch for it.
        """
        if created < now - self.window:
            raise SignatureExpiredError("signature is older than the replay window")
        if self.since is not None and created < self.since:
            raise SignatureExpiredError("signature was created before this verifier started, so a replay cannot "
                                        "be ruled out: sign the request again")
        if created > now + self.window:
            raise SignatureFromFutureError("signature is further in the future than the replay window")
        self._evict(now)
        key = (keyid, signature)
        if key in self._seen:
            raise ReplayedSignatureError(f"signature by {keyid!r} was already used")
        self._seen.add(key)
        heapq.heappush(self._expiry, (created + self.window, keyid, signature))
