"""``make demo``: a local federation on loopback: a hub and three member nodes (Qatar, Korea, Türkiye).

Everything goes through the real command line and HTTP interfaces, as member IT departments would
use them: keys are made, the hub is initialised with the three founders, each node is initialised
from the hub's registry, the sample records are published at the nodes and appear at the others.
Ctrl-C stops every process. State is kept in ./demo (recreated on each run).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from federation.protocol.schemas import SCHEMA_ROOT

MEMBERS = {"QA": 8441, "KR": 8442, "TR": 8443}
HUB_PORT = 8440
# Who publishes what: the chair publishes the events of the 6th General Assembly, Korea the programmes.
PUBLISHES = {"QA": "cultural-event", "KR": "capacity-programme"}


def free(port: int) -> int:
    """``port`` if nothing listens on it, otherwise any free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, method=method, data=data)  # noqa: S310 (loopback URLs we built)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 (loopback URLs we built)
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ipdn = str(Path(sys.executable).parent / "ipdn")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.hub_port = free(HUB_PORT)
        self.ports = {m: free(p) for m, p in MEMBERS.items()}

    def cli(self, *args: str) -> None:
        subprocess.run([self.ipdn, *args], check=True, stdout=subprocess.DEVNULL)

    def start(self, name: str, *args: str, url: str) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 (lives as long as the process)
        self.procs.append(subprocess.Popen([self.ipdn, *args], stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if http("GET", url + "/api/v1/status")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{name} did not start; see {self.root / (name + '.log')}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    def run(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        keys = self.root / "keys"
        hub_url = f"http://127.0.0.1:{self.hub_port}"
        for m in MEMBERS:
            self.cli("keygen", "--member", m, "--out", str(keys))
        founders = [a for m in MEMBERS for a in ("--founder", str(keys / f"{m}.pub.jwk.json"))]
        self.cli("hub", "init", "--dir", str(self.root / "hub"), "--url", hub_url, *founders)
        # A dashboard account for the demo; its password in a file like the tokens (ipdn hub operator add).
        password = self.root / "hub" / "demo-operator.password"
        password.write_text(secrets.token_urlsafe(12) + "\n")
        password.chmod(0o600)
        self.cli("hub", "operator", "add", "demo", "--dir", str(self.root / "hub"), "--password-file", str(password))
        for m, port in self.ports.items():
            self.cli("node", "init", "--dir", str(self.root / m), "--member", m, "--key", str(keys / f"{m}.key.pem"),
                     "--registry", str(self.root / "hub" / "registry.json"), "--port", str(port))
        self.start("hub", "hub", "serve", "--dir", str(self.root / "hub"), "--port", str(self.hub_port), url=hub_url)
        for m, port in self.ports.items():
            self.start(m, "node", "serve", "--dir", str(self.root / m), "--port", str(port),
                       url=f"http://127.0.0.1:{port}")
        print(f"hub  {hub_url}/api/v1/status")
        print(f"     {hub_url}/dashboard   (operator demo, password in {password})")
        for m, port in self.ports.items():
            token_file = self.root / m / "operator.token"
            print(f"{m}   http://127.0.0.1:{port}/api/v1/records   (operator token in {token_file})")
            print(f"     http://127.0.0.1:{port}/status   (sign in with that token)")

        published: list[tuple[str, str]] = []
        t0 = time.monotonic()
        for m, kind in PUBLISHES.items():
            token = (self.root / m / "operator.token").read_text().strip()
            for path in sorted((SCHEMA_ROOT / "examples" / kind / "valid").glob("*.json")):
                code, doc = http("POST", f"http://127.0.0.1:{self.ports[m]}/api/v1/records",
                                 {"kind": kind, "body": json.loads(path.read_text())}, token)
                if code != 201:
                    raise RuntimeError(f"publishing {path.name} at {m}: {code} {doc}")
                published.append((m, doc["record_id"]))
                print(f"published at {m}: {doc['record_id']} v{doc['version']} ({path.stem})")
        self.wait_synced(published, t0)

    def wait_synced(self, published: list[tuple[str, str]], t0: float) -> None:
        pending = {(node, rid) for node in self.ports for _, rid in published}
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for node, rid in sorted(pending):
                if http("GET", f"http://127.0.0.1:{self.ports[node]}/api/v1/records/{rid}")[0] == 200:
                    pending.discard((node, rid))
            time.sleep(0.05)
        if pending:
            raise RuntimeError(f"not synced after 30 s: {sorted(pending)[:5]} ...")
        print(f"all {len(published)} records verified and visible at all {len(self.ports)} nodes "
              f"{time.monotonic() - t0:.2f} s after the first publish")


def main() -> int:
    demo = Demo(Path(os.environ.get("IPDN_DEMO_DIR", "demo")).resolve())
    try:
        demo.run()
        print("federation running; logs in", demo.root, "- press Ctrl-C to stop")
        if os.environ.get("IPDN_DEMO_EXIT"):  # for tests: stop once synced
            return 0
        signal.pause()
    except KeyboardInterrupt:
        print()
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
        print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
