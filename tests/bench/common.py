"""What every benchmark of the suite shares: the machine, statistics, figures and their printing, signed
fixtures made quickly, hub processes started from given keys, and scratch PostgreSQL databases.

A figure is a value beside a bare baseline measured in the same run, their ratio, and the goal it is held to
(docs/BENCHMARKS.md). The machine is shared and noisy: values are medians of rounds where a benchmark can
repeat, and the ratio is what to compare between runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import platform
import secrets
import sqlite3
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import rfc8785
from nacl.bindings import crypto_sign_open

from federation.protocol import httpsig, jws
from federation.protocol.envelope import TYP, format_time
from federation.protocol.keys import PublicKey, SigningKey
from federation.protocol.registry import genesis
from federation.protocol.schemas import default_schemas
from tests.support.factories import example_bodies
from tests.support.harness import Federation, http

PG_ADMIN = os.environ.get("IPDN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
# The benchmarks by name, and the module that runs each (python -m tests.bench NAME).
BENCHES = {
    "envelope": "tests.bench.bench_envelope",
    "ingest": "tests.bench.bench_hub_ingest",
    "commit": "tests.bench.bench_commit",
    "latency": "tests.bench.bench_latency",
    "catchup": "tests.bench.bench_catchup",
    "reads": "tests.bench.bench_reads",
    "biglog": "tests.bench.bench_biglog",
    "import": "tests.bench.bench_import",
    "signin": "tests.bench.bench_signin",
    "portal": "tests.bench.bench_portal",
    "storage": "tests.bench.bench_storage",
}

N = TypeVar("N", int, float)
CODES = ("QA", "KR", "TR", "HU", "DE", "FR", "IT", "ES", "PL", "NL", "PT", "SE")


# -- the run ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Context:
    """What a benchmark is asked to do: smoke-sized or full, how many rounds, where to put files."""

    root: Path
    quick: bool
    rounds: int
    pg: str | None  # PostgreSQL admin URL, None when unreachable or not wanted
    biglog: int  # entries already in the log for the large-log ingest benchmark
    catchup: int = 0  # a log size the catch-up benchmark also measures, beyond 100,000 (0: none)

    def size(self, full: N, quick: N) -> N:
        """``full``, or ``quick`` for a smoke-sized run."""
        return quick if self.quick else full


@dataclass(frozen=True, slots=True)
class Goal:
    text: str
    met: bool


@dataclass
class Figure:
    """One measured value beside its bare baseline from the same run."""

    bench: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    goals: list[Goal] = field(default_factory=list)
    note: str = ""
    samples: list[float] = field(default_factory=list)  # the rounds' values, when repeated

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def percentile(xs: Sequence[float], p: float) -> float:
    """The nearest-rank percentile ``p`` (0..100) of ``xs``."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def _fmt(v: float, unit: str) -> str:
    if unit == "ms":
        return f"{v:,.1f} ms"
    if unit == "MiB":
        return f"{v:,.1f} MiB"
    return f"{v:,.0f} {unit}"


def format_figure(f: Figure) -> str:
    line = f"  {f.name:44s} {_fmt(f.value, f.unit):>16s}"
    if f.baseline is not None:
        line += f"   bare {_fmt(f.baseline, f.unit):>16s} ({f.baseline_name})   ratio {f.ratio:.2f}"
    for g in f.goals:
        line += f"\n  {'':44s} goal {g.text}: {'met' if g.met else 'NOT MET'}"
    if f.note:
        line += f"\n  {'':44s} {f.note}"
    return line


# -- the machine --------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return None


async def pg_version(admin: str) -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(admin, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def machine(pg: str | None) -> dict[str, Any]:
    """Cores, CPU model, memory, OS, Python, SQLite and PostgreSQL versions, and the load when starting."""
    return {
        "host": platform.node(), "arch": platform.machine(), "cores": os.cpu_count(), "cpu": _cpu_model(),
        "memory_gib": round(m, 1) if (m := _memory_gib()) else None, "os": platform.platform(),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "postgresql": await pg_version(pg) if pg else None, "load_avg": [round(x, 2) for x in os.getloadavg()],
        "date": format_time(datetime.now(UTC)),
    }


# -- signed fixtures, made quickly --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chain:
    """A member's key and envelopes (wire bytes) continuing its chain from ``seq``/``prev``."""

    code: str
    key: SigningKey
    wires: list[bytes]
    seq: int  # the last seq signed
    prev: str | None  # the hash of the last envelope signed

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public.key, self.key.kid, member=self.code)


