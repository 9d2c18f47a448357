"""The authoring pages over HTTP (pytest-aiohttp, SQLite and PostgreSQL): sign-in, drafts, publishing, history,
and the attacks they stop (no session, no CSRF token, forged cookies, password guessing, markup in fields)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from federation.server.ui.totp import code_at
from node.app import create_app
from node.appkeys import SERVICE
from node.config import NodeConfig
from node.staff.web import PAGES, ImportJob
from tests.support import paths
from tests.support.factories import Member
from tests.support.nodes import TOKEN
from tests.support.timing import eventually

PASSWORD = "a long enough passphrase"
PROBLEM = "application/problem+json"


@pytest.fixture
async def client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    c = await aiohttp_client(create_app(config, sync=False))
    await c.app[PAGES].staff.add_user("amal", PASSWORD, "Amal")
    return c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


async def post_sign_in(client: TestClient, headers: dict[str, str] | None = None, **data: str) -> Any:
    """Post the sign-in form as a browser would: with the form's anti-forgery token."""
    token = csrf_of(await (await client.get("/author/signin")).text())
    return await client.post("/author/signin", data={"csrf_token": token, **data}, allow_redirects=False,
                             headers=headers)


async def sign_in(client: TestClient, username: str = "amal", password: str = PASSWORD) -> str:
    """Sign in; the CSRF token of the session."""
    resp = await post_sign_in(client, username=username, password=password, next="/author/")
    assert resp.status == 303, await resp.text()
    page = await client.get("/author/")
    assert page.status == 200
    return csrf_of(await page.text())


def event_form(csrf: str, **over: str) -> dict[str, str]:
    form = {"csrf_token": csrf, "_kind": "cultural-event", "_lang": "en", "title.en": "Calligraphy evening",
            "event_type": "workshop", "status": "scheduled", "start": "2026-05-01T19:00", "end": "2026-05-01T21:00",
            "timezone": "Asia/Qatar", "attendance_mode": "online", "online_url": "https://example.org/live",
            "organizers.0.name.en": "Katara", "organizers.0.country": "QA",
            "rights": "https://creativecommons.org/licenses/by/4.0/"}
    form.update(over)
    return form


async def new_draft(client: TestClient, csrf: str, **over: str) -> str:
    resp = await client.post("/author/drafts", data=event_form(csrf, **over), allow_redirects=False)
    assert resp.status == 303, await resp.text()
    return resp.headers["Location"].split("?")[0]


