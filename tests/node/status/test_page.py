"""The node's status page (sign-in with the operator token, CSRF, escaping) and its metrics, against a fake hub
that refuses what the node pushes."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from node.app import create_app
from node.appkeys import ENGINE
from node.status.page import SESSION_COOKIE
from tests.support.factories import Member
from tests.support.nodes import TOKEN, Net, publish_n
from tests.support.timing import eventually

AUTH = {"Authorization": f"Bearer {TOKEN}"}
XSS = "<script>alert(1)</script>"
BIDI = "\u202eevil\u202c"


@pytest.fixture
async def node(aiohttp_client: Any, net: Net) -> TestClient:
    """QA's node with its sync loops running against the fake hub, behind a proxy on loopback (trusted_proxies)."""
    return await aiohttp_client(create_app(dataclasses.replace(net.config, trusted_proxies="127.0.0.1, ::1")))


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the form"
    return m.group(1)


async def sign_in(node: TestClient, token: str = TOKEN, **headers: str) -> Any:
    form = await (await node.get("/status/sign-in")).text()
    return await node.post("/status/sign-in", data={"token": token, "csrf_token": csrf_of(form)},
                           allow_redirects=False, headers=headers)


class TestStatusPage:
    async def test_signed_in_operator_reads_the_full_document_from_anywhere(self, node: TestClient) -> None:
        """Staff signed in from out there (through the proxy) get the page's live figures from /status/document,
        while /api/v1/status shows that address only its public part (federation/server/access.py)."""
        away = {"X-Forwarded-For": "203.0.113.9"}
        assert (await sign_in(node, **away)).status == 303
        assert (await (await node.get("/api/v1/status", headers=away)).json())["restricted"] is True
        r = await node.get("/status/document", headers=away)
        assert r.status == 200 and {"keys", "alarms", "outbox"} <= set(await r.json())

    async def test_unauthenticated_status_page_redirects(self, node: TestClient) -> None:
        r = await node.get("/status", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/status/sign-in"

    async def test_wrong_token_refused_and_throttled(self, node: TestClient) -> None:
        """A wrong token is a 401; five of them lock sign-in (even the right token) for a while."""
        for _ in range(5):
            assert (await sign_in(node, "not-the-token")).status == 401
        assert (await sign_in(node)).status == 429

    async def test_sign_in_forgery_without_token_refused(self, node: TestClient) -> None:
        await node.get("/status/sign-in")
        r = await node.post("/status/sign-in", data={"token": TOKEN}, allow_redirects=False)
        assert r.status == 403 and (await r.json())["reason"] == "csrf"

    async def test_sign_in_from_other_site_refused_even_with_token(self, node: TestClient) -> None:
        """The status page signs in through the one flow of every operator page (federation/server/ui/signin.py)."""
        r = await sign_in(node, Origin="https://evil.example")
        assert r.status == 403 and (await r.json())["reason"] == "csrf"

    async def test_sign_out_ends_the_session(self, node: TestClient) -> None:
        """After signing out the page sends to sign in again and its forms are refused (401), token or not."""
        assert (await sign_in(node)).status == 303
        token = csrf_of(await (await node.get("/status")).text())
        r = await node.post("/status/sign-out", data={"csrf_token": token}, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/status/sign-in"
        assert (await node.get("/status", allow_redirects=False)).status == 303
        assert (await node.post("/status/retry", data={"csrf_token": token})).status == 401

    async def test_session_cookie_hardened(self, node: TestClient) -> None:
        r = await sign_in(node, **{"X-Forwarded-Proto": "https"})
        cookie = next(c for c in r.headers.getall("Set-Cookie") if c.startswith(SESSION_COOKIE))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie

    async def test_refusals_shown_with_reason_escaped(self, node: TestClient, net: Net,
                                                      event: dict[str, Any]) -> None:
        """An own envelope the hub refused is listed with its reason in the reader's language (the catalogue's
        sentence; the slug a secondary code, isolated; the hub's English detail behind "Technical details"); its
        <script> title and bidi overrides are text; retrying needs the form's CSRF token."""
        net.hub.reject_reason = "schema-invalid"
        title = {"en": XSS, "ar": BIDI}
        r = await node.post("/api/v1/records", json={"kind": "cultural-event", "body": {**event, "title": title}},
                            headers=AUTH)
        assert r.status == 201
        await eventually(lambda: _rejected(node))
        assert (await sign_in(node)).status == 303
        html = await (await node.get("/status?lang=en")).text()
        assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert '<code class="slug" dir="ltr"><bdi>schema-invalid</bdi></code>' in html
        assert "Does not match the schema" in html and "The record does not match its schema" in html
        assert '<p lang="en" dir="ltr"><bdi>envelope 0: schema-invalid</bdi></p>' in html  # the hub's own words
        assert "data-refused=" in html
        ar = await (await node.get("/status?lang=ar")).text()
        assert '<html lang="ar" dir="rtl">' in ar
        assert "السجل لا يطابق مخططه" in ar and "تفاصيل تقنية" in ar and "The record does not" not in ar
        assert '<code class="slug" dir="ltr"><bdi>schema-invalid</bdi></code>' in ar
        r = await node.post("/status/retry", data={}, allow_redirects=False)
        assert r.status == 403
        net.hub.reject_reason = None
        r = await node.post("/status/retry", data={"csrf_token": csrf_of(html)}, allow_redirects=False)
        assert r.status == 303
        await eventually(lambda: _accepted(node))

    async def test_last_hub_error_in_the_readers_words(self, node: TestClient, net: Net) -> None:
        """With the hub away, the status document names the last error's reason (``hub.last_error_reason``) and
        the page says it in the reader's language, the node's English text behind "Technical details"."""
        net.hub.up = False

        async def failed() -> dict[str, Any] | None:
            doc = await _status(node)
            return doc if doc["hub"]["last_error_reason"] == "hub-unavailable" else None

        doc = await eventually(failed)
        assert doc["hub"]["last_error"].startswith("hub-unavailable: ")
        assert (await sign_in(node)).status == 303
        ar = await (await node.get("/status?lang=ar")).text()
        assert "تعذّر الوصول إلى المركز الآن" in ar and '<bdi>hub-unavailable</bdi>' in ar
        assert '<summary>تفاصيل تقنية</summary><p lang="en" dir="ltr"><bdi>hub-unavailable: ' in ar

    async def test_metrics(self, node: TestClient, net: Net) -> None:
        """Outbox, cursor, reachability and sync-loop errors by loop and reason; routes by canonical path."""
        await eventually(lambda: _reachable(node))
        net.hub.up = False

        async def failed() -> bool:
            return bool(node.server.app[ENGINE].state.errors)

        await eventually(failed)
        text = await (await node.get("/metrics")).text()
        assert 'ipdn_node_outbox{state="pending"} 0.0' in text and "ipdn_node_cursor 0.0" in text
        assert re.search(r'ipdn_node_sync_errors_total\{loop="(pull|registry|push|witness)",reason="[a-z-]+"\}', text)
        assert "ipdn_node_log_halted 0.0" in text
        await node.get("/api/v1/records/QA:nothing")
        text = await (await node.get("/metrics")).text()
        assert 'route="/api/v1/records/{record_id}",status="404"' in text and "QA:nothing" not in text


class TestAlarms:
    async def test_checkpoint_inconsistency_raised_on_page_and_in_metrics(self, node: TestClient, net: Net, kr: Member,
                                                                          event: dict[str, Any]) -> None:
        """A hub signing a root that is not that of the entries it served halts the node: the status page shows the
        log-inconsistent alarm and that applying is halted; the metrics say so for the alert rule."""
        net.hub.checkpoint_root = os.urandom(32)
        publish_n(net.hub, kr, event, 2)

        async def halted() -> bool:
            return bool((await _status(node))["log"]["halted"])

        await eventually(halted)
        assert (await sign_in(node)).status == 303
        html = await (await node.get("/status?lang=en")).text()
        assert '<code class="slug" dir="ltr"><bdi>log-inconsistent</bdi></code>' in html and "Log inconsistent" in html
        assert "the log may have been rewritten" in html and 'class="alarm bad"' in html
        ar = await (await node.get("/status?lang=ar")).text()  # the alarm in Arabic words, the slug kept
        assert "ربما أُعيدت كتابة السجل" in ar and '<bdi>log-inconsistent</bdi>' in ar
        text = await (await node.get("/metrics")).text()
        assert "ipdn_node_log_halted 1.0" in text and 'ipdn_node_alarms{reason="log-inconsistent"} 1.0' in text


async def _status(node: TestClient) -> dict[str, Any]:
    return dict(await (await node.get("/api/v1/status")).json())


async def _rejected(node: TestClient) -> bool:
    return (await _status(node))["outbox"]["rejected"] == 1


async def _accepted(node: TestClient) -> bool:
    return (await _status(node))["outbox"]["accepted"] == 1


async def _reachable(node: TestClient) -> bool:
    return bool((await _status(node))["hub"]["reachable"])
