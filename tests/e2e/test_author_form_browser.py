"""The authoring form's pickers in a real browser (Debian's chromium, headless): the licence picker with the node's
preset, the recurrence builder, the time zones by country with their filter, the preview in words, and the import
page's radios beside their labels (issue 18).

A hub and Qatar's node run as real processes on loopback ports; the node's operator has set ``default_licence`` to
CC BY-SA (``IPDN_NODE_DEFAULT_LICENCE``). A staff member publishes a weekly recurring event under another licence
through the form; the record the node stores holds the RRULE and the licence's URI. Every page is checked at 390 px
and 1280 px in Arabic and English: nothing wider than the window, ``html[lang]``/``html[dir]`` right, axe-core
content (no violation of any impact).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import chromium
from tests.support.harness import IPDN, Federation
from tests.support.pages import layout_problems

PASSWORD = "correct horse battery staple"
WIDTHS = (390, 1280)
CC_BY_SA = "https://creativecommons.org/licenses/by-sa/4.0/"
CC_BY_NC = "https://creativecommons.org/licenses/by-nc/4.0/"
BY_NC_WORDS = "Anyone may use and change it, naming us, but not to make money"


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """The hub and Qatar's node (SQLite: this is about the pages), CC BY-SA the node's preset, a staff account."""
    root = tmp_path_factory.mktemp("form")
    f = Federation(root, ["QA"]).init()
    subprocess.run([IPDN, "node", "user", "add", "--dir", str(root / "QA"), "amal", "--name", "Amal Al-Kuwari",
                    "--password-stdin"], input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    try:
        f.start("hub")
        f.start("QA", env={"IPDN_NODE_DEFAULT_LICENCE": "by-sa"})
        yield f
    finally:
        f.close()


def sign_in(page: Any, base: str) -> None:
    page.goto(base + "/author/signin?lang=en")
    page.fill("#username", "amal")
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")


def checked(page: Any, name: str) -> str | None:
    return page.evaluate(f"(document.querySelector('input[name=\"{name}\"]:checked') || {{}}).value || null")


def test_publish_a_weekly_recurring_event_under_a_chosen_licence(qa: Federation) -> None:
    """The preset is chosen on a new event; staff choose another licence by what it allows, a time zone by
    typing the country's name, "every week on Monday and Thursday, 6 times" in the builder; the preview says it
    in words, and the stored record holds FREQ=WEEKLY;COUNT=6;BYDAY=MO,TH and the licence's URI."""
    base = qa.url("QA")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-GB")
        page.set_default_timeout(15_000)
        sign_in(page, base)
        page.goto(base + "/author/new/cultural-event?lang=en")
        assert checked(page, "rights") == CC_BY_SA  # the operator's preset
        assert not page.locator("#f-rights-uri").is_visible()  # "another licence" is not chosen
        assert not page.locator("#f-recurrence-interval").is_visible()  # "does not repeat"

        page.locator("#f-title--en").fill("Calligraphy evenings")
        page.locator("#f-event_type").select_option("workshop")
        page.locator("#f-status").select_option("scheduled")
        assert page.locator("#f-timezone optgroup").first.get_attribute("label") == "Qatar"  # the node's first
        page.get_by_label("Find a time zone (country or city)").fill("qatar")  # one zone left: chosen
        assert page.locator("#f-timezone").input_value() == "Asia/Qatar"
        page.get_by_label("Find a time zone (country or city)").fill("los angeles")
        assert page.locator("#f-timezone option:not([hidden])").all_inner_texts() == ["— choose —", "Los Angeles"]
        page.get_by_label("Find a time zone (country or city)").fill("doha qatar")
        assert page.get_by_text("No time zone matches.").is_visible()
        page.locator("#f-timezone").select_option("Asia/Qatar")
        page.locator("#f-start").fill("2027-01-04T19:00")
        page.locator("#f-end").fill("2027-01-04T21:00")
        page.locator("#f-attendance_mode").select_option("online")
        page.locator("#f-online_url").fill("https://www.katara.net/live")
        page.locator("#f-organizers--0--name--en").fill("Katara")
        page.locator("#f-rights").get_by_label(BY_NC_WORDS).check()

        page.get_by_label("How often").select_option("weekly")
        assert page.locator("#f-recurrence-count").is_visible()
        assert not page.locator("#f-recurrence-monthday").is_visible()  # for monthly only
        page.get_by_label("Monday").check()
        page.get_by_label("Thursday").check()
        page.get_by_label("Number of times").fill("6")
        page.get_by_role("button", name="Preview").click()
        page.wait_for_selector("#preview")
        preview = page.locator("#preview").inner_text()
        assert "Every week on Monday and Thursday, 6 times in all" in preview
        assert BY_NC_WORDS + " CC BY-NC 4.0" in preview.replace("(", "").replace(")", "")
        assert "Qatar Time" in preview and "Workshop" in preview and "T19:00" not in preview
        assert page.locator("#preview time").first.get_attribute("datetime") == "2027-01-04T19:00:00+03:00"
        form_words = page.locator(".rule-words").inner_text()
        assert "Every week on Monday and Thursday, 6 times in all" in form_words

        page.get_by_role("button", name="Publish…").click()
        page.wait_for_url("**/publish")
        page.get_by_role("button", name="Yes, publish").click()
        page.wait_for_url("**/author/records/**")
        record_id = page.locator("code").first.inner_text()
        code, doc = qa.record("QA", record_id)
        assert code == 200, doc
        assert doc["body"]["recurrence"] == "FREQ=WEEKLY;COUNT=6;BYDAY=MO,TH"
        assert doc["body"]["rights"] == CC_BY_NC
        assert doc["body"]["timezone"] == "Asia/Qatar" and doc["body"]["start"] == "2027-01-04T19:00:00+03:00"

        # Opened again and saved without a change, the record's rule and licence are as they were.
        page.get_by_role("button", name="Edit").click()
        page.wait_for_url("**/author/drafts/*")
        assert checked(page, "rights") == CC_BY_NC and page.get_by_label("Thursday").is_checked()
        page.goto(page.url.split("?")[0] + "?lang=ar")
        assert "كل أسبوع، أيام" in page.locator(".rule-words").inner_text()
        page.get_by_label("ابحث عن منطقة زمنية (دولة أو مدينة)").fill("قطر")
        assert page.locator("#f-timezone").input_value() == "Asia/Qatar"
        page.close()


