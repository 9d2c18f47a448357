"""The one sign-in flow of every operator and staff page: the hub's dashboard (operators, by password), the
node's status page (its operator, by the operator token) and the node's authoring pages (staff, by password).

A page makes one :class:`SignIn`, saying what differs: how an account is found and its secret checked
(:class:`PasswordAccounts`, :class:`TokenAccount`), its URLs, how its form is drawn, and where to go after.
Everything else is the same for all three, so it cannot drift apart:

- the sign-in form carries a pre-session anti-forgery token (csrf.py: double-submit cookie and ``Origin``);
  every later form carries the session's token (``require_form``);
- one brute-force limit (:class:`SignInThrottle`, throttle.py), checked before the secret: per client address
  (password spraying), per account from one address (guessing), and per account from everywhere, which only
  slows, so that no one can lock a person out by failing on purpose (docs/adr/0018);
- secrets are compared in constant time, and an unknown or disabled account costs the same work as a
  wrong password (passwords.py), on a bounded pool off the event loop: when it is full, a sign-in is refused
  at once (503, ``Retry-After``) rather than queued;
- an account with a second factor (totp.py) also needs its current one-time code, once only; a wrong code is
  answered as a wrong password (the answer does not tell that the password was right) and counts the same;
- the session cookie follows the one cookie policy (sessions.py) and names the account, which must still
  exist and be enabled on every request (disabling an account ends its sessions);
- signing out ends that session for good, not only in the browser that asked (a copied cookie is refused
  too, until the process restarts);
- sign-ins, failures, locked attempts and sign-outs are logged (``<event_prefix>-sign-in``, ...), never with the
  secret, and handed to the page's own trail when it keeps one; throttled attempts only to the log, counted per
  address, one line a minute: they are answered before the request's body is read, at the least cost.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from aiohttp import web
from multidict import MultiDictProxy

from federation.server.ratelimit import RateLimiter
from federation.server.ui.csrf import check_csrf, check_form_token, issue_form_token, new_form_token
from federation.server.ui.i18n import LANG_COOKIE
from federation.server.ui.passwords import PasswordCheckBusy, password_matches
from federation.server.ui.sessions import Session, SessionCodec, clear_cookie, set_cookie
from federation.server.ui.throttle import SignInThrottle, address_key
from federation.server.ui.totp import matching_step
from federation.server.web import Problem, client_address, problem_response

MAX_NAME = 64  # account names are at most this long; longer input is cut, not looked up
THROTTLED_LOG_EVERY = 60.0  # seconds: a throttled address is logged at most this often, with a count
KEPT_PAGES = 32  # sign-in pages kept rendered (per language, notice and wait)
_PLACEHOLDER = "form-token-" + secrets.token_hex(16)  # where a kept page's token goes

A = TypeVar("A")


# -- who signs in ----------------------------------------------------------------------------------------------


class Accounts(Protocol[A]):
    """Who may sign in to a page, and how the secret they give is checked."""

    def credentials(self, form: Mapping[str, Any]) -> tuple[str, str]:
        """(account name, secret) from the sign-in form."""
        ...

    async def find(self, request: web.Request, name: str) -> A | None:
        """The enabled account of that name, else None."""
        ...

    async def verify(self, account: A | None, secret: str) -> bool:
        """Whether ``secret`` opens ``account``: constant time, and the same work when ``account`` is None."""
        ...

    @property
    def second_factor(self) -> bool:
        """Whether accounts may have a one-time code besides the secret (the form then offers its field)."""
        ...

    def totp_secret(self, account: A) -> str | None:
        """The account's one-time code secret, if it enrolled one."""
        ...

    async def use_totp_step(self, request: web.Request, account: A, step: int) -> bool:
        """Record that ``account`` signed in with the code of ``step``: False (nothing recorded) when it has
        used that step or a later one already. Atomic: two sign-ins with one code cannot both succeed."""
        ...


@dataclass(frozen=True)
class PasswordAccounts(Generic[A]):
    """Named accounts with an scrypt password: the hub's operators, a node's staff."""

    lookup: Callable[[web.Request, str], Awaitable[A | None]]  # the enabled account of a name, else None
    password_hash: Callable[[A], str]
    name_field: str = "name"
    fold_case: bool = False  # names are lower case (staff user names)
    totp: Callable[[A], str | None] | None = None  # an account's one-time code secret; None: no second factor
    use_step: Callable[[web.Request, A, int], Awaitable[bool]] | None = None  # see Accounts.use_totp_step

    def credentials(self, form: Mapping[str, Any]) -> tuple[str, str]:
        name = str(form.get(self.name_field, ""))[:MAX_NAME].strip()
        return (name.lower() if self.fold_case else name), str(form.get("password", ""))

    async def find(self, request: web.Request, name: str) -> A | None:
        return await self.lookup(request, name) if name else None

    async def verify(self, account: A | None, secret: str) -> bool:
        return await password_matches(secret, None if account is None else self.password_hash(account))

    @property
    def second_factor(self) -> bool:
        return self.totp is not None

    def totp_secret(self, account: A) -> str | None:
        return None if self.totp is None else self.totp(account)

    async def use_totp_step(self, request: web.Request, account: A, step: int) -> bool:
        return self.use_step is not None and await self.use_step(request, account, step)


