"""The hub dashboard and a node's status page in a real browser (Debian's chromium, headless, via Playwright),
against real processes: a hub and two member nodes on loopback ports (a third member's node never starts).

The operator signs in, sees every member's row (the one that never connected flagged silent), watches a newly
published envelope move the counters without a reload, opens a refusal and reads its reason, and finds a
``<script>`` title and a title full of bidi overrides rendered as text. The screenshots in docs/images/ (shown
in the README) are taken here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.support.browser import SCREENSHOTS, axe_serious, chromium
from tests.support.factories import example_bodies
from tests.support.harness import Federation, http, wait_for
from tests.support.pages import BIDI_TITLE, refuse_one

XSS = "<script>alert(1)</script>"
PASSWORD = "operator password 2026"


def _cell(page: Any, member: str, field: str) -> str:
    return str(page.locator(f'tr[data-member="{member}"] [data-field="{field}"]').inner_text()).strip()


def test_operator_watches_the_federation_in_a_browser(fed_sqlite: Federation, tmp_path: Path) -> None:
    f = fed_sqlite
    f.start("hub", env={"IPDN_HUB_LIVE_INTERVAL": "0.3"})
    for m in ("QA", "KR"):  # TR's node never starts: silent
        f.start(m)
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    f.cli("hub", "operator", "add", "amal", "--dir", str(f.root / "hub"), "--password-file", str(tmp_path / "pw"))
    body = example_bodies("cultural-event")[0]
    first = f.publish("QA", "cultural-event", {**body, "title": {"en": XSS, "ar": body["title"]["ar"]}})
    f.wait_record("KR", first["record_id"])
    refusal = refuse_one(f, "QA")

    # Unauthenticated and forged requests, against the real process.
    assert http("GET", f.hub_url + "/dashboard/events", headers={"Accept": "text/event-stream"})[0] == 401
    assert http("POST", f.hub_url + "/dashboard/sign-in", data=b"name=amal&password=x",
                headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 403

    with chromium() as browser:
        context = browser.new_context(locale="en-GB", viewport={"width": 1500, "height": 900})
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

        # Sign in.
        page.goto(f.hub_url + "/dashboard")
        assert page.url.endswith("/dashboard/sign-in")
        page.fill("#name", "amal")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/dashboard$"))

        # Every member's row; the one that never connected stands out.
        for code in ("QA", "KR", "TR"):
            assert page.locator(f'tr[data-member="{code}"]').count() == 1
        assert "silent" in (page.locator('tr[data-member="TR"]').get_attribute("class") or "")
        assert "silent" not in (page.locator('tr[data-member="QA"]').get_attribute("class") or "")
        page.wait_for_selector("#live:not([hidden])")  # the event stream is open
        assert _cell(page, "QA", "accepted_today") == "1" and _cell(page, "QA", "refused_today") == "1"

        # A new envelope moves the counters, without a reload.
        page.evaluate("window.__notReloaded = true")
        f.publish("QA", "cultural-event", body)
        # (polled from here: the page's CSP forbids the string evaluation that wait_for_function uses)
        expect(page.locator('tr[data-member="QA"] [data-field="accepted_today"]')).to_have_text("2", timeout=10_000)
        assert page.evaluate("window.__notReloaded") is True
        wait_for("KR to pull the second envelope", lambda: _cell(page, "KR", "lag_envelopes") == "0"
                 and _cell(page, "KR", "last_pull_at") != "–", timeout=15)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
        assert axe_serious(page) == []

        # A refusal and its reason; the bidi title is text inside its own isolate.
        page.click('tr[data-member="QA"] th a')
        page.wait_for_url(re.compile(r"/dashboard/members/QA$"))
        titles = page.locator("td.title bdi").all_inner_texts()
        assert XSS in titles  # the <script> title, as text
        page.locator("tr[data-refusal] a").first.click()
        page.wait_for_url(re.compile(r"/dashboard/quarantine/\d+$"))
        assert page.locator("#refusal-reason").inner_text() == refusal["problem"]["reason"]
        assert page.locator("dd.title bdi").inner_text() == BIDI_TITLE.strip()
        with page.expect_download() as download:
            page.click("a[download]")
        raw = Path(download.value.path()).read_bytes()
        assert json.loads(raw)["protected"]  # the envelope as it arrived

        # Arabic: full right-to-left layout.
        page.goto(f.hub_url + "/dashboard?lang=ar")
        assert page.locator("html").get_attribute("dir") == "rtl"
        assert page.locator('tr[data-member="QA"] td bdi[lang="ar"]').count() == 1
        page.screenshot(path=str(SCREENSHOTS / "dashboard-ar.png"), full_page=True)

        # The node's status page, for the member's IT staff.
        node = context.new_page()
        node.goto(f.url("QA") + "/status/sign-in?lang=en")  # (the hub's language cookie is for 127.0.0.1, any port)
        node.fill("#token", f.tokens["QA"])
        node.click("button[type=submit]")
        node.wait_for_url(re.compile(r"/status$"))
        assert node.locator("#reachable").inner_text() == "yes"
        node.screenshot(path=str(SCREENSHOTS / "node-status.png"), full_page=True)
        assert axe_serious(node) == []
        assert dialogs == [] and errors == [], (dialogs, errors)
