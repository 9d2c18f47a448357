"""OAI-PMH 2.0 (node/partners/oaipmh.py): every verb over a real socket, every response checked against the OAI-PMH
schemas (tests/vectors/oai-pmh, loaded offline), and a real harvester (Sickle) harvesting in pages."""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree
from multidict import MultiDict
from sickle import Sickle
from sickle.oaiexceptions import BadResumptionToken, NoRecordsMatch

from federation.protocol.envelope import Envelope
from federation.protocol.registry import SignedRegistry
from federation.protocol.schemas import SCHEMA_ROOT, default_schemas
from federation.protocol.verify import verify_envelope
from node.app import create_app
from node.appkeys import SERVICE
from node.partners import oaipmh
from node.partners.oaipmh import (
    DC_NS,
    IPDN_NS,
    OAI_DC_NS,
    OAI_ID_NS,
    OAI_NS,
    ListQuery,
    OaiError,
    OaiSettings,
    Window,
    parse_utc,
    record_id_of,
    window,
)
from node.records.service import NodeService
from node.store.records import StoredRecord
from tests.support import paths
from tests.support.factories import Member, example_bodies, example_paths
from tests.support.harness import free_port
from tests.support.nodes import make_config

VECTORS = paths.VECTORS / "oai-pmh"
IPDN_XSD = SCHEMA_ROOT / "oai-ipdn" / "v1.xsd"
NS = {"o": OAI_NS, "dc": DC_NS, "oai_dc": OAI_DC_NS, "ipdn": IPDN_NS, "id": OAI_ID_NS}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
PAGE = 3
NO_PROXY = {"http": None, "https": None}  # loopback only, whatever the environment says


# -- schemas ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oai_schema() -> xmlschema.XMLSchema:
    """OAI-PMH.xsd with the oai_dc, Dublin Core, oai-identifier and native ipdn schemas, all from local files."""
    if not (VECTORS / "OAI-PMH.xsd").is_file():
        pytest.fail(f"OAI-PMH schemas not found at {VECTORS} (tests/vectors/oai-pmh)")
    return xmlschema.XMLSchema(
        str(VECTORS / "OAI-PMH.xsd"), allow="local",
        locations=[(OAI_DC_NS, str(VECTORS / "oai_dc.xsd")), (DC_NS, str(VECTORS / "simpledc20021212.xsd")),
                   (OAI_ID_NS, str(VECTORS / "oai-identifier.xsd")), (IPDN_NS, str(IPDN_XSD))])


def assert_valid(schema: xmlschema.XMLSchema, document: bytes) -> Any:
    """The document validates against the OAI-PMH schemas (metadata included, strictly); parsed."""
    schema.validate(io.BytesIO(document))
    return etree.fromstring(document)


def is_oai_identifier(schema: xmlschema.XMLSchema, value: str) -> bool:
    return bool(schema.maps.types[f"{{{OAI_ID_NS}}}sampleIdentifierType"].is_valid(value))


# -- a node on a real port -------------------------------------------------------------------------------


class Clock:
    """The node's clock, moved by the test: datestamps are exact and nothing waits for real time."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclasses.dataclass
class Node:
    server: TestServer
    client: TestClient[web.Request, web.Application]
    service: NodeService
    clock: Clock
    schema: xmlschema.XMLSchema
    kr: Member
    log_size: int = 0

    @property
    def url(self) -> str:
        """The OAI base URL: the node's public_url (never the Host a request names: here where it listens) and /oai."""
        return self.service_url + "/oai"

    @property
    def service_url(self) -> str:
        return str(self.server.make_url("/")).rstrip("/")

    async def oai(self, method: str = "GET", **params: str) -> Any:
        """One request: 200, text/xml in UTF-8, schema-valid; the parsed document."""
        if method == "GET":
            resp = await self.client.get("/oai", params=params)
        else:
            resp = await self.client.post("/oai", data=params)
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == "text/xml; charset=utf-8"
        return assert_valid(self.schema, await resp.read())

    async def publish(self, body: dict[str, Any], kind: str = "cultural-event") -> str:
        self.clock.tick()
        return (await self.service.create(kind, body)).payload.record_id

    async def receive(self, body: dict[str, Any] | None, record_id: str, version: int = 1) -> None:
        """An envelope of KR's arrives from the hub's log."""
        self.clock.tick()
        env = self.kr.publish(body, record_id=record_id, version=version, issued=self.clock())
        report = await self.service.applier.apply_log(self.log_size, [(self.log_size + 1, env.to_dict())])
        assert report.applied == 1, report
        self.log_size += 1


@pytest.fixture
async def node(aiohttp_server: Any, aiohttp_client: Any, tmp_path: Path, qa: Member, kr: Member,
               registry: SignedRegistry, db_url: str, oai_schema: xmlschema.XMLSchema) -> Node:
    """QA's node with OAI-PMH on a loopback port, three records per page (SQLite, then PostgreSQL)."""
    port = free_port()  # known before the app is made: the node's public_url names it
    app = create_app(make_config(tmp_path, qa, registry, db_url=db_url, page_size=PAGE,
                                 public_url=f"http://127.0.0.1:{port}"), sync=False)
    server = await aiohttp_server(app, port=port)
    clock = Clock(T0)
    app[SERVICE].clock = clock
    return Node(server, await aiohttp_client(server), app[SERVICE], clock, oai_schema, kr)


async def seed(node: Node) -> list[str]:
    """Seven events and three programmes of QA's, two events of KR's, one a second apart; then a second
    passes. The record ids in datestamp order."""
    ids = [await node.publish(b) for b in example_bodies("cultural-event")]
    ids += [await node.publish(b, "capacity-programme") for b in example_bodies("capacity-programme")]
    for i, body in enumerate(example_bodies("cultural-event")[:2]):
        await node.receive(body, f"KR:event-{i}")
        ids.append(f"KR:event-{i}")
    node.clock.tick()
    return ids


