"""Debian's chromium, headless, driven by Playwright for the browser tests (``make test`` installs it).

Without chromium the tests skip with the reason, except in CI, where they are required.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support import paths

CHROMIUM = os.environ.get("IPDN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = paths.ROOT / "docs" / "images"


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Playwright ``Browser`` on Debian's chromium (sync API: the e2e tests are synchronous)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"chromium is required in CI and is not at {CHROMIUM} (make browser installs it)")
        pytest.skip(f"no chromium at {CHROMIUM}: `make browser` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's violations, of every impact, on the page as shown (axe-playwright-python)."""
    from axe_playwright_python.sync_playwright import Axe

    return list(Axe().run(page).response["violations"])


def axe_serious(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as shown."""
    return [v for v in axe_violations(page) if v.get("impact") in ("serious", "critical")]
