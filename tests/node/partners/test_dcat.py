"""The DCAT-AP 3 catalogue (node/partners/dcat.py): ``GET /catalog`` as JSON-LD, Turtle and RDF/XML.

Read back with a real RDF toolkit: every serialisation parsed with rdflib and the graphs isomorphic; the graph
validated with pySHACL against the DCAT-AP 3.0.1 SHACL shapes (tests/vectors/dcat-ap/, README there): 0
violations, and a catalogue with a mandatory property taken out is caught. Every distribution's access URL
answers on the node with the media type the catalogue states.
"""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyshacl
import pytest
import rdflib.namespace as ns  # as a module: pytest would otherwise look for its hooks in the namespaces
from aiohttp.test_utils import TestClient
from rdflib import Graph, Literal, URIRef
from rdflib.compare import isomorphic

from node.app import create_app
from node.appkeys import CONFIG, SERVICE
from node.config import NodeConfig
from node.partners import dcat
from node.records.service import NodeService
from tests.support.factories import example_bodies

SHAPES = Path(__file__).resolve().parents[2] / "vectors" / "dcat-ap" / "dcat-ap-SHACL-3.0.1.ttl"
IANA = "https://www.iana.org/assignments/media-types/"
FORMATS = {"jsonld": "json-ld", "ttl": "turtle", "rdf": "xml"}
VCARD = "http://www.w3.org/2006/vcard/ns#"


# The 3.0.1 file still lists two DataService property shapes it no longer defines (3.0.0's `sh:class rdfs:Resource`
# for dcat:endpointURL and dcat:endpointDescription; SEMICeu/DCAT-AP issue 448): validators refuse a reference to a
# shape without sh:path, so these two references, which constrain nothing, are taken out of the graph read.
UNDEFINED = {URIRef(f"https://semiceu.github.io/DCAT-AP/releases/3.0.1#dcat:DataServiceShape/{h}")
             for h in ("dc08f4dca4377fade57f89454e3fa06a8389d314", "eb3ac4e4fdde2e2588a9502c5956060a18c5c99f")}


@pytest.fixture(scope="module")
def shapes() -> Graph:
    g = Graph().parse(SHAPES, format="turtle")
    dangling = {(s, ps) for s, ps in g.subject_objects(ns.SH.property) if g.value(ps, ns.SH.path) is None}
    assert {ps for _, ps in dangling} == UNDEFINED  # a new release that fixes (or adds to) them shows here
    for s, ps in dangling:
        g.remove((s, ns.SH.property, ps))
    assert len(set(g.subjects(ns.RDF.type, ns.SH.NodeShape))) == 33
    assert len(set(g.objects(None, ns.SH.property))) == 290
    return g


@pytest.fixture
async def client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    return await aiohttp_client(create_app(config, sync=False))


@pytest.fixture
def moments() -> list[datetime]:
    return [datetime(2026, 1, 5, 9, 0, tzinfo=UTC)]


@pytest.fixture
def service(client: TestClient, moments: list[datetime]) -> NodeService:
    """The node's service on a clock the test moves (``moments[0]``), a second further at each reading."""
    svc = client.app[SERVICE]
    ticks = itertools.count()
    svc.clock = lambda: moments[0] + timedelta(seconds=next(ticks))
    return svc


async def publish_samples(service: NodeService) -> None:
    for kind in ("cultural-event", "capacity-programme"):
        for body in example_bodies(kind):
            await service.create(kind, copy.deepcopy(body))


async def fetch(client: TestClient, path: str, **headers: str) -> tuple[Any, bytes]:
    resp = await client.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    return resp, await resp.read()


def violations(data: Graph, shapes: Graph) -> list[str]:
    """What pySHACL reports (any severity), the data graph taken as it is: no inference."""
    conforms, report, _ = pyshacl.validate(data, shacl_graph=shapes, inference="none", allow_warnings=False)
    sh = ns.SH
    found = [f"{report.value(r, sh.focusNode)} {report.value(r, sh.resultPath)}: {report.value(r, sh.resultMessage)}"
             for r in report.subjects(ns.RDF.type, sh.ValidationResult)]
    assert conforms == (not found)
    return found


async def test_every_serialisation_is_the_same_graph_and_conforms_to_dcat_ap(
        client: TestClient, service: NodeService, shapes: Graph) -> None:
    await publish_samples(service)
    graphs = {}
    for suffix, fmt in FORMATS.items():
        resp, body = await fetch(client, f"{dcat.PATH}.{suffix}")
        assert resp.content_type == dcat.OFFERS[suffix] and resp.charset == "utf-8"
        assert resp.headers["Cache-Control"] == dcat.CACHE_CONTROL and resp.headers["ETag"]
        graphs[suffix] = Graph().parse(data=body, format=fmt)
    assert isomorphic(graphs["jsonld"], graphs["ttl"]) and isomorphic(graphs["ttl"], graphs["rdf"])
    assert len(graphs["ttl"]) > 250
    assert violations(graphs["ttl"], shapes) == []


async def test_the_shapes_catch_a_catalogue_that_breaks_them(client: TestClient, service: NodeService,
                                                             shapes: Graph) -> None:
    await publish_samples(service)
    _, body = await fetch(client, f"{dcat.PATH}.ttl")
    g = Graph().parse(data=body, format="turtle")
    ds = URIRef(f"{client.app[CONFIG].public_base}/catalog#dataset-QA")
    g.remove((ds, ns.DCTERMS.title, None))
    for dist in g.objects(ds, ns.DCAT.distribution):
        g.remove((dist, ns.DCAT.accessURL, None))
    found = violations(g, shapes)
    assert any(str(ds) in v and "title" in v for v in found), found
    assert sum("accessURL" in v for v in found) == 6, found