def rid(identifier: str) -> str:
    rec = record_id_of("ipdn.network", identifier)
    assert rec is not None, identifier
    return rec


def identifiers(doc: Any) -> list[str]:
    return [rid(t) for t in doc.xpath("//o:header/o:identifier/text()", namespaces=NS)]


def token_of(doc: Any) -> Any:
    found = doc.xpath("//o:resumptionToken", namespaces=NS)
    return found[0] if found else None


def errors(doc: Any) -> list[str]:
    return [str(c) for c in doc.xpath("/o:OAI-PMH/o:error/@code", namespaces=NS)]


def request_attrs(doc: Any) -> dict[str, str]:
    return dict(doc.find("o:request", NS).attrib)


async def harvest_all(node: Node, verb: str = "ListRecords", **params: str) -> tuple[list[str], list[Any]]:
    """Follow resumption tokens by hand: the ids and every page."""
    pages = [await node.oai(verb=verb, **params)]
    while (token := token_of(pages[-1])) is not None and token.text:
        pages.append(await node.oai(verb=verb, resumptionToken=token.text))
    return [i for p in pages for i in identifiers(p)], pages


def stored(body: dict[str, Any] | None, *, kind: str = "cultural-event", record_id: str = "QA:r1",
           envelope: bytes = b"{}") -> StoredRecord:
    return StoredRecord(record_id, record_id[:2], kind, 1, "put" if body else "delete", "scheduled", None,
                        json.dumps(body) if body is not None else None, "0" * 64, 1, "2026-03-01T08:00:00.000Z", T0,
                        envelope)


# -- units -----------------------------------------------------------------------------------------------


class TestIdentifiers:
    def test_identifier_scheme_is_oai_identifier(self, oai_schema: xmlschema.XMLSchema) -> None:
        """oai:<repository>:<record_id> satisfies the oai-identifier schema for every shape of record id."""
        for record_id in ("QA:ga6-2020", "KR:0123456789abcdef0123456789abcdef", "TR:a.b_c-d", "HU:" + "x" * 64):
            identifier = oaipmh.oai_identifier("ipdn.network", record_id)
            assert is_oai_identifier(oai_schema, identifier), identifier
            assert record_id_of("ipdn.network", identifier) == record_id

    def test_foreign_or_malformed_identifiers_name_nothing(self) -> None:
        """Another repository's identifier, or one whose record id is not a record id, names no record."""
        for identifier in ("oai:other.example:QA:x", "oai:ipdn.network:qa:x", "oai:ipdn.network:QA:",
                           "QA:x", "oai:ipdn.network:QA:x y", "oai:ipdn.network:QA:x\n"):
            assert record_id_of("ipdn.network", identifier) is None, identifier

    def test_repository_identifier_must_be_a_domain_name(self) -> None:
        """A repository identifier the oai-identifier scheme refuses is refused when configured."""
        assert OaiSettings(repository_identifier="katara.example").repository_identifier == "katara.example"
        for bad in ("localhost", "ipdn network", "1ipdn.network", "ipdn.network:8441"):
            with pytest.raises(ValueError, match="domain name"):
                OaiSettings(repository_identifier=bad)


class TestDates:
    def test_both_granularities_parse(self) -> None:
        """YYYY-MM-DD and YYYY-MM-DDThh:mm:ssZ are UTC instants; day granularity is flagged."""
        assert parse_utc("2026-03-01") == (T0.replace(hour=0), True)
        assert parse_utc("2026-03-01T08:00:00Z") == (T0, False)

    @pytest.mark.parametrize("value", ["2026-03-01T08:00:00+03:00", "2026-03-01T08:00:00.5Z", "2026-03-01T08:00Z",
                                       "2026-02-30", "2026-3-1", "20260301", "2026-03-01T08:00:00z", "٢٠٢٦-03-01",
                                       "2026-03-01\n", ""])
    def test_other_forms_refused(self, value: str) -> None:
        """Offsets, fractions, missing seconds, impossible dates and non-ASCII digits are not OAI dates."""
        with pytest.raises(ValueError, match="is not a UTC date"):
            parse_utc(value)

    def test_bounds_are_inclusive_at_their_granularity(self) -> None:
        """until takes its whole second (or day); from starts at its first instant."""
        w = window("2026-03-01T08:00:00Z", "2026-03-01T08:00:05Z")
        assert w == Window(T0, T0 + timedelta(seconds=6))
        assert w.admits(T0) and w.admits(T0 + timedelta(seconds=5, microseconds=999_999))
        assert not w.admits(T0 + timedelta(seconds=6)) and not w.admits(T0 - timedelta(microseconds=1))
        day = window("2026-03-01", "2026-03-01")
        assert day.admits(T0.replace(hour=23, minute=59, second=59)) and not day.admits(T0 + timedelta(days=1))
        assert window(None, "9999-12-31") == Window(None, None)

    @pytest.mark.parametrize(("from_", "until"), [("2026-03-01", "2026-03-02T00:00:00Z"),
                                                  ("2026-03-02", "2026-03-01"), ("2026-03-01T08:00:01Z",
                                                                                 "2026-03-01T08:00:00Z"),
                                                  ("yesterday", None)])
    def test_bad_windows_are_bad_arguments(self, from_: str, until: str | None) -> None:
        """Two granularities, from after until, or a malformed date: badArgument."""
        with pytest.raises(OaiError) as e:
            window(from_, until)
        assert e.value.codes == ["badArgument"]


