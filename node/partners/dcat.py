"""The node's DCAT-AP 3 catalogue of the network: ``GET /catalog``, for public-sector data portals to harvest.

One ``dcat:Catalog`` (this node's view of the network: it holds every member's records), one ``dcat:Dataset`` per
member institution (every registry member but applicants), and two ``dcat:DataService``s (the record API and
OAI-PMH), built as an RDF graph with rdflib and served as JSON-LD (``application/ld+json``, the default), Turtle
(``text/turtle``) or RDF/XML (``application/rdf+xml``): by ``Accept``, or by suffix (``/catalog.jsonld``,
``/catalog.ttl``, ``/catalog.rdf``) for harvesters configured with a URL (docs/adr/0028).

Each dataset: its title and description in every language of the portal's catalogue (English and Arabic), the
member's names as its publisher (``foaf:Agent``), ``dct:spatial`` the member's country (the EU country authority),
the contact point (the registry's contact, else the one its latest record names), keywords (its most used tags),
the EU data theme "Education, culture and sport", ``dct:temporal`` the days its records cover, ``dct:issued``
and ``dct:modified`` its first and latest versions, ``dct:language`` the languages of its titles, ``dct:conformsTo``
the record schemas, and one distribution per way to read it: iCalendar, JSON Feed, Atom, JSCalendar, the record
API and OAI-PMH (the last two with ``dcat:accessService``), each with its media type or format, the standard it
follows and the licence the member's records state (``dct:license`` when they all state the same licence, a
``dct:rights`` statement otherwise).

Gathering the facts reads every record held (one listing, page by page in worker threads: about 2,000 records a
second), so the graph is rebuilt in the background at most once per ``REBUILD_EVERY`` and served from memory
meanwhile; a change shows within that time and the rebuild. Answers carry a strong
``ETag`` (the facts' key, the format, the base URL, the revision) and ``Cache-Control: public, max-age=3600``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import logging
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pycountry
from aiohttp import web
from dateutil import rrule
from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF, SKOS, XSD

from federation.protocol.envelope import parse_time
from federation.protocol.registry import Member
from federation.server.ui.i18n import pick
from node.appkeys import CONFIG, SERVICE
from node.config import NodeConfig
from node.partners import negotiation
from node.partners.feeds import ATOM_PATH, ICS_PATH, JSON_FEED_PATH
from node.partners.jscalendar import MEDIA_TYPE as JSCALENDAR_TYPE
from node.partners.portal import catalog as messages
from node.records.service import NodeService
from node.store.records import StoredRecord

PATH = "/catalog"
OFFERS = {"jsonld": "application/ld+json", "ttl": "text/turtle", "rdf": "application/rdf+xml"}  # the first: default
_FORMATS = {"application/ld+json": "json-ld", "text/turtle": "turtle", "application/rdf+xml": "pretty-xml"}
CACHE_CONTROL = "public, max-age=3600"
REBUILD_EVERY = timedelta(minutes=5)
MAX_KEYWORDS = 25
# Part of every ETag: bump it whenever the same facts would be described differently.
REVISION = "1"

VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
EU = "http://publications.europa.eu/resource/authority/"
THEMES = URIRef(EU + "data-theme")
THEME = URIRef(EU + "data-theme/EDUC")  # Education, culture and sport
CONTINUOUS = URIRef(EU + "frequency/UPDATE_CONT")
JSON_FILE = URIRef(EU + "file-type/JSON")
IANA = "https://www.iana.org/assignments/media-types/"
# Every record schema version a member's records may pin (PROTOCOL.md §4: the oldest that holds the body).
SCHEMAS = ("https://schemas.ipdn.network/cultural-event/v1", "https://schemas.ipdn.network/cultural-event/v2",
           "https://schemas.ipdn.network/capacity-programme/v1")
STANDARDS = {  # what each distribution follows, with the name people know it by
    "ics": ("https://www.rfc-editor.org/rfc/rfc5545", "iCalendar (RFC 5545)"),
    "jsonfeed": ("https://jsonfeed.org/version/1.1", "JSON Feed 1.1"),
    "atom": ("https://www.rfc-editor.org/rfc/rfc4287", "Atom (RFC 4287)"),
    "jscalendar": ("https://www.rfc-editor.org/rfc/rfc8984", "JSCalendar (RFC 8984)"),
    "oai": ("http://www.openarchives.org/OAI/2.0/", "OAI-PMH 2.0"),
    "openapi": ("https://spec.openapis.org/oas/v3.1.0", "OpenAPI 3.1"),
}
CONTEXT = {"dcat": str(DCAT), "dct": str(DCTERMS), "foaf": str(FOAF), "vcard": str(VCARD), "skos": str(SKOS),
           "xsd": str(XSD), "rdfs": "http://www.w3.org/2000/01/rdf-schema#"}
_RDFLIB = importlib.metadata.version("rdflib")
log = logging.getLogger("ipdn.node.catalog")


# -- the facts -------------------------------------------------------------------------------------------------


@dataclass
class MemberFacts:
    """What the records of one member say about its dataset."""

    records: int = 0
    first_issued: datetime | None = None
    last_issued: datetime | None = None
    first_day: date | None = None
    last_day: date | None = None
    open_ended: bool = False  # a recurrence without an end: the coverage has no last day
    tags: Counter[str] = field(default_factory=Counter)
    languages: set[str] = field(default_factory=set)
    rights: set[str] = field(default_factory=set)
    contact: dict[str, Any] | None = None

    def add(self, rec: StoredRecord) -> None:
        self.records += 1
        issued = parse_time(rec.issued_at)
        self.first_issued = min(self.first_issued or issued, issued)
        self.last_issued = max(self.last_issued or issued, issued)
        body = rec.body
        if body is None:
            return
        for tag in [*body.get("tags", []), *body.get("topics", [])]:
            if isinstance(tag, str):
                self.tags[tag] += 1
        if isinstance(body.get("title"), dict):
            self.languages.update(t.split("-")[0].lower() for t in body["title"])
        if body.get("rights"):
            self.rights.add(str(body["rights"]))
        if isinstance(body.get("contact"), dict):
            self.contact = body["contact"]  # the listing goes oldest first: the latest record's wins
        try:
            first, last = _days(body)
        except (KeyError, ValueError, TypeError):
            return
        self.first_day = min(self.first_day or first, first)
        if last is None:
            self.open_ended = True
        else:
            self.last_day = max(self.last_day or last, last)


def _days(body: Mapping[str, Any]) -> tuple[date, date | None]:
    """The first and last local day a record covers (None: it recurs without end)."""
    if not body.get("start"):
        first = date.fromisoformat(body["start_date"])
        return first, date.fromisoformat(body.get("end_date") or body["start_date"])
    start = datetime.fromisoformat(body["start"])
    end = datetime.fromisoformat(body["end"]) if body.get("end") else start
    if not body.get("recurrence"):
        return start.date(), end.date()
    rule = rrule.rrulestr(str(body["recurrence"]), dtstart=start.replace(tzinfo=None))
    if "UNTIL=" not in str(body["recurrence"]).upper() and "COUNT=" not in str(body["recurrence"]).upper():
        return start.date(), None
    last = deque(rule, maxlen=1) or [start.replace(tzinfo=None)]  # finite (COUNT or UNTIL): one pass to the last
    return start.date(), (last[-1] + (end - start)).date()


async def gather(service: NodeService, config: NodeConfig) -> dict[str, MemberFacts]:
    """Every member's facts, from one listing of every record held (the current version of each); each page is
    read in a worker thread (decoding the bodies), so the node's other requests and sync loops are not held up."""
    facts: dict[str, MemberFacts] = {}

    def add(items: Sequence[StoredRecord]) -> None:
        for rec in items:
            facts.setdefault(rec.origin, MemberFacts()).add(rec)

    cursor: str | None = None
    while True:
        items, cursor = await service.list_records(cursor=cursor, limit=config.max_page_size)
        await asyncio.to_thread(add, items)
        if cursor is None:
            return facts


