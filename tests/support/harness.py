"""A local federation of real processes on loopback ports, driven through the ``ipdn`` CLI and HTTP.

Used by the end-to-end tests and the latency benchmark. Each process runs in its own session, so
``kill`` (SIGKILL) and ``stop`` (SIGTERM) reach it and everything it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from federation.protocol.keys import PublicKey, SigningKey
from federation.protocol.registry import load_registry
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import verify_envelope

IPDN = str(Path(sys.executable).parent / "ipdn")


# The tests poll nodes anonymously far faster than a partner may; the partner limits have their own tests.
TEST_ENV = {"IPDN_NODE_ANONYMOUS_RATE_PER_MINUTE": "1000000"}


_LOWEST = 10_000
_next_port = 0  # this process's place in its slice of ports


def free_port() -> int:
    """A loopback port that no other process of the run will take before the caller's server binds it.

    A port asked of the kernel (bind to 0) and released is handed out again: to a test server elsewhere that binds
    0, or to an outgoing connection. A federation started on it then met another test's server (CI saw a hub's
    start answered 404). So ports come from below the kernel's ephemeral range, where neither takes theirs, each
    pytest-xdist worker from a slice of its own, each tried by binding before it is given."""
    global _next_port
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral = int(f.read().split()[0])
    except OSError:  # not Linux: the range IANA names
        ephemeral = 49152
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    size = (ephemeral - _LOWEST) // max(workers, 1)
    for _ in range(size):
        port = _LOWEST + worker * size + _next_port % size
        _next_port += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use (or lingering): the next one
                continue
            return port
    raise RuntimeError(f"no free port in {_LOWEST + worker * size}..{_LOWEST + (worker + 1) * size - 1}")


def http(method: str, url: str, body: Any = None, *, token: str | None = None, data: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 10,
         context: ssl.SSLContext | None = None) -> tuple[int, Any]:
    if body is not None:
        data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (loopback URLs)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:  # noqa: S310
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def verified_offline(f: Federation, item: dict[str, Any]) -> bool:
    """Verify an item's envelope as a partner would: the registry file, no hub, no node."""
    reg = load_registry(f.root / "hub" / "registry.json").registry
    result = verify_envelope(json.dumps(item["envelope"]).encode(), keys=reg.member_keys().get,
                             schemas=default_schemas(), now=datetime.now(UTC))
    return result.ok and result.envelope is not None and result.envelope.payload.body == item["body"]


