"""The hub operators' dashboard, status figures, metrics and logs over HTTP (in-process aiohttp server, real
SQLite and PostgreSQL stores): sign-in, sessions and CSRF, escaping, live updates, quarantine, signed pulls."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from federation.hub.app import create_app
from federation.hub.appkeys import MONITOR, SERVICE
from federation.hub.config import HubConfig
from federation.hub.dashboard.pages import PRE_COOKIE, SESSION_COOKIE, STATE
from federation.protocol import httpsig
from federation.protocol.keys import SigningKey
from federation.protocol.registry import genesis
from federation.server.ui.passwords import hash_password
from federation.server.ui.signin import SignIn
from federation.server.ui.totp import code_at, new_secret
from tests.support.factories import Member, example_bodies, push_request

HUB_URL = "http://hub.test"
FAST = {"n": 2**10, "r": 8, "p": 1}
PASSWORD = "correct horse battery"
XSS = "<script>alert(1)</script>"
BIDI = "\u202eevil\u202c \u2067gpj.exe\u2069"
NAMES = {"QA": {"en": "Katara", "ar": "المؤسسة العامة للحي الثقافي – كتارا"}, "KR": {"en": "Korea Foundation"},
         "TR": {"en": f"Yunus {XSS}", "ar": f"معهد {BIDI}"}}


@pytest.fixture
def members() -> dict[str, Member]:
    return {c: Member(c) for c in ("QA", "KR", "TR")}


@pytest.fixture
def hub_dir(tmp_path: Path, members: dict[str, Member]) -> Path:
    hub_key = SigningKey.generate()
    hub_key.save(tmp_path / "hub.key.pem")
    signed = genesis(hub_key=hub_key, hub_url=HUB_URL, founders=[(m.public, NAMES[c]) for c, m in members.items()],
                     now=datetime.now(UTC))
    (tmp_path / "registry.json").write_bytes(signed.to_bytes())
    return tmp_path


@pytest.fixture
async def hub(db_url: str, aiohttp_client: Any, hub_dir: Path) -> Any:  # the app closes before its database goes
    client = await aiohttp_client(create_app(HubConfig.load(
        hub_dir, db_url=db_url, verify_workers=0, live_interval=0.1, silent_after=60,
        operator_token_sha256=hashlib.sha256(b"tok").hexdigest(), trusted_proxies="127.0.0.1, ::1")))
    store = client.server.app[SERVICE].store
    assert await store.add_operator("amal", hash_password(PASSWORD, **FAST), datetime.now(UTC))
    return client


@pytest.fixture
def body() -> dict[str, Any]:
    return example_bodies("cultural-event")[0]


async def push(hub: Any, member: Member, envelopes: list[Any]) -> dict[str, Any]:
    data, headers = push_request(member, envelopes, HUB_URL)
    r = await hub.post("/api/v1/envelopes", data=data, headers=headers)
    assert r.status == 200
    return dict(await r.json())


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the form"
    return m.group(1)


async def sign_in(hub: Any, name: str = "amal", password: str = PASSWORD, code: str | None = None,
                  **headers: str) -> Any:
    page = await hub.get("/dashboard/sign-in")
    token = csrf_of(await page.text())
    data = {"name": name, "password": password, "csrf_token": token, **({"code": code} if code is not None else {})}
    return await hub.post("/dashboard/sign-in", data=data, allow_redirects=False, headers=headers)


async def signed_in(hub: Any) -> Any:
    r = await sign_in(hub)
    assert r.status == 303 and r.headers["Location"] == "/dashboard"
    return hub


class TestSignIn:
    @pytest.mark.parametrize("path", ["/dashboard", "/dashboard/members/QA", "/dashboard/quarantine",
                                      "/dashboard/quarantine/1/raw", "/dashboard/checkpoint", "/dashboard/registry",
                                      "/dashboard/throughput"])
    async def test_unauthenticated_page_redirects_to_sign_in(self, hub: Any, path: str) -> None:
        """Every page but sign-in needs an operator session."""
        r = await hub.get(path, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/dashboard/sign-in"

    async def test_unauthenticated_event_stream_refused(self, hub: Any) -> None:
        """The live stream answers a 401 problem without a session (EventSource cannot follow a sign-in)."""
        r = await hub.get("/dashboard/events", headers={"Accept": "text/event-stream"})
        assert r.status == 401 and (await r.json())["reason"] == "sign-in-required"

    async def test_sign_in_sets_hardened_session_cookie(self, hub: Any) -> None:
        """HttpOnly, SameSite=Strict, Secure behind TLS; the session opens the dashboard."""
        r = await sign_in(hub, **{"X-Forwarded-Proto": "https"})
        assert r.status == 303
        cookie = next(c for c in r.headers.getall("Set-Cookie") if c.startswith(SESSION_COOKIE))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
        await signed_in(hub)  # over plain HTTP (the test client): a cookie without Secure, which it sends back
        page = await hub.get("/dashboard")
        assert page.status == 200 and "amal" in await page.text()

    async def test_sign_in_forgery_without_token_refused(self, hub: Any) -> None:
        """Login CSRF: a sign-in post without the form's token (double-submit cookie) is refused."""
        await hub.get("/dashboard/sign-in")
        r = await hub.post("/dashboard/sign-in", data={"name": "amal", "password": PASSWORD}, allow_redirects=False)
        assert r.status == 403 and (await r.json())["reason"] == "csrf"
        hub.session.cookie_jar.clear()
        r = await hub.post("/dashboard/sign-in", data={"name": "amal", "password": PASSWORD, "csrf_token": "x"},
                           allow_redirects=False)
        assert r.status == 403

    async def test_sign_in_from_other_site_refused(self, hub: Any) -> None:
        """A sign-in posted from another origin's page is refused even with the token."""
        r = await sign_in(hub, Origin="https://evil.example")
        assert r.status == 403 and (await r.json())["reason"] == "csrf"

    async def test_sign_out_forgery_without_token_refused(self, hub: Any) -> None:
        """Signing out is a form too: no token, no effect."""
        await signed_in(hub)
        r = await hub.post("/dashboard/sign-out", data={}, allow_redirects=False)
        assert r.status == 403
        assert (await hub.get("/dashboard", allow_redirects=False)).status == 200
        token = csrf_of(await (await hub.get("/dashboard")).text())
        r = await hub.post("/dashboard/sign-out", data={"csrf_token": token}, allow_redirects=False)
        assert r.status == 303 and (await hub.get("/dashboard", allow_redirects=False)).status == 303

    async def test_copied_session_cookie_refused_after_sign_out(self, hub: Any) -> None:
        """The dashboard signs in through the one flow of every operator page (federation/server/ui/signin.py):
        signing out ends the session itself, so a copy of the cookie taken before opens nothing."""
        assert isinstance(hub.server.app[STATE].signin, SignIn)
        await signed_in(hub)
        copied = hub.session.cookie_jar.filter_cookies(hub.make_url("/"))[SESSION_COOKIE].value
        token = csrf_of(await (await hub.get("/dashboard")).text())
        assert (await hub.post("/dashboard/sign-out", data={"csrf_token": token}, allow_redirects=False)).status == 303
        hub.session.cookie_jar.update_cookies({SESSION_COOKIE: copied})
        assert (await hub.get("/dashboard", allow_redirects=False)).status == 303
        events = await hub.server.app[SERVICE].store.operator_events()
        assert [e["action"] for e in events][:2] == ["sign-out", "sign-in"]

    async def test_password_guessing_refused_then_locked_and_audited(self, hub: Any) -> None:
        """Wrong passwords are refused (401), the account locks after five, and each attempt is in the trail."""
        for _ in range(5):
            assert (await sign_in(hub, password="wrong password!")).status == 401
        r = await sign_in(hub)  # the right password, but locked
        assert r.status == 429
        events = await hub.server.app[SERVICE].store.operator_events()
        assert [e["action"] for e in events][:2] == ["sign-in-locked", "sign-in-failed"]
        assert sum(e["action"] == "sign-in-failed" for e in events) == 5

    async def test_unknown_operator_refused(self, hub: Any) -> None:
        assert (await sign_in(hub, name="mallory")).status == 401

    async def test_forged_session_cookie_refused(self, hub: Any) -> None:
        """A session cookie not signed with the hub's secret opens nothing."""
        value, _ = hub.server.app[STATE].signin.codec.issue("amal", time.time())
        claims, _mac = value.split(".")
        hub.session.cookie_jar.update_cookies({SESSION_COOKIE: f"{claims}.{'A' * 43}"})
        assert (await hub.get("/dashboard", allow_redirects=False)).status == 303

    async def test_disabled_operator_session_ends(self, hub: Any) -> None:
        """Disabling the account ends its open sessions at the next request."""
        await signed_in(hub)
        await hub.server.app[SERVICE].store.set_operator("amal", disabled=True)
        assert (await hub.get("/dashboard", allow_redirects=False)).status == 303

    async def test_pages_carry_strict_csp(self, hub: Any) -> None:
        r = await hub.get("/dashboard/sign-in")
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
        assert PRE_COOKIE in r.headers.get("Set-Cookie", "")