# -- the graph -------------------------------------------------------------------------------------------------


def _texts(key: str, names: Mapping[str, str] | None = None) -> list[Literal]:
    """The message ``key`` in every language of the catalogue, the member's name (in that language, else English,
    else its first) put in."""
    out = []
    for lang in sorted(messages.languages()):
        name = pick(names, lang) if names else None
        values = {"member": name[1]} if name else {}
        text = messages.translator(lang).gettext(key, **values)
        out.append(Literal(text.replace("\u2068", "").replace("\u2069", ""), lang=lang))  # no bidi isolates in data
    return out


def country_iri(code: str) -> URIRef | None:
    """The EU country authority's IRI of an ISO 3166-1 alpha-2 code (its alpha-3 form), None for a code it lacks."""
    found = pycountry.countries.get(alpha_2=code.upper())
    return URIRef(f"{EU}country/{found.alpha_3}") if found is not None else None


def language_iri(tag: str) -> URIRef | None:
    """The EU language authority's IRI of a primary language subtag (ISO 639-3, upper case)."""
    found = pycountry.languages.get(alpha_2=tag) if len(tag) == 2 else pycountry.languages.get(alpha_3=tag)
    return URIRef(f"{EU}language/{found.alpha_3.upper()}") if found is not None else None


class _Builder:
    def __init__(self, base: str, portal: bool) -> None:
        self.g = Graph()
        for prefix, ns in CONTEXT.items():
            self.g.bind(prefix, ns)
        self.base, self.portal = base, portal

    def typed(self, iri: str | URIRef, kind: URIRef, **labels: Any) -> URIRef:
        node = URIRef(iri)
        self.g.add((node, RDF.type, kind))
        for prop, values in labels.items():
            for value in values if isinstance(values, list) else [values]:
                self.g.add((node, {"title": DCTERMS.title, "label": SKOS.prefLabel}[prop], value))
        return node

    def agent(self, member: Member) -> URIRef:
        node = URIRef(f"{self.base}/members/{member.code}#institution")
        self.g.add((node, RDF.type, FOAF.Agent))
        self.g.add((node, RDF.type, FOAF.Organization))
        for tag, name in member.names.items():
            self.g.add((node, FOAF.name, Literal(name, lang=tag)))
        if self.portal:
            self.g.add((node, FOAF.homepage, self.typed(f"{self.base}/members/{member.code}", FOAF.Document)))
        return node

    def contact(self, node: URIRef, member: Member, contact: Mapping[str, Any] | None) -> None:
        """A ``vcard:Organization`` with the member's names and what the contact gives (e-mail, web page)."""
        if not contact or not (contact.get("email") or contact.get("url") or contact.get("phone")):
            return
        point = URIRef(f"{self.base}/catalog#contact-{member.code}")
        self.g.add((node, DCAT.contactPoint, point))
        self.g.add((point, RDF.type, VCARD.Kind))
        self.g.add((point, RDF.type, VCARD.Organization))
        names: Mapping[str, str] = contact["name"] if isinstance(contact.get("name"), dict) else member.names
        for tag, name in names.items():
            self.g.add((point, VCARD.fn, Literal(name, lang=tag)))
        if contact.get("email"):
            self.g.add((point, VCARD.hasEmail, URIRef(f"mailto:{contact['email']}")))
        if contact.get("url"):
            self.g.add((point, VCARD.hasURL, URIRef(str(contact["url"]))))
        if contact.get("phone"):
            self.g.add((point, VCARD.hasTelephone, URIRef("tel:" + str(contact["phone"]).replace(" ", "-"))))

    def rights(self, node: URIRef, rights: set[str], statement: URIRef) -> None:
        """``dct:license`` when every record states one and the same licence; else ``statement``, a rights
        statement naming the rights the records state."""
        if len(rights) == 1 and (only := next(iter(rights))).startswith("https://creativecommons.org/"):
            self.g.add((node, DCTERMS.license, self.typed(only, DCTERMS.LicenseDocument)))
            return
        self.g.add((node, DCTERMS.rights, statement))
        self.g.add((statement, RDF.type, DCTERMS.RightsStatement))
        for text in _texts("catalog.rights-per-record"):
            self.g.add((statement, SKOS.prefLabel, text))
        for uri in sorted(rights):
            self.g.add((statement, DCTERMS.references, URIRef(uri)))

    def distribution(self, dataset: URIRef, facts: MemberFacts, name: str, url: str, *, media: str | None = None,
                     file_type: URIRef | None = None, service: URIRef | None = None, download: bool = False) -> None:
        node = URIRef(f"{dataset}-{name}")
        g = self.g
        g.add((dataset, DCAT.distribution, node))
        g.add((node, RDF.type, DCAT.Distribution))
        g.add((node, DCAT.accessURL, URIRef(url)))
        if download:
            g.add((node, DCAT.downloadURL, URIRef(url)))
        for text in _texts(f"catalog.distribution.{name}"):
            g.add((node, DCTERMS.title, text))
        if media:
            g.add((node, DCAT.mediaType, self.typed(IANA + media, DCTERMS.MediaType)))
        if file_type is not None:
            g.add((node, DCTERMS["format"], self.typed(file_type, DCTERMS.MediaTypeOrExtent)))
        if name in STANDARDS:  # the record API's is its data service's (OpenAPI)
            iri, title = STANDARDS[name]
            g.add((node, DCTERMS.conformsTo, self.typed(iri, DCTERMS.Standard, title=Literal(title))))
        if name in ("api", "jscalendar", "oai"):  # the records themselves, by their schemas
            for schema in SCHEMAS:
                g.add((node, DCTERMS.conformsTo, self.typed(schema, DCTERMS.Standard)))
        if service is not None:
            g.add((node, DCAT.accessService, service))
        if facts.last_issued is not None:
            g.add((node, DCTERMS.modified, Literal(facts.last_issued, datatype=XSD.dateTime)))
        self.rights(node, facts.rights, URIRef(f"{dataset}-rights"))


