"""What the browser tests of the pages share: a refusal to show on the hub's pages, and the layout checks a
page must pass at every width (nothing wider than the window, its language and direction, axe content)."""

from __future__ import annotations

from typing import Any

from federation.protocol.envelope import Envelope
from federation.protocol.keys import SigningKey
from tests.support.browser import axe_violations
from tests.support.factories import Member, example_bodies, push_request
from tests.support.harness import Federation, http

BIDI_TITLE = "\u202eAdmin\u202c \u2067exe.txt\u2069 \u200fعنوان"

# The elements sticking out of the window, innermost first (the page's culprits, not their containers).
_OVERFLOW = """() => {
  const w = window.innerWidth, out = [];
  for (const el of document.querySelectorAll("body *")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || getComputedStyle(el).visibility === "hidden") continue;
    if (r.right > w + 0.5 || r.left < -0.5) {
      if (el.closest(".table-wrap, .scroll") && !el.matches(".table-wrap, .scroll")) continue;  // scrolls in its box
      out.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
               (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : "") +
               ` [${Math.round(r.left)}, ${Math.round(r.right)}]`);
    }
  }
  return {scroll: document.scrollingElement.scrollWidth, inner: w, culprits: out.slice(-6)};
}"""


def refuse_one(f: Federation, member: str) -> dict[str, Any]:
    """Push, signed with the member's own key on top of its chain, an envelope the hub's schema check refuses
    (its title full of bidi controls); the hub's answer for it."""
    code, page = http("GET", f.hub_url + "/api/v1/log?limit=1000")
    assert code == 200
    own = [Envelope.from_dict(e["envelope"]) for e in page["entries"]
           if Envelope.from_dict(e["envelope"]).payload.origin == member]
    m = Member(member, key=SigningKey.load(f.root / "keys" / f"{member}.key.pem"), seq=own[-1].payload.seq,
               prev=own[-1].hash)
    body = {**example_bodies("cultural-event")[0], "title": {"en": BIDI_TITLE}, "status": "not-a-status"}
    data, headers = push_request(m, [m.publish(body)], f.hub_url)
    code, doc = http("POST", f.hub_url + "/api/v1/envelopes", data=data, headers=headers)
    assert code == 200 and doc["results"][0]["status"] == "rejected", doc
    return dict(doc["results"][0])


def overflow(page: Any) -> dict[str, Any] | None:
    """None when the page is no wider than its window (``document.scrollingElement.scrollWidth <=
    innerWidth``); else the widths and the elements that stick out."""
    found = dict(page.evaluate(_OVERFLOW))
    return None if found["scroll"] <= found["inner"] else found


def layout_problems(page: Any, where: str, lang: str) -> list[str]:
    """The page as shown now, ``where`` naming it: its ``html[lang]`` and ``html[dir]`` are asserted; what is wrong
    is returned, an element wider than the window and each axe-core violation (of any impact)."""
    assert page.locator("html").get_attribute("lang") == lang, where
    assert page.locator("html").get_attribute("dir") == ("rtl" if lang == "ar" else "ltr"), where
    problems = []
    if (wide := overflow(page)) is not None:
        problems.append(f"{where}: {wide['scroll']} px wide in {wide['inner']}: {wide['culprits']}")
    for v in axe_violations(page):
        problems.append(f"{where}: axe {v['id']} ({v['impact']}): {v['help']} {[n['target'] for n in v['nodes']][:4]}")
    return problems
