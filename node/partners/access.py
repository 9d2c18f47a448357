"""Partner access to a node: API keys with scopes, the public-read switch, rate limits and CORS.

A **partner key** is ``ipdn_pk_<key id>_<secret>``: 12 hex digits naming the key (shown in lists, used
for lookup) and 256 random bits. The node stores only the key's SHA-256 (a slow hash buys nothing against
a 256-bit secret) and compares digests in constant time. Scopes: ``read`` (records, feeds, OAI-PMH,
event pages when public read is off) and ``webhooks`` (managing the partner's webhook subscriptions).
Operators issue and revoke keys with ``ipdn node partner add|list|revoke``.

Partners send the key as ``Authorization: Bearer <key>``, or, for clients that cannot set headers
(calendar apps subscribing to the ICS URL, OAI-PMH harvesters), as the ``key`` query parameter of a
``GET``. A key that is presented is always checked: a wrong or revoked key is a 401 even where anonymous
reading is allowed, so a partner learns at once that its key no longer works.

**Public read** (``public_read``, default on): anyone may read; off: reading needs a key with ``read``,
and responses are ``Cache-Control: private`` with ``Vary: Authorization`` so no shared cache hands one
partner's response to someone without a key.

**Rate limits**: token buckets (:mod:`federation.server.ratelimit`) per partner (its own rate, or the node's
``partner_rate_per_minute``) and per client address for anonymous readers
(``anonymous_rate_per_minute``); a request over the limit is a 429 problem with ``Retry-After``. The
operator's own requests (its bearer token) are not limited.

**CORS**: browser partners get ``Access-Control-Allow-Origin: *`` on every partner route and an answer to
the preflight (``OPTIONS`` with ``Access-Control-Request-Method``) allowing the methods and headers the
route needs. No cookies are involved, so ``*`` is safe.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from federation.server.ratelimit import RateLimiter
from federation.server.times import Clock, utcnow
from federation.server.web import Problem, problem_response
from node.store.partners import PartnerKeyRow
from node.store.records import NodeStore

KEY_PREFIX = "ipdn_pk_"
SCOPES = frozenset({"read", "webhooks"})
_KEY_RE = re.compile(r"ipdn_pk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}")
# Where partners read (GET/HEAD): the record API, the feeds, OAI-PMH, the portal's pages (node/partners/portal.py).
READ_PREFIXES = ("/api/v1/records", "/api/v1/feeds/", "/oai", "/events", "/members")
READ_PATHS = frozenset({"/", "/sitemap.xml", "/robots.txt", "/portal.css",
                        "/catalog", "/catalog.jsonld", "/catalog.ttl", "/catalog.rdf"})  # node/partners/dcat.py
WEBHOOKS_PREFIX = "/api/v1/webhooks"
WEBHOOKS_KEY_PATH = WEBHOOKS_PREFIX + "/signing-key"  # the one webhook route anyone may read
TOUCH_EVERY = 60.0  # seconds between writes of a key's last use
REALM = 'Bearer realm="ipdn-node partners"'
CORS_ALLOW_HEADERS = "Authorization, Content-Type, If-None-Match, If-Modified-Since, Accept, Accept-Language"
CORS_EXPOSE_HEADERS = "ETag, Retry-After, Link, Location"


@dataclass(frozen=True)
class Partner:
    name: str
    scopes: frozenset[str]
    key_id: str


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise ValueError("a partner name is 1-100 letters, digits, spaces and . _ @ -, starting with a letter or digit")
    return name


def parse_scopes(text: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in text.replace(",", " ").split() if s.strip())
    if not scopes or not scopes <= SCOPES:
        raise ValueError(f"scopes are one or more of {', '.join(sorted(SCOPES))}")
    return scopes


def new_key(name: str, scopes: frozenset[str], rate_per_minute: int | None, now: datetime) -> tuple[str, PartnerKeyRow]:
    """A fresh key (shown once) and the row that stores its digest."""
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    return key, PartnerKeyRow(key_id, check_name(name), key_digest(key), scopes, rate_per_minute, now, None, None)


def _is_read(path: str) -> bool:
    return path.startswith(READ_PREFIXES) or path in READ_PATHS


@dataclass
class PartnerAccess:
    store: NodeStore
    public_read: bool
    partner_rate_per_minute: int
    anonymous_rate_per_minute: int
    clock: Callable[[], float] = time.monotonic  # paces the rate limits and the last-used writes
    wall_clock: Clock = utcnow  # dates the last use
    _limiters: dict[int, RateLimiter] = field(default_factory=dict, repr=False)
    _touched: dict[str, float] = field(default_factory=dict, repr=False)

    async def authenticate(self, key: str) -> Partner:
        """The partner holding ``key``; 401 for a malformed, unknown or revoked key."""
        m = _KEY_RE.fullmatch(key)
        row = await self.store.partners.key(m.group(1)) if m else None
        if row is None or not hmac.compare_digest(row.key_hash, key_digest(key)):
            raise Problem(401, "partner-key-invalid", "the partner key is not one this node issued",
                          headers={"WWW-Authenticate": REALM + ', error="invalid_token"'})
        if row.revoked_at is not None:
            raise Problem(401, "partner-key-revoked", "the partner key was revoked by the node's operator",
                          headers={"WWW-Authenticate": REALM + ', error="invalid_token"'})
        now = self.clock()
        if now - self._touched.get(row.key_id, -TOUCH_EVERY) >= TOUCH_EVERY:
            self._touched[row.key_id] = now
            await self.store.partners.touch(row.key_id, self.wall_clock())
        self._limit(f"partner:{row.name}", row.rate_per_minute or self.partner_rate_per_minute)
        return Partner(row.name, row.scopes, row.key_id)

    def limit_anonymous(self, address: str) -> None:
        self._limit(f"addr:{address}", self.anonymous_rate_per_minute)

    def _limit(self, who: str, per_minute: int) -> None:
        limiter = self._limiters.get(per_minute)
        if limiter is None:
            # A burst of a tenth of a minute's allowance lets a harvester fetch a few pages at once.
            limiter = self._limiters[per_minute] = RateLimiter(rate=per_minute / 60, burst=max(1, per_minute / 10))
        if wait := limiter.take(who, self.clock()):
            raise Problem(429, "rate-limited", f"over {per_minute} requests a minute; retry after the given delay",
                          headers={"Retry-After": RateLimiter.retry_after(wait)})


ACCESS = web.AppKey("partner_access", PartnerAccess)
# Set on every partner route: None when no key was given.
PARTNER: web.RequestKey[Partner | None] = web.RequestKey("partner")


def presented_key(request: web.Request) -> str | None:
    """The partner key the request carries (bearer, or ``key`` on a GET), if any. Operator tokens are
    bearer tokens too; they do not start with the partner prefix and are not this module's business."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip().startswith(KEY_PREFIX):
        return token.strip()
    if request.method in ("GET", "HEAD") and "key" in request.query:
        return request.query["key"]
    return None