@dataclass(frozen=True)
class TokenAccount:
    """One account, ``subject``, opened by a bearer token known only by its SHA-256 (the node's operator)."""

    subject: str
    token_sha256: str = field(repr=False)  # hex

    def credentials(self, form: Mapping[str, Any]) -> tuple[str, str]:
        return self.subject, str(form.get("token", "")).strip()

    async def find(self, request: web.Request, name: str) -> str | None:
        return name if name == self.subject else None

    async def verify(self, account: str | None, secret: str) -> bool:
        given = hashlib.sha256(secret.encode()).hexdigest()
        return hmac.compare_digest(given, self.token_sha256) and account is not None

    second_factor = False  # the token is a long random secret kept on the node's own disk

    def totp_secret(self, account: str) -> str | None:
        return None

    async def use_totp_step(self, request: web.Request, account: str, step: int) -> bool:
        return False


# -- the flow ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInForm:
    """What the page's sign-in template is given."""

    csrf: str  # the form's ``csrf_token`` field
    next: str  # where to go after (the form's ``next`` field, where the page remembers it)
    error: str | None = None  # "failed" (401), "locked" (429, this account from here), "throttled" (429, too
    # many failures from this address) or "busy" (503, too many sign-ins being checked at once)
    minutes: int = 0  # how long a lock still lasts
    second_factor: bool = False  # offer the one-time code's field


RenderForm = Callable[[web.Request, int, SignInForm], web.Response]
Trail = Callable[[web.Request, str, str, float], Awaitable[None]]  # (request, action, account name, now)


# What a refused sign-in's problem says (the form says it in the reader's language).
_NOT_SIGNED_IN = {"failed": "wrong name, secret or one-time code", "busy": "the server is busy; try again in a moment",
                  "locked": "too many failed sign-ins to this account from this address; try again after "
                            "Retry-After seconds"}


def safe_next(target: str | None, home: str) -> str:
    """``target`` when it is a path among the pages under ``home``, else ``home`` (no open redirect)."""
    if not target:
        return home
    root = home.rstrip("/") + "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target or not (parts.path.startswith(root) or parts.path == home):
        return home
    return target