class TestResumptionToken:
    def test_token_round_trip(self) -> None:
        """A token holds the whole query and the list position, as unpadded base64url of small JSON."""
        q = ListQuery("ListRecords", "oai_dc", "kind:cultural-event", "2026-03-01", "2026-03-02", "abc", 6)
        token = q.token()
        assert "=" not in token and json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["c"] == "abc"
        assert ListQuery.from_token("ListRecords", token) == q

    def test_tokens_not_issued_here_refused(self) -> None:
        """Garbage, padding, another verb's token, unknown members, bad values: badResumptionToken."""
        good = json.loads(base64.urlsafe_b64decode(ListQuery("ListRecords", "oai_dc", cursor="abc").token() + "=="))

        def enc(doc: Any) -> str:
            return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

        bad = ["", "!!!", "e30", enc(good) + "=", enc([1]), ListQuery("ListIdentifiers", "oai_dc", cursor="c").token(),
               enc({**good, "x": 1}), enc({**good, "m": "marc21"}), enc({**good, "n": -1}), enc({**good, "n": True}),
               enc({**good, "c": 5}), enc({**good, "c": ""}), enc({**good, "s": "no spaces"}),
               enc({**good, "f": "2026-03-02", "u": "2026-03-01"}), enc({**good, "f": "2026-03-01T00:00:00+00:00"}),
               "A" * 5000]
        for token in bad:
            with pytest.raises(OaiError) as e:
                ListQuery.from_token("ListRecords", token)
            assert e.value.codes == ["badResumptionToken"], token


class TestDublinCore:
    def dc(self, oai_schema: xmlschema.XMLSchema, rec: StoredRecord) -> Any:
        el = oaipmh.dublin_core(rec, page_url="https://node.example/events/QA:r1",
                                record_url="https://node.example/api/v1/records/QA%3Ar1",
                                publisher={"en": "Katara", "ar": "كتارا"})
        oai_schema.validate(io.BytesIO(etree.tostring(el)))  # the oai_dc element on its own
        return el

    @staticmethod
    def values(el: Any, name: str) -> list[tuple[str | None, str]]:
        return [(e.get(XML_LANG), e.text) for e in el.findall(f"dc:{name}", NS)]

    def test_event_maps_to_dublin_core(self, oai_schema: xmlschema.XMLSchema) -> None:
        """An event: titles and descriptions per language, organizers as creators, partners as contributors,
        the origin as publisher, start and end, DCMI Event, venue and country, languages, rights, its page (the
        first identifier, what harvesters link to) and its API item; the status after the descriptions."""
        body = example_bodies("cultural-event")[0]
        el = self.dc(oai_schema, stored(body))
        assert self.values(el, "title") == list(body["title"].items())
        assert ("ar", body["description"]["ar"]) in self.values(el, "description")
        assert ("en", "Cultural Village Foundation (Katara)") in self.values(el, "creator")
        assert ("ko", "한국국제교류재단") in self.values(el, "contributor")
        assert self.values(el, "publisher") == [("en", "Katara"), ("ar", "كتارا")]
        assert self.values(el, "date") == [(None, body["start"]), (None, body["end"])]
        assert self.values(el, "type") == [(None, "Event"), (None, "cultural-event"), (None, "general-assembly")]
        assert ("en", "Katara Cultural Village, Doha") in self.values(el, "coverage")
        assert (None, "QA") in self.values(el, "coverage")
        assert self.values(el, "language") == [(None, "ar"), (None, "en")]
        assert (None, "public diplomacy") in self.values(el, "subject")
        assert self.values(el, "rights") == [(None, "https://creativecommons.org/licenses/by/4.0/")]
        assert self.values(el, "identifier") == [(None, "https://node.example/events/QA:r1"),
                                                 (None, "https://node.example/api/v1/records/QA%3Ar1")]
        assert self.values(el, "description")[-1] == ("en", "Status: completed.")

    @pytest.mark.parametrize(("name", "statement"), [
        ("06-korean", "Status: cancelled."),
        ("05-photography", "Status: postponed."),  # no previous_start in this example
        ("07-hungarian", "Status: rescheduled (previously announced to start 2020-02-05T19:00:00+01:00)."),
    ])
    def test_changed_status_is_the_first_description(self, oai_schema: xmlschema.XMLSchema, name: str,
                                                     statement: str) -> None:
        """A cancelled, postponed or rescheduled event says so in the first dc:description, where a harvester that
        keeps or shows one description keeps it; it is still DCMI Event."""
        (body,) = [b for b, p in zip(example_bodies("cultural-event"), example_paths("cultural-event"), strict=True)
                   if name in p.name]
        el = self.dc(oai_schema, stored(body))
        assert self.values(el, "description")[0] == ("en", statement)
        assert self.values(el, "type")[0] == (None, "Event")

    def test_programme_maps_provider_and_dates(self, oai_schema: xmlschema.XMLSchema) -> None:
        """A programme: the provider is the creator, start_date/end_date the dates, topics are subjects."""
        body = example_bodies("capacity-programme")[0]
        el = self.dc(oai_schema, stored(body, kind="capacity-programme"))
        assert ("en", body["provider"]["name"]["en"]) in self.values(el, "creator")
        assert self.values(el, "date") == [(None, "2020-03-01"), (None, "2020-03-05")]
        assert (None, "training") in self.values(el, "type")
        assert (None, "digital diplomacy") in self.values(el, "subject")
        assert self.values(el, "type")[:2] == [(None, "Event"), (None, "capacity-programme")]
        assert ("en", f"Status: {body['status']}.") in self.values(el, "description")

    def test_text_xml_cannot_carry_is_replaced(self, oai_schema: xmlschema.XMLSchema) -> None:
        """Noncharacters in free text (allowed in JSON) become U+FFFD instead of breaking the response."""
        body = {**example_bodies("cultural-event")[0], "title": {"en": "A\ufffeB\uffff"}}
        assert self.values(self.dc(oai_schema, stored(body)), "title") == [("en", "A\ufffdB\ufffd")]