class TestSignInAbuse:
    """The dashboard's sign-in under attack (docs/adr/0018-sign-in-abuse.md); the hub believes its proxy at
    127.0.0.1 about each client's address."""

    async def test_attacker_cannot_lock_out_operator_signing_in_from_another_address(self, hub: Any) -> None:
        there = {"X-Forwarded-For": "192.0.2.66"}
        for _ in range(5):
            assert (await sign_in(hub, password="a guess", **there)).status == 401
        r = await sign_in(hub, **there)
        assert r.status == 429 and int(r.headers["Retry-After"]) > 0
        assert (await sign_in(hub, **{"X-Forwarded-For": "198.51.100.7"})).status == 303

    async def test_stolen_operator_password_without_totp_code_refused(self, hub: Any) -> None:
        store = hub.server.app[SERVICE].store
        secret = new_secret()
        assert await store.set_operator_totp("amal", secret)
        assert 'autocomplete="one-time-code"' in await (await hub.get("/dashboard/sign-in")).text()
        for code in (None, "000000"):
            assert (await sign_in(hub, code=code)).status == 401
        now = hub.server.app[SERVICE].clock().timestamp()
        assert (await sign_in(hub, code=code_at(secret, now))).status == 303
        actions = [e["action"] for e in reversed(await store.operator_events(10))]
        assert actions[-3:] == ["sign-in-code-failed", "sign-in-code-failed", "sign-in"]  # the operators are told

    async def test_operator_totp_code_replay_refused(self, hub: Any) -> None:
        store = hub.server.app[SERVICE].store
        secret = new_secret()
        assert await store.set_operator_totp("amal", secret)
        now = datetime(2026, 12, 6, 12, 0, 10, tzinfo=UTC)
        hub.server.app[SERVICE].clock = lambda: now
        code = code_at(secret, now.timestamp())
        assert (await sign_in(hub, code=code)).status == 303
        hub.session.cookie_jar.clear()
        assert (await sign_in(hub, code=code, **{"X-Forwarded-For": "198.51.100.7"})).status == 401