# Each option row: its radio's and its label's boxes (is the label beside the radio, on which side, how tall).
_OPTIONS = """(sel) => Array.from(document.querySelectorAll(sel)).map((row) => {
  const box = (el) => { const r = el.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top,
                                                                      bottom: r.bottom, height: r.height}; };
  return {row: box(row), input: box(row.querySelector("input")), label: box(row.querySelector("label"))};
})"""


def _beside(page: Any, selector: str, lang: str, where: str, problems: list[str]) -> None:
    """Every radio or checkbox of ``selector`` sits beside its label (on the start side: right in Arabic), in a
    row at least 44 px tall that its label fills."""
    rows = page.evaluate(_OPTIONS, selector)
    assert rows, (where, selector)
    for r in rows:
        i, lab, row = r["input"], r["label"], r["row"]
        side = i["left"] >= lab["right"] - 1 if lang == "ar" else i["right"] <= lab["left"] + 1
        level = lab["top"] <= (i["top"] + i["bottom"]) / 2 <= lab["bottom"]
        if not (side and level and row["height"] >= 44 and lab["height"] >= 44 - 0.5):
            problems.append(f"{where} {selector}: input {i} label {lab} row {row}")


def test_the_form_and_the_import_page_fit_a_phone_in_arabic_and_english(qa: Federation) -> None:
    """The form with the builder open (weekly), another licence typed and the preview, and the import page: at
    390 and 1280 px, in both languages, nothing sticks out, axe finds nothing, and each licence, day and import
    mode sits beside its label in a 44 px row (right in Arabic)."""
    base = qa.url("QA")
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 390, "height": 844}, locale="ar-QA")
        page.set_default_timeout(15_000)
        sign_in(page, base)
        page.goto(base + "/author/new/cultural-event?lang=en")
        page.locator(".actions button[value=save]").click()
        page.wait_for_url("**/author/drafts/*")
        draft = page.url.split("?")[0]
        page.locator("#f-title--en").fill("Open studio")
        page.locator("#f-timezone").select_option("Asia/Qatar")
        page.locator("#f-start").fill("2027-01-04T19:00")
        page.locator("#f-recurrence-freq").select_option("weekly")
        page.locator("#f-recurrence-day-SA").check()
        page.locator("#f-recurrence-until").fill("2027-06-30")
        page.locator("#f-rights-other").check()
        page.locator("#f-rights-uri").fill("http://rightsstatements.org/vocab/NoC-US/1.0/")
        with page.expect_navigation():
            page.locator(".actions button[value=save]").click()
        for lang in ("ar", "en"):
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 844 if width < 800 else 900})
                page.goto(f"{draft}?lang={lang}")
                where = f"form ({lang}, {width} px)"
                assert page.locator("#f-rights-uri").is_visible(), where
                assert page.locator("#f-recurrence-day-SA").is_checked(), where
                problems += layout_problems(page, where, lang)
                _beside(page, ".licence .option", lang, where, problems)
                _beside(page, ".recurrence .days .option", lang, where, problems)
                page.goto(f"{base}/author/import?lang={lang}")
                where = f"import ({lang}, {width} px)"
                problems += layout_problems(page, where, lang)
                _beside(page, "form.import .option", lang, where, problems)
        page.close()
    assert problems == [], "\n".join(problems)