class TestIpdnFormat:
    async def test_body_and_envelope_verify(self, service: NodeService, registry: SignedRegistry,
                                            oai_schema: xmlschema.XMLSchema) -> None:
        """The native record carries the body (canonical JSON) and the envelope exactly as signed: the envelope
        verifies and its payload's body is the body."""
        body = example_bodies("cultural-event")[2]
        env = await service.create("cultural-event", body)
        rec = await service.get(env.payload.record_id)
        el = oaipmh.ipdn_record(rec)
        oai_schema.validate(io.BytesIO(etree.tostring(el)))
        assert json.loads(el.findtext("ipdn:body", namespaces=NS)) == body
        envelope = el.findtext("ipdn:envelope", namespaces=NS).encode()
        assert envelope == rec.envelope
        result = verify_envelope(envelope, keys=registry.registry.member_keys().get, schemas=default_schemas(),
                                 now=datetime.now(UTC))
        assert result.ok and result.envelope is not None and result.envelope.payload.body == body
        assert {k: v for k, v in el.attrib.items() if not k.startswith("{")} == {
            "recordId": rec.record_id, "origin": "QA", "kind": "cultural-event",
            "schema": "https://schemas.ipdn.network/cultural-event/v1", "version": "1", "seq": "1",
            "hash": env.hash, "issuedAt": env.payload.issued_at, "status": body["status"]}

    def test_noncharacters_stay_json_escapes(self) -> None:
        """U+FFFE in a JSON string is written as the escape, which JSON reads back as the same string."""
        text = oaipmh.json_text({"t": "a\ufffeb"})
        assert "\ufffe" not in text and json.loads(text) == {"t": "a\ufffeb"}


# -- the verbs, over HTTP --------------------------------------------------------------------------------


class TestIdentify:
    async def test_identify_describes_the_repository(self, node: Node) -> None:
        """Base URL, version 2.0, an admin e-mail, the earliest datestamp, persistent deletes, second
        granularity, and an oai-identifier description whose sample is a valid identifier of this repository."""
        ids = await seed(node)
        doc = await node.oai(verb="Identify")
        idf = doc.find("o:Identify", NS)
        assert idf.findtext("o:baseURL", namespaces=NS) == node.url
        assert doc.findtext("o:request", namespaces=NS) == node.url and request_attrs(doc) == {"verb": "Identify"}
        assert idf.findtext("o:protocolVersion", namespaces=NS) == "2.0"
        assert idf.findtext("o:earliestDatestamp", namespaces=NS) == "2026-03-01T08:00:01Z"
        assert idf.findtext("o:deletedRecord", namespaces=NS) == "persistent"
        assert idf.findtext("o:granularity", namespaces=NS) == "YYYY-MM-DDThh:mm:ssZ"
        assert idf.findtext("o:adminEmail", namespaces=NS)
        sample = idf.findtext("o:description/id:oai-identifier/id:sampleIdentifier", namespaces=NS)
        assert is_oai_identifier(node.schema, sample) and rid(sample) == ids[0]
        assert doc.findtext("o:responseDate", namespaces=NS) == "2026-03-01T08:00:13Z"

    async def test_identify_empty_repository(self, node: Node) -> None:
        """With no record yet the answer is still complete and valid."""
        doc = await node.oai(verb="Identify")
        assert doc.findtext("o:Identify/o:earliestDatestamp", namespaces=NS) == "2026-03-01T08:00:00Z"

    async def test_configured_public_url_and_identifier(self, aiohttp_server: Any, aiohttp_client: Any,
                                                        tmp_path: Path, qa: Member, registry: SignedRegistry,
                                                        oai_schema: xmlschema.XMLSchema) -> None:
        """A deployment's public URL and repository identifier replace the defaults everywhere."""
        app = create_app(make_config(tmp_path, qa, registry), sync=False)
        app[oaipmh.SETTINGS] = OaiSettings(repository_identifier="katara.example",
                                           public_url="https://ipdn.katara.example/", admin_email="oai@katara.example")
        client = await aiohttp_client(await aiohttp_server(app))
        rec_id = (await app[SERVICE].create("cultural-event", example_bodies("cultural-event")[0])).payload.record_id
        doc = assert_valid(oai_schema, await (await client.get("/oai", params={"verb": "Identify"})).read())
        assert doc.findtext("o:Identify/o:baseURL", namespaces=NS) == "https://ipdn.katara.example/oai"
        assert doc.findtext("o:Identify/o:adminEmail", namespaces=NS) == "oai@katara.example"
        assert doc.findtext("o:Identify/o:description/id:oai-identifier/id:repositoryIdentifier",
                            namespaces=NS) == "katara.example"
        doc = assert_valid(oai_schema, await (await client.get("/oai", params={
            "verb": "GetRecord", "metadataPrefix": "oai_dc", "identifier": f"oai:katara.example:{rec_id}"})).read())
        assert doc.xpath("//dc:identifier/text()", namespaces=NS) == [
            f"https://ipdn.katara.example/events/{rec_id}",
            "https://ipdn.katara.example/api/v1/records/" + rec_id.replace(":", "%3A")]


class TestListMetadataFormats:
    async def test_both_formats_listed(self, node: Node) -> None:
        """oai_dc and the native ipdn format, each with its schema and namespace."""
        doc = await node.oai(verb="ListMetadataFormats")
        formats = {f.findtext("o:metadataPrefix", namespaces=NS): (f.findtext("o:schema", namespaces=NS),
                                                                    f.findtext("o:metadataNamespace", namespaces=NS))
                   for f in doc.iterfind(".//o:metadataFormat", NS)}
        assert formats == {"oai_dc": ("http://www.openarchives.org/OAI/2.0/oai_dc.xsd", OAI_DC_NS),
                           "ipdn": ("https://schemas.ipdn.network/oai-ipdn/v1.xsd", IPDN_NS)}

    async def test_formats_of_an_item(self, node: Node) -> None:
        """For an item (deleted ones too) the same formats; for an unknown one idDoesNotExist."""
        ids = await seed(node)
        await node.service.delete(ids[0])
        for record_id in ids[:2]:
            doc = await node.oai(verb="ListMetadataFormats", identifier=f"oai:ipdn.network:{record_id}")
            assert len(doc.findall(".//o:metadataFormat", NS)) == 2
        doc = await node.oai(verb="ListMetadataFormats", identifier="oai:ipdn.network:QA:nope")
        assert errors(doc) == ["idDoesNotExist"]
        assert request_attrs(doc) == {"verb": "ListMetadataFormats", "identifier": "oai:ipdn.network:QA:nope"}


