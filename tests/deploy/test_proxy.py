"""deploy/nginx/ipdn-hub.conf run for real in front of a hub: two nodes sync through it over TLS with
mutual TLS on the push path, full log pages are served from its cache, partial pages and pushes are not,
and a push without a client certificate stops at the proxy. Skipped where nginx is not installed.

The configuration is used as shipped except for what a site changes: the certificate paths, the ports
(a free loopback port for 443, the hub's for 8440) and the cache directory.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.server import tls
from tests.support import paths
from tests.support.factories import example_bodies
from tests.support.harness import free_port, http, wait_for
from tests.support.tlscerts import TestCA

pytestmark = pytest.mark.e2e

DEPLOY = paths.ROOT / "deploy"
IPDN = str(Path(sys.executable).parent / "ipdn")


def _ipdn(*args: str) -> None:
    subprocess.run([IPDN, *args], check=True, capture_output=True, timeout=120)


def _get(url: str, context: ssl.SSLContext, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(req, context=context, timeout=10) as r:  # noqa: S310
            r.read()
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


class Procs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with (self.root / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                                env={**os.environ, **(env or {})})

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-1500:]

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Hub, nginx in front of it, and two nodes pushing through it with client certificates (shared)."""
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed here: the proxy configuration is only checked statically")
    tmp_path = tmp_path_factory.mktemp("proxy")
    ca = TestCA(tmp_path / "pki")
    server = ca.issue("server", server=True)
    for m in ("QA", "KR", "auditor"):
        ca.issue(m, client=True)
    proxy_port, hub_port = free_port(), free_port()
    public = f"https://127.0.0.1:{proxy_port}"

    keys = tmp_path / "keys"
    for m in ("QA", "KR"):
        _ipdn("keygen", "--member", m, "--out", str(keys))
    _ipdn("hub", "init", "--dir", str(tmp_path / "hub"), "--url", public, "--port", str(hub_port),
          "--founder", str(keys / "QA.pub.jwk.json"), "--founder", str(keys / "KR.pub.jwk.json"))
    node_ports = {m: free_port() for m in ("QA", "KR")}
    for m in ("QA", "KR"):
        _ipdn("node", "init", "--dir", str(tmp_path / m), "--member", m, "--key", str(keys / f"{m}.key.pem"),
              "--registry", str(tmp_path / "hub" / "registry.json"), "--port", str(node_ports[m]))

    conf = (DEPLOY / "nginx" / "ipdn-hub.conf").read_text()
    conf = re.sub(r"/etc/letsencrypt/live/[^/]+/fullchain\.pem", str(server.cert), conf)
    conf = re.sub(r"/etc/letsencrypt/live/[^/]+/privkey\.pem", str(server.key), conf)
    conf = conf.replace("/etc/ipdn/tls/members-ca.pem", str(ca.cert))
    conf = conf.replace("/var/cache/nginx", str(tmp_path / "cache")).replace("127.0.0.1:8440", f"127.0.0.1:{hub_port}")
    conf = re.sub(r"server \{\n    listen 80;.*?\n\}\n", "", conf, flags=re.DOTALL)  # the port-80 redirect
    conf = conf.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{proxy_port} ssl;")
    conf = conf.replace("    listen [::]:443 ssl http2;\n", "")
    (tmp_path / "cache").mkdir()
    (tmp_path / "hub.conf").write_text(conf)
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    # As root, nginx's workers would run as nobody, who cannot enter pytest's private temp directory.
    user = "user root;\n" if os.getuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/nginx-error.log;\nevents {{}}\nhttp {{\n"
        f"  access_log off;\n  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n"
        f"  include {tmp_path}/hub.conf;\n}}\n")

    procs = Procs(tmp_path)
    try:
        procs.start("hub", [IPDN, "hub", "serve", "--dir", str(tmp_path / "hub")])
        wait_for("the hub", lambda: _alive(f"http://127.0.0.1:{hub_port}/healthz"))
        procs.start("nginx", [nginx, "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"])
        auditor = tls.client_context(ca=ca.cert, cert=ca.dir / "auditor.crt.pem", key=ca.dir / "auditor.key.pem")
        wait_for("nginx", lambda: _alive(public + "/healthz", auditor))
        for m in ("QA", "KR"):
            procs.start(m, [IPDN, "node", "serve", "--dir", str(tmp_path / m)], env={
                "IPDN_NODE_HUB_CA": str(ca.cert), "IPDN_NODE_HUB_CLIENT_CERT": str(ca.dir / f"{m}.crt.pem"),
                "IPDN_NODE_HUB_CLIENT_KEY": str(ca.dir / f"{m}.key.pem")})
            wait_for(f"node {m}", lambda m=m: _alive(f"http://127.0.0.1:{node_ports[m]}/healthz"))
        yield {"public": public, "ca": ca, "auditor": auditor, "nodes": node_ports, "root": tmp_path,
               "token": (tmp_path / "QA" / "operator.token").read_text().strip()}
    finally:
        procs.close()


def _alive(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        return http("GET", url, timeout=2, context=context)[0] == 200
    except OSError:
        return False


class TestNginxInFrontOfTheHub:
    def test_nodes_sync_through_the_proxy_and_full_pages_come_from_its_cache(
            self, behind_nginx: dict[str, object]) -> None:
        """Records published at QA reach KR through nginx (TLS, client certificates on pushes); a full log
        page is a cache HIT the second time, revalidation by ETag is a 304, a partial page is never cached."""
        public, auditor = str(behind_nginx["public"]), behind_nginx["auditor"]
        assert isinstance(auditor, ssl.SSLContext)
        nodes = behind_nginx["nodes"]
        assert isinstance(nodes, dict)
        token = str(behind_nginx["token"])
        bodies = example_bodies("cultural-event")
        ids = []
        for i in range(3):
            code, doc = http("POST", f"http://127.0.0.1:{nodes['QA']}/api/v1/records",
                             {"kind": "cultural-event", "body": bodies[i % len(bodies)]}, token=token)
            assert code == 201, doc
            ids.append(doc["record_id"])
        for rid in ids:
            wait_for(f"{rid} at KR", lambda rid=rid: http(
                "GET", f"http://127.0.0.1:{nodes['KR']}/api/v1/records/{rid}")[0] == 200)

        full = public + "/api/v1/log?after=0&limit=2"
        first, headers = _get(full, auditor)
        again, cached = _get(full, auditor)
        assert (first, again) == (200, 200) and cached["X-Cache-Status"] == "HIT", (headers, cached)
        assert "immutable" in cached["Cache-Control"]
        code, _ = _get(full, auditor, {"If-None-Match": cached["ETag"]})
        assert code == 304
        partial = public + "/api/v1/log?after=0&limit=1000"
        _get(partial, auditor)
        _, second = _get(partial, auditor)
        assert second["X-Cache-Status"] != "HIT" and second["Cache-Control"] == "no-cache"

    def test_push_without_client_certificate_stops_at_the_proxy(self, behind_nginx: dict[str, object]) -> None:
        """With mTLS on the push path, a client without a certificate gets 403 from nginx, while reads stay
        open to it (partners and auditors need no certificate)."""
        public, ca = str(behind_nginx["public"]), behind_nginx["ca"]
        assert isinstance(ca, TestCA)
        anonymous = tls.client_context(ca=ca.cert)
        code, problem = http("POST", public + "/api/v1/envelopes", {"envelopes": []}, context=anonymous)
        assert code == 403 and problem["reason"] == "client-certificate-required"
        assert _get(public + "/api/v1/registry", anonymous)[0] == 200
