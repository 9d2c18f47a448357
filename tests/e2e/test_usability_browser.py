"""The usability script of docs/USABILITY.md, performed by a browser (Debian's chromium, headless, Playwright): the
five tasks a member's cultural officer does at the node's authoring pages, step by step as the script tells a
person, in Arabic on a phone (390 px) and in English on a desktop (1280 px), each timed.

A hub and Qatar's node run as real processes on loopback ports; two staff accounts are made with the CLI (Amal does
the tasks; her colleague Yousef published an event before she starts). The browser finds what to press by the
words the page shows in its language (the staff catalogue), as a person does, and each task ends on what tells the
person it is done (a status message, a report, a record found). Every page on the way says its language and
direction, fits the window, and axe-core finds no violation on it.

The time of each task (from its first page to the page that shows it done, page loads and the server's work
included; no reading or typing time, nor the test's own checks: the floor a person adds theirs to) is written to
``usability.json`` in the test's directory, and to the file ``IPDN_USABILITY_JSON`` names when set
(``docs/images/usability.json`` for the figures in docs/USABILITY.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from federation.server.ui.i18n import Catalog, Translator
from tests.support import paths
from tests.support.browser import chromium
from tests.support.harness import IPDN, Federation
from tests.support.pages import layout_problems

PASSWORD = "correct horse battery staple"
STAFF = Catalog(paths.ROOT / "node" / "staff" / "locale", "staff")
RUNS = (("ar", 390, 844), ("en", 1280, 900))
TASKS = ("publish", "fix-an-error", "cancel-with-a-reason", "import-a-file", "find-a-colleagues-event")
# The colleague's event, and the word each officer searches it by: "خط" finds "الخط" (Arabic folding, issue 18).
COLLEAGUE_TITLE = {"en": "Calligraphy evening with the masters", "ar": "أمسية الخط العربي مع كبار الخطاطين"}
SEARCH = {"en": "calligraphy", "ar": "خط"}
EVENT = {
    "en": {"title": "Open-air film night", "description": "Qatari short films under the stars, with the directors.",
           "organizer": "Katara Cultural Village", "reason": "The forecast is for a sandstorm that evening."},
    "ar": {"title": "ليلة أفلام في الهواء الطلق", "description": "أفلام قطرية قصيرة تحت النجوم بحضور المخرجين.",
           "organizer": "المؤسسة العامة للحي الثقافي (كتارا)", "reason": "تتوقع الأرصاد عاصفة رملية في ذلك المساء."},
}


def _plain(text: str) -> str:
    return text.replace("\u2068", "").replace("\u2069", "")


class Officer:
    """Amal at her browser in one language and width: she reads the page's words and the clock times her."""

    def __init__(self, page: Any, base: str, lang: str, width: int) -> None:
        self.page, self.base, self.lang, self.width = page, base, lang, width
        self.words: Translator = STAFF.translator(lang)
        self.times: dict[str, dict[str, float]] = {}  # task -> its seconds and the pages it went through
        self.pages: list[str] = []
        self.checking = 0.0  # seconds spent checking pages, taken out of the tasks' times

    def say(self, key: str, **values: Any) -> str:
        """What the page shows for ``key`` in this language (placeholders' bidi isolates left out)."""
        return _plain(self.words.gettext(key, **values))

    def status(self) -> str:
        """The page's status message, as read (bidi isolates left out)."""
        return _plain(self.page.get_by_role("status").inner_text())

    def button(self, key: str) -> Any:
        return self.page.get_by_role("button", name=self.say(key), exact=True)

    def link(self, key: str) -> Any:
        return self.page.get_by_role("link", name=self.say(key), exact=True)

    def click(self, target: Any) -> None:
        """Press and wait for the page it leads to, then check that page as the person sees it."""
        with self.page.expect_navigation():
            target.click()
        self.check()

    def check(self) -> None:
        """The page is in the officer's language and direction, fits the window and axe finds no violation (the
        time this takes is not the task's)."""
        start = time.perf_counter()
        here = self.page.url.split("?")[0]
        if not self.pages or self.pages[-1] != here:  # a page that refreshed itself (the import's) is one page
            self.pages.append(here)
            problems = layout_problems(self.page, f"{here} ({self.lang}, {self.width} px)", self.lang)
            assert problems == [], "\n".join(problems)
        self.checking += time.perf_counter() - start

    @contextmanager
    def task(self, name: str) -> Iterator[None]:
        start, seen, checked = time.perf_counter(), len(self.pages), self.checking
        yield
        spent = time.perf_counter() - start - (self.checking - checked)
        self.times[name] = {"seconds": round(spent, 2), "pages": len(self.pages) - seen}

    def fill_event(self, title: str, description: str, organizer: str, *, end: str = "2027-03-04T22:00") -> None:
        """The event form's fields, in the officer's language (the form offers it first)."""
        p, lang = self.page, self.lang
        p.locator(f"#f-title--{lang}").fill(title)
        p.locator(f"#f-description--{lang}").fill(description)
        p.locator("#f-event_type").select_option("screening")
        p.locator("#f-status").select_option("scheduled")
        p.locator("#f-timezone").select_option("Asia/Qatar")
        p.locator("#f-start").fill("2027-03-04T19:30")
        p.locator("#f-end").fill(end)
        p.locator("#f-attendance_mode").select_option("online")
        p.locator("#f-online_url").fill("https://www.katara.net/live")
        p.locator(f"#f-organizers--0--name--{lang}").fill(organizer)
        p.locator("#f-organizers--0--country").select_option("QA")
        # The rights: the node's licence preset is already chosen (node.toml default_licence).