@dataclass
class SignIn(Generic[A]):
    """Sign-in, sign-out and the session check of one set of pages. Add its routes with :meth:`add_routes`;
    a page handler calls :meth:`require` (or :meth:`require_form` for a POST) first."""

    accounts: Accounts[A]
    codec: SessionCodec
    render_form: RenderForm
    sign_in_url: str  # GET: the form; POST: sign in
    sign_out_url: str  # POST: sign out
    home: str  # where to go after signing in
    cookie: str  # the session cookie
    form_cookie: str  # the sign-in form's anti-forgery cookie
    log: logging.Logger
    event_prefix: str  # log events are "<prefix>-sign-in", "<prefix>-sign-in-failed", ...
    signed_out_url: str = ""  # where sign-out leads; the sign-in form when empty
    remember_next: bool = False  # send a visitor back to the page they asked for (``?next=``) after signing in
    trail: Trail | None = None  # the page's own record of sign-ins, failures, locks and sign-outs
    throttle: SignInThrottle = field(default_factory=SignInThrottle)
    clock: Callable[[], float] = time.time  # the app's clock (seconds): one-time codes and locks follow it
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # how the throttle's slowing waits
    # The tokens of signed-out sessions, with their expiry: such a cookie opens nothing, even a copy of it.
    _ended: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    # Per throttled address (its key): when it was last logged, and the attempts refused since.
    _refused: dict[str, tuple[float, int]] = field(default_factory=dict, init=False, repr=False)
    _pages: dict[tuple[int, str | None, int, str | None, str | None], tuple[bytes, bytes, str, dict[str, str]]] = field(
        default_factory=dict, init=False, repr=False)  # see _kept_page

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(self.sign_in_url, self.form_page)
        router.add_post(self.sign_in_url, self.sign_in)
        router.add_post(self.sign_out_url, self.sign_out)

    # -- the session -------------------------------------------------------------------------------------------

    async def current(self, request: web.Request) -> tuple[A, Session] | None:
        """The account and session of the request's cookie, if it is valid, not signed out, and names an
        account that exists and is enabled."""
        session = self.codec.open(request.cookies.get(self.cookie), self.clock())
        if session is None or session.csrf in self._ended:
            return None
        account = await self.accounts.find(request, session.subject)
        return None if account is None else (account, session)

    async def require(self, request: web.Request) -> tuple[A, Session]:
        """The account and session, else: a page (GET) is sent to sign in; anything else (a form, the event
        stream, which cannot follow a redirect) is a 401 problem."""
        found = await self.current(request)
        if found is not None:
            return found
        if request.method in ("GET", "HEAD") and "text/event-stream" not in request.headers.get("Accept", ""):
            raise web.HTTPSeeOther(self.sign_in_url + (
                f"?next={quote(request.path_qs, safe='')}" if self.remember_next else ""))
        raise Problem(401, "sign-in-required", "sign in first")

    async def require_form(self, request: web.Request) -> tuple[A, Session, MultiDictProxy[Any]]:
        """A signed-in POST with its form, its anti-forgery token checked."""
        account, session = await self.require(request)
        form = await request.post()
        check_csrf(request, session, form)
        return account, session, form

    # -- the handlers ------------------------------------------------------------------------------------------

    async def form_page(self, request: web.Request) -> web.StreamResponse:
        target = self._next(request.query.get("next"))
        if await self.current(request) is not None:
            raise web.HTTPSeeOther(target)
        return self._form(request, 200, target)

    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        address = client_address(request)
        now = self.clock()
        # A throttled address is answered from the headers alone, as cheaply as can be: its body is never read
        # (aiohttp discards it), the page is one rendered before, the log gets a count (docs/adr/0018).
        if (wait := self.throttle.address_wait(address, now)) > 0:
            return self._throttled(request, address, wait, now)
        form = await request.post()
        check_form_token(request, self.form_cookie, form)
        name, secret = self.accounts.credentials(form)
        target = self._next(str(form.get("next", "")))
        verdict = self.throttle.check(name, address, now)
        if verdict.why == "address":  # reached while the body was read
            return self._throttled(request, address, verdict.refuse_for, now)
        if verdict.refuse_for > 0:  # this account, from this address
            await self._event(request, "sign-in-locked", name or "-", now)
            minutes = max(1, round(verdict.refuse_for / 60))
            return self._form(request, 429, target, "locked", minutes, retry_after=verdict.refuse_for)
        try:
            with self.throttle.checking(address):
                if verdict.slow_by > 0:
                    await self.sleep(verdict.slow_by)
                failure = await self._check(request, name, secret, str(form.get("code", "")), now)
        except PasswordCheckBusy:
            await self._event(request, "sign-in-busy", name or "-", now, trail=False)
            return self._form(request, 503, target, "busy", retry_after=1)
        if failure is not None:
            self.throttle.failed(name, address, now)
            await self._event(request, failure, name or "-", now)
            return self._form(request, 401, target, "failed")
        self.throttle.succeeded(name, address)
        value, _session = self.codec.issue(name, now)
        await self._event(request, "sign-in", name, now)
        resp = web.HTTPSeeOther(target)
        set_cookie(resp, request, self.cookie, value, max_age=self.codec.ttl)
        clear_cookie(resp, request, self.form_cookie)
        raise resp

    async def sign_out(self, request: web.Request) -> web.StreamResponse:
        _account, session, _form = await self.require_form(request)
        now = self.clock()
        self._ended = {t: exp for t, exp in self._ended.items() if exp > now}  # an expired cookie opens nothing
        self._ended[session.csrf] = session.expires
        await self._event(request, "sign-out", session.subject, now)
        resp = web.HTTPSeeOther(self.signed_out_url or self.sign_in_url)
        clear_cookie(resp, request, self.cookie)
        raise resp

    # -- helpers -----------------------------------------------------------------------------------------------

    def _next(self, target: str | None) -> str:
        return safe_next(target, self.home) if self.remember_next else self.home

    async def _check(self, request: web.Request, name: str, secret: str, code: str, now: float) -> str | None:
        """None when the secret (and the one-time code, where the account has enrolled one) opens the account,
        else the event to log: ``sign-in-failed``, or ``sign-in-code-failed`` when only the code was wrong (the
        person's password is known to someone else: operators should hear of it)."""
        account = await self.accounts.find(request, name)
        if not await self.accounts.verify(account, secret) or account is None:  # None costs the same check
            return "sign-in-failed"
        totp = self.accounts.totp_secret(account)
        if totp is None:
            return None
        step = matching_step(totp, code, now)
        if step is None or not await self.accounts.use_totp_step(request, account, step):
            return "sign-in-code-failed"
        return None

    def _form(self, request: web.Request, status: int, target: str, error: str | None = None, minutes: int = 0,
              retry_after: float | None = None) -> web.Response:
        """The sign-in form with a new token (also its cookie): kept rendered (_kept_page) when it leads home and
        the request has no query (``?next=``, ``?lang=``, ``?out=``... may change the page), else rendered. A refusal
        to a client that does not ask for a page (no ``text/html`` in Accept: a script) is a problem, as
        :meth:`_throttled` answers it."""
        if status >= 400 and "text/html" not in request.headers.get("Accept", ""):
            resp = problem_response(status, f"sign-in-{error}", _NOT_SIGNED_IN.get(error or "", "not signed in"))
            if retry_after is not None:
                resp.headers["Retry-After"] = RateLimiter.retry_after(retry_after)
            return resp
        token = new_form_token()
        if target == self.home and not request.query_string:
            resp = self._kept_page(request, status, error, minutes, token)
        else:
            resp = self._render(request, status, target, error, minutes, token)
        issue_form_token(resp, request, self.form_cookie, token)
        if retry_after is not None:
            resp.headers["Retry-After"] = RateLimiter.retry_after(retry_after)
        return resp

    def _throttled(self, request: web.Request, address: str, wait: float, now: float) -> web.Response:
        """429 for an address past its budget: a problem for a client that does not ask for a page, else the
        form with the "throttled" notice, rendered once per language and kept (only the form's token is new).
        Logged once a minute per address, with the count of attempts refused since the last line (one a
        request would let a spray fill the log); not in the page's trail, which it would fill too."""
        key = address_key(address)
        last, unlogged = self._refused.pop(key, (float("-inf"), 0))
        unlogged += 1
        if now - last >= THROTTLED_LOG_EVERY:
            event = f"{self.event_prefix}-sign-in-throttled"
            self.log.warning("%s: %d attempts from %s", event, unlogged, address, extra={"fields": {
                "event": event, "account": "-", "remote": address, "attempts": unlogged}})
            last, unlogged = now, 0
        self._refused[key] = (last, unlogged)  # last: the dict's order is least recently refused first
        while len(self._refused) > self.throttle.max_keys:
            del self._refused[next(iter(self._refused))]
        if "text/html" in request.headers.get("Accept", ""):
            return self._form(request, 429, self.home, "throttled", max(1, round(wait / 60)), retry_after=wait)
        resp = problem_response(429, "sign-in-throttled", "too many failed sign-ins from this address; "
                                "try again after Retry-After seconds")
        resp.headers["Retry-After"] = RateLimiter.retry_after(wait)
        return resp

    def _render(self, request: web.Request, status: int, target: str, error: str | None, minutes: int,
                token: str) -> web.Response:
        return self.render_form(request, status, SignInForm(token, target, error, minutes, self.accounts.second_factor))

    def _kept_page(self, request: web.Request, status: int, error: str | None, minutes: int,
                   token: str) -> web.Response:
        """The sign-in form leading home, with ``token``, from a rendering kept per status, notice and what a
        page's language follows without a query (the ``lang`` cookie, ``Accept-Language``): a flood of sign-ins
        costs no template rendering. Rendered each time when the page sets a cookie. At most KEPT_PAGES are kept;
        a template changed meanwhile shows after a restart."""
        key = (status, error, minutes, request.cookies.get(LANG_COOKIE), request.headers.get("Accept-Language"))
        kept = self._pages.get(key)
        if kept is None:
            resp = self._render(request, status, self.home, error, minutes, _PLACEHOLDER)
            parts = resp.text.split(_PLACEHOLDER) if resp.text is not None else []
            if len(parts) != 2 or resp.cookies:
                return self._render(request, status, self.home, error, minutes, token)
            headers = {k: v for k, v in resp.headers.items() if k not in ("Content-Type", "Content-Length")}
            kept = (parts[0].encode(), parts[1].encode(), resp.content_type, headers)
            if len(self._pages) >= KEPT_PAGES:
                del self._pages[next(iter(self._pages))]
            self._pages[key] = kept
        head, tail, content_type, headers = kept
        return web.Response(status=status, body=head + token.encode() + tail, content_type=content_type,
                            charset="utf-8", headers=headers)

    async def _event(self, request: web.Request, action: str, name: str, now: float, *, trail: bool = True) -> None:
        event = f"{self.event_prefix}-{action}"
        level = logging.INFO if action in ("sign-in", "sign-out") else logging.WARNING
        self.log.log(level, "%s: %s", event, name, extra={"fields": {
            "event": event, "account": name, "remote": client_address(request)}})
        if trail and self.trail is not None:
            await self.trail(request, action, name, now)
