"""Sessions of the operator and staff pages, and the one cookie policy of every page.

A session is a stateless cookie: ``base64url(claims).base64url(HMAC-SHA256)``, keyed by a per-service secret.
The claims hold the subject, an expiry and the session's CSRF token; the sign-in flow (signin.py) still checks
on every request that the subject exists and is enabled, so disabling an account ends its sessions.
Every cookie is ``HttpOnly``, ``SameSite=Strict`` and ``Secure`` when the request came over TLS: to the service
itself, or to a reverse proxy listed in the service's ``trusted_proxies`` that says so in ``X-Forwarded-Proto``
(anyone else's ``X-Forwarded-Proto`` is ignored).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from federation.protocol.keys import b64u_decode, b64u_encode
from federation.server.web import from_trusted_proxy


@dataclass(frozen=True)
class Session:
    subject: str
    csrf: str
    expires: float


@dataclass(frozen=True)
class SessionCodec:
    secret: bytes = field(repr=False)
    ttl: float = 8 * 3600  # a working day

    def issue(self, subject: str, now: float) -> tuple[str, Session]:
        session = Session(subject, secrets.token_urlsafe(24), now + self.ttl)
        claims = b64u_encode(json.dumps({"sub": subject, "csrf": session.csrf, "exp": session.expires}).encode())
        return f"{claims}.{self._mac(claims)}", session

    def open(self, value: str | None, now: float) -> Session | None:
        """The session in a cookie value, or None when absent, forged, malformed or expired."""
        if not value or value.count(".") != 1:
            return None
        claims, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(claims)):
            return None
        try:
            data = json.loads(b64u_decode(claims))
            session = Session(str(data["sub"]), str(data["csrf"]), float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > now else None

    def _mac(self, claims: str) -> str:
        return b64u_encode(hmac.new(self.secret, claims.encode(), hashlib.sha256).digest())


def load_secret(path: Path) -> bytes:
    """The service's session secret, created (owner-only) on first use; rotating it signs everyone out."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_bytes(secrets.token_bytes(32))
    return path.read_bytes()


def is_tls(request: web.Request) -> bool:
    """Whether the client's connection is TLS: this one, or, from a trusted proxy only, its ``X-Forwarded-Proto``."""
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return proto == "https" and from_trusted_proxy(request)


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str,
               max_age: float | None = None) -> None:
    response.set_cookie(name, value, max_age=None if max_age is None else int(max_age), path="/",
                        httponly=True, samesite="Strict", secure=is_tls(request))


def clear_cookie(response: web.StreamResponse, request: web.Request, name: str) -> None:
    response.del_cookie(name, path="/", httponly=True, samesite="Strict", secure=is_tls(request))