def publish(o: Officer, title: str, description: str, organizer: str) -> str:
    """Task 1: new event, fill it in, Publish…, Yes, publish. The record's page says version 1 is published."""
    o.click(o.link("nav.new-event"))
    o.fill_event(title, description, organizer)
    o.click(o.button("form.publish"))
    assert "/publish" in o.page.url, "the confirmation page"
    o.click(o.button("confirm.yes-publish"))
    assert o.say("done.published", version=1) in o.status()
    return str(o.page.url.split("/author/records/")[1].split("?")[0])


def fix_an_error(o: Officer) -> None:
    """Task 2: Publish… an event whose end is before its start; the summary at the top says so; follow its link to
    the field, correct it, Publish… again, Yes, publish."""
    summary = o.page.locator("#errors")
    o.click(o.button("form.publish"))
    o.page.wait_for_function("document.activeElement && document.activeElement.id === 'errors'")
    box = summary.bounding_box()
    assert box is not None and 0 <= box["y"] < o.page.viewport_size["height"], "the summary is in view"
    summary.get_by_role("link").first.click()
    o.page.wait_for_function("document.activeElement && document.activeElement.id === 'f-end'")
    o.page.locator("#f-end").fill("2027-03-11T22:00")
    o.click(o.button("form.publish"))
    o.click(o.button("confirm.yes-publish"))
    assert o.say("done.published", version=1) in o.status()


def cancel_with_a_reason(o: Officer, record_id: str, reason: str) -> None:
    """Task 3: from the records list, open the event, Cancel…, write the reason, Yes, cancel it."""
    o.click(o.link("nav.records"))
    o.click(o.page.locator(f"a[href='/author/records/{record_id.replace(':', '%3A')}']"))
    o.click(o.link("record.cancel"))
    o.page.get_by_label(o.say("confirm.reason"), exact=True).fill(reason)
    o.click(o.button("confirm.yes-cancel"))
    assert o.say("done.cancelled", version=2) in o.status()


def import_a_file(o: Officer, file: Path) -> None:
    """Task 4: Import, choose the file, check it (dry run), read the report, then upload it to publish."""
    o.click(o.link("nav.import"))
    for mode in ("import.mode.dry-run", "import.mode.all"):
        o.page.get_by_label(o.say("import.file"), exact=True).set_input_files(str(file))
        o.page.get_by_label(o.say(mode), exact=True).check()
        o.click(o.button("import.submit"))
        o.page.wait_for_selector("table.report")  # the job page refreshes itself until the report is there
        o.check()
    assert o.page.locator("table.report tr.created").count() == 2, "both rows published"


def find_a_colleagues_event(o: Officer, word: str, title: str, colleague: str) -> None:
    """Task 5: in the records list, search a word of its title, open it, and see in its history who published it."""
    o.click(o.link("nav.records"))
    o.page.get_by_label(o.say("list.words"), exact=True).fill(word)
    o.click(o.button("list.apply"))
    o.click(o.page.get_by_role("link", name=title))
    o.click(o.link("record.history"))
    assert colleague in o.page.locator("main").inner_text()


