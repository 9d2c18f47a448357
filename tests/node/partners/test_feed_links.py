"""Every link of every feed that names a record leads to that record (issue 19 item 2): followed over a real socket.

The node listens on a loopback port that is also its ``public_url``, so every absolute link the feeds carry can be
requested as given. Each format is read by the consumer a partner would use: the iCalendar by ``icalendar``, the
Atom feed by ``feedparser`` (whose ``entry.link`` is what a reader opens), the JSON Feed as JSON (checked against
JSON Feed 1.1 in test_feeds.py), OAI-PMH by the harvester ``Sickle`` (its responses validated against the OAI-PMH
and oai_dc XSDs).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import aiohttp
import feedparser
import icalendar

from federation.protocol.envelope import Envelope
from node.app import create_app
from node.appkeys import CONFIG, SERVICE
from node.config import NodeConfig
from node.partners.feeds import ATOM_PATH, ENVELOPE_REL, ICS_PATH, JSON_FEED_PATH
from tests.node.partners.test_oaipmh import (
    Node,
    node,  # noqa: F401  (a fixture)
    oai_schema,  # noqa: F401  (a fixture node uses)
    rid,
    seed,
    sickle_harvest,
)
from tests.support.factories import example_bodies
from tests.support.nodes import bearer, issue

HTML, JSON, JOSE = "text/html", "application/json", "application/jose+json"


@dataclasses.dataclass(frozen=True)
class Link:
    """A link a feed gives for a record: where it was found, the record it names, what it should answer."""

    where: str
    record_id: str | None  # None: the portal's list
    href: str
    type: str


async def follow(session: aiohttp.ClientSession, link: Link, gone: set[str]) -> None:
    """The link answers its media type, naming its record: a page (410 for a withdrawn record), the API item, or
    the envelope download."""
    async with session.get(link.href, allow_redirects=False) as resp:
        text = await resp.text()
        expected = 410 if link.record_id in gone and link.type == HTML else 200
        assert resp.status == expected, (link, resp.status)
        assert resp.content_type == link.type, (link, resp.content_type)
        if link.record_id is None:
            return
        if link.type == HTML:
            assert link.record_id in text, link
        elif link.type == JSON:
            assert json.loads(text)["record_id"] == link.record_id, link
        else:
            assert Envelope.from_bytes(text.encode()).payload.record_id == link.record_id, link


def calendar_links(raw: bytes) -> list[Link]:
    out = []
    for ev in icalendar.Calendar.from_ical(raw).walk("VEVENT"):
        record_id = str(ev["X-IPDN-RECORD-ID"])
        out.append(Link("ics URL", record_id, str(ev["URL"]), HTML))
        links = ev["LINK"] if isinstance(ev["LINK"], list) else [ev["LINK"]]
        out += [Link("ics LINK", record_id, str(x), str(x.params["FMTTYPE"])) for x in links
                if x.params["LINKREL"] == "alternate"]
        out.append(Link("ics X-IPDN-ENVELOPE-URL", record_id, str(ev["X-IPDN-ENVELOPE-URL"]), JOSE))
    return out


def json_feed_links(doc: dict[str, Any]) -> list[Link]:
    out = [Link("json home_page_url", None, doc["home_page_url"], HTML)]
    for item in doc["items"]:
        out.append(Link("json url", item["id"], item["url"], HTML))
        out += [Link(f"json _ipdn.links {x['rel']}", item["id"], x["href"], x["type"]) for x in item["_ipdn"]["links"]]
    return out


def atom_links(text: str) -> list[Link]:
    parsed = feedparser.parse(text)
    assert not parsed.bozo, parsed.get("bozo_exception")
    out = [Link("atom feed link", None, parsed.feed.link, HTML)]
    for entry in parsed.entries:
        record_id = entry.ipdn_record_id
        assert entry.links[0]["type"] == HTML and entry.link == entry.links[0]["href"]  # what a reader opens
        out += [Link(f"atom {x['rel']}", record_id, x["href"], x["type"]) for x in entry.links
                if x["rel"] in ("alternate", ENVELOPE_REL)]
    return out


async def test_every_feed_link_naming_a_record_opens_it(node: Node) -> None:  # noqa: F811
    """ICS, JSON Feed, Atom and oai_dc: each link naming a record (events and programmes, QA's and KR's, one
    withdrawn) answers its page as text/html (410 for the withdrawn one), and the machine links their JSON or
    envelope; the first link of each is the page."""
    ids = await seed(node)
    await node.service.delete(ids[1])
    node.clock.tick()
    gone = {ids[1]}
    base = node.service_url
    assert node.server.app[CONFIG].public_base == base
    links: list[Link] = []
    harvest = await sickle_harvest(node, metadataPrefix="oai_dc")  # anonymous, like any harvester
    # A partner key with a rate of its own: the limits' bursts (on the node's stopped clock) would cut the walk short.
    key = await issue(node.server.app[CONFIG], "link checker", rate=100_000)
    async with aiohttp.ClientSession(trust_env=False, headers=bearer(key)) as session:
        async with session.get(base + ICS_PATH) as resp:
            links += calendar_links(await resp.read())
        async with session.get(base + JSON_FEED_PATH, params={"limit": "100"}) as resp:
            links += json_feed_links(json.loads(await resp.text()))
        async with session.get(base + ATOM_PATH, params={"limit": "100"}) as resp:
            links += atom_links(await resp.text())
        for record in harvest.records:
            if record.deleted:
                continue
            page, api = record.metadata["identifier"]  # Sickle's oai_dc reading: the page first
            links += [Link("oai_dc identifier", rid(record.header.identifier), page, HTML),
                      Link("oai_dc identifier", rid(record.header.identifier), api, JSON)]
        assert all(link.href.startswith(base + "/") for link in links)
        named = {link.record_id for link in links if link.type == HTML}
        assert named >= set(ids), set(ids) - named  # every record is reached from some feed, by its page
        for link in dict.fromkeys(links):  # each once: feeds share most links
            await follow(session, link, gone)
    assert {link.where for link in links} >= {"ics URL", "json url", "atom alternate", "oai_dc identifier"}


async def test_portal_off_feeds_still_lead_to_record_pages(aiohttp_client: Any, config: NodeConfig) -> None:
    """With the portal turned off the list is gone (no home_page_url, no HTML alternate for the feed), but every
    item still links its record page, which stays."""
    client = await aiohttp_client(create_app(dataclasses.replace(config, portal=False), sync=False))
    record_id = (await client.app[SERVICE].create("cultural-event", example_bodies("cultural-event")[0])
                 ).payload.record_id
    doc = json.loads(await (await client.get(JSON_FEED_PATH)).text())
    assert "home_page_url" not in doc
    (item,) = doc["items"]
    assert item["url"] == f"{config.public_base}/events/{record_id}"
    parsed = feedparser.parse(await (await client.get(ATOM_PATH)).text())
    assert parsed.entries[0].link == item["url"]
    assert all(link.get("type") != HTML for link in parsed.feed.links)
    assert (await client.get(f"/events/{record_id}")).status == 200
    assert (await client.get("/events")).status == 404
