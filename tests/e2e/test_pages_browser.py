"""Every page a member's staff, an operator or the public sees, in a real browser (Debian's chromium, headless)
at a phone's width (390 px) and a desktop's (1280 px), in Arabic and in English: nothing wider than the window
(``document.scrollingElement.scrollWidth <= innerWidth``; tables scroll inside their own box), ``html[lang]``
and ``html[dir]`` right, and axe-core finds no violation of any impact. The Arabic phone screenshots of the
pages shown in the docs go to docs/images/phone-ar-*.png.

A hub and two nodes run as real processes on loopback ports; one event is published at Qatar, one envelope
refused at the hub, one file imported as a dry run, so that every page has its content. The README's phone
screenshots (the authoring form, its error summary, the portal's home and record page...) are taken here.
"""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path
from typing import Any

from tests.support import paths
from tests.support.browser import SCREENSHOTS, chromium
from tests.support.factories import example_bodies
from tests.support.harness import IPDN, Federation, http
from tests.support.pages import layout_problems, refuse_one

PASSWORD = "correct horse battery staple"
WIDTHS = (390, 1280)
# The pages whose Arabic phone screenshot the docs show.
SHOWN = {"author-list", "author-new", "author-form-errors", "author-record", "author-import-report", "hub-member",
         "hub-refusal", "node-status", "event", "event-reason", "portal-home"}
BAD_ROW = ('katara-bad,cultural-event,Broken row,صف معطوب,,,workshop,scheduled,2026-05-01T19:00:00+03:00,'
           '2026-05-01T18:00:00+03:00,Asia/Qatar,offline,,,,,,,,,,,,http//no-scheme,,,\n')


def _check(page: Any, name: str, lang: str, width: int, problems: list[str], shots: Path) -> None:
    """The page as shown now, at this width: it fits, it says its language and direction, axe is content."""
    problems += layout_problems(page, f"{name} ({lang}, {width} px)", lang)
    if width == 390 and lang == "ar":
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        if name in SHOWN:  # the first screen, as the phone shows it
            page.screenshot(path=str(SCREENSHOTS / f"phone-ar-{name}.png"))


# Each character's box of the first occurrence of ``text`` under ``selector``: in order left to right.
_ORDER = """([selector, text]) => {
  const root = document.querySelector(selector);
  const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const at = n.data.indexOf(text);
    if (at < 0) continue;
    const lefts = [];
    for (let i = at; i < at + text.length; i++) {
      const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 1);
      lefts.push(r.getBoundingClientRect().left);
    }
    return lefts;
  }
  return null;
}"""


def _in_order(page: Any, selector: str, text: str) -> bool:
    """``text`` (a URL, a code) is shown left to right as written, wherever it sits in a right-to-left page."""
    lefts = page.evaluate(_ORDER, [selector, text])
    assert lefts is not None, f"{text!r} not under {selector}"
    return all(a < b for a, b in itertools.pairwise(lefts))


