"""Benchmark: hub ingest over HTTP (envelopes verified and durably committed per second).

Run: ``.venv/bin/python -m tests.bench.bench_hub_ingest [--n 4000] [--batch 500] [--pg URL]``.
Starts a real hub process (``ipdn hub serve``) on SQLite (and on PostgreSQL with --pg), pushes
signed batches from four members concurrently, and compares with the bare loop measured in the same
run: the same primitives in-process (parse, schema, Ed25519, SHA-256, then insert in groups of 500).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from federation.hub.store import HubStore, LogRow
from federation.keys import SigningKey
from federation.registry import genesis
from federation.schemas import default_schemas
from tests.factories import Member, example_bodies, push_request

MEMBERS = ("QA", "KR", "TR", "HU")


def make_envelopes(n: int) -> tuple[dict[str, Member], dict[str, list]]:
    members = {c: Member(c) for c in MEMBERS}
    bodies = example_bodies("cultural-event")
    per = {c: [members[c].publish(bodies[i % len(bodies)]) for i in range(n // len(MEMBERS))] for c in MEMBERS}
    return members, per


async def bare(members: dict[str, Member], per: dict[str, list], url: str, batch: int) -> float:
    """Verify-and-insert with the bare primitives, one core, groups of ``batch`` rows per transaction."""
    schemas = default_schemas()
    validator = schemas._compiled(schemas.schema_id("cultural-event"))
    store = await HubStore.open(url)
    keys = {m.key.kid: m.key.public.key for m in members.values()}
    wires = [(e.kid, e.to_bytes()) for envs in per.values() for e in envs]
    t = time.perf_counter()
    rows: list[LogRow] = []
    size = 0
    for kid, w in wires:
        doc = json.loads(w)
        payload = base64.urlsafe_b64decode(doc["payload"] + "==")
        p = json.loads(payload)
        assert validator.is_valid(p["body"])
        keys[kid].verify(base64.urlsafe_b64decode(doc["signature"] + "=="),
                         f"{doc['protected']}.{doc['payload']}".encode())
        h = hashlib.sha256(payload).hexdigest()
        rows.append(LogRow(p["origin"], p["seq"], h, p["record_id"], p["version"], p["kind"], p["op"], kid, w))
        if len(rows) == batch:
            size += len(await store.commit(rows, [], datetime.now(UTC), size=size))
            rows = []
    if rows:
        await store.commit(rows, [], datetime.now(UTC), size=size)
    elapsed = time.perf_counter() - t
    await store.close()
    return len(wires) / elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def over_http(members: dict[str, Member], per: dict[str, list], root: Path, db_url: str | None,
                    batch: int) -> float:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hub_dir = root / f"hub-{port}"
    hub_dir.mkdir()
    hub_key = SigningKey.generate()
    hub_key.save(hub_dir / "hub.key.pem")
    (hub_dir / "registry.json").write_bytes(genesis(
        hub_key=hub_key, hub_url=url,
        founders=[(m.public, {"en": c}) for c, m in members.items()]).to_bytes())
    env = {**os.environ, **({"IPDN_HUB_DB_URL": db_url} if db_url else {})}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "ipdn"), "hub", "serve", "--dir", str(hub_dir),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(url + "/api/v1/status") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)

            async def pusher(code: str) -> int:
                envs = per[code]
                done = 0
                for i in range(0, len(envs), batch):
                    data, headers = push_request(members[code], envs[i:i + batch], url)
                    async with http.post(url + "/api/v1/envelopes", data=data, headers=headers) as r:
                        doc = await r.json()
                        done += sum(1 for x in doc["results"] if x["status"] == "accepted")
                return done

            t = time.perf_counter()
            accepted = sum(await asyncio.gather(*(pusher(c) for c in per)))
            elapsed = time.perf_counter() - t
        assert accepted == sum(map(len, per.values())), accepted
        return accepted / elapsed
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pg", help="PostgreSQL admin URL, e.g. postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    members, per = make_envelopes(args.n)
    size = sum(len(e.to_bytes()) for envs in per.values() for e in envs) / args.n
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; {args.n} envelopes of {size:.0f} bytes from {len(MEMBERS)} members, "
          f"batches of {args.batch}, median of {args.rounds} rounds")
    backends = [("sqlite", None)]
    if args.pg:
        backends.append(("postgres", args.pg))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, admin in backends:
            bare_rates, http_rates = [], []
            for r in range(args.rounds):
                urls = []
                for which in ("bare", "http"):
                    if admin:
                        import asyncpg

                        conn = await asyncpg.connect(admin)
                        db = f"ipdn_bench_{which}_{r}_{os.getpid()}"
                        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                        await conn.execute(f'CREATE DATABASE "{db}"')
                        await conn.close()
                        urls.append(admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
                                    + f"/{db}")
                    else:
                        urls.append(f"sqlite+aiosqlite:///{root / f'{which}-{r}.db'}")
                bare_rates.append(await bare(members, per, urls[0], args.batch))
                http_rates.append(await over_http(members, per, root, urls[1] if admin else None, args.batch))
            b, h = sorted(bare_rates)[len(bare_rates) // 2], sorted(http_rates)[len(http_rates) // 2]
            print(f"{name:9s} bare loop {b:8,.0f}/s   hub over HTTP {h:8,.0f}/s   ratio {h / b:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
