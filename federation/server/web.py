"""HTTP plumbing shared by the hub and the node (aiohttp): RFC 9457 problems and JSON responses.

Handlers raise domain errors (``IpdnError``) or :class:`Problem`; one middleware turns them into
``application/problem+json`` responses, so no handler builds an error body by hand.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from federation.protocol import strictjson
from federation.protocol.errors import ConfigError, IpdnError, StrictJsonError, TrustError

PROBLEM_BASE = "https://schemas.ipdn.network/problems/"
log = logging.getLogger("ipdn.http")

# Seconds a client has to send a request body, when the app sets no BODY_TIMEOUT. A client that sends
# one byte a second (slowloris) would otherwise hold its connection and the handler for as long as it likes.
DEFAULT_BODY_TIMEOUT = 60.0
BODY_TIMEOUT = web.AppKey("body_timeout", float)
# What aiohttp's request.post() may hold in memory (its client_max_size) where only small forms use it (sign-in,
# the hub dashboard): every API route streams its body with its own cap (read_body). Not the push size.
FORM_MAX_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """The reverse proxies whose forwarding headers (``X-Forwarded-Proto``) are believed: the ``trusted_proxies``
    setting of the hub and the node. Empty (the default): no one's; a client could otherwise claim a TLS
    connection it does not have (docs/THREAT-MODEL.md)."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        """Comma-separated addresses and CIDR blocks, e.g. ``"127.0.0.1, 10.0.0.0/8, ::1"``.

        Raises:
            ConfigError: an entry is neither.
        """
        networks = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as e:
                raise ConfigError(f"trusted_proxies: {item!r} is not an address or CIDR block") from e
        return cls(tuple(networks))

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str) or not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False  # a Unix socket or an unknown peer: never trusted
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == n.version and ip in n for n in self.networks)


TRUSTED_PROXIES = web.AppKey("trusted_proxies", TrustedProxies)


def from_trusted_proxy(request: web.Request) -> bool:
    """Whether the request's peer (``request.remote``) is one of the app's TRUSTED_PROXIES (none when unset)."""
    return request.remote in request.config_dict.get(TRUSTED_PROXIES, TrustedProxies())


def client_address(request: web.Request) -> str:
    """The client's address, for limits kept per address: the peer, unless the peer is a trusted proxy; then
    the nearest ``X-Forwarded-For`` entry that is not a trusted proxy (entries further left are the client's
    own claims, which anyone can write)."""
    proxies = request.config_dict.get(TRUSTED_PROXIES, TrustedProxies())
    address = request.remote or "unknown"
    if address not in proxies:
        return address
    for hop in reversed([h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]):
        if not hop:
            break
        address = hop
        if hop not in proxies:
            break
    return address


class Problem(Exception):
    """An HTTP error with an RFC 9457 body; ``reason`` becomes the last segment of ``type``. ``headers`` go on
    the response (``Retry-After``, ``WWW-Authenticate``), ``extra`` members into the body."""

    def __init__(self, status: int, reason: str, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail, self.extra = status, reason, detail, extra
        self.headers = headers or {}


def problem_body(status: int, reason: str, detail: str, **extra: Any) -> dict[str, Any]:
    title = reason.replace("-", " ").capitalize()
    return {"type": PROBLEM_BASE + reason, "title": title, "status": status, "detail": detail, "reason": reason,
            **extra}


def problem_response(status: int, reason: str, detail: str, **extra: Any) -> web.Response:
    return web.Response(status=status, content_type="application/problem+json",
                        text=json.dumps(problem_body(status, reason, detail, **extra), ensure_ascii=False))


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, content_type="application/json", headers=headers,
                        text=json.dumps(data, ensure_ascii=False, separators=(",", ":")))


@web.middleware
async def problems_middleware(request: web.Request,
                              handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    if request.content_type.startswith("multipart/") and "boundary=" not in request.headers.get("Content-Type", ""):
        # aiohttp's form reader raises ValueError on it: the client's mistake, not a server error.
        return problem_response(400, "malformed-request", f"{request.content_type} without a boundary")
    try:
        return await handler(request)
    except Problem as p:
        resp = problem_response(p.status, p.reason, p.detail, **p.extra)
        resp.headers.update(p.headers)
        return resp
    except TrustError as e:
        return problem_response(403, e.reason, e.message)
    except IpdnError as e:
        return problem_response(422 if not isinstance(e, StrictJsonError) else 400, e.reason, e.message)
    except web.HTTPException as e:
        if e.status >= 400 and e.content_type != "application/problem+json":
            detail = e.text or e.reason
            allowed = ", ".join(sorted(e.allowed_methods)) if isinstance(e, web.HTTPMethodNotAllowed) else None
            if allowed is not None:
                detail = f"{request.method} is not allowed here; allowed: {allowed}"
            resp = problem_response(e.status, e.reason.lower().replace(" ", "-"), detail)
            if allowed is not None:  # RFC 9110 §15.5.6: a 405 names the methods that work
                resp.headers["Allow"] = allowed
            return resp
        raise
    except Exception:  # a bug: logged with its trace, answered without one
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem_response(500, "internal-error", "the server failed; the error is logged")


def parse_json(data: bytes, limits: strictjson.JsonLimits) -> Any:
    """Strict JSON from a request body: a 400 problem with the reason (413 past the size limit)."""
    try:
        return strictjson.loads(data, limits)
    except StrictJsonError as e:
        raise Problem(413 if e.reason == "too-large" else 400, e.reason, e.message) from e


async def read_body(request: web.Request, max_bytes: int, into: bytearray | None = None, *,
                    admit: Callable[[], Awaitable[None]] | None = None) -> bytes:
    """The request body, read only once the request earned it: its declared ``Content-Length`` is at most
    ``max_bytes`` (413 ``too-large`` at once), then ``admit`` (what the headers alone must prove, such as the
    sender's signature and rate: raise to refuse) passes, and only then is the body read, streamed, at most
    ``max_bytes`` (413 past it for a chunked body, read no further), within the app's ``BODY_TIMEOUT`` (408
    ``request-timeout``; the connection is then closed). ``into`` collects what arrived, also when refused, so a
    refusal can be kept as received. A body refused unread is drained and discarded by aiohttp (for its
    ``lingering_time``, a 64 KiB buffer at a time), never held: an outsider cannot make the process hold its
    bytes (docs/THREAT-MODEL.md).
    """
    buf = into if into is not None else bytearray()
    if request.content_length is not None and request.content_length > max_bytes:
        raise Problem(413, "too-large", f"body of {request.content_length} bytes, over {max_bytes}")
    if admit is not None:
        await admit()
    timeout = request.app.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT)
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(64 * 1024):
                if len(buf) + len(chunk) > max_bytes:  # a chunked body without Content-Length
                    buf.extend(chunk[:max_bytes - len(buf)])
                    raise Problem(413, "too-large", f"body over {max_bytes} bytes")
                buf.extend(chunk)
    except TimeoutError:
        request.protocol.close()  # no keep-alive: the rest of this body is not worth waiting for
        raise Problem(408, "request-timeout", f"the body did not arrive within {timeout:g} s "
                      f"({len(buf)} bytes received)") from None
    except (ConnectionError, HttpProcessingError) as e:  # the client went away mid-body: its fault, not ours
        raise Problem(400, "incomplete-body", f"the body ended after {len(buf)} bytes: {e}") from None
    return bytes(buf)


async def read_json(request: web.Request, limits: strictjson.JsonLimits) -> Any:
    """The request body as strict JSON (see :func:`read_body` and :func:`parse_json`)."""
    return parse_json(await read_body(request, limits.max_bytes), limits)


HEALTH_PATH = "/healthz"


def add_health_route(app: web.Application) -> None:
    """``GET /healthz``: 200 once the service has started (its databases opened and migrated), for container
    and load-balancer health checks. Cheap on purpose: no query, no lock, never cached."""

    async def healthz(_request: web.Request) -> web.Response:
        return json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})

    app.router.add_get(HEALTH_PATH, healthz)