class TestPages:
    async def test_every_member_has_a_row_with_isolated_names(self, hub: Any) -> None:
        """One row per member; names in the page's language, each in <bdi>; markup in a name is text."""
        await signed_in(hub)
        html = await (await hub.get("/dashboard?lang=ar")).text()
        assert '<html lang="ar" dir="rtl">' in html
        for code in ("QA", "KR", "TR"):
            assert f'data-member="{code}"' in html
        assert '<bdi lang="ar" dir="rtl">المؤسسة العامة للحي الثقافي – كتارا</bdi>' in html
        assert '<bdi lang="en" dir="ltr">Korea Foundation</bdi>' in html  # no Arabic name: English
        assert f'<bdi lang="ar" dir="rtl">معهد {BIDI}</bdi>' in html  # overrides stay inside their <bdi>
        html_en = await (await hub.get("/dashboard?lang=en")).text()
        assert XSS not in html_en and "Yunus &lt;script&gt;alert(1)&lt;/script&gt;" in html_en

    async def test_silent_member_stands_out(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A member that neither pushed nor pulled within silent_after is flagged; one that pushed is not."""
        await push(hub, members["QA"], [members["QA"].publish(body)])
        snap = await hub.server.app[MONITOR].snapshot()
        by = {m["code"]: m for m in snap["members"]}
        assert not by["QA"]["silent"] and by["KR"]["silent"] and by["TR"]["silent"]
        await signed_in(hub)
        html = await (await hub.get("/dashboard")).text()
        assert '<tr data-member="KR" class="silent">' in html and '<tr data-member="QA">' in html

    async def test_record_title_script_renders_as_text(self, hub: Any, members: dict[str, Member],
                                                        body: dict) -> None:
        """A record titled <script>...</script> (accepted) and one full of bidi overrides (refused) are text."""
        qa = members["QA"]
        await push(hub, qa, [qa.publish({**body, "title": {"en": XSS}})])
        refused = qa.publish({**body, "title": {"en": BIDI}, "status": "nope"})
        result = (await push(hub, qa, [refused]))["results"][0]
        assert result["status"] == "rejected"
        await signed_in(hub)
        page = await (await hub.get("/dashboard/members/QA?lang=en")).text()
        assert XSS not in page and '<bdi lang="en" dir="ltr">&lt;script&gt;alert(1)&lt;/script&gt;</bdi>' in page
        item = (await hub.server.app[SERVICE].store.quarantine_page(member="QA"))[0]
        detail = await (await hub.get(f"/dashboard/quarantine/{item['id']}?lang=en")).text()
        assert f'<bdi lang="en" dir="ltr">{BIDI}</bdi>' in detail
        assert "schema" in detail and result["problem"]["reason"] in detail

    async def test_refusal_reason_and_raw_bytes(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A refusal shows its reason; the download is the input byte for byte, never rendered."""
        kr = members["KR"]
        bad = kr.publish({**body, "status": "nope"}).to_dict()
        data, headers = push_request(kr, [bad], HUB_URL)
        await hub.post("/api/v1/envelopes", data=data, headers=headers)
        await signed_in(hub)
        listing = await (await hub.get("/dashboard/quarantine?member=KR")).text()
        item_id = int(re.search(r'data-refusal="(\d+)"', listing).group(1))  # type: ignore[union-attr]
        raw = await hub.get(f"/dashboard/quarantine/{item_id}/raw")
        assert raw.headers["Content-Disposition"].startswith("attachment")
        assert raw.headers["Content-Type"] == "application/octet-stream"
        assert json.loads(await raw.read()) == bad
        assert (await hub.get("/dashboard/quarantine/999999")).status == 404

    async def test_refusal_details_in_the_readers_language_with_the_slug_as_a_code(
            self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """Where operators read why an envelope was refused (the member page, the quarantine, the refusal page),
        the reason is the catalogue's sentence in the page's language, the slug a secondary code isolated left to
        right, the verifier's English message only behind "Technical details" (lang="en"); the refusal page words
        each schema error by its keyword, the pointer and keyword as codes."""
        qa = members["QA"]
        await push(hub, qa, [qa.publish({**body, "status": "nope"})])
        await signed_in(hub)
        item = (await hub.server.app[SERVICE].store.quarantine_page(member="QA"))[0]
        sentence = {"en": "The record does not match its schema", "ar": "السجل لا يطابق مخططه"}
        for path in ("/dashboard/members/QA", "/dashboard/quarantine", f"/dashboard/quarantine/{item['id']}"):
            for lang in ("en", "ar"):
                html = await (await hub.get(f"{path}?lang={lang}")).text()
                assert sentence[lang] in html, (path, lang)
                assert '<code class="slug" dir="ltr"><bdi>schema-invalid</bdi></code>' in html, (path, lang)
                technical = re.findall(r'<details class="technical"><summary>([^<]+)</summary>'
                                       r'<p lang="en" dir="ltr"><bdi>([^<]+)</bdi></p></details>', html)
                assert technical and technical[0][0] == {"en": "Technical details", "ar": "تفاصيل تقنية"}[lang]
                # The English message is never shown outside its disclosure.
                outside = re.sub(r"<details.*?</details>", "", html, flags=re.S)
                assert all(message not in outside for _, message in technical), (path, lang)
        ar = await (await hub.get(f"/dashboard/quarantine/{item['id']}?lang=ar")).text()
        assert "قيمة ليست من الخيارات المسموح بها." in ar  # enum, in words
        assert '<code dir="ltr"><bdi>/status</bdi></code> <code class="slug" dir="ltr"><bdi>enum</bdi></code>' in ar

    async def test_quarantine_filters(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """Filter by member, reason and time window."""
        for code in ("QA", "KR"):
            m = members[code]
            await push(hub, m, [m.publish({**body, "status": "nope"})])
        await signed_in(hub)
        html = await (await hub.get("/dashboard/quarantine?member=KR")).text()
        assert html.count("data-refusal=") == 1 and "<td>KR</td>" in html
        html = await (await hub.get("/dashboard/quarantine?reason=no-such-reason")).text()
        assert "data-refusal=" not in html
        html = await (await hub.get("/dashboard/quarantine?since=2000-01-01T00:00&until=2000-01-02T00:00")).text()
        assert "data-refusal=" not in html
        html = await (await hub.get("/dashboard/quarantine?since=2000-01-01T00:00")).text()
        assert html.count("data-refusal=") == 2
        r = await hub.get("/dashboard/quarantine?since=yesterday")
        assert r.status == 400 and (await r.json())["reason"] == "bad-parameter"

    async def test_checkpoint_registry_and_throughput_pages(self, hub: Any, members: dict[str, Member],
                                                            body: dict) -> None:
        qa = members["QA"]
        await push(hub, qa, [qa.publish(body) for _ in range(3)])
        await signed_in(hub)
        cp = await (await hub.get("/dashboard/checkpoint")).text()
        assert '<dd id="checkpoint-size">3</dd>' in cp
        reg = await (await hub.get("/dashboard/registry")).text()
        assert "Signed in" in reg and "<bdi>amal</bdi>" in reg  # the operators' trail
        svg = await (await hub.get("/dashboard/throughput")).text()
        assert '<svg id="throughput"' in svg and svg.count('class="accepted"') >= 1 and "3 accepted" in svg


class TestLive:
    async def test_event_stream_moves_counters(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """The stream sends the status at once and again when an envelope is accepted."""
        await signed_in(hub)
        r = await hub.get("/dashboard/events", headers={"Accept": "text/event-stream"})
        assert r.headers["Content-Type"].startswith("text/event-stream")

        async def next_status() -> dict[str, Any]:
            while True:
                line = (await asyncio.wait_for(r.content.readline(), 10)).decode()
                if line.startswith("data: "):
                    return dict(json.loads(line[6:]))

        first = await next_status()
        assert {m["code"]: m["accepted_today"] for m in first["members"]}["QA"] == 0
        qa = members["QA"]
        await push(hub, qa, [qa.publish(body)])
        while (snap := await next_status())["log_size"] < 1:
            pass
        assert {m["code"]: m["accepted_today"] for m in snap["members"]}["QA"] == 1
        r.close()


def signed_pull(member: Member, after: int, key: SigningKey | None = None) -> tuple[str, dict[str, str]]:
    path = f"/api/v1/log?after={after}&limit=100"
    signer = key or member.key
    headers = httpsig.sign_request("GET", HUB_URL + path, {}, b"", private_key=signer.key, keyid=signer.kid,
                                   created=int(time.time()), nonce=secrets.token_urlsafe(12),
                                   components=("@method", "@target-uri"))
    return path, headers


class TestMemberFigures:
    async def test_signed_pull_gives_last_pull_and_lag(self, hub: Any, members: dict[str, Member],
                                                       body: dict) -> None:
        """A node's signed pull records when it pulled and how far it has read: lag in envelopes and seconds."""
        qa, kr = members["QA"], members["KR"]
        await push(hub, qa, [qa.publish(body) for _ in range(5)])
        path, headers = signed_pull(kr, 2)
        r = await hub.get(path, headers=headers)
        assert r.status == 200 and len((await r.json())["entries"]) == 3
        by = {m["code"]: m for m in (await (await hub.get("/api/v1/status")).json())["members"]}
        assert by["KR"]["last_pull_at"] is not None and by["KR"]["cursor"] == 2
        assert by["KR"]["lag_envelopes"] == 3 and by["KR"]["lag_seconds"] >= 0 and by["KR"]["cursor_source"] == "pull"
        assert by["TR"]["cursor"] is None and by["TR"]["lag_envelopes"] is None  # never pulled, never co-signed
        path, headers = signed_pull(kr, 5)
        await hub.get(path, headers=headers)
        by = {m["code"]: m for m in (await (await hub.get("/api/v1/status")).json())["members"]}
        assert by["KR"]["lag_envelopes"] == 0 and by["KR"]["lag_seconds"] == 0
        assert by["QA"]["accepted_today"] == 5 and not by["KR"]["silent"]

    async def test_pulls_survive_restart(self, hub: Any, members: dict[str, Member]) -> None:
        """Members' last pulls are written to the database (at the flush interval, and at shutdown)."""
        path, headers = signed_pull(members["KR"], 0)
        await hub.get(path, headers=headers)
        await hub.server.app[MONITOR].flush()
        assert set(await hub.server.app[SERVICE].store.pulls()) == {"KR"}

    async def test_pull_with_forged_signature_refused(self, hub: Any, members: dict[str, Member]) -> None:
        """A pull claiming to be a member with another key is refused, not counted as that member's."""
        path, headers = signed_pull(members["KR"], 0, key=SigningKey.generate())
        r = await hub.get(path, headers=headers)
        assert r.status == 401
        assert "KR" not in hub.server.app[MONITOR].pulls

    async def test_replayed_pull_signature_refused(self, hub: Any, members: dict[str, Member]) -> None:
        path, headers = signed_pull(members["KR"], 0)
        assert (await hub.get(path, headers=headers)).status == 200
        assert (await hub.get(path, headers=headers)).status == 401

    async def test_anonymous_pull_still_served(self, hub: Any) -> None:
        """The log stays public: a pull without a signature is answered and counts for nobody."""
        assert (await hub.get("/api/v1/log")).status == 200
        assert hub.server.app[MONITOR].pulls == {}


class TestMetricsAndLogs:
    async def test_metrics_by_member_reason_and_route(self, hub: Any, members: dict[str, Member],
                                                      body: dict) -> None:
        """Envelopes by member, status and reason; HTTP by canonical route (never the raw URL)."""
        qa = members["QA"]
        await push(hub, qa, [qa.publish(body), qa.publish({**body, "status": "nope"})])
        await hub.get("/dashboard/members/QA?x=1")
        text = await (await hub.get("/metrics")).text()
        assert 'ipdn_hub_envelopes_total{member="QA",reason="",status="accepted"} 1.0' in text
        assert re.search(r'ipdn_hub_envelopes_total\{member="QA",reason="[a-z-]+",status="rejected"\} 1.0', text)
        assert 'ipdn_hub_http_requests_total{method="GET",route="/dashboard/members/{code}",status="303"} 1.0' in text
        assert "ipdn_hub_log_size 1.0" in text and 'ipdn_hub_member_silent{member="KR"} 1.0' in text
        assert "ipdn_hub_ingest_seconds_count 1.0" in text and "x=1" not in text

    async def test_log_injection_through_request_id_refused(self, hub: Any) -> None:
        """A well-formed X-Request-Id is kept; one with markup or past 128 characters is replaced."""
        r = await hub.get("/api/v1/status", headers={"X-Request-Id": "abc-123-def-456"})
        assert r.headers["X-Request-Id"] == "abc-123-def-456"
        r = await hub.get("/api/v1/status", headers={"X-Request-Id": "<script>{};" * 20})
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"])

    async def test_tokens_and_passwords_never_logged(self, hub: Any, caplog: pytest.LogCaptureFixture) -> None:
        """Sign-in, bearer calls and cookies leave no secret in the JSON log lines."""
        from federation.server.logs import JsonFormatter

        caplog.set_level(logging.INFO)
        await sign_in(hub)
        cookie = hub.session.cookie_jar.filter_cookies(hub.make_url("/"))[SESSION_COOKIE].value
        hub.session.cookie_jar.clear()
        await sign_in(hub, password="a wrong password")
        await hub.get("/api/v1/quarantine", headers={"Authorization": "Bearer tok"})
        lines = [JsonFormatter().format(r) for r in caplog.records]
        joined = "\n".join(lines)
        assert any('"event": "operator-sign-in"' in line and '"request_id"' in line for line in lines)
        assert any('"event": "operator-sign-in-failed"' in line for line in lines)
        assert PASSWORD not in joined and "a wrong password" not in joined and "Bearer tok" not in joined
        assert cookie not in joined
        for line in lines:
            json.loads(line)
