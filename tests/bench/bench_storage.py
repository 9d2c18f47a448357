"""Benchmark: a node's storage: bytes per envelope against the hub's for the same envelopes, and applying updates
with 1,000,000 records held against the same with 10,000 (docs/adr/0030).

Bytes: four members' chains of new records, updates (one envelope in five names an earlier record of its member)
and tombstones (one in fifty), signed; the hub's store commits them as its writer does (rows, Merkle nodes, a
checkpoint per 500) and a node's store applies them as the log applier writes pages of 500 (envelopes, current
records, full-text index, cursor). Measured on SQLite (pages in use, after a checkpoint: the file less its free
pages) and PostgreSQL (tables with their indexes and TOAST). Baseline: the hub's bytes per envelope; goal: at most
1.5 times them.

Updates: two node databases, one holding 10,000 records and one 1,000,000, built straight into the migrated schema
(stdlib sqlite3, or COPY on PostgreSQL, in transactions of 50,000): each record a real signed envelope of about
4 KB from a pool of 1,000 (four members, titles varied), its record row derived by the store's own function, its
full-text row; so the tables, indexes and index that an update reads and writes have their full size (the rows are
copies of the pool's envelopes under their own (origin, seq) and record id: the store applies what it is given and
never re-reads an old envelope but to take its text out of the index). Then each round applies 10,000 updates of
records picked at random (new versions with new titles, signed, continuing the members' chains) with the store's
``apply``, in pages of 500 as a pull writes them: the storage path alone (verification, the same per envelope
whatever is held, is not timed). Baseline: the same updates with 10,000 held; goal: at least 0.8 of its rate.

Run alone: ``.venv/bin/python -m tests.bench storage``.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from federation.hub.store.log import HubStore
from federation.protocol.envelope import Envelope, Payload, format_time, sign_envelope
from federation.protocol.keys import SigningKey
from federation.protocol.schemas import default_schemas
from federation.server.db.engine import sqlite_url
from node.store.records import Changes, NodeStore, record_values
from tests.bench.bench_commit import prepare
from tests.bench.common import CODES, Chain, Context, Figure, Goal, median, pg_scratch
from tests.support.factories import example_bodies

NAME = "storage"
GOAL_BYTES = 1.5
GOAL_RATIO = 0.8
PAGE = 500
POOL = 1000
CHUNK = 50_000
_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's DateTime on SQLite
_NODE = "DE"  # the node's own member: none of the envelopes is its own


# -- signed envelopes ---------------------------------------------------------------------------------------


def sign_mixed(code: str, key_pem: bytes, n: int) -> list[bytes]:
    """``n`` envelopes of ``code``'s chain: new records, every fifth an update of an earlier record (a new title)
    and every fiftieth a tombstone of one. A plain function of picklable values, signed in parallel processes."""
    key, bodies, rng = SigningKey.from_pem(key_pem), example_bodies("cultural-event"), random.Random(code)
    versions: dict[str, int] = {}
    rids: list[str] = []
    prev: str | None = None
    wires = []
    for seq in range(1, n + 1):
        body: dict[str, Any] | None = bodies[seq % len(bodies)]
        if seq % 50 == 0 and rids:
            rid = rng.choice(rids)
            body = None
        elif seq % 5 == 0 and rids:
            rid = rng.choice(rids)
            body = {**bodies[seq % len(bodies)], "title": {"en": f"Revised programme {seq}"}}
        else:
            rid = f"{code}:r{seq}"
            rids.append(rid)
        versions[rid] = versions.get(rid, 0) + 1
        env = _signed(key, code, seq, prev, rid, versions[rid], body)
        prev = env.hash
        wires.append(env.to_bytes())
    return wires


def _signed(key: SigningKey, code: str, seq: int, prev: str | None, rid: str, version: int,
            body: dict[str, Any] | None) -> Envelope:
    return sign_envelope(key, Payload(origin=code, seq=seq, prev=prev, record_id=rid, version=version,
                                      kind="cultural-event", schema=default_schemas().schema_id("cultural-event"),
                                      op="put" if body is not None else "delete",
                                      issued_at=format_time(datetime.now(UTC)), body=body))


def mixed_chains(codes: Sequence[str], per_member: int) -> dict[str, Chain]:
    keys = {c: SigningKey.generate() for c in codes}
    with ProcessPoolExecutor() as pool:
        futures = {c: pool.submit(sign_mixed, c, keys[c].to_pem(), per_member) for c in codes}
        return {c: Chain(c, keys[c], f.result(), per_member, None) for c, f in futures.items()}


# -- bytes per envelope -------------------------------------------------------------------------------------


async def stored_bytes(store_engine: Any) -> int:
    """Bytes the database's tables take: SQLite's pages in use after a checkpoint, PostgreSQL's relations."""
    async with store_engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            await conn.execute(sa.text("PRAGMA wal_checkpoint(TRUNCATE)"))
            pages = (await conn.execute(sa.text("PRAGMA page_count"))).scalar_one()
            free = (await conn.execute(sa.text("PRAGMA freelist_count"))).scalar_one()
            size = (await conn.execute(sa.text("PRAGMA page_size"))).scalar_one()
            return int((pages - free) * size)
        return int((await conn.execute(sa.text(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r'"))).scalar_one())


async def hub_bytes(url: str, chains: dict[str, Chain]) -> int:
    store = await HubStore.open(url)
    try:
        size = 0
        for rows, nodes, checkpoint in prepare(chains):
            await store.commit(rows, [], datetime.now(UTC), size=size, nodes=nodes, checkpoint=checkpoint)
            size += len(rows)
        return await stored_bytes(store.engine)
    finally:
        await store.close()


async def node_bytes(url: str, log: Sequence[Envelope]) -> int:
    store = await NodeStore.open(url, _NODE)
    try:
        for start in range(0, len(log), PAGE):
            changes = Changes(cursor=start + min(PAGE, len(log) - start))
            for position, env in enumerate(log[start:start + PAGE], start + 1):
                changes.envelopes.append((env, position))
                current = changes.records.get(env.payload.record_id)
                if current is None or env.payload.version > current.payload.version:
                    changes.records[env.payload.record_id] = env
            await store.apply(changes, datetime.now(UTC))
        return await stored_bytes(store.engine)
    finally:
        await store.close()


def in_log_order(chains: dict[str, Chain]) -> list[Envelope]:
    """The envelopes as prepare() logs them (member after member)."""
    return [Envelope.from_bytes(w) for c in chains.values() for w in c.wires]


# -- updates with many records held -------------------------------------------------------------------------


_WORDS = ("lantern", "heritage", "maqam", "gugak", "fellowship", "harbour", "manuscript", "textile", "poetry",
          "cinema", "archive", "dialogue", "ceramics", "festival", "theatre", "youth", "garden", "calligraphy")


def _pool(size: int) -> list[tuple[bytes, Envelope, dict[str, Any], str]]:
    """Signed envelopes of four members (example bodies, their titles varied by two words of a vocabulary) to
    copy under each held record's (origin, seq), with the record row and the searched text the store derives."""
    bodies, rng, now = example_bodies("cultural-event"), random.Random(size), datetime.now(UTC)
    keys = {c: SigningKey.generate() for c in CODES[:4]}
    out = []
    for i in range(size):
        code, body = CODES[i % 4], bodies[i % len(bodies)]
        title = {lang: f"{t} {rng.choice(_WORDS)} {rng.choice(_WORDS)} {i}" for lang, t in body["title"].items()}
        seq = i // 4 + 1  # its place is the held record's, whatever chain it is copied into
        prev = None if seq == 1 else "0" * 64
        env = _signed(keys[code], code, seq, prev, f"{code}:p{i}", 1, {**body, "title": title})
        values = record_values(env, now)
        out.append((env.to_bytes(), env, values, values.pop("search")))
    return out


def _held_rows(pool: list[tuple[bytes, Envelope, dict[str, Any], str]], start: int, stop: int, now: datetime,
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[int, str]]]:
    """Envelope rows, record rows and full-text rows (id, text) of held records start..stop-1 (id = i + 1)."""
    envs, recs, texts = [], [], []
    for i in range(start, stop):
        wire, env, values, text = pool[i % len(pool)]
        code, seq = CODES[i % 4], i // 4 + 1
        rid = f"{code}:h{seq}"
        envs.append({"origin": code, "seq": seq, "hash": env.hash, "record_id": rid, "version": 1,
                     "kind": env.payload.kind, "op": "put", "envelope": wire, "issued_at": env.payload.issued_at,
                     "received_at": now, "position": i + 1, "logged_at": now, "key_warning": None})
        recs.append({**values, "id": i + 1, "record_id": rid, "origin": code, "seq": seq, "updated_at": now})
        texts.append((i + 1, text))
    return envs, recs, texts


async def build_held(url: str, size: int, pool: list[tuple[bytes, Envelope, dict[str, Any], str]]) -> float:
    """A node database holding ``size`` records (see the module doc); seconds taken."""
    t = time.perf_counter()
    store = await NodeStore.open(url, _NODE)  # the migrated schema, exactly as the node makes it
    try:
        sqlite = store.engine.dialect.name == "sqlite"
        if not sqlite:
            await _copy_held(store, size, pool, datetime.now(UTC))
    finally:
        await store.close()
    if sqlite:
        _insert_held(url.removeprefix("sqlite+aiosqlite:///"), size, pool, datetime.now(UTC))
    return time.perf_counter() - t


def _insert_held(path: str, size: int, pool: list[tuple[bytes, Envelope, dict[str, Any], str]],
                 now: datetime) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")  # building, not serving: the store's commits are durable again
    for start in range(0, size, CHUNK):
        envs, recs, texts = _held_rows(pool, start, min(size, start + CHUNK), now)
        with db:
            for table, rows in (("envelopes", envs), ("records", recs)):
                cols = list(rows[0])
                db.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "  # noqa: S608 (the schema's names)
                               f"({', '.join(':' + c for c in cols)})",
                               [{k: v.strftime(_TIME) if isinstance(v, datetime) else v for k, v in r.items()}
                                for r in rows])
            db.executemany("INSERT INTO records_fts (rowid, search) VALUES (?, ?)", [x for x in texts if x[1]])
    with db:  # one segment, as migration 0012 leaves the index (its large transactions left large level-0 ones)
        db.execute("INSERT INTO records_fts (records_fts) VALUES ('optimize')")
    db.close()


async def _copy_held(store: NodeStore, size: int, pool: list[tuple[bytes, Envelope, dict[str, Any], str]],
                     now: datetime) -> None:
    async with store.engine.begin() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        for start in range(0, size, CHUNK):
            envs, recs, texts = _held_rows(pool, start, min(size, start + CHUNK), now)
            for table, rows in (("envelopes", envs), ("records", recs)):
                cols = list(rows[0])
                await raw.copy_records_to_table(table, records=[tuple(r[c] for c in cols) for r in rows],
                                                columns=cols)
            await raw.execute("INSERT INTO records_fts (rowid, search) SELECT id, strip(to_tsvector('simple', t)) "
                              "FROM unnest($1::bigint[], $2::text[]) AS x(id, t)",
                              [i for i, _ in texts], [x for _, x in texts])
        await raw.execute("SELECT setval('records_id_seq', $1)", size)
        await raw.execute("ANALYZE")


def updates(pool: list[tuple[bytes, Envelope, dict[str, Any], str]], held: int, n: int,
            rounds: int) -> list[list[Envelope]]:
    """Per round, ``n`` updates of held records picked at random: a new version with a new title, signed by a
    key of the record's member, continuing the member's chain after the held envelopes."""
    rng = random.Random(held)
    keys = {c: SigningKey.generate() for c in CODES[:4]}
    seqs = {c: held // 4 + (1 if i < held % 4 else 0) for i, c in enumerate(CODES[:4])}
    prev: dict[str, str | None] = dict.fromkeys(CODES[:4], "0" * 64)
    versions: dict[int, int] = {}
    out = []
    for r in range(rounds):
        batch = []
        for i in rng.sample(range(held), min(n, held)):
            code, body = CODES[i % 4], pool[i % len(pool)][1].payload.body
            seqs[code] += 1
            versions[i] = versions.get(i, 1) + 1
            env = _signed(keys[code], code, seqs[code], prev[code], f"{code}:h{i // 4 + 1}", versions[i],
                          {**(body or {}), "title": {"en": f"Round {r} revision of record {i}"}})
            prev[code] = env.hash
            batch.append(env)
        out.append(batch)
    return out


async def apply_rates(urls: dict[int, str], work: dict[int, list[list[Envelope]]]) -> dict[int, list[float]]:
    """Updates per second of each store's apply, per round: its pages of PAGE applied in turn with the other
    stores' (a page here, the same page there: both see the same moments of a shared machine), each store open
    for the whole run as a node keeps its connections."""
    stores = {held: await NodeStore.open(url, _NODE) for held, url in urls.items()}
    rates: dict[int, list[float]] = {held: [] for held in urls}
    try:
        cursor = {held: held for held in urls}  # the held records' envelopes are log positions 1..held
        for r in range(len(next(iter(work.values())))):
            elapsed = dict.fromkeys(urls, 0.0)
            for start in range(0, len(work[next(iter(urls))][r]), PAGE):
                for held, store in stores.items():
                    page, at = work[held][r][start:start + PAGE], cursor[held]
                    changes = Changes(cursor=at + len(page), envelopes=[(e, at + k + 1) for k, e in enumerate(page)],
                                      records={e.payload.record_id: e for e in page})
                    t = time.perf_counter()
                    await store.apply(changes, datetime.now(UTC))
                    elapsed[held] += time.perf_counter() - t
                    cursor[held] += len(page)
            for held in urls:
                rates[held].append(len(work[held][r]) / elapsed[held])
        return rates
    finally:
        for store in stores.values():
            await store.close()


def _database(ctx: Context, label: str, name: str) -> contextlib.AbstractAsyncContextManager[str]:
    """A fresh database of the configuration: an SQLite file, or a PostgreSQL scratch database."""
    if label == "SQLite":
        return contextlib.nullcontext(sqlite_url(ctx.root / f"{name}.db"))
    assert ctx.pg
    return pg_scratch(ctx.pg)


async def run(ctx: Context) -> list[Figure]:
    n = ctx.size(100_000, 1_000)
    chains = mixed_chains(CODES[:4], n // 4)
    log = in_log_order(chains)
    small, big, count = ctx.size(10_000, 200), ctx.size(1_000_000, 2_000), ctx.size(10_000, 100)
    pool = _pool(min(POOL, small))
    figures = []
    for label in ("SQLite", "PostgreSQL"):
        if label == "PostgreSQL" and not ctx.pg:
            continue
        async with _database(ctx, label, "hub") as hub_url, _database(ctx, label, "node") as node_url:
            hub, node = await hub_bytes(hub_url, chains), await node_bytes(node_url, log)
        figures.append(Figure(
            NAME, f"node bytes per envelope, {label}", node / len(log), "bytes", hub / len(log),
            "the hub's, same envelopes", [Goal(f"<= {GOAL_BYTES} x the hub's", node <= GOAL_BYTES * hub)],
            note=f"{len(log):,} envelopes (new records, updates, tombstones): node {node / 2**20:,.0f} MiB, "
                 f"hub {hub / 2**20:,.0f} MiB"))
        built = {}
        async with _database(ctx, label, "small") as small_url, _database(ctx, label, "big") as big_url:
            urls = {small: small_url, big: big_url}
            for held, url in urls.items():
                built[held] = await build_held(url, held, pool)
            rates = await apply_rates(urls, {held: updates(pool, held, count, ctx.rounds) for held in urls})
        value, base = median(rates[big]), median(rates[small])
        figures.append(Figure(
            NAME, f"{count:,} updates with {big:,} records held, {label}", value, "updates/s", base,
            f"the same with {small:,} held", [Goal(f">= {GOAL_RATIO} x at {small:,}", value >= GOAL_RATIO * base)],
            note=f"the store's apply in pages of {PAGE}, a page of each in turn, median of {ctx.rounds} rounds of "
                 f"{count:,} records picked at random; {big:,} records built in {built[big]:,.0f} s",
            samples=rates[big]))
    return figures