def wait_for(what: str, check: Any, timeout: float = 30, *, interval: float = 0.05) -> Any:
    """Poll ``check`` every ``interval`` seconds until it returns something truthy (and return that); fail naming
    ``what`` after ``timeout`` seconds. The one place the harness waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not within {timeout} s")


def log_entries(url: str, *, context: ssl.SSLContext | None = None) -> list[dict[str, Any]]:
    """Every entry of a hub's log at ``url``, page after page (a page holds at most the hub's page limit)."""
    entries: list[dict[str, Any]] = []
    while True:
        after = entries[-1]["position"] if entries else 0
        code, doc = http("GET", f"{url}/api/v1/log?after={after}&limit=1000", context=context)
        assert code == 200, doc
        if not doc["entries"]:
            return entries
        entries += doc["entries"]


class Federation:
    """keys/, hub/ and one directory per member under ``root``; ``db_urls`` maps a name to a database URL."""

    def __init__(self, root: Path, members: list[str], db_urls: dict[str, str] | None = None, *,
                 tls: ssl.SSLContext | None = None) -> None:
        """``tls``: the services serve HTTPS (configured by the test) and the harness reaches them with it."""
        self.root = root
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.members = members
        self.db_urls = db_urls or {}
        self.hub_port = free_port()  # the port in the registry's hub_url, where nodes send
        self.hub_bind_port = self.hub_port  # where the hub listens (another port behind a proxy)
        self.ports = {m: free_port() for m in members}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.tokens: dict[str, str] = {}

    @property
    def hub_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.hub_port}"

    @property
    def hub_direct_url(self) -> str:
        """The hub itself, bypassing whatever sits at hub_url."""
        return f"{self.scheme}://127.0.0.1:{self.hub_bind_port}"

    def url(self, name: str) -> str:
        return self.hub_direct_url if name == "hub" else f"{self.scheme}://127.0.0.1:{self.ports[name]}"

    def add_hub(self, name: str) -> str:
        """Room for another hub process (an incoming chair's): its port; its directory is root/name."""
        self.ports[name] = free_port()
        return self.url(name)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([IPDN, *args], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"ipdn {' '.join(args)}: {p.returncode} {p.stderr.strip()[-500:]}")
        return p

    def init(self, *, nodes: bool = True, keys_given: dict[str, SigningKey] | None = None) -> Federation:
        """``ipdn keygen``, ``hub init`` and (unless ``nodes`` is False) ``node init`` for every member;
        ``keys_given``: these members' keys instead of new ones (the test corpus is signed with fixed keys)."""
        keys = self.root / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        for m, key in (keys_given or {}).items():
            key.save(keys / f"{m}.key.pem")
            (keys / f"{m}.pub.jwk.json").write_text(json.dumps(PublicKey(key.public.key, key.kid, member=m).to_jwk()))
        new = [m for m in self.members if m not in (keys_given or {})]
        # The CLI processes of one step are independent: run them at once (each spends seconds importing).
        with ThreadPoolExecutor(max(1, len(new))) as pool:
            list(pool.map(lambda m: self.cli("keygen", "--member", m, "--out", str(keys)), new))
        founders = [a for m in self.members for a in ("--founder", str(keys / f"{m}.pub.jwk.json"))]
        hub_db = ["--db-url", self.db_urls["hub"]] if "hub" in self.db_urls else []
        self.cli("hub", "init", "--dir", str(self.root / "hub"), "--url", self.hub_url, *founders, *hub_db)
        self.tokens["hub"] = (self.root / "hub" / "operator.token").read_text().strip()

        def node_init(m: str) -> None:
            db = ["--db-url", self.db_urls[m]] if m in self.db_urls else []
            self.cli("node", "init", "--dir", str(self.root / m), "--member", m, "--key", str(keys / f"{m}.key.pem"),
                     "--registry", str(self.root / "hub" / "registry.json"), "--port", str(self.ports[m]), *db)

        with_nodes = self.members if nodes else []
        with ThreadPoolExecutor(max(1, len(with_nodes))) as pool:
            list(pool.map(node_init, with_nodes))
        for m in with_nodes:
            self.tokens[m] = (self.root / m / "operator.token").read_text().strip()
        return self

    def clone(self, root: Path) -> Federation:
        """A copy of this initialised, stopped federation under ``root``: the same keys, registry, ports and
        tokens, so that one ``init`` serves several tests run one after another (SQLite only)."""
        shutil.copytree(self.root, root, dirs_exist_ok=True)
        other = Federation(root, self.members, self.db_urls, tls=self.tls)
        other.hub_port = other.hub_bind_port = self.hub_port
        other.ports, other.tokens = dict(self.ports), dict(self.tokens)
        return other

    def start(self, name: str, env: dict[str, str] | None = None) -> None:
        self.start_many([name], env)

    def start_many(self, names: list[str], env: dict[str, str] | None = None) -> None:
        """Start these processes at once, then wait until each answers (each spends seconds importing)."""
        for name in names:
            kind = "hub" if name.startswith("hub") else "node"
            port = self.hub_bind_port if name == "hub" else self.ports[name]
            log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 (kept open for the process)
            self.procs[name] = subprocess.Popen(
                [IPDN, kind, "serve", "--dir", str(self.root / name), "--port", str(port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, **TEST_ENV, **(env or {})})
        waiting = list(names)

        def all_answer() -> bool:
            for name in list(waiting):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited: {self.log(name)}")
                try:
                    if http("GET", self.url(name) + "/api/v1/status", timeout=2, context=self.tls)[0] == 200:
                        waiting.remove(name)
                except OSError:
                    pass
            return not waiting

        try:
            wait_for("start", all_answer, 30)
        except AssertionError:
            raise RuntimeError(f"{', '.join(waiting)} did not start: {self.log(waiting[0])}") from None

    def start_all(self) -> Federation:
        self.start("hub")
        self.start_many(self.members)
        return self

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        os.killpg(p.pid, sig)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def kill(self, name: str) -> None:
        self.stop(name, signal.SIGKILL)

    def close(self) -> None:
        """SIGTERM to every process at once (nodes first), then wait for each."""
        names = sorted(self.procs, key=lambda n: n.startswith("hub"))  # nodes first, then hubs
        for name in names:
            p = self.procs[name]
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for name in names:
            self.stop(name)

    def log(self, name: str, n: int = 1500) -> str:
        try:
            return (self.root / f"{name}.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # -- use -----------------------------------------------------------------------------------------

    def publish(self, m: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        code, doc = http("POST", self.url(m) + "/api/v1/records", {"kind": kind, "body": body}, token=self.tokens[m],
                         context=self.tls)
        if code != 201:
            raise AssertionError(f"publish at {m}: {code} {doc}")
        return dict(doc)

    def record(self, m: str, record_id: str) -> tuple[int, Any]:
        return http("GET", self.url(m) + "/api/v1/records/" + quote(record_id, safe=""), context=self.tls)

    def wait_record(self, m: str, record_id: str, version: int = 1, timeout: float = 15) -> dict[str, Any]:
        def arrived() -> dict[str, Any] | None:
            code, doc = self.record(m, record_id)
            return dict(doc) if code == 200 and doc["version"] >= version else None

        try:
            return dict(wait_for(f"{record_id} v{version} at {m}", arrived, timeout, interval=0.02))
        except AssertionError:
            raise AssertionError(f"{record_id} v{version} not at {m} after {timeout} s; log: {self.log(m)}") from None

    def records(self, m: str, **params: str) -> list[dict[str, Any]]:
        """Every record a node lists, following the cursor."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            q = "&".join(f"{k}={quote(v)}" for k, v in {**params, "limit": "200",
                                                          **({"cursor": cursor} if cursor else {})}.items())
            code, doc = http("GET", self.url(m) + "/api/v1/records?" + q, context=self.tls)
            assert code == 200, doc
            items += doc["items"]
            cursor = doc.get("next_cursor")
            if not cursor:
                return items

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