def _fast_canonical(payload: dict[str, Any]) -> bytes:
    """RFC 8785 bytes of an example payload by ``json.dumps`` (keys sorted, no spaces, UTF-8).

    Equal to JCS for these payloads (no floats; ASCII keys), which :func:`sign_chain` checks once per body
    against ``rfc8785`` before relying on it: signing is the slow part of making 100,000 fixtures.
    """
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_chain(code: str, key_pem: bytes, n: int, seq: int = 0, prev: str | None = None,
               ) -> tuple[list[bytes], int, str | None]:
    """``n`` envelopes of member ``code`` continuing its chain after ``seq``/``prev``: (wires, seq, prev).
    A plain function of picklable values, so chains are signed in parallel processes."""
    key = SigningKey.from_pem(key_pem)
    bodies = example_bodies("cultural-event")
    schema = default_schemas().schema_id("cultural-event")
    issued = format_time(datetime.now(UTC))
    checked: set[int] = set()
    wires = []
    for _ in range(n):
        seq += 1
        i = seq % len(bodies)
        payload = {"origin": code, "seq": seq, "prev": prev, "record_id": f"{code}:r{seq}", "version": 1,
                   "kind": "cultural-event", "schema": schema, "op": "put", "issued_at": issued, "body": bodies[i]}
        data = _fast_canonical(payload)
        if i not in checked:
            if data != rfc8785.dumps(payload):
                raise AssertionError(f"example body {i} is not canonical by json.dumps; use rfc8785")
            checked.add(i)
        doc = jws.sign(data, key, TYP)
        wires.append(json.dumps(doc.to_dict(), separators=(",", ":")).encode("ascii"))
        prev = hashlib.sha256(data).hexdigest()
    return wires, seq, prev


def make_chains(codes: Iterable[str], per_member: int, *, keys: dict[str, SigningKey] | None = None,
                after: dict[str, Chain] | None = None) -> dict[str, Chain]:
    """Each member's next ``per_member`` envelopes, signed in parallel (one process per core)."""
    codes = list(codes)
    keys = keys or {c: (after[c].key if after and c in after else SigningKey.generate()) for c in codes}
    start = {c: (after[c].seq, after[c].prev) if after and c in after else (0, None) for c in codes}
    with ProcessPoolExecutor(min(len(codes), os.cpu_count() or 1)) as pool:
        futures = {c: pool.submit(sign_chain, c, keys[c].to_pem(), per_member, *start[c]) for c in codes}
        return {c: Chain(c, keys[c], *f.result()) for c, f in futures.items()}


def bare_check(raw_key: bytes, wire: bytes) -> bytes:
    """What cannot be skipped for one envelope, by the bare primitives: parse, schema check, Ed25519 (libsodium,
    as the hub uses), SHA-256; the payload's hash."""
    doc = json.loads(wire)
    payload = base64.urlsafe_b64decode(doc["payload"] + "==")
    assert _bare_validator().is_valid(json.loads(payload)["body"])
    signature = base64.urlsafe_b64decode(doc["signature"] + "==")
    crypto_sign_open(signature + f"{doc['protected']}.{doc['payload']}".encode(), raw_key)
    return hashlib.sha256(payload).digest()


@cache
def _bare_validator() -> Any:
    schemas = default_schemas()
    return schemas._compiled(schemas.schema_id("cultural-event"))


def bare_verify(chains: Iterable[Chain]) -> float:
    """The bare verify loop (:func:`bare_check`), envelopes per second on one core: without the protocol core's
    objects and checks."""
    items = [(c.key.public.raw, w) for c in chains for w in c.wires]
    _bare_validator()
    t = time.perf_counter()
    for raw, w in items:
        bare_check(raw, w)
    return len(items) / (time.perf_counter() - t)


# -- processes ----------------------------------------------------------------------------------------------


