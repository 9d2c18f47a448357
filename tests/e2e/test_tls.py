"""The services terminating TLS themselves, with certificates made by the test: a hub and two nodes on
HTTPS, then with mutual TLS between the nodes and the hub (real processes on loopback)."""

from __future__ import annotations

import ssl
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.server import tls
from tests.support.factories import example_bodies
from tests.support.harness import Federation, http
from tests.support.tlscerts import TestCA

pytestmark = pytest.mark.e2e

MEMBERS = ["QA", "KR"]


def _configure(f: Federation, hub: dict[str, str], node: dict[str, str]) -> None:
    """Append TLS settings to hub.toml and each node.toml (as an operator would edit them)."""
    def toml(values: dict[str, str]) -> str:
        return "".join(f'\n{k} = {v if v in ("true", "false") else repr(v)}' for k, v in values.items()) + "\n"

    with (f.root / "hub" / "hub.toml").open("a") as fh:
        fh.write(toml(hub))
    for m in f.members:
        with (f.root / m / "node.toml").open("a") as fh:
            fh.write(toml({k: v.replace("{m}", m) for k, v in node.items()}))


def _federation(tmp_path: Path, ca: TestCA, *, mutual: bool) -> Federation:
    server = ca.issue("server", server=True)
    clients = {m: ca.issue(m, client=True) for m in [*MEMBERS, "operator"]}
    test_client = tls.client_context(ca=ca.cert, cert=clients["operator"].cert, key=clients["operator"].key)
    f = Federation(tmp_path, MEMBERS, tls=test_client).init()
    served = {"tls_cert": str(server.cert), "tls_key": str(server.key)}
    mtls = {"tls_client_ca": str(ca.cert), "tls_require_client_cert": "true"} if mutual else {}
    hub_client = ({"hub_client_cert": str(ca.dir / "{m}.crt.pem"), "hub_client_key": str(ca.dir / "{m}.key.pem")}
                  if mutual else {})
    _configure(f, {**served, **mtls}, {**served, "hub_ca": str(ca.cert), **hub_client})
    return f


def _running(factory: pytest.TempPathFactory, name: str, *, mutual: bool) -> Iterator[tuple[Federation, TestCA]]:
    """A federation of a new private CA under a fresh directory ``name``, all started, and its CA."""
    root = factory.mktemp(name)
    ca = TestCA(root / "pki")
    with _federation(root, ca, mutual=mutual) as f:
        f.start_all()
        yield f, ca


@pytest.fixture(scope="class")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, TestCA]]:
    """Hub and nodes serving HTTPS with certificates of a private CA, running (shared by a class)."""
    yield from _running(tmp_path_factory, "tls", mutual=False)


@pytest.fixture(scope="class")
def mutual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, TestCA]]:
    """The same with tls_require_client_cert at the hub and a client certificate for each node."""
    yield from _running(tmp_path_factory, "mtls", mutual=True)


class TestServedTls:
    def test_nodes_sync_through_a_hub_serving_https(self, served: tuple[Federation, TestCA]) -> None:
        """Hub and nodes serve HTTPS with a private CA; the nodes trust the hub by hub_ca and sync."""
        f, _ = served
        assert f.hub_url.startswith("https://")
        rid = f.publish("QA", "cultural-event", example_bodies("cultural-event")[0])["record_id"]
        assert f.wait_record("KR", rid)["origin"] == "QA"
        code, status = http("GET", f.url("KR") + "/api/v1/status", context=f.tls)
        assert code == 200 and status["hub"]["reachable"] is True

    def test_plain_http_client_gets_no_answer_from_tls_port(self, served: tuple[Federation, TestCA]) -> None:
        """A TLS listener does not fall back to cleartext: a plain HTTP request fails."""
        f, _ = served
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            http("GET", f.hub_url.replace("https://", "http://") + "/api/v1/status", timeout=3)

    def test_server_certificate_from_unknown_ca_refused(self, served: tuple[Federation, TestCA],
                                                        tmp_path: Path) -> None:
        """A client trusting only its own CA refuses a hub whose certificate another CA issued (MITM)."""
        f, _ = served
        other = TestCA(tmp_path / "other", name="Impostor CA")
        with pytest.raises(urllib.error.URLError) as e:
            http("GET", f.hub_url + "/api/v1/status", context=tls.client_context(ca=other.cert), timeout=3)
        assert isinstance(e.value.reason, ssl.SSLCertVerificationError)


class TestMutualTls:
    def test_nodes_with_client_certificates_sync(self, mutual: tuple[Federation, TestCA]) -> None:
        """With tls_require_client_cert at the hub, nodes presenting their certificates push and pull."""
        f, _ = mutual
        rid = f.publish("KR", "cultural-event", example_bodies("cultural-event")[1])["record_id"]
        assert f.wait_record("QA", rid)["origin"] == "KR"

    def test_client_without_certificate_refused(self, mutual: tuple[Federation, TestCA], tmp_path: Path) -> None:
        """A client that trusts the hub but presents no certificate fails the handshake; so does one
        whose certificate another CA issued (a stranger's self-made client certificate)."""
        f, ca = mutual
        rogue = TestCA(tmp_path / "rogue", name="Rogue CA").issue("QA", client=True)
        assert http("GET", f.hub_url + "/api/v1/status", context=f.tls)[0] == 200
        for context in (tls.client_context(ca=ca.cert),
                        tls.client_context(ca=ca.cert, cert=rogue.cert, key=rogue.key)):
            with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
                http("GET", f.hub_url + "/api/v1/log", context=context, timeout=3)
