"""Who may read what only the operator should (docs/adr/0023-operator-only-metrics-and-status.md): the Prometheus
metrics and the full status document of the hub and the nodes, which list keys, alarms, the outbox, webhooks,
every member's sync figures.

A request is the operator's when it carries
- the operator's bearer token (``Authorization: Bearer <operator.token>``), or, for the metrics only, the
  scrape token (``metrics_token_sha256``: a token Prometheus sends, which opens nothing else); or
- comes from an address in ``operator_networks`` (default loopback: a Prometheus or an operator's ``curl`` on
  the same machine). Behind a reverse proxy every client arrives from the proxy's address, so the address
  judged is the client's: a request relayed by a ``trusted_proxies`` peer is judged by its nearest untrusted
  ``X-Forwarded-For`` hop (:func:`federation.server.web.client_address`), and one that carries forwarding
  headers from a peer that is *not* a trusted proxy is judged by no address at all (a proxy we were not told
  about relayed it: its client is unknown), only by a token.

Tokens are compared as SHA-256 digests in constant time; neither the token nor its digest is logged.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from aiohttp import web

from federation.server.web import Problem, TrustedProxies, client_address, from_trusted_proxy

LOOPBACK = "127.0.0.1, ::1"
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class OperatorAccess:
    """The rule of one app: its operator token's digest, the optional scrape token's, the networks allowed
    without a token (``operator_networks``, parsed like ``trusted_proxies``), and the reason slug its refusals
    carry (the role's own: ``operator-token-required`` at the hub, ``unauthorized`` at a node)."""

    operator_sha256: str
    scrape_sha256: str = ""
    networks: TrustedProxies = field(default_factory=lambda: TrustedProxies.parse(LOOPBACK))
    reason: str = "unauthorized"

    def _bearer(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _by_address(self, request: web.Request) -> bool:
        if not from_trusted_proxy(request) and any(h in request.headers for h in FORWARDING_HEADERS):
            return False
        return client_address(request) in self.networks

    def allows(self, request: web.Request, *, scrape: bool = False) -> bool:
        """Whether ``request`` is the operator's (``scrape``: the metrics, which the scrape token also opens)."""
        token = self._bearer(request)
        if token is not None:
            given = _digest(token)
            if self.operator_sha256 and hmac.compare_digest(given, self.operator_sha256):
                return True
            if scrape and self.scrape_sha256 and hmac.compare_digest(given, self.scrape_sha256):
                return True
        return self._by_address(request)


    def require(self, request: web.Request, *, scrape: bool = False) -> None:
        """Raises:
            Problem: 401 with the app's reason and ``WWW-Authenticate: Bearer`` when :meth:`allows` says no.
        """
        if not self.allows(request, scrape=scrape):
            raise Problem(401, self.reason, "operator only: send the operator's bearer token"
                          + (" or the scrape token" if scrape else "") + ", or ask from an operator_networks address",
                          headers={"WWW-Authenticate": 'Bearer realm="ipdn operator"'})


OPERATOR_ACCESS = web.AppKey("operator_access", OperatorAccess)


def operator_access(request: web.Request) -> OperatorAccess:
    """The app's rule (set by the hub's and the node's ``create_app``); none set: loopback only, no token."""
    return request.config_dict.get(OPERATOR_ACCESS) or OperatorAccess("")
