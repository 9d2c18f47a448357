"""Every link of every feed that names a record leads to that record (issue 19 item 2): followed over a real socket.

The node listens on a loopback port that is also its ``public_url``, so every absolute link the feeds carry can be
requested as given. Each format is read by the consumer a partner would use: the iCalendar by ``icalendar``, the
Atom feed by ``feedparser`` (whose ``entry.link`` is what a reader opens), the JSON Feed as JSON (checked against
JSON Feed 1.1 in test_feeds.py), OAI-PMH by the harvester ``Sickle`` (its responses validated against the OAI-PMH
and oai_dc XSDs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import aiohttp
import feedparser
import icalendar
from aiohttp.test_utils import TestServer
from sickle import Sickle

from federation.protocol.envelope import Envelope
from federation.protocol.registry import SignedRegistry
from node.app import create_app
from node.appkeys import CONFIG, SERVICE
from node.config import NodeConfig
from node.partners.feeds import ATOM_PATH, ENVELOPE_REL, ICS_PATH, JSON_FEED_PATH
from node.partners.oaipmh import record_id_of
from node.records.service import NodeService
from tests.support.factories import Member, example_bodies
from tests.support.harness import free_port
from tests.support.nodes import bearer, issue, make_config

HTML, JSON, JOSE = "text/html", "application/json", "application/jose+json"
NO_PROXY = {"http": None, "https": None}  # loopback only, whatever the environment says


async def listening_node(aiohttp_server: Any, tmp_path: Path, qa: Member, registry: SignedRegistry,
                         db_url: str) -> TestServer:
    """QA's node on a loopback port that is also its public_url: every absolute link can be requested as given."""
    port = free_port()  # known before the app is made: the node's public_url names it
    app = create_app(make_config(tmp_path, qa, registry, db_url=db_url, public_url=f"http://127.0.0.1:{port}"),
                     sync=False)
    return await aiohttp_server(app, port=port)


async def seed(service: NodeService, kr: Member) -> tuple[list[str], str]:
    """Every example of both kinds at QA, two events of KR's from the hub's log, one of QA's withdrawn: the ids
    and the withdrawn one."""
    ids = [(await service.create("cultural-event", b)).payload.record_id for b in example_bodies("cultural-event")]
    ids += [(await service.create("capacity-programme", b)).payload.record_id
            for b in example_bodies("capacity-programme")]
    logged = [(i + 1, kr.publish(b, record_id=f"KR:event-{i}").to_dict())
              for i, b in enumerate(example_bodies("cultural-event")[:2])]
    assert (await service.applier.apply_log(0, logged)).applied == 2
    ids += ["KR:event-0", "KR:event-1"]
    await service.delete(ids[1])
    return ids, ids[1]


def oai_dc_identifiers(oai_url: str) -> list[tuple[str, list[str]]]:
    """A harvester's view (Sickle, blocking): each live record's id and its dc:identifier values, in order."""
    records = Sickle(oai_url, timeout=10, proxies=NO_PROXY).ListRecords(metadataPrefix="oai_dc", ignore_deleted=True)
    out = []
    for record in records:
        record_id = record_id_of("ipdn.network", record.header.identifier)
        assert record_id is not None
        out.append((record_id, list(record.metadata["identifier"])))
    return out


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


async def test_every_feed_link_naming_a_record_opens_it(aiohttp_server: Any, tmp_path: Path, qa: Member,
                                                        kr: Member, registry: SignedRegistry, db_url: str) -> None:
    """ICS, JSON Feed, Atom and oai_dc: each link naming a record (events and programmes, QA's and KR's, one
    withdrawn) answers its page as text/html (410 for the withdrawn one), and the machine links their JSON or
    envelope; the first link of each is the page."""
    server = await listening_node(aiohttp_server, tmp_path, qa, registry, db_url)
    ids, withdrawn = await seed(server.app[SERVICE], kr)
    gone = {withdrawn}
    base = str(server.make_url("/")).rstrip("/")
    assert server.app[CONFIG].public_base == base
    links: list[Link] = []
    harvested = await asyncio.to_thread(oai_dc_identifiers, base + "/oai")  # anonymous, like any harvester
    # A partner key with a rate of its own: the limits' bursts would cut the walk short.
    key = await issue(server.app[CONFIG], "link checker", rate=100_000)
    async with aiohttp.ClientSession(trust_env=False, headers=bearer(key)) as session:
        async with session.get(base + ICS_PATH) as resp:
            links += calendar_links(await resp.read())
        async with session.get(base + JSON_FEED_PATH, params={"limit": "100"}) as resp:
            links += json_feed_links(json.loads(await resp.text()))
        async with session.get(base + ATOM_PATH, params={"limit": "100"}) as resp:
            links += atom_links(await resp.text())
        assert {record_id for record_id, _ in harvested} == set(ids) - gone
        for record_id, (page, api) in harvested:  # the page first
            links += [Link("oai_dc identifier", record_id, page, HTML), Link("oai_dc identifier", record_id, api, JSON)]
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