class Net(Federation):
    """A :class:`Federation` whose member keys are given (so pre-signed envelopes verify): the hub directory
    and keys are written directly, nodes made by ``ipdn node init`` on demand."""

    def __init__(self, root: Path, keys: dict[str, SigningKey], db_urls: dict[str, str] | None = None) -> None:
        super().__init__(root, list(keys), db_urls)
        self.keys = keys
        kdir = root / "keys"
        kdir.mkdir(parents=True, exist_ok=True)
        for code, key in keys.items():
            key.save(kdir / f"{code}.key.pem")
        hub = root / "hub"
        hub.mkdir()
        self.hub_key = SigningKey.generate()
        self.hub_key.save(hub / "hub.key.pem")
        (hub / "registry.json").write_bytes(genesis(
            hub_key=self.hub_key, hub_url=self.hub_url,
            founders=[(PublicKey(k.public.key, k.kid, member=c), {"en": c}) for c, k in keys.items()],
            now=datetime.now(UTC)).to_bytes())
        if "hub" in self.db_urls:
            (hub / "hub.toml").write_text(f'db_url = "{self.db_urls["hub"]}"\n')

    def add_node(self, code: str) -> None:
        db = ["--db-url", self.db_urls[code]] if code in self.db_urls else []
        self.cli("node", "init", "--dir", str(self.root / code), "--member", code, "--key",
                 str(self.root / "keys" / f"{code}.key.pem"), "--registry", str(self.root / "hub" / "registry.json"),
                 "--port", str(self.ports[code]), *db)
        self.tokens[code] = (self.root / code / "operator.token").read_text().strip()

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def status(self, name: str) -> dict[str, Any]:
        code, doc = http("GET", self.url(name) + "/api/v1/status")
        assert code == 200, doc
        return dict(doc)


def peak_rss_mib(pid: int) -> float:
    """The resident-set high-water mark (VmHWM) of process ``pid``, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def push_body(key: SigningKey, wires: Sequence[bytes], hub_url: str) -> tuple[bytes, dict[str, str]]:
    """A push of already-serialized envelopes and its RFC 9421 headers (as the node's push loop sends it)."""
    body = b'{"envelopes":[' + b",".join(wires) + b"]}"
    headers = {"Content-Type": "application/json"}
    headers.update(httpsig.sign_request("POST", hub_url.rstrip("/") + "/api/v1/envelopes", headers, body,
                                        private_key=key.key, keyid=key.kid, created=int(time.time()),
                                        nonce=secrets.token_urlsafe(12)))
    return body, headers


Pushes = dict[str, list[tuple[bytes, dict[str, str]]]]


def prepare_pushes(hub_url: str, chains: Iterable[Chain], batch: int, *, start: int = 0,
                   stop: int | None = None) -> Pushes:
    """Each chain's ``wires[start:stop]`` as signed push requests of ``batch`` envelopes, per member."""
    return {c.code: [push_body(c.key, c.wires[start:stop][i:i + batch], hub_url)
                     for i in range(0, len(c.wires[start:stop]), batch)] for c in chains}


async def send_pushes(hub_url: str, pushes: Pushes) -> int:
    """Send the members' pushes, the members concurrently and each in order; the number accepted.

    Raises:
        AssertionError: an envelope was not accepted.
    """
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        async def pusher(code: str) -> int:
            done = 0
            for data, headers in pushes[code]:
                async with session.post(hub_url + "/api/v1/envelopes", data=data, headers=headers) as r:
                    doc = await r.json()
                    if r.status != 200:
                        raise AssertionError(f"push of {code}: {r.status} {doc}")
                    bad = [x for x in doc["results"] if x["status"] != "accepted"]
                    if bad:
                        raise AssertionError(f"push of {code}: {bad[0]}")
                    done += len(doc["results"])
            return done

        return sum(await asyncio.gather(*(pusher(code) for code in pushes)))


async def push_all(hub_url: str, chains: Iterable[Chain], batch: int, *, start: int = 0,
                   stop: int | None = None) -> int:
    """:func:`prepare_pushes` then :func:`send_pushes`."""
    return await send_pushes(hub_url, prepare_pushes(hub_url, chains, batch, start=start, stop=stop))


# -- PostgreSQL ---------------------------------------------------------------------------------------------


async def pg_reachable(admin: str) -> bool:
    return await pg_version(admin) is not None


@contextlib.asynccontextmanager
async def pg_scratch(admin: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one run (its SQLAlchemy URL), dropped afterwards."""
    import asyncpg

    name = f"ipdn_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