async def test_each_member_is_a_dataset_with_its_facts_and_distributions(client: TestClient,
                                                                         service: NodeService) -> None:
    await publish_samples(service)
    base = client.app[CONFIG].public_base
    _, body = await fetch(client, dcat.PATH + ".ttl")
    g = Graph().parse(data=body, format="turtle")
    cat = URIRef(base + dcat.PATH)
    assert (cat, ns.RDF.type, ns.DCAT.Catalog) in g
    datasets = set(g.objects(cat, ns.DCAT.dataset))
    assert datasets == {URIRef(f"{base}/catalog#dataset-{c}") for c in ("QA", "KR")}  # the registry's members
    qa = URIRef(f"{base}/catalog#dataset-QA")
    titles = {t.language: str(t) for t in g.objects(qa, ns.DCTERMS.title)}
    assert set(titles) == {"en", "ar"} and "institution of QA" in titles["en"]
    publisher = g.value(qa, ns.DCTERMS.publisher)
    assert (publisher, ns.RDF.type, ns.FOAF.Agent) in g
    assert g.value(publisher, ns.FOAF.name) == Literal("institution of QA", lang="en")
    assert g.value(qa, ns.DCTERMS.spatial) == URIRef(dcat.EU + "country/QAT")
    assert g.value(qa, ns.DCAT.theme) == dcat.THEME
    period = g.value(qa, ns.DCTERMS.temporal)
    assert g.value(period, ns.DCAT.startDate) == Literal(date(2020, 1, 20), datatype=ns.XSD.date)
    assert g.value(period, ns.DCAT.endDate) == Literal(date(2020, 12, 18), datatype=ns.XSD.date)  # the fellowship's end
    assert Literal("IPDN") in set(g.objects(qa, ns.DCAT.keyword))
    assert {str(x) for x in g.objects(qa, ns.DCTERMS.language)} >= {dcat.EU + "language/ARA", dcat.EU + "language/ENG"}
    assert g.value(g.value(qa, ns.DCAT.contactPoint), URIRef(VCARD + "hasEmail")) is not None
    distributions = list(g.objects(qa, ns.DCAT.distribution))
    assert len(distributions) == 6
    for dist in distributions:
        assert g.value(dist, ns.DCTERMS.license) == URIRef("https://creativecommons.org/licenses/by/4.0/")
        url = str(g.value(dist, ns.DCAT.accessURL))
        media = g.value(dist, ns.DCAT.mediaType)
        resp = await client.get(url.removeprefix(base))
        assert resp.status == 200, url
        if media is not None:  # JSON Feed's type is not registered: its format is the EU file type JSON
            assert resp.content_type == str(media).removeprefix(IANA), url
        else:
            assert g.value(dist, ns.DCTERMS["format"]) == dcat.JSON_FILE
            assert resp.content_type == "application/feed+json"
    for service_node in g.objects(cat, ns.DCAT.service):
        endpoint = str(g.value(service_node, ns.DCAT.endpointURL))
        assert (await client.get(endpoint.removeprefix(base))).status == 200
        assert set(g.objects(service_node, ns.DCAT.servesDataset)) == datasets


async def test_negotiated_cached_and_rebuilt_after_a_while(client: TestClient, service: NodeService,
                                                           moments: list[datetime]) -> None:
    await publish_samples(service)
    for accept, media in ((None, "application/ld+json"), ("text/turtle", "text/turtle"),
                          ("application/rdf+xml;q=0.9, text/turtle;q=0.5", "application/rdf+xml"),
                          ("text/html,*/*;q=0.8", "application/ld+json")):
        resp = await client.get(dcat.PATH, headers={"Accept": accept} if accept else {})
        assert resp.status == 200 and resp.content_type == media, accept
        assert resp.headers["Vary"] == "Accept"
        assert 'rel="alternate"; type="text/turtle"' in resp.headers["Link"]
    first = await client.get(dcat.PATH + ".ttl")
    etag = first.headers["ETag"]
    assert (await client.get(dcat.PATH + ".ttl", headers={"If-None-Match": etag})).status == 304
    assert (await client.get(dcat.PATH + ".nt")).status == 404
    # A new record: the catalogue built a moment ago is served until REBUILD_EVERY has passed; then a request starts
    # a rebuild in the background and is answered from the graph held; the next one gets the new graph.
    body = copy.deepcopy(example_bodies("cultural-event")[0])
    body["tags"] = ["a-new-tag"]
    await service.create("cultural-event", body)
    assert (await client.get(dcat.PATH + ".ttl")).headers["ETag"] == etag
    moments[0] += dcat.REBUILD_EVERY + timedelta(minutes=1)
    assert (await client.get(dcat.PATH + ".ttl", headers={"If-None-Match": etag})).status == 304
    await client.app[dcat.CATALOG_CACHE].settled()
    again = await client.get(dcat.PATH + ".ttl", headers={"If-None-Match": etag})
    assert again.status == 200 and again.headers["ETag"] != etag
    assert "a-new-tag" in await again.text()
