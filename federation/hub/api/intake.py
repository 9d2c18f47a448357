"""What every hub API route shares: a signed request's authentication and rate limit, its refusals kept in the
quarantine with the bytes as received, query parameters, and the operator's token."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from federation.hub.appkeys import CONFIG, MEMBER_LIMITS, REFUSAL_LIMITS, REPLAYS, SERVICE
from federation.protocol import httpsig
from federation.protocol.errors import IpdnError, StrictJsonError, TrustError
from federation.protocol.verify import Failure
from federation.server.web import Problem, read_body

log = logging.getLogger("ipdn.hub")

# What a node's signature over a pull covers: no body, so no Content-Digest (the query is in @target-uri).
PULL_COMPONENTS = ("@method", "@target-uri")


@dataclass
class Intake:
    """What a signed request brought so far: its bytes as received and, once authenticated, its member."""

    received: bytearray = field(default_factory=bytearray)
    member: str | None = None


def _as_problem(e: Problem | IpdnError) -> Problem:
    if isinstance(e, Problem):
        return e
    return Problem(403 if isinstance(e, TrustError) else 400 if isinstance(e, StrictJsonError) else 422,
                   e.reason, e.message)


def refusals_kept(handler: Callable[[web.Request, Intake], Awaitable[web.StreamResponse]]
                  ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Keep every refused request of ``handler`` in the quarantine with its reason and bytes as received.

    Not kept: 429 and 503 (load shed or handed over: not bad input), and refusals nobody authenticated past
    the per-address budget (answered all the same), so that an outsider cannot turn refusals into writes.
    """

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        intake = Intake()
        try:
            return await handler(request, intake)
        except (Problem, IpdnError) as e:
            problem = _as_problem(e)
            if problem.status in (429, 503):
                raise problem from None
            app = request.app
            address = request.remote or "unknown"
            if intake.member is None and app[REFUSAL_LIMITS].take(address, time.monotonic()) > 0:
                log.warning("refusal from %s not kept (over its budget): %s", address, problem.reason)
                raise problem from None
            # The bytes as received, cut to the quarantine's bounds by the service (their length and digest whole).
            await app[SERVICE].keep_refusal(intake.member, Failure("request", problem.reason, problem.detail),
                                            intake.received, {
                "method": request.method, "path": request.path, "status": problem.status, "remote": address,
                "content_length": request.content_length, "received_bytes": len(intake.received),
                "sha256": hashlib.sha256(intake.received).hexdigest()})
            raise problem from None

    return wrapped


def limit_member(request: web.Request, member: str) -> None:
    """Per-member rate limit of signed requests (429 with Retry-After past it)."""
    limiter = request.app[MEMBER_LIMITS]
    wait = limiter.take(member, time.monotonic())
    if wait > 0:
        raise Problem(429, "rate-limited", f"{member} sends more than {limiter.rate:g} signed requests a second",
                      headers={"Retry-After": limiter.retry_after(wait)})


async def authenticate(request: web.Request,
                       required: tuple[str, ...] = httpsig.DEFAULT_COMPONENTS) -> tuple[str, httpsig.VerifiedSignature]:
    """The member a signed request comes from, by its RFC 9421 signature over its headers alone (401 problem
    otherwise), and the signature: checked before a byte of the body is read. A signature is accepted once:
    remembered in this process and, where workers share the log, in the database."""
    service = request.app[SERVICE]
    await service.fresh()
    reg = service.registry.registry
    keys = reg.member_keys()
    active = {m.code for m in reg.members if m.status == "active"}
    at = service.clock()  # one time for the keys' validity and the signature's freshness
    now = int(at.timestamp())

    def resolve(kid: str) -> Ed25519PublicKey | None:
        k = keys.get(kid)
        return k.key if k is not None and k.member in active and k.valid_at(at) else None

    target = reg.hub_url.rstrip("/") + request.raw_path  # the public URI, never Host/X-Forwarded-*
    try:
        sig = httpsig.verify_signature(request.method, target, request.headers, resolve_key=resolve, now=now,
                                       max_skew=request.app[CONFIG].replay_window, required=required)
        request.app[REPLAYS].check_and_remember(sig.keyid, sig.signature, sig.created, now)
    except httpsig.HttpSignatureError as e:
        raise Problem(401, e.reason, str(e)) from e
    window = request.app[CONFIG].replay_window
    if service.store.shared and not await service.store.remember_signature(
            sig.keyid, sig.signature, sig.created + window, now):
        raise Problem(401, httpsig.ReplayedSignatureError.reason, "signature already accepted by another hub worker")
    return str(keys[sig.keyid].member), sig


async def authenticate_push(request: web.Request, body: bytes,
                            required: tuple[str, ...] = httpsig.DEFAULT_COMPONENTS) -> str:
    """:func:`authenticate`, then ``body`` against the signed Content-Digest (a pull's empty body)."""
    member, sig = await authenticate(request, required)
    check_digest(request, sig, body)
    return member


def check_digest(request: web.Request, sig: httpsig.VerifiedSignature, body: bytes) -> None:
    try:
        httpsig.verify_body(sig, request.headers, body)
    except httpsig.HttpSignatureError as e:
        raise Problem(401, e.reason, str(e)) from e


async def read_signed(request: web.Request, intake: Intake, max_bytes: int) -> bytes:
    """A member's signed request body, read only after its headers earned it (federation/server/web.py
    ``read_body``): declared length, then signature (key of an active member, valid now; ``created`` fresh;
    not a replay), then the member's rate; then the body, streamed and capped, then checked against the
    signed Content-Digest. So an outsider's body is never read, whatever its size (docs/THREAT-MODEL.md)."""
    signature: list[httpsig.VerifiedSignature] = []

    async def admit() -> None:
        member, sig = await authenticate(request)
        intake.member = member
        signature.append(sig)
        limit_member(request, member)

    body = await read_body(request, max_bytes, into=intake.received, admit=admit)
    check_digest(request, signature[0], body)
    return body


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """The integer query parameter ``name`` (``default`` when absent), refused with a 400 outside [lo, hi]."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(400, "bad-parameter", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise Problem(400, "bad-parameter", f"{name} must be between {lo} and {hi}")
    return value


def require_operator(request: web.Request) -> None:
    """Bearer operator token (compared as SHA-256 digests, in constant time)."""
    expected = request.app[CONFIG].operator_token_sha256
    auth = request.headers.get("Authorization", "")
    given = hashlib.sha256(auth.removeprefix("Bearer ").encode()).hexdigest()
    if not expected or not auth.startswith("Bearer ") or not hmac.compare_digest(given, expected):
        raise Problem(401, "operator-token-required", "this needs the hub operator's bearer token")