class TestListSets:
    async def test_sets_by_kind_and_origin(self, node: Node) -> None:
        """kind and origin, with a set per known kind and per registry member below them."""
        doc = await node.oai(verb="ListSets")
        specs = doc.xpath("//o:set/o:setSpec/text()", namespaces=NS)
        assert specs == ["kind", "kind:capacity-programme", "kind:cultural-event", "origin", "origin:KR", "origin:QA"]
        qa = doc.xpath("//o:set[o:setSpec='origin:QA']", namespaces=NS)[0]
        assert "QA" in qa.findtext("o:setName", namespaces=NS)
        assert qa.xpath(".//dc:title/@xml:lang", namespaces=NS) == ["en"]

    async def test_list_sets_issues_no_tokens(self, node: Node) -> None:
        """ListSets answers whole; any resumptionToken is badResumptionToken."""
        doc = await node.oai(verb="ListSets", resumptionToken="whatever")
        assert errors(doc) == ["badResumptionToken"]


class TestGetRecord:
    async def test_dublin_core_record(self, node: Node) -> None:
        """The record's header (identifier, datestamp, sets) and its oai_dc metadata."""
        ids = await seed(node)
        doc = await node.oai(verb="GetRecord", identifier=f"oai:ipdn.network:{ids[0]}", metadataPrefix="oai_dc")
        header = doc.find(".//o:header", NS)
        assert header.get("status") is None
        assert header.findtext("o:datestamp", namespaces=NS) == "2026-03-01T08:00:01Z"
        assert header.xpath("o:setSpec/text()", namespaces=NS) == ["kind:cultural-event", "origin:QA"]
        assert doc.xpath("//dc:title[@xml:lang='en']/text()", namespaces=NS) == [
            "Sixth General Assembly of the International Public Diplomacy Network"]
        assert doc.xpath("//dc:publisher/text()", namespaces=NS) == ["institution of QA"]
        assert request_attrs(doc) == {"verb": "GetRecord", "identifier": f"oai:ipdn.network:{ids[0]}",
                                      "metadataPrefix": "oai_dc"}

    async def test_native_record_of_a_received_envelope(self, node: Node) -> None:
        """A record pulled from the hub in the ipdn format: KR's envelope exactly as KR signed it."""
        await seed(node)
        doc = await node.oai(verb="GetRecord", identifier="oai:ipdn.network:KR:event-1", metadataPrefix="ipdn")
        rec = doc.find(".//ipdn:record", NS)
        assert rec.get("origin") == "KR" and rec.get("recordId") == "KR:event-1"
        env = Envelope.from_bytes(rec.findtext("ipdn:envelope", namespaces=NS).encode())
        assert env.payload.record_id == "KR:event-1" and env.kid == node.kr.key.kid
        assert doc.xpath("//o:setSpec/text()", namespaces=NS) == ["kind:cultural-event", "origin:KR"]

    async def test_deleted_record_has_header_only(self, node: Node) -> None:
        """A tombstone: header status="deleted", no metadata, in either format."""
        ids = await seed(node)
        node.clock.tick()
        await node.service.delete(ids[1])
        for prefix in ("oai_dc", "ipdn"):
            doc = await node.oai(verb="GetRecord", identifier=f"oai:ipdn.network:{ids[1]}", metadataPrefix=prefix)
            assert doc.find(".//o:header", NS).get("status") == "deleted"
            assert doc.find(".//o:metadata", NS) is None
            assert doc.findtext(".//o:datestamp", namespaces=NS) == "2026-03-01T08:00:14Z"

    async def test_unknown_item_and_format(self, node: Node) -> None:
        """idDoesNotExist, cannotDisseminateFormat, or both at once; the request keeps its arguments."""
        ids = await seed(node)
        doc = await node.oai(verb="GetRecord", identifier="oai:ipdn.network:QA:nope", metadataPrefix="oai_dc")
        assert errors(doc) == ["idDoesNotExist"]
        doc = await node.oai(verb="GetRecord", identifier="not even a uri", metadataPrefix="oai_dc")
        assert errors(doc) == ["idDoesNotExist"]
        doc = await node.oai(verb="GetRecord", identifier=f"oai:ipdn.network:{ids[0]}", metadataPrefix="marc21")
        assert errors(doc) == ["cannotDisseminateFormat"] and request_attrs(doc)["metadataPrefix"] == "marc21"
        doc = await node.oai(verb="GetRecord", identifier="oai:other.example:QA:x", metadataPrefix="marc21")
        assert errors(doc) == ["idDoesNotExist", "cannotDisseminateFormat"]


