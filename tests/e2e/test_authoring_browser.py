"""Member staff publish through the authoring pages in a real browser (Debian's chromium, headless, Playwright).

A hub and two nodes run as real processes on loopback ports. A staff account is made with the CLI; chromium
signs in at Qatar's node, writes an event in English and Arabic, sees a validation message in plain words,
fixes it, publishes after the confirmation, and the event arrives at Korea's node. axe-core finds no serious
or critical violation on the list, the form (English and Arabic), the record and its history; the form's
screenshots in both languages go to docs/images/ (shown in the README).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import SCREENSHOTS, axe_serious, chromium
from tests.support.harness import IPDN, Federation

PASSWORD = "correct horse battery staple"
ATTACK = '<script>alert(1)</script>"><img src=x onerror=alert(2)>\u202eevil\u202c'


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[Federation]:
    """Hub, Qatar and Korea on SQLite (this is about the pages, not storage), with a staff account at Qatar."""
    f = Federation(tmp_path, ["QA", "KR"]).init()
    subprocess.run([IPDN, "node", "user", "add", "--dir", str(tmp_path / "QA"), "amal", "--name", "Amal Al-Kuwari",
                    "--password-stdin"], input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    try:
        f.start_all()
        yield f
    finally:
        f.close()


def sign_in(page: Any, base: str, check: bool = False) -> None:
    page.goto(base + "/author/")
    assert "/author/signin" in page.url  # no session: sent to sign in
    if check:
        no_serious(page, "sign-in")
    page.get_by_label("User name").fill("amal")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/author/")


def no_serious(page: Any, what: str) -> None:
    found = axe_serious(page)
    assert found == [], f"{what}: " + "; ".join(f"{v['id']}: {v['help']} ({len(v['nodes'])})" for v in found)


def test_staff_publish_an_event_in_arabic_and_english_that_reaches_another_node(two_nodes: Federation) -> None:
    fed = two_nodes
    qa = fed.url("QA")
    dialogs: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-GB")
        page.set_default_timeout(10_000)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        sign_in(page, qa, check=True)
        no_serious(page, "list")

        # A new event; Arabic added to the record's languages (the draft is saved, still unsigned).
        page.get_by_role("link", name="New event").click()
        page.get_by_label("Language code").fill("ar")
        page.get_by_role("button", name="Add language").click()
        page.wait_for_url("**/author/drafts/*")
        assert page.locator("#f-title--ar").get_attribute("dir") == "rtl"

        page.get_by_role("tab", name="English (en)").first.click()
        page.locator("#f-title--en").fill("Calligraphy evening")
        page.locator("#f-description--en").fill("An evening of Arabic calligraphy with master calligraphers.")
        page.locator("#f-organizers--0--name--en").fill("Cultural Village Foundation (Katara)")
        page.get_by_role("tab", name="Arabic (ar)").first.click()
        page.locator("#f-title--ar").fill("أمسية الخط العربي")
        page.locator("#f-description--ar").fill("أمسية مع كبار الخطاطين.")
        page.locator("#f-organizers--0--name--ar").fill("المؤسسة العامة للحي الثقافي (كتارا)")
        page.get_by_label("Type of event").select_option("workshop")
        page.locator("#f-status").select_option("scheduled")
        page.locator("#f-timezone").select_option("Asia/Qatar")
        page.locator("#f-start").fill("2026-05-01T19:00")
        page.locator("#f-end").fill("2026-05-01T18:00")  # before the start: a mistake
        page.locator("#f-attendance_mode").select_option("online")
        page.locator("#f-online_url").fill("https://www.katara.net/live")
        page.locator("#f-organizers--0--country").select_option("QA")
        # A second organizer, added in place by the script (no round trip: the page is not reloaded).
        page.evaluate("window.stillHere = true")
        page.get_by_role("button", name="Add another: Organizers").click()
        assert page.locator("#f-organizers--1--name--ar").is_visible()  # the language chosen last, everywhere
        page.get_by_role("tab", name="English (en)").last.click()
        page.locator("#f-organizers--1--name--en").fill("Korea Foundation")
        assert page.evaluate("window.stillHere === true")
        assert page.locator("#f-organizers--1").locator("legend").first.inner_text() == "Organizers 2"
        page.locator("#f-organizers--1--country").select_option("KR")
        page.locator("#f-rights").get_by_label("Anyone may use and change it, naming us as the source").check()
        page.get_by_role("button", name="Publish…").click()

        summary = page.get_by_role("alert")
        assert "End is before the start." in summary.inner_text()
        assert page.locator("#f-end").get_attribute("aria-invalid") == "true"
        page.screenshot(path=str(SCREENSHOTS / "author-form-en.png"))
        no_serious(page, "form with an error (en)")

        page.locator("#f-end").fill("2026-05-01T21:00")
        with page.expect_navigation():  # saved before the next page is asked for
            page.get_by_role("button", name="Save draft").click()
        page.goto(page.url.split("?")[0] + "?lang=ar")
        assert page.locator("html").get_attribute("dir") == "rtl"
        page.get_by_role("tab", name="العربية (ar)").first.click()
        page.screenshot(path=str(SCREENSHOTS / "author-form-ar.png"))
        no_serious(page, "form (ar)")
        page.goto(page.url.split("?")[0] + "?lang=en")

        page.get_by_role("button", name="Publish…").click()
        page.wait_for_url("**/publish")
        assert "version 1 of a new record" in page.content()
        page.get_by_role("button", name="Yes, publish").click()
        assert "Published: version 1." in page.get_by_role("status").inner_text()
        no_serious(page, "record")
        record_id = page.locator("code").first.inner_text()

        page.get_by_role("link", name="History").click()
        assert "Amal" in page.content() or "amal" in page.content()
        no_serious(page, "history")

        doc = fed.wait_record("KR", record_id)
        assert doc["body"]["title"] == {"en": "Calligraphy evening", "ar": "أمسية الخط العربي"}
        assert doc["body"]["start"] == "2026-05-01T19:00:00+03:00"
        assert [o["name"] for o in doc["body"]["organizers"]] == [
            {"en": "Cultural Village Foundation (Katara)", "ar": "المؤسسة العامة للحي الثقافي (كتارا)"},
            {"en": "Korea Foundation"}]

        page.goto(qa + "/author/?whose=own&state=published&lang=ar")
        assert "Calligraphy evening" in page.content() or "أمسية الخط العربي" in page.content()
        no_serious(page, "list (ar)")
        page.goto(qa + "/author/import?lang=en")
        no_serious(page, "import")
    assert dialogs == []


def test_script_injection_in_every_field_renders_as_text(two_nodes: Federation) -> None:
    """Markup and bidirectional overrides typed into every text field are shown as text: no script runs, no
    dialog opens, no element is injected, on the form and its preview."""
    fed = two_nodes
    qa = fed.url("QA")
    dialogs: list[str] = []
    with chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(10_000)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        sign_in(page, qa)
        page.goto(qa + "/author/new/cultural-event")
        page.get_by_role("button", name="Save draft").click()  # a draft to write into
        page.wait_for_url("**/author/drafts/*")  # the draft's page, not the empty form still being left
        filled = page.evaluate("""(attack) => {
            const boxes = document.querySelectorAll("form.record-form input:not([type]), form.record-form textarea");
            boxes.forEach((b) => { b.value = attack; });
            return boxes.length;
        }""", ATTACK)
        assert filled > 20
        page.get_by_role("button", name="Preview").click()
        page.wait_for_load_state()
        assert page.locator("img[src=x]").count() == 0
        assert page.locator("script:not([src])").count() == 0
        assert page.locator("#f-title--en").input_value() == ATTACK
        assert page.locator("#preview").count() == 0  # an invalid body is not previewed: its errors are shown
        assert page.locator("#errors li").count() > 0
        page.reload()
        assert dialogs == []


def test_preview_and_publish_with_errors_focus_the_summary_with_schema_and_rule_errors_at_once(
        two_nodes: Federation) -> None:
    """Preview and Publish of a draft with a missing title (a schema error) and an end before its start (a rule)
    show both in the one error summary at the top of the page, focused and in view; no preview of the invalid
    body, no jump to the bottom."""
    qa = two_nodes.url("QA")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-GB")
        page.set_default_timeout(10_000)
        sign_in(page, qa)
        page.goto(qa + "/author/new/cultural-event")
        page.locator(".actions button[value=save]").click()  # a draft ("add another" buttons are value=save too)
        page.wait_for_url("**/author/drafts/*")
        page.locator("#f-description--en").fill("An evening of calligraphy.")
        page.locator("#f-timezone").select_option("Asia/Qatar")
        page.locator("#f-start").fill("2026-05-01T19:00")
        page.locator("#f-end").fill("2026-05-01T18:00")
        for button in ("Preview", "Publish…"):
            page.get_by_role("button", name=button).click()
            page.wait_for_load_state()
            page.wait_for_function("document.activeElement && document.activeElement.id === 'errors'")
            summary = page.locator("#errors")
            text = summary.inner_text()
            assert "End is before the start." in text and "Title" in text, (button, text)
            assert "#preview" not in page.url and page.locator("#preview").count() == 0, button
            box = summary.bounding_box()
            assert box is not None and 0 <= box["y"] < 900, (button, box)  # in view, not scrolled past
            no_serious(page, f"form with errors after {button}")

