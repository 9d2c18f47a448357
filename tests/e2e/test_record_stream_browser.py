"""The record stream in a browser: a partner's page on another origin holds KR's stream with the browser's own
``EventSource`` (Chromium, headless), sees a record published at QA, and after KR restarts gets, by the browser's own
reconnection with ``Last-Event-ID``, exactly the record published while KR was down (hub and nodes as processes)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import chromium
from tests.support.factories import example_bodies
from tests.support.harness import Federation

pytestmark = pytest.mark.e2e

# The partner's page: every event it gets, as the browser parsed it (type, lastEventId, data).
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A partner's live list</title></head>
<body><main><h1>Events as they arrive</h1><ol id="got"></ol></main>
<script>
  window.got = []; window.opened = 0;
  const source = new EventSource(%s);
  source.onopen = () => { window.opened += 1; };
  source.addEventListener("record", (e) => {
    window.got.push({id: e.lastEventId, data: JSON.parse(e.data)});
    const li = document.createElement("li");
    li.textContent = JSON.parse(e.data).record_id;
    document.getElementById("got").append(li);
  });
</script></body></html>
"""


@pytest.fixture
def partner_site(tmp_path: Path) -> Iterator[Any]:
    """A static site on its own port (another origin than the node's), serving what the test writes."""
    root = tmp_path / "site"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(http.server.SimpleHTTPRequestHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_browser_eventsource_sees_records_and_resumes_after_the_node_restarts(fed_sqlite: Federation,
                                                                              partner_site: Any) -> None:
    fed = fed_sqlite
    root, site = partner_site
    fed.start("hub")
    fed.start_many(["QA", "KR"])
    stream = fed.url("KR") + "/api/v1/records/stream?origin=QA"
    (root / "index.html").write_text(PAGE % json.dumps(stream), encoding="utf-8")
    body = example_bodies("cultural-event")[0]

    with chromium() as browser:
        page = browser.new_page()
        page.goto(site + "/index.html")
        page.wait_for_function("window.opened >= 1", timeout=30_000)

        first = fed.publish("QA", "cultural-event", body)
        page.wait_for_function("window.got.length >= 1", timeout=30_000)  # a deadline: the event ends the wait
        got = page.evaluate("window.got")
        assert [g["data"]["record_id"] for g in got] == [first["record_id"]]
        assert got[0]["data"]["hash"] == first["hash"] and got[0]["id"]  # an id the browser resumes from

        # KR goes away; a record published meanwhile reaches KR when it is back, and the browser's EventSource,
        # reconnecting by itself with Last-Event-ID, gets that one record and not the first again.
        fed.stop("KR")
        missed = fed.publish("QA", "cultural-event", body)
        fed.start("KR")
        page.wait_for_function("window.got.length >= 2", timeout=60_000)
        got = page.evaluate("window.got")
        assert [g["data"]["record_id"] for g in got] == [first["record_id"], missed["record_id"]]
        assert page.evaluate("window.opened") >= 2  # it did reconnect (not a stream that never broke)
        assert page.locator("#got li").all_inner_texts() == [first["record_id"], missed["record_id"]]