class TestListIdentifiersAndRecords:
    @pytest.mark.parametrize("verb", ["ListIdentifiers", "ListRecords"])
    async def test_pages_follow_tokens_to_the_end(self, node: Node, verb: str) -> None:
        """Pages of three in datestamp order; each token's cursor counts what came before; the last page
        carries an empty token."""
        ids = await seed(node)
        got, pages = await harvest_all(node, verb, metadataPrefix="oai_dc")
        assert got == ids and len(pages) == 4
        assert [token_of(p).get("cursor") for p in pages] == ["0", "3", "6", "9"]
        assert [bool(token_of(p).text) for p in pages] == [True, True, True, False]
        assert request_attrs(pages[1]) == {"verb": verb, "resumptionToken": token_of(pages[0]).text}
        stamps = [s for p in pages for s in p.xpath("//o:datestamp/text()", namespaces=NS)]
        assert stamps == sorted(stamps) and stamps[0] == "2026-03-01T08:00:01Z"

    async def test_one_page_has_no_token(self, node: Node) -> None:
        """A complete list in one response has no resumptionToken at all."""
        await seed(node)
        doc = await node.oai(verb="ListIdentifiers", metadataPrefix="ipdn", set="origin:KR")
        assert identifiers(doc) == ["KR:event-0", "KR:event-1"] and token_of(doc) is None

    async def test_records_in_both_formats(self, node: Node) -> None:
        """ListRecords carries each record's metadata in the format asked for."""
        await seed(node)
        doc = await node.oai(verb="ListRecords", metadataPrefix="ipdn")
        assert len(doc.findall(".//o:metadata/ipdn:record", NS)) == PAGE
        doc = await node.oai(verb="ListRecords", metadataPrefix="oai_dc")
        assert len(doc.findall(".//o:metadata/oai_dc:dc", NS)) == PAGE

    async def test_sets_select(self, node: Node) -> None:
        """kind:<kind> and origin:<code> select; the parent sets hold everything; an unknown set matches none."""
        ids = await seed(node)
        got, _ = await harvest_all(node, "ListIdentifiers", metadataPrefix="oai_dc", set="kind:capacity-programme")
        assert got == ids[7:10]
        got, _ = await harvest_all(node, "ListIdentifiers", metadataPrefix="oai_dc", set="origin:QA")
        assert got == ids[:10]
        for parent in ("kind", "origin"):
            got, _ = await harvest_all(node, "ListIdentifiers", metadataPrefix="oai_dc", set=parent)
            assert got == ids
        for unknown in ("kind:recipe", "origin:ZZ", "colour:red", "kind:cultural-event:x"):
            doc = await node.oai(verb="ListIdentifiers", metadataPrefix="oai_dc", set=unknown)
            assert errors(doc) == ["noRecordsMatch"] and request_attrs(doc)["set"] == unknown

    async def test_from_and_until_select_by_datestamp(self, node: Node) -> None:
        """from and until are inclusive, at second or day granularity; a window with nothing is noRecordsMatch."""
        ids = await seed(node)  # datestamps 08:00:01 ... 08:00:12
        got, _ = await harvest_all(node, "ListIdentifiers", metadataPrefix="oai_dc",
                                   **{"from": "2026-03-01T08:00:03Z", "until": "2026-03-01T08:00:07Z"})
        assert got == ids[2:7]
        got, _ = await harvest_all(node, "ListIdentifiers", metadataPrefix="oai_dc", until="2026-03-01T08:00:04Z")
        assert got == ids[:4]
        got, _ = await harvest_all(node, "ListIdentifiers", metadataPrefix="oai_dc",
                                   **{"from": "2026-03-01", "until": "2026-03-01"})
        assert got == ids
        for args in ({"from": "2026-03-02"}, {"until": "2026-02-28"}, {"until": "2026-03-01T08:00:00Z"}):
            doc = await node.oai(verb="ListRecords", metadataPrefix="oai_dc", **args)
            assert errors(doc) == ["noRecordsMatch"] and request_attrs(doc) == {
                "verb": "ListRecords", "metadataPrefix": "oai_dc", **args}

    async def test_until_ends_the_list_on_a_full_page(self, node: Node) -> None:
        """When the records past until start right after a full page, that page is the last: no token
        leading to an empty page."""
        ids = await seed(node)
        doc = await node.oai(verb="ListIdentifiers", metadataPrefix="oai_dc", until="2026-03-01T08:00:03Z")
        assert identifiers(doc) == ids[:3] and token_of(doc) is None

    async def test_deleted_records_are_listed(self, node: Node) -> None:
        """Tombstones stay in the list, with status deleted and no metadata, in their sets."""
        ids = await seed(node)
        node.clock.tick()
        await node.service.delete(ids[8])
        await node.receive(None, "KR:event-0", version=2)
        doc = await node.oai(verb="ListRecords", metadataPrefix="oai_dc", **{"from": "2026-03-01T08:00:14Z"})
        records = doc.findall(".//o:record", NS)
        assert [rid(r.findtext("o:header/o:identifier", namespaces=NS)) for r in records] == [ids[8], "KR:event-0"]
        assert all(r.find("o:header", NS).get("status") == "deleted" and r.find("o:metadata", NS) is None
                   for r in records)
        doc = await node.oai(verb="ListIdentifiers", metadataPrefix="oai_dc", set="origin:KR",
                             **{"from": "2026-03-01T08:00:14Z"})
        assert identifiers(doc) == ["KR:event-0"] and doc.find(".//o:header", NS).get("status") == "deleted"

    async def test_empty_repository_matches_nothing(self, node: Node) -> None:
        """No records at all: noRecordsMatch (an empty list is not a valid response)."""
        for verb in ("ListRecords", "ListIdentifiers"):
            assert errors(await node.oai(verb=verb, metadataPrefix="oai_dc")) == ["noRecordsMatch"]

    async def test_token_from_another_verb_or_tampered(self, node: Node) -> None:
        """A ListIdentifiers token is not a ListRecords token; a list position that is not ours is refused."""
        await seed(node)
        token = token_of(await node.oai(verb="ListIdentifiers", metadataPrefix="oai_dc")).text
        doc = await node.oai(verb="ListRecords", resumptionToken=token)
        assert errors(doc) == ["badResumptionToken"] and request_attrs(doc) == {
            "verb": "ListRecords", "resumptionToken": token}
        forged = ListQuery("ListRecords", "oai_dc", cursor="bm90LWEtY3Vyc29y").token()
        assert errors(await node.oai(verb="ListRecords", resumptionToken=forged)) == ["badResumptionToken"]