class TestSignIn:
    async def test_unauthenticated_page_redirects_to_sign_in(self, client: TestClient) -> None:
        """Every page sends a visitor without a session to sign in, remembering where they were going."""
        for path in ("/author/", "/author/new/cultural-event", "/author/import", "/author/records/QA:x/history"):
            resp = await client.get(path, allow_redirects=False)
            assert resp.status == 303 and resp.headers["Location"].startswith("/author/signin?next=")

    async def test_unauthenticated_post_refused(self, client: TestClient) -> None:
        """A POST without a session is a 401 problem and changes nothing."""
        resp = await client.post("/author/drafts", data=event_form("x"))
        assert resp.status == 401 and resp.content_type == PROBLEM
        assert await client.app[PAGES].staff.drafts() == []

    async def test_forged_session_cookie_refused(self, client: TestClient) -> None:
        """A cookie not signed with this node's secret opens nothing."""
        client.session.cookie_jar.update_cookies({"ipdn_author": "eyJzdWIiOiJhbWFsIn0.AAAA"})
        resp = await client.get("/author/", allow_redirects=False)
        assert resp.status == 303

    async def test_cross_site_request_forgery_without_token_refused(self, client: TestClient) -> None:
        """Signed in, a POST without the session's token (or with another) is a 403 problem; nothing saved."""
        await sign_in(client)
        for token in ("", "not-the-token"):
            resp = await client.post("/author/drafts", data=event_form(token))
            assert resp.status == 403 and (await resp.json())["reason"] == "csrf"
        assert await client.app[PAGES].staff.drafts() == []

    async def test_cross_site_post_with_token_but_foreign_origin_refused(self, client: TestClient) -> None:
        csrf = await sign_in(client)
        resp = await client.post("/author/drafts", data=event_form(csrf), headers={"Origin": "https://evil.example"})
        assert resp.status == 403

    async def test_password_guessing_locks_the_account(self, client: TestClient) -> None:
        """Five wrong passwords lock the account: then even the right one is refused for a while."""
        for _ in range(5):
            resp = await post_sign_in(client, username="amal", password="guess")
            assert resp.status == 401
        resp = await post_sign_in(client, username="amal", password=PASSWORD)
        assert resp.status == 429 and "locked" in await resp.text()

    async def test_login_forgery_refused_by_the_shared_sign_in_flow(self, client: TestClient) -> None:
        """The authoring pages sign in through the one flow (federation/server/ui/signin.py): a sign-in post
        without the form's token, or from another site's page, is refused before any password is tried."""
        resp = await client.post("/author/signin", data={"username": "amal", "password": PASSWORD})
        assert resp.status == 403 and (await resp.json())["reason"] == "csrf"
        token = csrf_of(await (await client.get("/author/signin")).text())
        resp = await client.post("/author/signin", data={"username": "amal", "password": PASSWORD, "csrf_token": token},
                                 headers={"Origin": "https://evil.example"})
        assert resp.status == 403 and (await resp.json())["reason"] == "csrf"

    async def test_sign_out_ends_the_session(self, client: TestClient) -> None:
        csrf = await sign_in(client)
        resp = await client.post("/author/signout", data={"csrf_token": csrf}, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/author/signin?out=1"
        assert (await client.get("/author/", allow_redirects=False)).status == 303

    async def test_disabled_account_sessions_end(self, client: TestClient) -> None:
        """Disabling an account ends its sessions at the next request."""
        await sign_in(client)
        await client.app[PAGES].staff.set_disabled("amal")
        assert (await client.get("/author/", allow_redirects=False)).status == 303

    async def test_session_cookie_is_httponly_and_strict(self, client: TestClient) -> None:
        resp = await post_sign_in(client, username="amal", password=PASSWORD)
        cookie = next(c for c in resp.headers.getall("Set-Cookie") if c.startswith("ipdn_author="))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie  # plain HTTP here

    async def test_open_redirect_after_sign_in_refused(self, client: TestClient) -> None:
        resp = await post_sign_in(client, username="amal", password=PASSWORD, next="https://evil.example/author/")
        assert resp.headers["Location"] == "/author/"

    async def test_pages_carry_strict_headers(self, client: TestClient) -> None:
        await sign_in(client)
        for path in ("/author/", "/author/static/author.js", "/author/new/cultural-event"):
            resp = await client.get(path)
            assert resp.status == 200
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Frame-Options"] == "DENY"


    async def test_every_post_refuses_missing_session_and_missing_token(self, client: TestClient) -> None:
        """Every state-changing page route: 401 without a session; 403 with a session but no CSRF token."""
        posts = sorted({r.resource.canonical for r in client.app.router.routes()
                        if r.method == "POST" and r.resource is not None
                        and r.resource.canonical.startswith("/author/") and r.resource.canonical != "/author/signin"})
        assert len(posts) >= 7
        paths = [p.replace("{draft_id}", "0" * 32).replace("{record_id}", "QA:x").replace("{what}", "cancel")
                 for p in posts]
        for path in paths:
            assert (await client.post(path, data={"x": "1"})).status == 401, path
        await sign_in(client)
        for path in paths:
            resp = await client.post(path, data={"x": "1"})
            assert resp.status in (403, 415), path  # the upload refuses a non-multipart body before reading it
            if resp.status == 403:
                assert (await resp.json())["reason"] == "csrf"


class TestWriting:
    async def test_draft_is_not_published_until_confirmed(self, client: TestClient) -> None:
        """Saving keeps an unsigned draft (nothing in the record API, nothing queued); publishing after the
        confirmation makes version 1, signed, and the draft is gone."""
        csrf = await sign_in(client)
        path = await new_draft(client, csrf)
        assert (await (await client.get("/api/v1/records")).json())["items"] == []
        confirm = await client.get(path + "/publish")
        assert "version 1 of a new record" in await confirm.text()
        done = await client.post(path + "/publish", data={"csrf_token": csrf}, allow_redirects=False)
        assert done.status == 303 and "done=published&version=1" in done.headers["Location"]
        items = (await (await client.get("/api/v1/records")).json())["items"]
        assert len(items) == 1 and items[0]["body"]["start"] == "2026-05-01T19:00:00+03:00"
        assert await client.app[PAGES].staff.drafts() == []
        page = await client.get(done.headers["Location"])
        assert "Published: version 1." in await page.text()

    async def test_invalid_publish_shows_plain_words_on_the_form(self, client: TestClient) -> None:
        """Publishing an invalid draft shows every problem naming the field in words, next to the field;
        the kind's rules (end after start) once the schema is met. Nothing is published meanwhile."""
        csrf = await sign_in(client)
        form = event_form(csrf, end="2026-05-01T18:00", _action="publish")
        del form["organizers.0.name.en"]
        resp = await client.post("/author/drafts", data=form)
        assert resp.status == 422
        html = await resp.text()
        assert "Organizers 1 › Name is required." in html
        assert 'aria-invalid="true"' in html and 'class="error-summary" role="alert"' in html
        path = re.search(r'action="(/author/drafts/[0-9a-f]+)"', html).group(1)  # type: ignore[union-attr]
        resp = await client.post(path, data={**form, "organizers.0.name.en": "Katara"})
        assert resp.status == 422 and "End is before the start." in await resp.text()
        assert (await (await client.get("/api/v1/records")).json())["items"] == []
        resp = await client.post(path, data={**form, "organizers.0.name.en": "Katara", "end": "2026-05-01T21:00"},
                                 allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == path + "/publish"

    async def test_arabic_and_english_titles_with_direction(self, client: TestClient) -> None:
        """A language added to the record gets an input per multilingual field, Arabic right to left."""
        csrf = await sign_in(client)
        path = await new_draft(client, csrf)
        form = event_form(csrf, _action="add-lang", _new_lang="ar")
        resp = await client.post(path, data=form)
        html = await resp.text()
        assert 'name="title.ar"' in html and re.search(r'name="title.ar"[^>]*lang="ar" dir="rtl"', html)
        form = event_form(csrf, **{"title.ar": "أمسية الخط العربي"})
        form["_lang"] = "en"
        await client.post(path, data=[*form.items(), ("_lang", "ar")])
        draft = (await client.app[PAGES].staff.drafts())[0]
        assert draft.body["title"] == {"en": "Calligraphy evening", "ar": "أمسية الخط العربي"}
        assert draft.langs == ("en", "ar")

    async def test_capacity_programme_from_its_own_schema(self, client: TestClient) -> None:
        """The programme form comes from its schema (dates, a provider group, topics, seats) and publishes."""
        csrf = await sign_in(client)
        html = await (await client.get("/author/new/capacity-programme")).text()
        assert 'name="start_date" type="date"' in html and 'name="provider.name.en"' in html
        assert 'name="seats" inputmode="decimal"' in html and 'name="topics.0"' in html
        form = {"csrf_token": csrf, "_kind": "capacity-programme", "_lang": "en", "title.en": "Digital diplomacy",
                "programme_type": "training", "status": "open", "provider.name.en": "Katara", "format": "online",
                "start_date": "2026-09-01", "end_date": "2026-09-05", "topics.0": "social media", "seats": "25",
                "rights": "https://creativecommons.org/licenses/by/4.0/"}
        resp = await client.post("/author/drafts", data={**form, "_action": "publish"}, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].endswith("/publish"), await resp.text()
        await client.post(resp.headers["Location"], data={"csrf_token": csrf})
        items = (await (await client.get("/api/v1/records?kind=capacity-programme")).json())["items"]
        assert items[0]["body"]["seats"] == 25 and items[0]["body"]["topics"] == ["social media"]

    async def test_arabic_interface_is_right_to_left(self, client: TestClient) -> None:
        await sign_in(client)
        html = await (await client.get("/author/new/cultural-event?lang=ar")).text()
        assert '<html lang="ar" dir="rtl">' in html and "فعالية ثقافية" in html

    async def test_script_injection_in_every_field_is_escaped(self, client: TestClient) -> None:
        """Markup typed into any text field comes back as text on the form, the preview and the record page."""
        csrf = await sign_in(client)
        attack = '<script>alert(1)</script>"><img src=x onerror=alert(2)>\u202e'
        form = event_form(csrf, **{"title.en": attack, "organizers.0.name.en": attack, "tags.0": attack})
        path = await new_draft(client, csrf, **{k: v for k, v in form.items() if k != "csrf_token"})
        html = await (await client.get(path)).text()
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

    async def test_edit_update_cancel_delete_and_history(self, client: TestClient) -> None:
        """Edit makes a draft from the record; publishing it is version 2; cancel (with a reason) version 3;
        delete version 4; the history names who did each and what changed."""
        csrf = await sign_in(client)
        path = await new_draft(client, csrf)
        await client.post(path + "/publish", data={"csrf_token": csrf})
        record_id = (await client.app[SERVICE].list_records(limit=5))[0][0].record_id
        rpath = "/author/records/" + quote(record_id, safe=":")
        edit = await client.post(rpath + "/edit", data={"csrf_token": csrf}, allow_redirects=False)
        dpath = edit.headers["Location"]
        await client.post(dpath, data=event_form(csrf, **{"title.en": "Calligraphy night"}))
        done = await client.post(dpath + "/publish", data={"csrf_token": csrf}, allow_redirects=False)
        assert "version=2" in done.headers["Location"]
        confirm = await client.get(rpath + "/cancel")
        assert "version 3" in await confirm.text()
        done = await client.post(rpath + "/cancel", data={"csrf_token": csrf, "reason": "the hall is closed"},
                                 allow_redirects=False)
        assert "done=cancelled&version=3" in done.headers["Location"]
        done = await client.post(rpath + "/delete", data={"csrf_token": csrf}, allow_redirects=False)
        assert "done=deleted&version=4" in done.headers["Location"]
        history = await client.app[PAGES].staff.history(record_id)
        assert [(h.version, h.username) for h in history] == [(4, "amal"), (3, "amal"), (2, "amal"), (1, "amal")]
        assert history[2].changed == ["title.en"] and history[1].changed == ["status"]
        assert history[1].note == "the hall is closed"
        html = await (await client.get(rpath + "/history")).text()
        assert "Title (English" in html and "Reason: the hall is closed" in html

    async def test_history_headed_by_title_names_the_person_and_words_each_change(self, client: TestClient) -> None:
        """The history is headed by the record's title (not its id), names the person (the account's display name,
        not the user name), gives times in the reader's language inside <time datetime>, and each change as
        "label: old → new" in plain labels and words (a choice by its label, a time in the event's zone), in
        English and in Arabic; a deleted record is listed and shown under its last title, marked deleted."""
        await client.app[PAGES].staff.add_user("fatima", PASSWORD, "Fatima Al-Thani")
        csrf = await sign_in(client, "fatima")
        path = await new_draft(client, csrf)
        await client.post(path + "/publish", data={"csrf_token": csrf})
        record_id = (await client.app[SERVICE].list_records(limit=5))[0][0].record_id
        rpath = "/author/records/" + quote(record_id, safe=":")
        edit = await client.post(rpath + "/edit", data={"csrf_token": csrf}, allow_redirects=False)
        dpath = edit.headers["Location"]
        await client.post(dpath, data=event_form(csrf, **{"title.en": "Calligraphy night", "event_type": "exhibition",
                                                          "start": "2026-05-01T18:30", "tags.0": "art"}))
        await client.post(dpath + "/publish", data={"csrf_token": csrf})

        html = await (await client.get(rpath + "/history?lang=en")).text()
        h1 = re.search(r"<h1>(.*?)</h1>", html, re.S).group(1)
        assert "Calligraphy night" in h1 and record_id not in h1
        assert "Fatima Al-Thani" in html and "<bdi>fatima</bdi>" not in html
        assert re.search(r'<time datetime="2026-[^"]+">[^<]*2026', html)
        assert "Title (English): Calligraphy evening → Calligraphy night" in html
        assert "Type of event: Workshop → Exhibition" in html
        assert re.search(r"Start: May 1, 2026[^<]*7:00\sPM \(Qatar Time\) → May 1, 2026[^<]*6:30\sPM", html)
        assert "Tags 1: art (added)" in html and "T19:00:00+03:00" not in html

        ar = await (await client.get(rpath + "/history?lang=ar")).text()
        assert "Calligraphy night" in re.search(r"<h1>(.*?)</h1>", ar, re.S).group(1)
        assert "\u2068نوع الفعالية\u2069: \u2068ورشة عمل\u2069 ← \u2068معرض\u2069" in ar  # each part isolated
        assert "\u2068العنوان (الإنجليزية)\u2069: \u2068Calligraphy evening\u2069 ← \u2068Calligraphy night\u2069" in ar
        assert "Fatima Al-Thani" in ar

        await client.post(rpath + "/delete", data={"csrf_token": csrf})
        listing = await (await client.get("/author/?state=deleted&lang=en")).text()
        row = next(r for r in re.findall(r"<tr.*?</tr>", listing, re.S) if quote(record_id) in r or record_id in r)
        assert "Calligraphy night" in row and 'class="mark">deleted<' in row
        assert "Calligraphy night" in re.search(r"<h1>(.*?)</h1>", await (await client.get(rpath)).text(),
                                                re.S).group(1)

    async def test_received_records_are_read_only(self, client: TestClient, kr: Member,
                                                  event: dict[str, Any]) -> None:
        """A record of another member is listed and shown, and cannot be edited, cancelled or deleted here."""
        env = kr.publish(event)
        service = client.app[SERVICE]
        await service.store.apply(_changes_with(env), service.clock())  # as the sync engine would keep it
        csrf = await sign_in(client)
        listing = await (await client.get("/author/?whose=received")).text()
        assert env.payload.record_id in listing or "Sixth General Assembly" in listing
        rpath = "/author/records/" + quote(env.payload.record_id, safe=":")
        page = await (await client.get(rpath)).text()
        assert "read only" in page and "/edit" not in page
        for action in ("/edit", "/cancel", "/delete"):
            assert (await client.post(rpath + action, data={"csrf_token": csrf})).status == 403

    async def test_operator_token_api_still_works_and_history_says_so(self, client: TestClient,
                                                                      event: dict[str, Any]) -> None:
        resp = await client.post("/api/v1/records", json={"kind": "cultural-event", "body": event},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        record_id = (await resp.json())["record_id"]
        await sign_in(client)
        html = await (await client.get("/author/records/" + quote(record_id, safe=":") + "/history")).text()
        assert "operator token (API)" in html


    async def test_import_report_in_arabic_words_row_errors_in_arabic(self, client: TestClient) -> None:
        """The import report read in Arabic gives every row error in Arabic (a schema error naming the field, a
        repeated source_id), the parser's technical words only behind "تفاصيل تقنية"; a file that is not UTF-8
        is refused in Arabic too."""
        import aiohttp

        csrf = await sign_in(client)

        def form(data: bytes) -> aiohttp.FormData:
            out = aiohttp.FormData()
            out.add_field("csrf_token", csrf)
            out.add_field("mode", "dry-run")
            out.add_field("file", data, filename="events.csv", content_type="text/csv")
            return out

        bad = (paths.IMPORT_SAMPLE.read_bytes().replace(b"Asia/Qatar,mixed", b"Asia/Qatar,by-boat")
               .replace(b"katara-2026-002", b"katara-2026-001"))
        resp = await client.post("/author/import", data=form(bad), allow_redirects=False)
        assert resp.status == 303, await resp.text()

        async def finished() -> str | None:
            html = await (await client.get(resp.headers["Location"] + "?lang=ar")).text()
            return None if "data-follow" in html else html

        html = str(await eventually(finished, within=10))
        assert 'dir="rtl"' in html
        assert "\u2068طريقة الحضور\u2069: اختر أحد الخيارات." in html
        assert "في صف سابق قيمة \u2066source_id\u2069 نفسها \u2068katara-2026-001\u2069" in html
        assert "choose one of the options" not in html and "earlier row" not in html
        refused = await client.post("/author/import?lang=ar", data=form(b"source_id,kind\n\xff\xfe,x\n"))
        page = await refused.text()
        assert refused.status == 422 and "الملف غير محفوظ بترميز" in page
        assert "<summary>تفاصيل تقنية</summary>" in page and "byte 15" in page


def _changes_with(env: Any) -> Any:
    from node.store.records import Changes

    return Changes(cursor=1, envelopes=[(env, 1)], records={env.payload.record_id: env})


class TestUpload:
    async def test_upload_dry_run_then_import_with_progress_page(self, client: TestClient) -> None:
        """The upload page checks a file (per row: what would happen, every error by column), then imports it;
        the job page shows the report; importing the same file again changes nothing."""
        import aiohttp

        csrf = await sign_in(client)

        async def upload(mode: str, data: bytes) -> str:
            form = aiohttp.FormData()
            form.add_field("csrf_token", csrf)
            form.add_field("mode", mode)
            form.add_field("file", data, filename="events.csv", content_type="text/csv")
            resp = await client.post("/author/import", data=form, allow_redirects=False)
            assert resp.status == 303, await resp.text()

            async def finished() -> str | None:
                html = await (await client.get(resp.headers["Location"])).text()
                return None if "data-follow" in html else html

            return str(await eventually(finished, within=10))  # the job page stops refreshing when it is done

        bad = paths.IMPORT_SAMPLE.read_bytes().replace(b"Asia/Qatar,mixed", b"Asia/Qatar,by-boat")
        html = await upload("dry-run", bad)
        assert "1 to create, 0 to update, 0 unchanged, 1 with errors" in html
        assert "attendance_mode</code>: How people attend: choose one of the options." in html
        html = await upload("all", bad)
        assert "Nothing was published" in html and (await client.app[SERVICE].counts()).own == 0
        html = await upload("valid", bad)
        assert "1 created, 0 updated, 0 unchanged, 0 with errors, 1 skipped" in html
        html = await upload("all", paths.IMPORT_SAMPLE.read_bytes())
        assert "1 created, 0 updated, 1 unchanged" in html
        html = await upload("all", paths.IMPORT_SAMPLE.read_bytes())
        assert "0 created, 0 updated, 2 unchanged" in html

    async def test_upload_without_token_refused(self, client: TestClient) -> None:
        import aiohttp

        await sign_in(client)
        form = aiohttp.FormData()
        form.add_field("file", b"source_id,kind\n", filename="x.csv")
        resp = await client.post("/author/import", data=form)
        assert resp.status == 403 and (await resp.json())["reason"] == "csrf"


class TestRefusalsForPeople:
    async def test_a_refusal_is_a_page_in_the_readers_language_and_json_for_scripts(self, client: TestClient) -> None:
        """A browser asking for an authoring page the node refuses (no such record here) gets a page in its
        language: the reason's label and sentence from the catalogue, the slug as an isolated code, the problem's
        English detail behind "Technical details"; a script (no text/html in Accept) keeps the RFC 9457 problem."""
        await sign_in(client)
        html_accept = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"}
        r = await client.get("/author/records/QA:nothing?lang=ar", headers=html_accept)
        assert r.status == 404 and r.content_type == "text/html"
        html = await r.text()
        assert '<html lang="ar" dir="rtl">' in html and "<h1>السجل غير موجود</h1>" in html
        assert "لا يوجد سجل بهذا المعرّف." in html and '<code class="slug" dir="ltr"><bdi>record-not-found</bdi>' in html
        assert '<summary>تفاصيل تقنية</summary><p lang="en" dir="ltr">' in html
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
        r = await client.get("/author/nowhere?lang=en", headers=html_accept)
        assert r.status == 404 and "Nothing was found at this address." in await r.text()
        r = await client.get("/author/records/QA:nothing")
        assert r.status == 404 and r.content_type == PROBLEM and (await r.json())["reason"] == "record-not-found"

    async def test_an_import_that_failed_says_so_in_words_with_the_error_behind_details(
            self, client: TestClient) -> None:
        """An import job that stopped on an exception shows the catalogue's sentence, not the exception's text,
        which stays behind "Technical details"."""
        await sign_in(client)
        client.app[PAGES].jobs["j1"] = ImportJob("j1", "amal", "all", total=2, error="OperationalError: disk full")
        html = await (await client.get("/author/import/j1?lang=ar")).text()
        assert "توقف الاستيراد بسبب خطأ." in html
        assert re.search(r'<details><summary>تفاصيل تقنية</summary><code lang="en" dir="ltr">'
                         r"OperationalError: disk full</code></details>", html)
        assert "<p>OperationalError" not in html


class TestMigration:
    @pytest.mark.empty_db
    async def test_0006_upgrades_a_database_with_records_and_downgrades(self, config: NodeConfig,
                                                                        event: dict[str, Any]) -> None:
        """0003 -> 0006 keeps what was there and adds the authoring tables; downgrading removes them again."""
        import sqlalchemy as sa
        from alembic import command
        from sqlalchemy.engine import Connection

        from federation.server.db import engine as db
        from node.store.records import MIGRATIONS, VERSION_TABLE

        engine = db.make_engine(config.db_url)
        try:
            await db.migrate(engine, MIGRATIONS, VERSION_TABLE, "0003")

            def tables(conn: Connection) -> set[str]:
                return set(sa.inspect(conn).get_table_names())

            async with engine.connect() as conn:
                assert "drafts" not in await conn.run_sync(tables)
            await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
            async with engine.connect() as conn:
                assert {"staff_users", "drafts", "record_authors", "import_sources"} <= await conn.run_sync(tables)
            cfg = db._alembic_config(MIGRATIONS, VERSION_TABLE)

            def down(conn: Connection) -> None:
                cfg.attributes["connection"] = conn
                command.downgrade(cfg, "0003")

            async with engine.begin() as conn:
                await conn.run_sync(down)
            async with engine.connect() as conn:
                assert not {"staff_users", "drafts", "record_authors", "import_sources"} & await conn.run_sync(tables)
        finally:
            await engine.dispose()


class TestSignInAbuse:
    """Sign-in abuse at the authoring pages (docs/adr/0018-sign-in-abuse.md): behind a trusted proxy, which says
    each client's address in X-Forwarded-For."""

    @pytest.fixture
    async def proxied(self, aiohttp_client: Any, config: NodeConfig) -> TestClient:
        c = await aiohttp_client(create_app(dataclasses.replace(config, trusted_proxies="127.0.0.1, ::1"),
                                            sync=False))
        await c.app[PAGES].staff.add_user("amal", PASSWORD, "Amal")
        return c

    async def test_attacker_cannot_lock_out_staff_signing_in_from_another_address(self, proxied: TestClient) -> None:
        there = {"X-Forwarded-For": "192.0.2.66"}
        for _ in range(6):
            await post_sign_in(proxied, username="amal", password="a guess", headers=there)
        resp = await post_sign_in(proxied, username="amal", password=PASSWORD, headers=there)
        assert resp.status == 429 and "Retry-After" in resp.headers
        resp = await post_sign_in(proxied, username="amal", password=PASSWORD,
                                  headers={"X-Forwarded-For": "198.51.100.7"})
        assert resp.status == 303

    async def test_password_spraying_of_staff_names_throttled_per_address(self, proxied: TestClient) -> None:
        for i in range(20):  # a new name at each try: the address's budget, not any account's
            resp = await post_sign_in(proxied, username=f"user{i}", password="Spring2026!",
                                      headers={"X-Forwarded-For": "192.0.2.66"})
            assert resp.status == 401
        resp = await post_sign_in(proxied, username="user20", password="Spring2026!",
                                  headers={"X-Forwarded-For": "192.0.2.66"})
        assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
        assert (await post_sign_in(proxied, username="amal", password=PASSWORD,
                                   headers={"X-Forwarded-For": "198.51.100.7"})).status == 303

    async def test_stolen_staff_password_without_totp_code_refused(self, client: TestClient) -> None:
        secret = await client.app[PAGES].staff.enrol_totp("amal")
        form = await (await client.get("/author/signin")).text()
        assert 'autocomplete="one-time-code"' in form
        for code in ("", "123456"):
            resp = await post_sign_in(client, username="amal", password=PASSWORD, code=code)
            assert resp.status == 401
        now = client.app[SERVICE].clock().timestamp()
        resp = await post_sign_in(client, username="amal", password=PASSWORD, code=code_at(secret, now))
        assert resp.status == 303

    async def test_staff_totp_code_replay_refused(self, client: TestClient) -> None:
        """The step a code was used at is kept in the database: the same code opens nothing a second time."""
        secret = await client.app[PAGES].staff.enrol_totp("amal")
        now = datetime(2026, 12, 6, 12, 0, 10, tzinfo=UTC)
        client.app[SERVICE].clock = lambda: now
        code = code_at(secret, now.timestamp())
        assert (await post_sign_in(client, username="amal", password=PASSWORD, code=code)).status == 303
        client.session.cookie_jar.clear()
        assert (await post_sign_in(client, username="amal", password=PASSWORD, code=code)).status == 401
        now += timedelta(seconds=30)
        resp = await post_sign_in(client, username="amal", password=PASSWORD, code=code_at(secret, now.timestamp()))
        assert resp.status == 303

    async def test_removed_second_factor_no_longer_asked(self, client: TestClient) -> None:
        await client.app[PAGES].staff.enrol_totp("amal")
        await client.app[PAGES].staff.remove_totp("amal")
        assert (await post_sign_in(client, username="amal", password=PASSWORD)).status == 303
