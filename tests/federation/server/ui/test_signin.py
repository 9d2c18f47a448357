"""The one sign-in flow of every operator and staff page (federation/server/ui/signin.py) and its parts: scrypt
passwords, signed session cookies, the CSRF defence and the sign-in lock. Each test is named after the attack it
stops; the flow's tests run it over HTTP in a small app of its own, as the dashboard, the status page and the
authoring pages use it (their own test modules check that they do)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request

from federation.protocol.errors import ConfigError
from federation.server.ui import passwords
from federation.server.ui.csrf import check_csrf
from federation.server.ui.passwords import hash_password, password_matches, verify_password
from federation.server.ui.sessions import SessionCodec, is_tls, set_cookie
from federation.server.ui.signin import (
    PasswordAccounts,
    SignIn,
    SignInForm,
    TokenAccount,
    safe_next,
)
from federation.server.ui.throttle import SignInThrottle, Verdict, address_key
from federation.server.ui.totp import STEP, code_at, matching_step, new_secret, provisioning_uri
from federation.server.web import TRUSTED_PROXIES, Problem, TrustedProxies, problems_middleware

FAST = {"n": 2**10, "r": 8, "p": 1}  # the production cost is for stored accounts, not for tests
PASSWORD = "correct horse battery"
TOKEN = "the-node-operator-token"


# -- passwords -------------------------------------------------------------------------------------------------


def test_password_hash_verifies_only_the_right_password_and_carries_parameters() -> None:
    encoded = hash_password("correct horse", **FAST)
    assert encoded.startswith("scrypt$1024$8$1$") and "correct horse" not in encoded
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct hors", encoded)
    assert hash_password("correct horse", **FAST) != encoded  # salted


def test_default_password_cost_is_memory_hard() -> None:
    assert hash_password("x").split("$")[1:4] == ["32768", "8", "1"]


@pytest.mark.parametrize("garbage", ["", "plain", "bcrypt$1$2$3$4$5", "scrypt$x$8$1$AA$AA", "scrypt$1024$8$1$A$!"])
def test_malformed_stored_hash_never_verifies(garbage: str) -> None:
    assert not verify_password("anything", garbage)


async def test_account_probing_by_timing_meets_the_same_password_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown (or disabled) account is checked against a dummy hash: the same scrypt work as a wrong
    password, and never a match, whatever the password."""
    checked: list[str] = []
    real = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password", lambda pw, enc: checked.append(enc) or real(pw, enc))
    assert not await password_matches(PASSWORD, None)
    assert len(checked) == 1 and checked[0].startswith("scrypt$32768$8$1$")  # the cost of a real account
    assert await password_matches(PASSWORD, hash_password(PASSWORD, **FAST))


# -- sessions and CSRF -----------------------------------------------------------------------------------------


def test_session_round_trip_and_expiry() -> None:
    codec = SessionCodec(b"k" * 32, ttl=60)
    value, session = codec.issue("amal", now=1000.0)
    assert codec.open(value, now=1059.0) == session
    assert codec.open(value, now=1061.0) is None


def test_forged_session_cookie_is_refused() -> None:
    codec = SessionCodec(b"k" * 32)
    value, _ = codec.issue("staff", now=0.0)
    claims, mac = value.split(".")
    forged = json.dumps({"sub": "admin", "csrf": "x", "exp": 1e12}).encode()
    forged_claims = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    assert codec.open(f"{forged_claims}.{mac}", now=1.0) is None
    assert SessionCodec(b"other" * 8).open(value, now=1.0) is None
    for junk in (None, "", "a.b.c", "nodot", f"{claims}.AAAA"):
        assert codec.open(junk, now=1.0) is None


def _request(headers: dict[str, str], path: str = "/x") -> Any:
    return make_mocked_request("POST", path, headers={"Host": "node.example", **headers})


def test_cross_site_request_forgery_without_token_is_refused() -> None:
    _, session = SessionCodec(b"k" * 32).issue("s", now=0.0)
    with pytest.raises(Problem) as e:
        check_csrf(_request({}), session, {})
    assert e.value.status == 403
    with pytest.raises(Problem):
        check_csrf(_request({}), session, {"csrf_token": "wrong"})
    check_csrf(_request({}), session, {"csrf_token": session.csrf})
    check_csrf(_request({"X-CSRF-Token": session.csrf}), session)


def test_cross_site_request_forgery_from_other_origin_is_refused_even_with_token() -> None:
    _, session = SessionCodec(b"k" * 32).issue("s", now=0.0)
    for origin in ("https://evil.example", "null", "http://node.example.evil.example"):
        with pytest.raises(Problem):
            check_csrf(_request({"Origin": origin}), session, {"csrf_token": session.csrf})
    check_csrf(_request({"Origin": "http://node.example"}), session, {"csrf_token": session.csrf})