def build(facts: Mapping[str, MemberFacts], members: Sequence[Member], *, base: str, member: str, portal: bool,
          public_read: bool) -> Graph:
    """The catalogue as an RDF graph (DCAT-AP 3): the catalogue, a dataset per member, the two data services."""
    b = _Builder(base, portal)
    g = b.g
    cat = URIRef(base + PATH)
    g.add((cat, RDF.type, DCAT.Catalog))
    names = next((m.names for m in members if m.code == member), {"en": member})
    for text in _texts("catalog.title", names):
        g.add((cat, DCTERMS.title, text))
    for text in _texts("catalog.description", names):
        g.add((cat, DCTERMS.description, text))
    agents = {m.code: b.agent(m) for m in members}
    g.add((cat, DCTERMS.publisher, agents.get(member) or b.agent(Member(code=member, names=names))))
    if portal:
        g.add((cat, FOAF.homepage, b.typed(base + "/", FOAF.Document)))
    for lang in sorted(messages.languages()):
        if (iri := language_iri(lang)) is not None:
            g.add((cat, DCTERMS.language, b.typed(iri, DCTERMS.LinguisticSystem)))
    theme = b.typed(THEME, SKOS.Concept, label=_texts("catalog.theme"))
    g.add((theme, SKOS.inScheme, b.typed(THEMES, SKOS.ConceptScheme, title=Literal("Data theme", lang="en"))))
    g.add((cat, DCAT.themeTaxonomy, THEMES))
    access = b.typed(EU + "access-right/" + ("PUBLIC" if public_read else "RESTRICTED"), DCTERMS.RightsStatement)
    latest = max((f.last_issued for f in facts.values() if f.last_issued), default=None)
    if latest is not None:
        g.add((cat, DCTERMS.modified, Literal(latest, datatype=XSD.dateTime)))

    api, oai = URIRef(f"{base}{PATH}#api"), URIRef(f"{base}{PATH}#oai")
    for node, key, endpoint, description, standard in (
            (api, "catalog.service.api", "/api/v1/records", "/api/v1/openapi.json", "openapi"),
            (oai, "catalog.service.oai", "/oai", "/oai?verb=Identify", "oai")):
        g.add((cat, DCAT.service, node))
        g.add((node, RDF.type, DCAT.DataService))
        for text in _texts(key, names):
            g.add((node, DCTERMS.title, text))
        g.add((node, DCAT.endpointURL, URIRef(base + endpoint)))
        g.add((node, DCAT.endpointDescription, URIRef(base + description)))
        spec, title = STANDARDS[standard]
        g.add((node, DCTERMS.conformsTo, b.typed(spec, DCTERMS.Standard, title=Literal(title))))
        g.add((node, DCTERMS.accessRights, access))
        g.add((node, DCTERMS.publisher, agents.get(member, cat)))

    for m in members:
        if m.status == "applicant":
            continue
        f = facts.get(m.code, MemberFacts())
        ds = URIRef(f"{base}{PATH}#dataset-{m.code}")
        g.add((cat, DCAT.dataset, ds))
        g.add((api, DCAT.servesDataset, ds))
        g.add((oai, DCAT.servesDataset, ds))
        g.add((ds, RDF.type, DCAT.Dataset))
        g.add((ds, DCTERMS.identifier, Literal(f"ipdn:{m.code}")))
        for text in _texts("catalog.dataset.title", m.names):
            g.add((ds, DCTERMS.title, text))
        for text in _texts("catalog.dataset.description", m.names):
            g.add((ds, DCTERMS.description, text))
        g.add((ds, DCTERMS.publisher, agents[m.code]))
        b.contact(ds, m, m.contact or f.contact)
        if (country := country_iri(m.code)) is not None:
            g.add((ds, DCTERMS.spatial, b.typed(country, DCTERMS.Location)))
        g.add((ds, DCAT.theme, theme))
        g.add((ds, DCTERMS.accrualPeriodicity, b.typed(CONTINUOUS, DCTERMS.Frequency)))
        g.add((ds, DCTERMS.accessRights, access))
        for tag, _ in sorted(f.tags.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_KEYWORDS]:
            g.add((ds, DCAT.keyword, Literal(tag)))
        for lang in sorted(f.languages):
            if (iri := language_iri(lang)) is not None:
                g.add((ds, DCTERMS.language, b.typed(iri, DCTERMS.LinguisticSystem)))
        for schema in SCHEMAS:
            g.add((ds, DCTERMS.conformsTo, b.typed(schema, DCTERMS.Standard)))
        if f.first_issued is not None and f.last_issued is not None:
            g.add((ds, DCTERMS.issued, Literal(f.first_issued, datatype=XSD.dateTime)))
            g.add((ds, DCTERMS.modified, Literal(f.last_issued, datatype=XSD.dateTime)))
        if f.first_day is not None:
            period = BNode()
            g.add((ds, DCTERMS.temporal, period))
            g.add((period, RDF.type, DCTERMS.PeriodOfTime))
            g.add((period, DCAT.startDate, Literal(f.first_day, datatype=XSD.date)))
            if f.last_day is not None and not f.open_ended:
                g.add((period, DCAT.endDate, Literal(f.last_day, datatype=XSD.date)))
        if portal:
            g.add((ds, DCAT.landingPage, b.typed(f"{base}/members/{m.code}", FOAF.Document)))
        origin = f"origin={m.code}"
        b.distribution(ds, f, "ics", f"{base}{ICS_PATH}?{origin}", media="text/calendar", download=True)
        b.distribution(ds, f, "jsonfeed", f"{base}{JSON_FEED_PATH}?{origin}", file_type=JSON_FILE, download=True)
        b.distribution(ds, f, "atom", f"{base}{ATOM_PATH}?{origin}", media="application/atom+xml", download=True)
        b.distribution(ds, f, "jscalendar", f"{base}/api/v1/records?{origin}&format=jscalendar",
                       media=JSCALENDAR_TYPE, service=api)
        b.distribution(ds, f, "api", f"{base}/api/v1/records?{origin}", media="application/json", service=api)
        b.distribution(ds, f, "oai", f"{base}/oai?verb=ListRecords&metadataPrefix=oai_dc&set=origin:{m.code}",
                       media="text/xml", service=oai)
    return g