class TestProtocolErrors:
    @pytest.mark.parametrize("params", [
        MultiDict(), MultiDict(verb="Harvest"), MultiDict(verb="identify"), MultiDict([("verb", "Identify")] * 2),
        MultiDict(metadataPrefix="oai_dc")])
    async def test_bad_verb(self, node: Node, params: MultiDict[str]) -> None:
        """No verb, an unknown one (case matters) or two: badVerb, and a request element without attributes."""
        resp = await node.client.get("/oai", params=params)
        doc = assert_valid(node.schema, await resp.read())
        assert resp.status == 200 and errors(doc) == ["badVerb"] and request_attrs(doc) == {}

    @pytest.mark.parametrize("params", [
        {"verb": "Identify", "set": "kind"},
        {"verb": "ListRecords"},
        {"verb": "ListRecords", "metadataPrefix": "oai_dc", "resumptionToken": "x"},
        {"verb": "ListIdentifiers", "metadataPrefix": "oai_dc", "from": "2026-03-01T08:00:00+03:00"},
        {"verb": "ListIdentifiers", "metadataPrefix": "oai_dc", "from": "2026-03-01", "until": "2026-03-02T00:00:00Z"},
        {"verb": "ListIdentifiers", "metadataPrefix": "oai_dc", "from": "2026-03-02", "until": "2026-03-01"},
        {"verb": "ListRecords", "metadataPrefix": "oai_dc", "set": "kind cultural-event"},
        {"verb": "ListRecords", "metadataPrefix": "oai dc"},
        {"verb": "ListRecords", "metadataPrefix": ""},
        {"verb": "ListRecords", "metadataPrefix": "oai_dc\x01"},
        {"verb": "GetRecord", "identifier": "oai:ipdn.network:QA:x"},
        {"verb": "ListMetadataFormats", "identifier": "oai:ipdn.network:QA:x", "metadataPrefix": "oai_dc"},
    ])
    async def test_bad_argument(self, node: Node, params: dict[str, str]) -> None:
        """Unknown, missing, malformed or non-exclusive arguments: badArgument, request without attributes."""
        doc = await node.oai(**params)
        assert set(errors(doc)) == {"badArgument"} and request_attrs(doc) == {}

    async def test_repeated_argument(self, node: Node) -> None:
        """An argument given twice is badArgument."""
        resp = await node.client.get("/oai", params=MultiDict(
            [("verb", "ListRecords"), ("metadataPrefix", "oai_dc"), ("metadataPrefix", "ipdn")]))
        doc = assert_valid(node.schema, await resp.read())
        assert errors(doc) == ["badArgument"] and "repeated" in doc.findtext("o:error", namespaces=NS)

    async def test_every_problem_reported(self, node: Node) -> None:
        """Several bad arguments give one badArgument error each."""
        doc = await node.oai(verb="ListRecords", set="a b", color="red")
        assert errors(doc) == ["badArgument"] * 3


class TestPost:
    async def test_post_form_answers_like_get(self, node: Node) -> None:
        """OAI-PMH allows POST with a form-encoded body: the same answer as GET."""
        ids = await seed(node)
        got = await node.oai("POST", verb="GetRecord", identifier=f"oai:ipdn.network:{ids[3]}", metadataPrefix="ipdn")
        want = await node.oai("GET", verb="GetRecord", identifier=f"oai:ipdn.network:{ids[3]}", metadataPrefix="ipdn")
        assert etree.tostring(got) == etree.tostring(want)
        assert errors(await node.oai("POST")) == ["badVerb"]

    async def test_query_string_of_a_post_is_not_read(self, node: Node) -> None:
        """A POST's arguments are its body: a verb in the URL alone is no verb."""
        resp = await node.client.post("/oai?verb=Identify", data={})
        assert errors(assert_valid(node.schema, await resp.read())) == ["badVerb"]


class TestCaching:
    """Like the other partner formats (PROTOCOL.md §9): ETag, Cache-Control, 304 on If-None-Match."""

    async def test_unchanged_answer_is_304_even_a_second_later(self, node: Node) -> None:
        """The validator covers the answer but not its responseDate: a harvester asking again gets 304 without a
        body until the record changes, and then the new answer with another ETag."""
        ids = await seed(node)
        params = {"verb": "GetRecord", "identifier": f"oai:ipdn.network:{ids[0]}", "metadataPrefix": "ipdn"}
        first = await node.client.get("/oai", params=params)
        etag = first.headers["ETag"]
        assert first.status == 200 and etag.startswith('W/"')
        assert first.headers["Cache-Control"] == "public, max-age=300"
        node.clock.tick()
        again = await node.client.get("/oai", params=params, headers={"If-None-Match": etag})
        assert again.status == 304 and await again.read() == b"" and again.headers["ETag"] == etag
        assert again.headers["Cache-Control"] == "public, max-age=300"
        node.clock.tick()
        await node.service.cancel(ids[0])
        changed = await node.client.get("/oai", params=params, headers={"If-None-Match": etag})
        assert changed.status == 200 and changed.headers["ETag"] != etag

    async def test_post_and_errors_carry_validators_too(self, node: Node) -> None:
        """A POST harvest and an OAI error document are answers like any other."""
        resp = await node.client.post("/oai", data={"verb": "Identify"})
        assert resp.status == 200 and resp.headers["ETag"].startswith('W/"') and "Cache-Control" in resp.headers
        bad = await node.client.get("/oai", params={"verb": "Nope"})
        assert bad.headers["ETag"] != resp.headers["ETag"]


# -- a real harvester ------------------------------------------------------------------------------------