def _forwarded(app: web.Application, peer: str) -> Any:
    """A plain-HTTP POST from ``peer`` claiming, in X-Forwarded-Proto, that the client's connection was TLS."""
    return make_mocked_request("POST", "/x", app=app, headers={
        "Host": "node.example", "X-Forwarded-Proto": "https", "Origin": "https://node.example"}).clone(remote=peer)


def test_forwarded_proto_from_untrusted_client_ignored() -> None:
    """Anyone may send X-Forwarded-Proto: from a peer not in trusted_proxies (none by default) it does not make
    the connection TLS, so no Secure cookie is promised over plain HTTP and the CSRF check takes no https Origin."""
    _, session = SessionCodec(b"k" * 32).issue("s", now=0.0)
    for proxies in ("", "10.0.0.0/8, ::1"):
        app = web.Application()
        app[TRUSTED_PROXIES] = TrustedProxies.parse(proxies)
        request = _forwarded(app, "127.0.0.1")
        assert not is_tls(request)
        with pytest.raises(Problem):
            check_csrf(request, session, {"csrf_token": session.csrf})
        response = web.Response()
        set_cookie(response, request, "c", "v")
        assert not response.cookies["c"]["secure"]
    assert not is_tls(_request({"X-Forwarded-Proto": "https"}))  # an app without the setting trusts no one


def test_forwarded_proto_from_trusted_proxy_honoured() -> None:
    """From a peer in trusted_proxies (an address or a CIDR block), X-Forwarded-Proto: https is believed."""
    _, session = SessionCodec(b"k" * 32).issue("s", now=0.0)
    for proxies in ("127.0.0.1", "10.0.0.0/8, 127.0.0.0/8"):
        app = web.Application()
        app[TRUSTED_PROXIES] = TrustedProxies.parse(proxies)
        request = _forwarded(app, "127.0.0.1")
        assert is_tls(request)
        check_csrf(request, session, {"csrf_token": session.csrf})
        response = web.Response()
        set_cookie(response, request, "c", "v")
        assert response.cookies["c"]["secure"]
    with pytest.raises(ConfigError):
        TrustedProxies.parse("proxy.example")


# -- the sign-in lock ------------------------------------------------------------------------------------------


def test_password_guessing_locks_the_account_from_that_address_then_success_unlocks() -> None:
    t = SignInThrottle(max_failures=3, window=60, lock_for=300)
    for i in range(2):
        t.failed("amal", "192.0.2.1", now=float(i))
    assert t.check("amal", "192.0.2.1", now=2.0) == Verdict()
    t.failed("amal", "192.0.2.1", now=2.0)
    assert t.check("amal", "192.0.2.1", now=3.0) == Verdict(299.0, "account")
    assert t.check("other", "192.0.2.1", now=3.0) == Verdict()
    assert t.check("amal", "198.51.100.7", now=3.0) == Verdict()  # the person, elsewhere, is not locked out
    assert t.check("amal", "192.0.2.1", now=303.0) == Verdict()
    t.succeeded("amal", "192.0.2.1")
    assert t.check("amal", "192.0.2.1", now=3.0) == Verdict()


def test_failures_outside_the_window_do_not_count() -> None:
    t = SignInThrottle(max_failures=2, window=10, lock_for=100)
    t.failed("a", "192.0.2.1", now=0.0)
    t.failed("a", "192.0.2.1", now=20.0)
    assert t.check("a", "192.0.2.1", now=21.0) == Verdict()


def test_password_spraying_throttled_per_address() -> None:
    """A new name at each try never trips a per-account limit: the address's own failures do."""
    t = SignInThrottle(address_failures=10, window=600)
    for i in range(10):
        assert t.check(f"user{i}", "192.0.2.66", now=float(i)).refuse_for == 0
        t.failed(f"user{i}", "192.0.2.66", now=float(i))
    verdict = t.check("user10", "192.0.2.66", now=10.0)
    assert verdict.why == "address" and 0 < verdict.refuse_for <= 60  # one more try per window/10
    assert t.check("user10", "198.51.100.7", now=10.0) == Verdict()  # another address is not concerned
    assert t.check("user10", "192.0.2.66", now=70.0) == Verdict()  # the budget refills