def serialize(g: Graph, media_type: str) -> bytes:
    fmt = _FORMATS[media_type]
    if fmt == "json-ld":
        return g.serialize(format="json-ld", context=CONTEXT, auto_compact=True, encoding="utf-8")
    return g.serialize(format=fmt, encoding="utf-8")


# -- HTTP ------------------------------------------------------------------------------------------------------


@dataclass
class _Built:
    key: str
    at: datetime
    graph: Graph
    bytes: dict[str, bytes] = field(default_factory=dict)


class CatalogCache:
    """The latest graph and its serialisations. The first request builds it; after that, when the records or the
    registry changed and ``REBUILD_EVERY`` has passed, a request starts a rebuild in the background and is answered
    from the graph held (a listing of 100,000 records takes tens of seconds: no harvester waits for it)."""

    def __init__(self) -> None:
        self.built: _Built | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def get(self, request: web.Request) -> _Built:
        service, config = request.app[SERVICE], request.app[CONFIG]
        key = json.dumps([REVISION, _RDFLIB, config.public_base, config.portal, config.public_read,
                          service.registry.registry.version, await service.latest_cursor()])
        async with self._lock:
            built = self.built or await self._build(service, config, key)
            if (built.key != key and service.clock() - built.at >= REBUILD_EVERY
                    and (self._task is None or self._task.done())):
                self._task = asyncio.create_task(self._rebuild(service, config, key))
        return built

    async def _build(self, service: NodeService, config: NodeConfig, key: str) -> _Built:
        at = service.clock()
        facts = await gather(service, config)
        graph = await asyncio.to_thread(
            build, facts, service.registry.registry.members, base=config.public_base, member=service.member,
            portal=config.portal, public_read=config.public_read)
        self.built = _Built(key, at, graph)
        return self.built

    async def _rebuild(self, service: NodeService, config: NodeConfig, key: str) -> None:
        try:
            await self._build(service, config, key)
        except Exception:  # the graph held stays served; the next request after REBUILD_EVERY tries again
            log.exception("the catalogue could not be rebuilt")

    async def settled(self) -> None:
        """Wait for a rebuild under way (tests; the application's cleanup)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def close(self, _app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


CATALOG_CACHE = web.AppKey("dcat_catalog_cache", CatalogCache)


async def catalog(request: web.Request) -> web.StreamResponse:
    """The catalogue in the format the suffix names, else the one ``Accept`` prefers (JSON-LD by default)."""
    suffix = request.match_info.get("suffix")
    media = OFFERS[suffix] if suffix else negotiation.best(request.headers.get("Accept"), list(OFFERS.values()))
    built = await request.app[CATALOG_CACHE].get(request)
    etag = '"' + hashlib.sha256(f"{built.key}|{built.at.isoformat()}|{media}".encode()).hexdigest()[:32] + '"'
    headers = {"Cache-Control": CACHE_CONTROL, "Access-Control-Allow-Origin": "*", "ETag": etag,
               "X-Content-Type-Options": "nosniff", **({} if suffix else {"Vary": "Accept"}),
               "Link": ", ".join(f'<{request.app[CONFIG].public_base}{PATH}.{s}>; rel="alternate"; type="{t}"'
                                 for s, t in OFFERS.items())}
    wanted = {t.strip().removeprefix("W/") for t in request.headers.get("If-None-Match", "").split(",")}
    if etag in wanted or "*" in wanted:
        return web.Response(status=304, headers=headers)
    body = built.bytes.get(media)
    if body is None:
        body = built.bytes[media] = await asyncio.to_thread(serialize, built.graph, media)
    return web.Response(body=body, content_type=media, charset="utf-8", headers=headers)


def register_routes(app: web.Application) -> None:
    """``GET /catalog`` (negotiated) and ``/catalog.jsonld``, ``/catalog.ttl``, ``/catalog.rdf``."""
    app[CATALOG_CACHE] = cache = CatalogCache()
    app.on_cleanup.append(cache.close)
    app.router.add_get(PATH, catalog)
    app.router.add_get(PATH + ".{suffix:jsonld|ttl|rdf}", catalog)
