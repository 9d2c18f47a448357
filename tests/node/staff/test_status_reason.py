"""Cancelling and postponing with a reason through the authoring pages, end to end over HTTP (docs/adr/0031): with
``status_reasons`` on, the cancel page's reason is published in ``status_reason`` in the page's language and the
public page shows it; the form (made from cultural-event/v2) has the reason field with plain help in English and
Arabic, and a postponement with a reason publishes v2. With the setting off (the default) nothing of v2 is written
or offered."""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient

from federation.protocol.envelope import Envelope
from node.app import create_app
from node.appkeys import SERVICE
from node.config import NodeConfig
from node.staff.web import PAGES

PASSWORD = "a long enough passphrase"
EVENT_V1 = "https://schemas.ipdn.network/cultural-event/v1"
EVENT_V2 = "https://schemas.ipdn.network/cultural-event/v2"
FORM = {"_kind": "cultural-event", "title.en": "Calligraphy evening", "event_type": "workshop",
        "status": "scheduled", "start": "2026-05-01T19:00", "end": "2026-05-01T21:00", "timezone": "Asia/Qatar",
        "attendance_mode": "online", "online_url": "https://example.org/live", "organizers.0.name.en": "Katara",
        "organizers.0.country": "QA", "rights": "https://creativecommons.org/licenses/by/4.0/"}


async def node(aiohttp_client: Any, config: NodeConfig, status_reasons: bool) -> TestClient:
    c = await aiohttp_client(create_app(dataclasses.replace(config, status_reasons=status_reasons), sync=False))
    await c.app[PAGES].staff.add_user("amal", PASSWORD, "Amal")
    return c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