def test_ipv6_sprayer_cannot_dodge_the_address_limit_by_moving_within_its_block() -> None:
    t = SignInThrottle(address_failures=3, window=600)
    for i in range(3):
        t.failed(f"u{i}", f"2001:db8:1:2::{i + 1}", now=0.0)
    assert t.check("u9", "2001:db8:1:2:ffff::9", now=0.0).why == "address"
    assert t.check("u9", "2001:db8:1:3::1", now=0.0) == Verdict()
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"


def test_one_client_cannot_hold_every_place_of_the_password_pool() -> None:
    """Many connections from one address: two of its sign-ins are checked at once, the others refused at once."""
    t = SignInThrottle(max_pending=2)
    with t.checking("192.0.2.66"), t.checking("192.0.2.66"):
        assert t.check("x", "192.0.2.66", now=0.0) == Verdict(1.0, "address")
        assert t.check("x", "198.51.100.7", now=0.0) == Verdict()
    assert t.check("x", "192.0.2.66", now=0.0) == Verdict() and t._pending == {}


def test_distributed_guessing_of_one_account_is_slowed_never_locked() -> None:
    t = SignInThrottle(max_failures=5, account_failures=20, window=600, slow_by=2.0)
    for i in range(20):
        t.failed("amal", f"203.0.113.{i}", now=0.0)  # one failure from each of 20 addresses
    assert t.check("amal", "198.51.100.7", now=0.0) == Verdict(slow_by=2.0)
    assert t.check("omar", "198.51.100.7", now=0.0) == Verdict()


def test_name_cycling_attacker_cannot_grow_the_throttle_without_bound() -> None:
    t = SignInThrottle(max_failures=2, max_keys=100)
    for i in range(5_000):
        t.failed(f"user{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", now=float(i))
        t.failed(f"user{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", now=float(i))  # locked
    assert len(t._locked) <= 100 and len(t._failures) <= 100
    assert len(t._addresses._buckets) <= 100 and len(t._accounts._buckets) <= 100


@pytest.mark.parametrize(("target", "expected"), [
    (None, "/p/"), ("/p/drafts/1?x=1", "/p/drafts/1?x=1"), ("https://evil.example/p/", "/p/"),
    ("//evil.example/p/", "/p/"), ("/p\\..\\evil", "/p/"), ("/other/", "/p/"), ("/p", "/p/"),
    ("javascript:alert(1)", "/p/"),
])
def test_open_redirect_after_sign_in_refused(target: str | None, expected: str) -> None:
    assert safe_next(target, "/p/") == expected


# -- the flow over HTTP ------------------------------------------------------------------------------------------


@dataclass
class User:
    name: str
    password_hash: str
    disabled: bool = False
    totp: str | None = None
    last_step: int | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


USERS = web.AppKey("users", dict)
FLOW = web.AppKey("flow", SignIn)
TRAIL = web.AppKey("trail", list)
log = logging.getLogger("ipdn.test.signin")


async def _lookup(request: web.Request, name: str) -> User | None:
    user = request.app[USERS].get(name)
    return user if user is not None and not user.disabled else None


def _form(request: web.Request, status: int, form: SignInForm) -> web.Response:
    error = f'<p role="alert">{form.error} {form.minutes}</p>' if form.error else ""
    return web.Response(status=status, content_type="text/html", text=(
        f'{error}<form method="post"><input type="hidden" name="csrf_token" value="{form.csrf}">'
        f'<input type="hidden" name="next" value="{form.next}"></form>'))


async def _page(request: web.Request) -> web.Response:
    user, session = await request.app[FLOW].require(request)
    return web.Response(text=f'{getattr(user, "name", user)} <input name="csrf_token" value="{session.csrf}">')


async def _change(request: web.Request) -> web.Response:
    user, _session, form = await request.app[FLOW].require_form(request)
    return web.Response(text=f"changed by {user.name}: {form.get('what')}")


async def _use_step(request: web.Request, user: User, step: int) -> bool:
    if user.last_step is not None and step <= user.last_step:
        return False
    user.last_step = step
    return True


TOTP_ACCOUNTS = PasswordAccounts(_lookup, lambda u: u.password_hash, fold_case=True, totp=lambda u: u.totp,
                                 use_step=_use_step)