def _sign_in(page: Any, base: str, username: str, lang: str) -> None:
    words = STAFF.translator(lang)
    page.goto(f"{base}/author/?lang={lang}")
    page.get_by_label(words.gettext("signin.username"), exact=True).fill(username)
    page.get_by_label(words.gettext("signin.password"), exact=True).fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name=words.gettext("signin.submit")).click()


def _colleague_publishes(browser: Any, base: str) -> None:
    """Before the officers start: Yousef publishes his event in Arabic and English through the pages (not timed)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="ar-QA")
    page.set_default_timeout(15_000)
    _sign_in(page, base, "yousef", "ar")
    yousef = Officer(page, base, "ar", 1280)
    yousef.click(yousef.link("nav.new-event"))
    yousef.fill_event(COLLEAGUE_TITLE["ar"], "كبار الخطاطين يعملون أمامكم.", "المؤسسة العامة للحي الثقافي (كتارا)")
    page.get_by_role("tab", name="(en)").first.click()  # the English panel of the title
    page.locator("#f-title--en").fill(COLLEAGUE_TITLE["en"])
    yousef.click(yousef.button("form.publish"))
    yousef.click(yousef.button("confirm.yes-publish"))
    page.close()


def _import_file(tmp: Path, lang: str) -> Path:
    """The officer's spreadsheet: the sample with its source ids made hers (each run imports new records)."""
    text = paths.IMPORT_SAMPLE.read_text(encoding="utf-8")
    rows = text.splitlines()
    out = [rows[0]] + [f"{lang}-{row}" for row in rows[1:] if row.strip()]
    path = tmp / f"events-{lang}.csv"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def _run(browser: Any, base: str, lang: str, width: int, height: int, tmp: Path) -> Officer:
    page = browser.new_page(viewport={"width": width, "height": height}, locale="ar-QA" if lang == "ar" else "en-GB")
    page.set_default_timeout(15_000)
    _sign_in(page, base, "amal", lang)
    o = Officer(page, base, lang, width)
    o.check()
    words = EVENT[lang]
    steps: dict[str, Callable[[], Any]] = {}
    record: list[str] = []
    steps["publish"] = lambda: record.append(publish(o, words["title"], words["description"], words["organizer"]))

    def with_an_error() -> None:  # the draft as the officer left it yesterday: saved, its end before its start
        o.click(o.link("nav.new-event"))
        o.fill_event(words["title"] + " 2", words["description"], words["organizer"], end="2027-03-04T18:00")
        o.click(o.button("form.save"))

    steps["fix-an-error"] = lambda: fix_an_error(o)
    steps["cancel-with-a-reason"] = lambda: cancel_with_a_reason(o, record[0], words["reason"])
    steps["import-a-file"] = lambda: import_a_file(o, _import_file(tmp, lang))
    steps["find-a-colleagues-event"] = lambda: find_a_colleagues_event(o, SEARCH[lang], COLLEAGUE_TITLE[lang],
                                                                       "Yousef Al-Emadi")
    for name in TASKS:
        if name == "fix-an-error":
            with_an_error()
        with o.task(name):
            steps[name]()
    page.close()
    return o


def test_five_tasks_of_a_cultural_officer_in_arabic_on_a_phone_and_english_on_a_desktop(tmp_path: Path) -> None:
    f = Federation(tmp_path, ["QA"]).init()
    for user, name in (("amal", "Amal Al-Kuwari"), ("yousef", "Yousef Al-Emadi")):
        subprocess.run([IPDN, "node", "user", "add", "--dir", str(tmp_path / "QA"), user, "--name", name,
                        "--password-stdin"], input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    try:
        f.start_all()
        base = f.url("QA")
        with chromium() as browser:
            _colleague_publishes(browser, base)
            officers = [_run(browser, base, lang, width, height, tmp_path) for lang, width, height in RUNS]
    finally:
        f.close()
    report = {"tasks": list(TASKS), "load_average": [round(x, 1) for x in os.getloadavg()], "cpus": os.cpu_count(),
              "runs": [{"lang": o.lang, "width": o.width, "tasks": o.times} for o in officers]}
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    (tmp_path / "usability.json").write_text(text, encoding="utf-8")
    if out := os.environ.get("IPDN_USABILITY_JSON"):
        Path(out).write_text(text, encoding="utf-8")
    for o in officers:
        assert list(o.times) == list(TASKS), o.times