class RecordingSickle(Sickle):  # type: ignore[misc]
    """Sickle keeping every response it received, to count the pages and validate each one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, timeout=10, proxies=NO_PROXY, **kwargs)
        self.responses: list[Any] = []

    def harvest(self, **kwargs: Any) -> Any:
        response = super().harvest(**kwargs)
        self.responses.append(response)
        return response


@dataclasses.dataclass
class Harvest:
    records: list[Any]
    responses: list[Any]

    @property
    def ids(self) -> list[str]:
        return [rid(r.header.identifier) for r in self.records]

    @property
    def response_date(self) -> str:
        return str(self.responses[-1].xml.findtext(f"{{{OAI_NS}}}responseDate"))

    def by_id(self) -> dict[str, Any]:
        return {rid(r.header.identifier): r for r in self.records}


async def sickle_harvest(node: Node, method: str = "GET", **params: str) -> Harvest:
    """A full ListRecords harvest by Sickle, in a thread (it blocks); every response validated."""
    def run() -> Harvest:
        sickle = RecordingSickle(node.url, http_method=method)
        records = list(sickle.ListRecords(ignore_deleted=False, **params))
        return Harvest(records, sickle.responses)

    harvest = await asyncio.to_thread(run)
    for response in harvest.responses:
        assert response.http_response.headers["Content-Type"] == "text/xml; charset=utf-8"
        assert_valid(node.schema, response.http_response.content)
    return harvest


def changed(body: dict[str, Any], title: str) -> dict[str, Any]:
    new = copy.deepcopy(body)
    new["title"]["en"] = title
    return new


class TestHarvestWithSickle:
    @pytest.mark.parametrize("method", ["GET", "POST"])
    async def test_full_harvest_in_pages(self, node: Node, method: str) -> None:
        """Sickle harvests everything, following three resumption tokens, in both formats."""
        ids = await seed(node)
        harvest = await sickle_harvest(node, method, metadataPrefix="oai_dc")
        assert harvest.ids == ids and len(harvest.responses) == 4
        first = harvest.by_id()[ids[0]]
        assert first.metadata["title"][:2] == list(example_bodies("cultural-event")[0]["title"].values())[:2]
        assert first.header.datestamp == "2026-03-01T08:00:01Z" and not first.header.deleted
        native = await sickle_harvest(node, method, metadataPrefix="ipdn", set="kind:cultural-event")
        assert native.ids == ids[:7] + ids[10:] and len(native.responses) == 3

    async def test_incremental_harvest_picks_up_only_changes(self, node: Node) -> None:
        """from = the previous harvest's responseDate: only what changed since, updates and deletions."""
        ids = await seed(node)
        full = await sickle_harvest(node, metadataPrefix="oai_dc")
        assert full.response_date == "2026-03-01T08:00:13Z"
        node.clock.tick(30)
        body = example_bodies("cultural-event")[4]
        await node.service.update(ids[4], changed(body, "Photography exhibition, new dates"))
        node.clock.tick()  # time passes (a harvest in the same second as a change would see it again)
        since = await sickle_harvest(node, metadataPrefix="oai_dc", **{"from": full.response_date})
        assert since.ids == [ids[4]]
        assert "Photography exhibition, new dates" in since.records[0].metadata["title"]
        assert since.records[0].header.datestamp == "2026-03-01T08:00:43Z"

        node.clock.tick(30)
        await node.service.delete(ids[2])
        await node.receive(None, "KR:event-1", version=2)
        node.clock.tick()
        later = await sickle_harvest(node, metadataPrefix="oai_dc", **{"from": since.response_date})
        assert later.ids == [ids[2], "KR:event-1"]
        assert all(r.deleted and r.header.deleted and getattr(r, "metadata", None) is None for r in later.records)
        with pytest.raises(NoRecordsMatch):
            await sickle_harvest(node, metadataPrefix="oai_dc", **{"from": later.response_date})

    async def test_old_token_still_works_after_new_records(self, node: Node) -> None:
        """A token kept from an earlier harvest resumes after new records were added: no state, no expiry."""
        ids = await seed(node)

        def first_page() -> str:
            it = RecordingSickle(node.url).ListIdentifiers(metadataPrefix="oai_dc")
            return str(it.resumption_token.token)

        token = await asyncio.to_thread(first_page)
        node.clock.tick(3600)
        added = [await node.publish(b) for b in example_bodies("cultural-event")[5:]]
        await node.receive(example_bodies("cultural-event")[3], "KR:event-9")

        def resume() -> list[str]:
            sickle = RecordingSickle(node.url)
            headers = list(sickle.ListIdentifiers(resumptionToken=token))
            for response in sickle.responses:
                assert_valid(node.schema, response.http_response.content)
            return [rid(h.identifier) for h in headers]

        assert await asyncio.to_thread(resume) == ids[PAGE:] + added + ["KR:event-9"]

    async def test_harvester_sees_protocol_errors(self, node: Node) -> None:
        """Errors reach a harvester as OAI-PMH errors it understands, not HTTP failures."""
        await seed(node)
        with pytest.raises(BadResumptionToken):
            await sickle_harvest(node, resumptionToken="bm9wZQ")


def test_vectors_present() -> None:
    """The schemas the tests validate against are where the project expects them (a failure, not a skip)."""
    missing = [n for n in ("OAI-PMH.xsd", "oai_dc.xsd", "simpledc20021212.xsd", "oai-identifier.xsd")
               if not (VECTORS / n).is_file()]
    assert not missing, f"missing under {VECTORS}: {missing}"
    assert IPDN_XSD.is_file()


async def test_host_header_cannot_poison_oai_links(node: Node) -> None:
    """A forged ``Host: evil.example`` changes neither the base URL, the request element nor the records' links of
    the (cacheable) answer: they come from the node's public_url (docs/THREAT-MODEL.md)."""
    await seed(node)
    for verb, extra in (("Identify", {}), ("ListRecords", {"metadataPrefix": "oai_dc"})):
        resp = await node.client.get("/oai", params={"verb": verb, **extra}, headers={"Host": "evil.example"})
        body = await resp.text()
        assert resp.status == 200 and "public" in resp.headers["Cache-Control"], body
        assert "evil.example" not in body and not any("evil.example" in v for v in resp.headers.values())
        assert f"{node.url}<" in body or f'"{node.url}"' in body
    assert f"{node.service_url}/api/v1/records/" in body