def make_app(clock: Clock, *, accounts: Any = None, remember_next: bool = True,
             trusted_proxies: str = "", throttle: SignInThrottle | None = None,
             sleeps: list[float] | None = None) -> web.Application:
    app = web.Application(middlewares=[problems_middleware])
    app[TRUSTED_PROXIES] = TrustedProxies.parse(trusted_proxies)
    app[USERS] = {"amal": User("amal", hash_password(PASSWORD, **FAST)),
                  "omar": User("omar", hash_password(PASSWORD, **FAST))}
    app[TRAIL] = []

    async def trail(request: web.Request, action: str, name: str, now: float) -> None:
        request.app[TRAIL].append((action, name, now))

    flow: SignIn[Any] = SignIn(
        accounts or PasswordAccounts(_lookup, lambda u: u.password_hash, fold_case=True),
        SessionCodec(b"s" * 32, ttl=3600), _form, sign_in_url="/p/sign-in", sign_out_url="/p/sign-out", home="/p/",
        cookie="p_session", form_cookie="p_form", log=log, event_prefix="test", remember_next=remember_next,
        trail=trail, throttle=throttle or SignInThrottle(max_failures=3, window=600, lock_for=900), clock=clock)

    async def sleep(seconds: float) -> None:  # the throttle's slowing, seen and not waited through
        (sleeps if sleeps is not None else []).append(seconds)

    flow.sleep = sleep
    app[FLOW] = flow
    flow.add_routes(app.router)
    app.router.add_get("/p/", _page)
    app.router.add_get("/p/events", _page)
    app.router.add_post("/p/change", _change)
    return app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(aiohttp_client: Any, clock: Clock) -> TestClient:
    return await aiohttp_client(make_app(clock))


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


async def sign_in(client: TestClient, name: str = "amal", password: str = PASSWORD, code: str | None = None,
                  **headers: str) -> Any:
    token = csrf_of(await (await client.get("/p/sign-in")).text())
    data = {"name": name, "password": password, "csrf_token": token, **({"code": code} if code is not None else {})}
    # A browser: its Accept names text/html, so a refusal is the form again (a script gets a problem).
    return await client.post("/p/sign-in", data=data, headers={"Accept": "text/html,*/*;q=0.8", **headers},
                             allow_redirects=False)


async def session_token(client: TestClient) -> str:
    assert (await sign_in(client)).status == 303
    return csrf_of(await (await client.get("/p/")).text())