def require_scope(request: web.Request, scope: str) -> Partner:
    """The authenticated partner, if it holds ``scope``; else a 401 (no key) or 403 (key without it)."""
    partner: Partner | None = request.get(PARTNER, None)
    if partner is None:
        raise Problem(401, "partner-key-required", f"this needs a partner key with the {scope!r} scope "
                      "(Authorization: Bearer ipdn_pk_...)", headers={"WWW-Authenticate": REALM})
    if scope not in partner.scopes:
        raise Problem(403, "partner-scope-missing", f"the partner key lacks the {scope!r} scope")
    return partner


def _preflight(request: web.Request) -> web.Response:
    methods = "GET, HEAD, OPTIONS" if _is_read(request.path) else "GET, POST, PUT, DELETE, OPTIONS"
    return web.Response(status=204, headers={
        "Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS, "Access-Control-Max-Age": "86400"})


@web.middleware
async def partner_middleware(request: web.Request,
                             handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    path = request.path
    # OAI-PMH also reads by POST; elsewhere under the read prefixes POST, PUT and DELETE are the operator's.
    read = _is_read(path) and (request.method in ("GET", "HEAD", "OPTIONS") or path == "/oai")
    if not (read or path.startswith(WEBHOOKS_PREFIX)):
        return await handler(request)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return _preflight(request)
    access = request.app[ACCESS]
    try:
        key = presented_key(request)
        # Who first, then how fast: a wrong key is a 401 (authenticate limits a valid key's rate), and so is no
        # key where one is needed; only a request that may be anonymous counts against the address's limit, so
        # a 429 never hides the 401 that says what is missing (PROTOCOL.md §9.1).
        partner = await access.authenticate(key) if key is not None else None
        request[PARTNER] = partner
        if read and not access.public_read:
            require_scope(request, "read")
        elif partner is None and not read and path != WEBHOOKS_KEY_PATH:
            require_scope(request, "webhooks")
        if partner is None:
            access.limit_anonymous(request.remote or "unknown")
    except Problem as p:  # this middleware sits outside problems_middleware, so the refusal gets CORS too
        response: web.StreamResponse = problem_response(p.status, p.reason, p.detail, **p.extra)
        response.headers.update(p.headers)
    else:
        response = await handler(request)
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
    if read and not access.public_read and response.status < 400:
        response.headers["Cache-Control"] = response.headers.get("Cache-Control", "private").replace("public",
                                                                                                   "private")
        response.headers["Vary"] = "Authorization"
    return response