async def signed_in_with_a_record(client: TestClient, **form: str) -> tuple[str, str]:
    """Sign in and publish an event through the form; the session's CSRF token and the record's page path."""
    token = csrf_of(await (await client.get("/author/signin")).text())
    resp = await client.post("/author/signin", data={"csrf_token": token, "username": "amal", "password": PASSWORD,
                                                     "next": "/author/"}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    csrf = csrf_of(await (await client.get("/author/")).text())
    resp = await client.post("/author/drafts", data={"csrf_token": csrf, "_lang": "en", **FORM, **form},
                             allow_redirects=False)
    assert resp.status == 303, await resp.text()
    done = await client.post(resp.headers["Location"].split("?")[0] + "/publish", data={"csrf_token": csrf},
                             allow_redirects=False)
    assert "done=published" in done.headers["Location"], await done.text()
    record_id = (await client.app[SERVICE].list_records(limit=5))[0][0].record_id
    return csrf, "/author/records/" + quote(record_id, safe=":")


async def current(client: TestClient, rpath: str) -> Envelope:
    rec = await client.app[SERVICE].get(rpath.rsplit("/", 1)[1])
    return Envelope.from_bytes(rec.envelope)


class TestWithStatusReasons:
    @pytest.mark.parametrize(("lang", "reason", "label"), [
        ("en", "The hall is closed\nfor repairs", "Reason, shown to the public"),
        ("ar", "أُغلقت القاعة للصيانة", "السبب، يظهر للجمهور"),
    ])
    async def test_cancel_with_a_reason_is_published_and_shown(self, aiohttp_client: Any, config: NodeConfig,
                                                               lang: str, reason: str, label: str) -> None:
        """The cancel page, in the staff's language, says the reason is public and takes it in that language; the
        cancellation pins v2 with the reason as one line in that language, the history keeps what was typed, and
        the public page shows it beside the status, in its language and direction."""
        client = await node(aiohttp_client, config, True)
        csrf, rpath = await signed_in_with_a_record(client)
        html = await (await client.get(rpath + f"/cancel?lang={lang}")).text()
        assert label in html and f'name="reason_lang" value="{lang}"' in html
        assert re.search(rf'<textarea id="reason" name="reason"[^>]* lang="{lang}"', html)
        done = await client.post(rpath + "/cancel", data={"csrf_token": csrf, "reason": reason,
                                                          "reason_lang": lang}, allow_redirects=False)
        assert "done=cancelled&version=2" in done.headers["Location"]
        env = await current(client, rpath)
        one_line = " ".join(reason.split())
        assert env.payload.schema == EVENT_V2
        assert (env.payload.body or {})["status_reason"] == {lang: one_line}
        history = await client.app[PAGES].staff.history(env.payload.record_id)
        assert history[0].note == reason.strip()
        public = await (await client.get(f"/events/{env.payload.record_id}", params={"lang": lang})).text()
        assert re.search(rf'<dd class="reason" lang="{lang}" dir="{"rtl" if lang == "ar" else "ltr"}">'
                         rf"{re.escape(one_line)}</dd>", public)

    async def test_cancel_without_a_reason_stays_v1(self, aiohttp_client: Any, config: NodeConfig) -> None:
        """No reason typed: the cancellation is a v1 record, as the previous release writes."""
        client = await node(aiohttp_client, config, True)
        csrf, rpath = await signed_in_with_a_record(client)
        await client.post(rpath + "/cancel", data={"csrf_token": csrf, "reason": "  ", "reason_lang": "en"})
        env = await current(client, rpath)
        assert env.payload.schema == EVENT_V1 and (env.payload.body or {})["status"] == "cancelled"

    @pytest.mark.parametrize(("lang", "label", "help_words"), [
        ("en", "Reason for the change", "shown beside the status on the event's public page"),
        ("ar", "سبب التغيير", "يظهر بجانب الحالة في صفحة الفعالية العامة"),
    ])
    async def test_form_has_the_reason_field_with_plain_help(self, aiohttp_client: Any, config: NodeConfig,
                                                             lang: str, label: str, help_words: str) -> None:
        """The form made from cultural-event/v2 has the reason, labelled and explained in plain words in the
        staff's language (the catalogue's field.status_reason and help.status_reason)."""
        client = await node(aiohttp_client, config, True)
        await signed_in_with_a_record(client)
        html = await (await client.get(f"/author/new/cultural-event?lang={lang}")).text()
        assert 'name="status_reason.' in html and label in html
        assert help_words.replace("'", "&#39;") in html or help_words in html

    async def test_postpone_through_the_form_with_a_reason(self, aiohttp_client: Any, config: NodeConfig) -> None:
        """Editing the record to Postponed with a reason in English and Arabic publishes v2 with both; setting it
        back to Scheduled with the reason left in is refused on the form, naming the status."""
        client = await node(aiohttp_client, config, True)
        csrf, rpath = await signed_in_with_a_record(client)
        edit = await client.post(rpath + "/edit", data={"csrf_token": csrf}, allow_redirects=False)
        dpath = edit.headers["Location"]
        reason = {"status_reason.en": "The calligrapher is ill", "status_reason.ar": "الخطّاط مريض"}
        await client.post(dpath, data={"csrf_token": csrf, "_lang": ["en", "ar"], **FORM, "status": "postponed",
                                       **reason})
        done = await client.post(dpath + "/publish", data={"csrf_token": csrf}, allow_redirects=False)
        assert "done=published&version=2" in done.headers["Location"], await done.text()
        env = await current(client, rpath)
        assert env.payload.schema == EVENT_V2
        assert (env.payload.body or {})["status_reason"] == {"en": "The calligrapher is ill", "ar": "الخطّاط مريض"}

        edit = await client.post(rpath + "/edit", data={"csrf_token": csrf}, allow_redirects=False)
        dpath = edit.headers["Location"]
        await client.post(dpath, data={"csrf_token": csrf, "_lang": ["en", "ar"], **FORM, **reason})
        refused = await client.post(dpath + "/publish", data={"csrf_token": csrf}, allow_redirects=False)
        assert refused.status == 422 and 'href="#f-status"' in await refused.text()
        assert (await current(client, rpath)).payload.version == 2


class TestWithoutStatusReasons:
    async def test_nothing_of_v2_offered_or_written(self, aiohttp_client: Any, config: NodeConfig) -> None:
        """The default: the form has no reason field, the cancel page says the reason goes to the history, and the
        cancellation is v1 with the reason in the history only."""
        assert {f.name: f.default for f in dataclasses.fields(NodeConfig)}["status_reasons"] is False
        client = await node(aiohttp_client, config, False)
        csrf, rpath = await signed_in_with_a_record(client)
        assert 'name="status_reason.' not in await (await client.get("/author/new/cultural-event")).text()
        html = await (await client.get(rpath + "/cancel?lang=en")).text()
        assert "Reason (shown in the history)" in html and "reason_lang" not in html
        await client.post(rpath + "/cancel", data={"csrf_token": csrf, "reason": "the hall is closed"})
        env = await current(client, rpath)
        assert env.payload.schema == EVENT_V1 and "status_reason" not in (env.payload.body or {})
        assert (await client.app[PAGES].staff.history(env.payload.record_id))[0].note == "the hall is closed"