class TestSignIn:
    async def test_script_signing_in_wrongly_gets_a_problem_a_browser_the_form(self, client: TestClient) -> None:
        """What the OpenAPI documents say: the form for a browser, RFC 9457 problems for anything else."""
        r = await sign_in(client, password="a guess", Accept="application/json")
        assert r.status == 401 and r.content_type == "application/problem+json"
        assert (await r.json())["reason"] == "sign-in-failed"
        r = await sign_in(client, password="a guess")
        assert r.status == 401 and r.content_type == "text/html" and "csrf_token" in await r.text()

    async def test_sign_in_opens_the_pages_and_leads_where_the_visitor_was_going(self, client: TestClient) -> None:
        r = await client.get("/p/?q=1", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/p/sign-in?next=")
        form = await (await client.get(r.headers["Location"])).text()
        assert 'name="next" value="/p/?q=1"' in form
        r = await client.post("/p/sign-in", data={"name": " AMAL ", "password": PASSWORD, "csrf_token": csrf_of(form),
                                                  "next": "/p/?q=1"}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/p/?q=1"
        assert (await (await client.get("/p/")).text()).startswith("amal ")
        r = await client.get("/p/sign-in", allow_redirects=False)  # signed in already: on to the pages
        assert r.status == 303 and r.headers["Location"] == "/p/"
        assert [a for a, _, _ in client.app[TRAIL]] == ["sign-in"]

    async def test_session_cookie_is_httponly_strict_and_secure_behind_tls(self, aiohttp_client: Any,
                                                                          clock: Clock) -> None:
        client = await aiohttp_client(make_app(clock, trusted_proxies="127.0.0.1, ::1"))
        r = await sign_in(client, **{"X-Forwarded-Proto": "https"})
        cookies = r.headers.getall("Set-Cookie")
        session = next(c for c in cookies if c.startswith("p_session="))
        assert "HttpOnly" in session and "SameSite=Strict" in session and "Secure" in session
        assert "Max-Age=3600" in session and "Path=/" in session
        form = next(c for c in cookies if c.startswith("p_form="))
        assert "Max-Age=0" in form  # the sign-in form's token is spent
        plain = next(c for c in (await sign_in(client, "omar")).headers.getall("Set-Cookie")
                     if c.startswith("p_session="))
        assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Secure" not in plain  # plain HTTP here

    async def test_password_guessing_locks_the_account_even_for_the_right_password(self, client: TestClient,
                                                                                   clock: Clock) -> None:
        for _ in range(3):
            assert (await sign_in(client, password="a guess")).status == 401
        r = await sign_in(client)
        assert r.status == 429 and "locked 15" in await r.text()
        assert (await sign_in(client, "omar")).status == 303  # one account's lock is not another's
        clock.now += 15 * 60 + 1
        client.session.cookie_jar.clear()
        assert (await sign_in(client)).status == 303
        actions = [a for a, n, _ in client.app[TRAIL] if n == "amal"]
        assert actions == ["sign-in-failed"] * 3 + ["sign-in-locked", "sign-in"]

    async def test_account_probing_gets_the_same_answer_for_unknown_and_disabled_names(self,
                                                                                       client: TestClient) -> None:
        client.app[USERS]["omar"].disabled = True
        for name in ("mallory", "omar", ""):
            r = await sign_in(client, name)
            assert r.status == 401 and "failed" in await r.text()

    async def test_login_forgery_without_the_form_token_refused(self, client: TestClient) -> None:
        """Login CSRF: another site's page cannot read the form's token nor set its cookie."""
        token = csrf_of(await (await client.get("/p/sign-in")).text())
        for data in ({}, {"csrf_token": "not-the-token"}):
            r = await client.post("/p/sign-in", data={"name": "amal", "password": PASSWORD, **data})
            assert r.status == 403 and (await r.json())["reason"] == "csrf"
        client.session.cookie_jar.clear()  # the token without its cookie
        r = await client.post("/p/sign-in", data={"name": "amal", "password": PASSWORD, "csrf_token": token})
        assert r.status == 403 and (await r.json())["reason"] == "csrf"
        assert client.app[TRAIL] == []  # refused before any password was tried

    async def test_login_forgery_from_another_origin_refused_even_with_the_token(self, client: TestClient) -> None:
        r = await sign_in(client, Origin="https://evil.example")
        assert r.status == 403 and (await r.json())["reason"] == "csrf"

    async def test_cross_site_request_forgery_without_the_session_token_refused(self, client: TestClient) -> None:
        await session_token(client)
        for data in ({"what": "x"}, {"what": "x", "csrf_token": "not-the-token"}):
            r = await client.post("/p/change", data=data)
            assert r.status == 403 and (await r.json())["reason"] == "csrf"

    async def test_cross_origin_post_refused_even_with_the_session_token(self, client: TestClient) -> None:
        token = await session_token(client)
        r = await client.post("/p/change", data={"what": "x", "csrf_token": token},
                              headers={"Origin": "https://evil.example"})
        assert r.status == 403
        r = await client.post("/p/change", data={"what": "x", "csrf_token": token})
        assert r.status == 200 and await r.text() == "changed by amal: x"

    async def test_requests_without_a_session_sent_to_sign_in_or_refused(self, client: TestClient) -> None:
        """A page is sent to sign in; a form post or the event stream (which cannot follow) is a 401 problem."""
        r = await client.post("/p/change", data={"what": "x"})
        assert r.status == 401 and (await r.json())["reason"] == "sign-in-required"
        r = await client.get("/p/events", headers={"Accept": "text/event-stream"})
        assert r.status == 401 and (await r.json())["reason"] == "sign-in-required"
        r = await client.post("/p/sign-out", data={})
        assert r.status == 401

    async def test_forged_or_expired_session_cookie_refused(self, client: TestClient, clock: Clock) -> None:
        client.session.cookie_jar.update_cookies({"p_session": "eyJzdWIiOiJhbWFsIn0.AAAA"})
        assert (await client.get("/p/", allow_redirects=False)).status == 303
        await session_token(client)
        clock.now += 3601
        assert (await client.get("/p/", allow_redirects=False)).status == 303

    async def test_disabled_account_session_refused(self, client: TestClient) -> None:
        """Disabling an account ends its sessions at their next request."""
        token = await session_token(client)
        client.app[USERS]["amal"].disabled = True
        assert (await client.get("/p/", allow_redirects=False)).status == 303
        assert (await client.post("/p/change", data={"csrf_token": token})).status == 401

    async def test_sign_out_ends_the_session_even_for_a_copied_cookie(self, client: TestClient) -> None:
        """Sign-out needs the session's token; then the cookie is gone, and a copy of it (say, stolen before)
        opens nothing either."""
        token = await session_token(client)
        copied = client.session.cookie_jar.filter_cookies(client.make_url("/"))["p_session"].value
        r = await client.post("/p/sign-out", data={}, allow_redirects=False)
        assert r.status == 403
        r = await client.post("/p/sign-out", data={"csrf_token": token}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/p/sign-in"
        assert "p_session" not in client.session.cookie_jar.filter_cookies(client.make_url("/"))
        client.session.cookie_jar.update_cookies({"p_session": copied})
        assert (await client.get("/p/", allow_redirects=False)).status == 303
        assert [a for a, _, _ in client.app[TRAIL]] == ["sign-in", "sign-out"]

    async def test_secrets_never_logged(self, client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, "ipdn.test.signin")
        await sign_in(client, password="a wrong password")
        await sign_in(client)
        records = [r for r in caplog.records if r.name == "ipdn.test.signin"]
        events = [r.__dict__["fields"]["event"] for r in records]
        assert events == ["test-sign-in-failed", "test-sign-in"]
        assert not any(PASSWORD in str(r.__dict__) or "a wrong password" in str(r.__dict__) for r in records)


def at(address: str) -> dict[str, str]:
    """Headers of a request from ``address``, as the trusted proxy in front (127.0.0.1) tells it."""
    return {"X-Forwarded-For": address}


class TestSignInAbuse:
    """Password spraying, lock-out by a stranger, distributed guessing, and saturating the password checks."""

    @pytest.fixture
    def sleeps(self) -> list[float]:
        return []

    @pytest.fixture
    async def client(self, aiohttp_client: Any, clock: Clock, sleeps: list[float]) -> TestClient:
        throttle = SignInThrottle(max_failures=3, window=600, lock_for=900, address_failures=6,
                                  account_failures=8, slow_by=2.0)
        app = make_app(clock, trusted_proxies="127.0.0.1, ::1", throttle=throttle, sleeps=sleeps)
        return await aiohttp_client(app)

    async def test_password_spraying_throttled_per_address(self, client: TestClient, clock: Clock) -> None:
        """A new user name at each try: refused from that address once its failures are spent, with the wait
        in Retry-After, before any password is checked; other addresses still sign in."""
        for i in range(6):
            assert (await sign_in(client, f"user{i}", "Spring2026!", **at("192.0.2.66"))).status == 401
        r = await sign_in(client, "user6", "Spring2026!", **at("192.0.2.66"))
        assert r.status == 429 and "throttled" in await r.text()
        assert 1 <= int(r.headers["Retry-After"]) <= 100  # 600 s / 6 failures: one more try in 100 s
        assert (await sign_in(client, "amal", PASSWORD, **at("192.0.2.66"))).status == 429  # even a right one
        assert (await sign_in(client, "amal", PASSWORD, **at("198.51.100.7"))).status == 303
        client.session.cookie_jar.clear()
        clock.now += 100
        assert (await sign_in(client, "user7", "Spring2026!", **at("192.0.2.66"))).status == 401

    async def spend_budget(self, client: TestClient, address: str = "192.0.2.66") -> None:
        for i in range(6):
            assert (await sign_in(client, f"user{i}", "Spring2026!", **at(address))).status == 401

    async def test_sign_in_flood_from_a_throttled_address_refused_before_its_body_is_read(
            self, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
        """Once an address is throttled its posts are answered from the headers alone: no form parsed (so not
        even a missing form token is looked at), no page rendered for a client that asks for none."""
        await self.spend_budget(client)
        read: list[int] = []
        real_post = web.Request.post
        monkeypatch.setattr(web.Request, "post", lambda request: read.append(1) or real_post(request))
        r = await client.post("/p/sign-in", data={"name": "x" * 60_000}, headers=at("192.0.2.66"))
        assert r.status == 429 and 1 <= int(r.headers["Retry-After"]) <= 100
        assert r.content_type == "application/problem+json" and (await r.json())["reason"] == "sign-in-throttled"
        assert read == []
        r = await client.post("/p/sign-in", data={"name": "x"}, headers=at("198.51.100.7"))
        assert r.status == 403 and read == [1]  # elsewhere the form is read, and its missing token refused

    async def test_sign_in_flood_from_a_browser_gets_a_page_rendered_once(self, client: TestClient) -> None:
        """A browser is shown the form with the notice; the page is rendered once and kept, each answer with a
        form token of its own (also its cookie, so the person can try again once the wait is over)."""
        await self.spend_budget(client)
        flow, renders = client.app[FLOW], []
        render = flow.render_form
        flow.render_form = lambda *args: renders.append(1) or render(*args)
        tokens = []
        for _ in range(3):
            r = await client.post("/p/sign-in", data={}, headers={"Accept": "text/html", **at("192.0.2.66")})
            text = await r.text()
            assert r.status == 429 and r.content_type == "text/html" and "throttled 2" in text  # minutes: 600 s / 6
            tokens.append(csrf_of(text))
            assert client.session.cookie_jar.filter_cookies(client.make_url("/"))["p_form"].value == tokens[-1]
        assert len(set(tokens)) == 3 and renders == [1]

    async def test_sign_in_flood_cannot_fill_the_log(self, client: TestClient, clock: Clock,
                                                     caplog: pytest.LogCaptureFixture) -> None:
        """Throttled attempts are logged once a minute per address, with their count, not once each."""
        await self.spend_budget(client)
        caplog.set_level(logging.INFO, "ipdn.test.signin")
        for _ in range(50):
            assert (await client.post("/p/sign-in", data={}, headers=at("192.0.2.66"))).status == 429
        clock.now += 61
        await self.spend_budget(client, "192.0.2.77")
        for address in ("192.0.2.66", "192.0.2.77"):
            assert (await client.post("/p/sign-in", data={}, headers=at(address))).status == 429
        # Only this app's structured lines (other loggers' records, e.g. the access log, carry no fields).
        lines = [f for f in (getattr(r, "fields", {}) for r in caplog.records)
                 if f.get("event") == "test-sign-in-throttled"]
        assert [(f["remote"], f["attempts"]) for f in lines] == [("192.0.2.66", 1), ("192.0.2.66", 50),
                                                                 ("192.0.2.77", 1)]
        assert client.app[TRAIL][-1][0] == "sign-in-failed"  # not in the page's trail

    async def test_attacker_cannot_lock_out_user_signing_in_from_another_address(self, client: TestClient) -> None:
        for _ in range(3):
            assert (await sign_in(client, "amal", "a guess", **at("192.0.2.66"))).status == 401
        r = await sign_in(client, "amal", PASSWORD, **at("192.0.2.66"))
        assert r.status == 429 and "locked" in await r.text() and r.headers["Retry-After"] == "900"
        assert (await sign_in(client, "amal", PASSWORD, **at("198.51.100.7"))).status == 303

    async def test_spoofed_forwarded_for_cannot_dodge_the_address_limit(self, aiohttp_client: Any,
                                                                          clock: Clock) -> None:
        """Without trusted proxies, X-Forwarded-For is the client's own claim: the peer's address is counted."""
        client = await aiohttp_client(make_app(clock, throttle=SignInThrottle(address_failures=3)))
        for i in range(3):
            assert (await sign_in(client, f"user{i}", "x", **at(f"203.0.113.{i}"))).status == 401
        assert (await sign_in(client, "user9", "x", **at("203.0.113.99"))).status == 429

    async def test_distributed_guessing_of_one_account_slowed_but_the_user_still_signs_in(
            self, client: TestClient, sleeps: list[float]) -> None:
        for i in range(8):  # 8 addresses, one guess each: no address nor pair limit is reached
            assert (await sign_in(client, "amal", "a guess", **at(f"203.0.113.{i}"))).status == 401
        assert sleeps == []
        assert (await sign_in(client, "amal", PASSWORD, **at("198.51.100.7"))).status == 303
        assert sleeps == [2.0]  # slowed, not refused

    async def test_sign_in_flood_refused_fast_when_password_checks_are_saturated(
            self, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(passwords.CHECKER, "pending", passwords.CHECKER.workers + passwords.CHECKER.queue)
        r = await sign_in(client, "amal", PASSWORD)
        assert r.status == 503 and r.headers["Retry-After"] == "1" and "busy" in await r.text()
        monkeypatch.setattr(passwords.CHECKER, "pending", 0)
        assert (await sign_in(client, "amal", PASSWORD)).status == 303  # not counted as a failure


async def test_password_spraying_gets_a_bounded_number_of_hashes_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most ``workers`` checks run at once and ``queue`` wait; more are refused at once, unknown names too."""
    release, running, most = threading.Event(), [0], [0]
    lock = threading.Lock()

    def slow_verify(password: str, encoded: str) -> bool:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1
        return False

    monkeypatch.setattr(passwords, "verify_password", slow_verify)
    checker = passwords.PasswordChecker(workers=1, queue=2)
    tasks = [asyncio.create_task(checker.matches("guess", None)) for _ in range(3)]
    await asyncio.sleep(0)  # the three are pending now
    with pytest.raises(passwords.PasswordCheckBusy):
        await checker.matches("guess", hash_password(PASSWORD, **FAST))
    release.set()
    assert await asyncio.gather(*tasks) == [False] * 3
    assert most[0] == 1 and checker.pending == 0


class TestSecondFactor:
    """Accounts with a one-time code (RFC 6238): the password alone opens nothing, and a code works once."""

    SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

    @pytest.fixture
    async def client(self, aiohttp_client: Any, clock: Clock) -> TestClient:
        app = make_app(clock, accounts=TOTP_ACCOUNTS, trusted_proxies="127.0.0.1, ::1")
        app[USERS]["amal"].totp = self.SECRET
        return await aiohttp_client(app)

    async def test_stolen_password_without_totp_code_refused(self, client: TestClient, clock: Clock) -> None:
        for code in (None, "", "000000", "12345", "abcdef"):
            r = await sign_in(client, "amal", PASSWORD, code=code)
            assert r.status == 401 and "failed" in await r.text()  # as a wrong password: nothing told
            client.app[FLOW].throttle.succeeded("amal", "127.0.0.1")
        assert [a for a, _, _ in client.app[TRAIL]] == ["sign-in-code-failed"] * 5
        assert (await sign_in(client, "amal", PASSWORD, code=code_at(self.SECRET, clock.now))).status == 303

    async def test_totp_code_replay_refused(self, client: TestClient, clock: Clock) -> None:
        code = code_at(self.SECRET, clock.now)
        assert (await sign_in(client, "amal", PASSWORD, code=code)).status == 303
        client.session.cookie_jar.clear()
        assert (await sign_in(client, "amal", PASSWORD, code=code, **at("198.51.100.7"))).status == 401
        earlier = code_at(self.SECRET, clock.now - STEP)  # still within the window, but before the one used
        assert (await sign_in(client, "amal", PASSWORD, code=earlier, **at("198.51.100.7"))).status == 401
        clock.now += STEP
        assert (await sign_in(client, "amal", PASSWORD, code=code_at(self.SECRET, clock.now))).status == 303

    async def test_totp_code_from_outside_the_window_refused(self, client: TestClient, clock: Clock) -> None:
        for off in (-2 * STEP, 2 * STEP):
            assert (await sign_in(client, "amal", PASSWORD, code=code_at(self.SECRET, clock.now + off))).status == 401
        # One step of drift either way is allowed (a phone's clock).
        assert (await sign_in(client, "amal", PASSWORD, code=code_at(self.SECRET, clock.now - STEP))).status == 303

    async def test_totp_code_guessing_locks_like_password_guessing(self, client: TestClient) -> None:
        for _ in range(3):
            assert (await sign_in(client, "amal", PASSWORD, code="000000")).status == 401
        assert (await sign_in(client, "amal", PASSWORD, code="000001")).status == 429

    async def test_accounts_without_a_second_factor_need_no_code(self, client: TestClient) -> None:
        assert (await sign_in(client, "omar", PASSWORD)).status == 303


class TestTokenAccount:
    """The node's status page: one account, the operator, opened by the operator token."""

    @pytest.fixture
    async def client(self, aiohttp_client: Any, clock: Clock) -> TestClient:
        account = TokenAccount("operator", hashlib.sha256(TOKEN.encode()).hexdigest())
        return await aiohttp_client(make_app(clock, accounts=account, remember_next=False))

    async def sign_in(self, client: TestClient, token: str) -> Any:
        form = csrf_of(await (await client.get("/p/sign-in")).text())
        return await client.post("/p/sign-in", data={"token": token, "csrf_token": form}, allow_redirects=False)

    async def test_token_guessing_locks_sign_in(self, client: TestClient) -> None:
        for guess in ("a", "b", TOKEN + "x"):
            assert (await self.sign_in(client, guess)).status == 401
        assert (await self.sign_in(client, TOKEN)).status == 429

    async def test_right_token_opens_the_operator_session(self, client: TestClient) -> None:
        r = await self.sign_in(client, f"  {TOKEN} ")
        assert r.status == 303 and r.headers["Location"] == "/p/"
        assert (await client.get("/p/", allow_redirects=False)).status == 200
        assert (await client.get("/p/", allow_redirects=False)).headers.get("Location") is None

    async def test_no_return_to_an_arbitrary_page_where_the_flow_does_not_remember_one(self,
                                                                                       client: TestClient) -> None:
        r = await client.get("/p/?x=1", allow_redirects=False)
        assert r.headers["Location"] == "/p/sign-in"


# -- one-time codes ----------------------------------------------------------------------------------------------


def test_totp_codes_follow_rfc_6238() -> None:
    """RFC 6238 appendix B's SHA-1 vectors (its 20-byte ASCII key), cut to six digits."""
    secret = base64.b32encode(b"12345678901234567890").decode()
    for when, code in ((59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")):
        assert code_at(secret, when) == code
        assert matching_step(secret, code, when) == when // STEP
        assert matching_step(secret, code[:3] + " " + code[3:], when + STEP) == when // STEP


def test_totp_enrolment_gives_a_fresh_secret_and_an_authenticator_uri() -> None:
    secret = new_secret()
    assert len(base64.b32decode(secret)) >= 16 and secret != new_secret()
    uri = provisioning_uri(secret, "amal", "IPDN node QA")
    assert uri.startswith("otpauth://totp/IPDN%20node%20QA:amal?secret=" + secret)