def _tour(browser: Any, lang: str, f: Federation, rid: str, problems: list[str], shots: Path,
          postponed: str = "") -> None:
    """Every page, in one language, at both widths: signed in on the way as a person would."""
    qa, hub = f.url("QA"), f.hub_url
    page = browser.new_page(viewport={"width": WIDTHS[0], "height": 844},
                            locale="ar-QA" if lang == "ar" else "en-GB")
    page.set_default_timeout(15_000)

    def visit(name: str, url: str, then: Any = None) -> None:
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 844 if width < 800 else 900})
            page.goto(url + ("&" if "?" in url else "?") + f"lang={lang}")
            if then is not None:
                then()
            _check(page, name, lang, width, problems, shots)

    # Signing in, on each of the three sign-in pages.
    visit("author-signin", qa + "/author/signin")
    page.fill("#username", "amal")
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    visit("hub-signin", hub + "/dashboard/sign-in")
    page.fill("#name", "amal")
    page.fill("#password", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    visit("status-signin", qa + "/status/sign-in")
    page.fill("#token", f.tokens["QA"])
    with page.expect_navigation():
        page.click("button[type=submit]")

    # The authoring pages.
    visit("author-list", qa + "/author/")
    visit("author-new", qa + "/author/new/cultural-event")
    with page.expect_navigation():
        page.click(".actions button[value=save]")
    draft = page.url.split("?")[0]

    def publish_with_errors() -> None:
        page.fill("#f-online_url", "http//no-scheme")  # the message names http:// and https://
        with page.expect_navigation():
            page.click(".actions button[value=publish]")

    visit("author-form-errors", draft, publish_with_errors)
    if lang == "ar":  # Latin inside Arabic sentences keeps its own order
        assert _in_order(page, ".error-summary", "https://"), "https:// reordered in the Arabic error summary"
    visit("author-record", qa + f"/author/records/{rid}")
    visit("author-history", qa + f"/author/records/{rid}/history")
    visit("author-cancel", qa + f"/author/records/{rid}/cancel")
    visit("author-import", qa + "/author/import")
    page.set_input_files("#file", files=[{
        "name": "events.csv", "mimeType": "text/csv",
        "buffer": paths.IMPORT_SAMPLE.read_bytes() + BAD_ROW.encode()}])
    with page.expect_navigation():
        page.click("form.import button[type=submit]")
    page.wait_for_selector("table.report")
    visit("author-import-report", page.url.split("?")[0])

    # The hub's dashboard and every page behind it; the node's status page; the public page.
    visit("hub-overview", hub + "/dashboard")
    visit("hub-member", hub + "/dashboard/members/QA")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        ids = page.locator("table.envelopes code")
        assert ids.first.inner_text() == rid
        assert ids.first.evaluate("(e) => e.getClientRects().length") == 1, f"{rid} broken over lines at {width} px"
    visit("hub-quarantine", hub + "/dashboard/quarantine")
    refusal = page.locator("a[href*='/dashboard/quarantine/']").first.get_attribute("href")
    visit("hub-refusal", hub + str(refusal))
    visit("hub-registry", hub + "/dashboard/registry")
    visit("hub-checkpoint", hub + "/dashboard/checkpoint")
    visit("hub-throughput", hub + "/dashboard/throughput")
    visit("node-status", qa + "/status")
    visit("event", qa + f"/events/{rid}")
    if postponed:  # a reason beside the status (cultural-event/v2), in the reader's language and direction
        visit("event-reason", qa + f"/events/{postponed}")
        reason = page.locator("dd.reason")
        assert (reason.get_attribute("lang"), reason.get_attribute("dir")) == (lang, "rtl" if lang == "ar" else "ltr")
    visit("portal-home", qa + "/")
    page.close()


def test_every_page_fits_a_phone_in_arabic_and_english_and_axe_finds_no_violation(tmp_path: Path) -> None:
    f = Federation(tmp_path, ["QA", "KR"]).init()
    subprocess.run([IPDN, "node", "user", "add", "--dir", str(tmp_path / "QA"), "amal", "--name", "Amal Al-Kuwari",
                    "--password-stdin"], input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    f.cli("hub", "operator", "add", "amal", "--dir", str(tmp_path / "hub"), "--password-file", str(tmp_path / "pw"))
    shots = tmp_path / "shots"
    shots.mkdir()
    problems: list[str] = []
    # QA writes reasons (docs/adr/0031): its cancel page takes a public reason, a postponed event shows one.
    toml = tmp_path / "QA" / "node.toml"
    toml.write_text("status_reasons = true\n" + toml.read_text(encoding="utf-8"), encoding="utf-8")
    try:
        f.start_all()
        # An event to come, so that the portal's home has one to show (published first: the record the tour
        # follows is the latest on the hub's member page).
        coming = example_bodies("cultural-event")[1]
        f.publish("QA", "cultural-event", {**coming, "status": "scheduled", "start": "2027-01-20T09:30:00+03:00",
                                           "end": "2027-01-20T13:30:00+03:00"})
        postponed = f.publish("QA", "cultural-event", {
            **coming, "status": "postponed", "start": "2027-02-10T09:30:00+03:00", "end": "2027-02-10T13:30:00+03:00",
            "status_reason": {"en": "The hall is being repaired; the new date follows.",
                              "ar": "القاعة قيد الصيانة، وسيُعلن الموعد الجديد لاحقًا."}})
        body = example_bodies("cultural-event")[0]
        event = f.publish("QA", "cultural-event", body)
        # A second version, so that the history shows changes (a title, a time, a choice, a tag added).
        body = {**body, "title": {**body["title"], "ar": "الجمعية العامة السادسة"}, "event_type": "conference",
                "end": "2020-01-22T17:00:00+03:00", "tags": [*body["tags"], "Katara"]}
        code, doc = http("PUT", f.url("QA") + "/api/v1/records/" + event["record_id"], {"body": body},
                         token=f.tokens["QA"], context=f.tls)
        assert code == 200, doc
        f.wait_record("KR", event["record_id"], version=2)
        refuse_one(f, "QA")
        with chromium() as browser:
            for lang in ("ar", "en"):
                _tour(browser, lang, f, event["record_id"], problems, shots, postponed["record_id"])
    finally:
        f.close()
    assert problems == [], "\n".join(problems)
