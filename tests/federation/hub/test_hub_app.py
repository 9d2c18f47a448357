"""The hub over HTTP (in-process aiohttp server, real SQLite store): push, pull, refusals, quarantine."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from federation.hub.app import create_app
from federation.hub.appkeys import SERVICE
from federation.hub.config import HubConfig
from federation.hub.store.log import LogTransaction, log
from federation.protocol import httpsig, merkle
from federation.protocol.checkpoint import cosign, parse_checkpoint
from federation.protocol.envelope import format_time, leaf_bytes
from federation.protocol.keys import SigningKey
from tests.support.factories import Member, example_bodies, push_request
from tests.support.hubdir import HUB_URL
from tests.support.timing import WatchedEvent, eventually


@pytest.fixture
async def hub(aiohttp_client: Any, hub_dir: Path, db_url: str) -> Any:
    # Verification in the event loop here; TestParallelVerification covers the worker processes.
    return await aiohttp_client(create_app(HubConfig.load(hub_dir, db_url=db_url, verify_workers=0,
                                                          operator_token_sha256=hashlib.sha256(b"tok").hexdigest())))


@pytest.fixture
def body() -> dict[str, Any]:
    return example_bodies("cultural-event")[0]


async def push(hub: Any, member: Member, envelopes: list[Any], **kw: Any) -> tuple[int, dict[str, Any]]:
    data, headers = push_request(member, envelopes, HUB_URL, **kw)
    r = await hub.post("/api/v1/envelopes", data=data, headers=headers)
    return r.status, await r.json()


async def quarantine(hub: Any) -> list[dict[str, Any]]:
    return await hub.server.app[SERVICE].store.quarantined()


class TestPush:
    async def test_accepted_then_duplicate(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A push is acknowledged with log positions; re-sending it answers duplicate, same positions."""
        qa = members["QA"]
        envs = [qa.publish(body), qa.publish(body)]
        status, doc = await push(hub, qa, envs)
        assert status == 200
        assert [(r["status"], r["position"]) for r in doc["results"]] == [("accepted", 1), ("accepted", 2)]
        status, doc = await push(hub, qa, envs)
        assert [(r["status"], r["position"]) for r in doc["results"]] == [("duplicate", 1), ("duplicate", 2)]
        assert doc["log_size"] == 2

    async def test_held_entries_looked_up_only_at_or_below_the_chain_head(
            self, hub: Any, members: dict[str, Member], body: dict, monkeypatch: pytest.MonkeyPatch) -> None:
        """A live push (each envelope just past its chain's head) asks the log for nothing held: that lookup cost
        as much as the inserts (ADR 16). A re-send still finds what is held, and answers duplicate."""
        asked: list[list[tuple[str, int]]] = []
        real = LogTransaction.held

        async def counted(tx: LogTransaction, keys: list[tuple[str, int]]) -> Any:
            asked.append(list(keys))
            return await real(tx, keys)

        monkeypatch.setattr(LogTransaction, "held", counted)
        qa = members["QA"]
        first, second = [qa.publish(body) for _ in range(3)], [qa.publish(body) for _ in range(2)]
        await push(hub, qa, first)
        await push(hub, qa, second)
        assert [keys for keys in asked if keys] == []  # (an empty ask reads nothing)
        _, doc = await push(hub, qa, [*first[1:], *second])  # a retry after a lost answer, in one push
        assert [r["status"] for r in doc["results"]] == ["duplicate"] * 4
        assert [keys for keys in asked if keys] == [[("QA", 2), ("QA", 3), ("QA", 4), ("QA", 5)]]

    async def test_empty_push_answered_with_no_results(self, hub: Any, members: dict[str, Member],
                                                       body: dict) -> None:
        """A push of no envelopes (a node's keep-alive, or a client's mistake) is answered, and commits nothing,
        even when it shares a group commit with a real push."""
        qa, kr = members["QA"], members["KR"]
        (s1, empty), (s2, real) = await asyncio.gather(push(hub, qa, []), push(hub, kr, [kr.publish(body)]))
        assert (s1, empty["results"], s2) == (200, [], 200)
        assert [r["status"] for r in real["results"]] == ["accepted"]

    async def test_concurrent_pushes_group_committed_without_gaps(self, hub: Any, members: dict[str, Member],
                                                                  body: dict) -> None:
        """Pushes from three members at once all land, and the log positions are 1..n without gaps."""
        batches = [(m, [m.publish(body) for _ in range(20)]) for m in members.values()]
        results = await asyncio.gather(*(push(hub, m, envs) for m, envs in batches))
        positions = sorted(r["position"] for _, doc in results for r in doc["results"])
        assert positions == list(range(1, 61))

    async def test_unsigned_push_refused(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A push without an HTTP message signature is refused with a problem document."""
        r = await hub.post("/api/v1/envelopes", json={"envelopes": [members["QA"].publish(body).to_dict()]})
        assert r.status == 401 and r.content_type == "application/problem+json"
        assert (await r.json())["reason"] == "signature-missing"

    async def test_replayed_request_refused(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """The same signed request sent twice is refused the second time."""
        data, headers = push_request(members["QA"], [members["QA"].publish(body)], HUB_URL)
        assert (await hub.post("/api/v1/envelopes", data=data, headers=headers)).status == 200
        r = await hub.post("/api/v1/envelopes", data=data, headers=headers)
        assert r.status == 401 and (await r.json())["reason"] == "signature-replayed"

    async def test_stale_signature_refused(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A request signed 10 minutes ago is outside the allowed skew."""
        status, doc = await push(hub, members["QA"], [members["QA"].publish(body)], created=int(time.time()) - 600)
        assert status == 401 and doc["reason"] == "signature-expired"

    async def test_push_signed_by_non_member_refused(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A key outside the registry cannot push."""
        status, doc = await push(hub, members["QA"], [members["QA"].publish(body)], key=SigningKey.generate())
        assert status == 401 and doc["reason"] == "unknown-key"

    async def test_body_swapped_after_signing_refused(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A body altered in transit no longer matches the signed Content-Digest."""
        qa = members["QA"]
        _data, headers = push_request(qa, [qa.publish(body)], HUB_URL)
        other = json.dumps({"envelopes": [qa.publish(body).to_dict()]}).encode()
        r = await hub.post("/api/v1/envelopes", data=other, headers=headers)
        assert r.status == 401 and (await r.json())["reason"] == "content-digest-mismatch"

    async def test_oversized_batch_refused(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """More envelopes than the registry's max_batch is a 413, and nothing is appended."""
        env = members["QA"].publish(body).to_dict()
        status, doc = await push(hub, members["QA"], [env] * 501)
        assert status == 413 and doc["reason"] == "batch-too-large"


class TestParallelVerification:
    async def test_worker_processes_give_the_same_answers(self, aiohttp_client: Any, hub_dir: Path,
                                                          members: dict[str, Member], body: dict) -> None:
        """A large batch verified across worker processes is answered exactly as in-process verification."""
        hub = await aiohttp_client(create_app(HubConfig.load(hub_dir, verify_workers=2)))
        qa = members["QA"]
        envs: list[Any] = [qa.publish(body) for _ in range(100)]
        envs[50] = qa.publish({**body, "status": "nope"})  # refused; 51.. then have a gap
        status, doc = await push(hub, qa, envs)
        assert status == 200
        reasons = [r["status"] if r["status"] != "rejected" else r["problem"]["reason"] for r in doc["results"]]
        assert reasons == ["accepted"] * 50 + ["schema-invalid"] + ["chain-gap"] * 49


class TestRefusals:
    async def test_envelope_altered_in_transit_refused_and_quarantined(self, hub: Any, members: dict[str, Member],
                                                                      body: dict) -> None:
        """An envelope whose payload was changed fails its signature; it is kept with the reason."""
        qa = members["QA"]
        env = qa.publish(body).to_dict()
        other = qa.publish({**body, "status": "cancelled"}).to_dict()
        forged = {**env, "payload": other["payload"]}
        _status, doc = await push(hub, qa, [forged])
        assert doc["results"][0]["status"] == "rejected"
        assert doc["results"][0]["problem"]["reason"] == "bad-signature"
        [q] = await quarantine(hub)
        assert q["reason"] == "bad-signature" and json.loads(q["envelope"]) == forged

    async def test_out_of_chain_order_refused(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """Envelope 2 before envelope 1 is a chain gap; after 1 arrives, 2 is accepted on re-send."""
        qa = members["QA"]
        first, second = qa.publish(body), qa.publish(body)
        _, doc = await push(hub, qa, [second])
        assert doc["results"][0]["problem"]["reason"] == "chain-gap"
        _, doc = await push(hub, qa, [first, second])
        assert [r["status"] for r in doc["results"]] == ["accepted", "accepted"]

    async def test_fork_kept_as_evidence(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A second, different envelope with a number already held is refused and kept with what it conflicts with."""
        qa = members["QA"]
        await push(hub, qa, [qa.publish(body)])
        twin = Member("QA", key=qa.key)
        _, doc = await push(hub, qa, [twin.publish({**body, "status": "cancelled"})])
        assert doc["results"][0]["problem"]["reason"] == "chain-fork"
        [q] = await quarantine(hub)
        assert q["reason"] == "chain-fork" and q["conflicts_with"] == 1

    async def test_quarantine_shown_to_operator_only(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """Operators list refusals with reason and the bytes as they arrived; others get 401."""
        qa = members["QA"]
        await push(hub, qa, [qa.publish({**body, "event_type": "gala"})])
        assert (await hub.get("/api/v1/quarantine")).status == 401
        assert (await hub.get("/api/v1/quarantine", headers={"Authorization": "Bearer nope"})).status == 401
        r = await hub.get("/api/v1/quarantine", params={"member": "QA"}, headers={"Authorization": "Bearer tok"})
        [item] = (await r.json())["items"]
        assert item["reason"] == "schema-invalid" and item["detail"]["errors"][0]["pointer"] == "/event_type"
        assert json.loads(item["envelope"])["signature"]

    async def test_other_members_envelope_refused(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A member pushes only its own envelopes."""
        _, doc = await push(hub, members["QA"], [members["KR"].publish(body)])
        assert doc["results"][0]["problem"]["reason"] == "not-own-envelope"

    async def test_schema_invalid_envelope_refused_with_pointers(self, hub: Any, members: dict[str, Member],
                                                                 body: dict) -> None:
        """A signed but schema-invalid record is refused with each error's JSON pointer."""
        qa = members["QA"]
        _, doc = await push(hub, qa, [qa.publish({**body, "event_type": "gala"})])
        problem = doc["results"][0]["problem"]
        assert problem["reason"] == "schema-invalid" and problem["errors"][0]["pointer"] == "/event_type"

    async def test_one_bad_envelope_does_not_sink_the_batch(self, hub: Any, members: dict[str, Member],
                                                            body: dict) -> None:
        """Each envelope gets its own answer."""
        qa = members["QA"]
        _, doc = await push(hub, qa, [qa.publish(body), {"protected": "x"}])
        assert [r["status"] for r in doc["results"]] == ["accepted", "rejected"]


class TestPull:
    async def test_log_in_order_with_envelopes(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """GET /log returns entries after a position, each with its envelope as pushed."""
        qa = members["QA"]
        envs = [qa.publish(body) for _ in range(3)]
        await push(hub, qa, envs)
        r = await hub.get("/api/v1/log", params={"after": 1, "limit": 10})
        doc = await r.json()
        assert [e["position"] for e in doc["entries"]] == [2, 3] and doc["next"] == 3 and doc["size"] == 3
        assert doc["entries"][0]["envelope"] == envs[1].to_dict()
        assert r.headers["Cache-Control"] == "no-cache"

    async def test_page_ending_at_the_log_end_carries_its_checkpoint(self, hub: Any, members: dict[str, Member],
                                                                      body: dict) -> None:
        """A page that ends where the log does carries the hub-signed checkpoint of that size (§8.3), whose root is
        that of the entries so far: a node checks it without asking. A page that stops short of the end, or an empty
        one, carries none."""
        qa = members["QA"]
        envs = [qa.publish(body) for _ in range(3)]
        await push(hub, qa, envs)
        doc = await (await hub.get("/api/v1/log", params={"after": 1, "limit": 10})).json()
        signed = parse_checkpoint(doc["checkpoint"])
        signed.verify(hub.server.app[SERVICE].registry.registry.hub_public_keys(), {})
        assert signed.checkpoint.size == doc["next"] == 3
        assert signed.checkpoint.root_bytes == merkle.root([merkle.leaf_hash(e.leaf) for e in envs])
        short = await (await hub.get("/api/v1/log", params={"after": 0, "limit": 2})).json()
        empty = await (await hub.get("/api/v1/log", params={"after": 3})).json()
        assert "checkpoint" not in short and "checkpoint" not in empty

    async def test_full_page_is_immutable(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A full page can never change, so it may be cached for a year."""
        qa = members["QA"]
        await push(hub, qa, [qa.publish(body) for _ in range(2)])
        r = await hub.get("/api/v1/log", params={"after": 0, "limit": 2})
        assert "immutable" in r.headers["Cache-Control"]

    async def test_full_page_revalidates_with_etag_after_log_grows(self, hub: Any, members: dict[str, Member],
                                                                   body: dict) -> None:
        """A full page's ETag stays the same as the log grows (its entries are final), so a cache revalidating
        it gets 304; a partial page has no ETag and is never cached."""
        qa = members["QA"]
        await push(hub, qa, [qa.publish(body) for _ in range(2)])
        first = await hub.get("/api/v1/log", params={"after": 0, "limit": 2})
        etag = first.headers["ETag"]
        assert etag.startswith('W/"')
        partial = await hub.get("/api/v1/log", params={"after": 0, "limit": 3})
        assert "ETag" not in partial.headers and partial.headers["Cache-Control"] == "no-cache"
        await push(hub, qa, [qa.publish(body)])
        again = await hub.get("/api/v1/log", params={"after": 0, "limit": 2})
        assert again.headers["ETag"] == etag and (await again.json())["size"] == 3
        cached = await hub.get("/api/v1/log", params={"after": 0, "limit": 2}, headers={"If-None-Match": etag})
        assert cached.status == 304 and await cached.read() == b""
        other = await hub.get("/api/v1/log", params={"after": 1, "limit": 2}, headers={"If-None-Match": etag})
        assert other.status == 200 and other.headers["ETag"] != etag

    async def test_healthz_answers_without_touching_the_log(self, hub: Any) -> None:
        """GET /healthz is 200 and never cached: what container and load-balancer checks call."""
        r = await hub.get("/healthz")
        assert r.status == 200 and await r.json() == {"status": "ok"} and r.headers["Cache-Control"] == "no-store"

    async def test_long_poll_wakes_on_push(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A waiting pull answers as soon as an envelope is committed, not at its timeout."""
        qa = members["QA"]
        hub.server.app[SERVICE]._changed = changed = WatchedEvent()  # what a held pull waits on
        waiting = asyncio.create_task(hub.get("/api/v1/log", params={"after": 0, "wait": 20}))
        await eventually(lambda: changed.waiters == 1)
        assert not waiting.done()
        t = time.monotonic()
        await push(hub, qa, [qa.publish(body)])
        r = await asyncio.wait_for(waiting, 5)
        assert len((await r.json())["entries"]) == 1 and time.monotonic() - t < 2

    async def test_pulls_woken_by_one_commit_are_answered_from_memory(self, hub: Any, members: dict[str, Member],
                                                                    body: dict,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
        """The pulls one commit wakes (every node's, at the end of the log) read nothing from the database: a
        sole writer keeps the log's last entries, byte for byte as stored."""
        store = hub.server.app[SERVICE].store
        reads: list[tuple[int, int]] = []
        real = store.read_log

        async def counted(after: int, limit: int) -> list[tuple[int, bytes]]:
            reads.append((after, limit))
            return await real(after, limit)

        monkeypatch.setattr(store, "read_log", counted)
        hub.server.app[SERVICE]._changed = changed = WatchedEvent()  # what a held pull waits on
        waiting = [asyncio.create_task(hub.get("/api/v1/log", params={"after": 0, "wait": 20})) for _ in range(5)]
        await eventually(lambda: changed.waiters == 5)  # every pull is held
        reads.clear()
        qa = members["QA"]
        await push(hub, qa, [qa.publish(body), qa.publish({**body, "title": {"en": "Second"}})])
        pages = [await (await asyncio.wait_for(w, 5)).read() for w in waiting]
        later = await (await hub.get("/api/v1/log", params={"after": 1})).json()
        # Workers sharing a log (PostgreSQL) each commit only part of it: they read, once per wake.
        assert reads == ([(0, 100), (1, 100)] if store.shared else [])
        stored = await real(0, 100)
        served = [{"position": n, "received_at": format_time(at), "envelope": json.loads(env)} for n, env, at in stored]
        assert len(stored) == 2 and later["entries"] == served[1:]
        assert all(json.loads(p)["entries"] == served for p in pages)  # the receipt times in memory are the stored

    async def test_pulls_behind_memory_share_one_read(self, hub: Any, members: dict[str, Member], body: dict,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
        """Pulls for a page the hub does not hold in memory (after a restart, or on a log shared by several
        workers) get it from one database read while it is in flight, not one read each."""
        qa = members["QA"]
        await push(hub, qa, [qa.publish(body)])
        service = hub.server.app[SERVICE]
        service._tail.clear()  # as after a restart
        store = service.store
        reads: list[tuple[int, int]] = []
        real = store.read_log
        asked = asyncio.Event()

        async def counted(after: int, limit: int) -> list[tuple[int, bytes]]:
            reads.append((after, limit))
            await asked.wait()  # still in flight when the other pulls ask
            return await real(after, limit)

        real_ask = service._read_log
        askers = 0

        async def ask(after: int, limit: int) -> list[tuple[int, bytes]]:
            nonlocal askers
            askers += 1
            if askers == 5:
                asked.set()  # the fifth looks for a read in flight in this very step, before the read goes on
            return await real_ask(after, limit)

        monkeypatch.setattr(store, "read_log", counted)
        monkeypatch.setattr(service, "_read_log", ask)
        # Nothing is committed meanwhile; on a shared log the listener still wakes pulls (the push's NOTIFY,
        # arriving late, or its periodic poll), which starts a new generation: held off here.
        monkeypatch.setattr(service, "_wake", lambda: None)
        pages = await asyncio.gather(*(hub.get("/api/v1/log", params={"after": 0}) for _ in range(5)))
        assert [len((await p.json())["entries"]) for p in pages] == [1] * 5
        assert reads == [(0, 100)]

    async def test_pull_after_a_commit_never_gets_a_read_from_before_it(self, hub: Any, members: dict[str, Member],
                                                                        body: dict,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
        """A read in flight when an envelope is committed is not handed to a pull that arrives after the commit:
        that pull would be answered without the envelope it was woken for (or held for nothing)."""
        qa = members["QA"]
        await push(hub, qa, [qa.publish(body)])
        service = hub.server.app[SERVICE]
        service._tail.clear()  # as after a restart: the page is read from the database
        store = service.store
        real = store.read_log
        gate, release = asyncio.Event(), asyncio.Event()

        async def slow_first(after: int, limit: int) -> list[tuple[int, bytes]]:
            rows = await real(after, limit)
            if not gate.is_set():
                gate.set()
                await release.wait()  # answered with what was read before the commit, after the late pull
            return rows

        monkeypatch.setattr(store, "read_log", slow_first)
        early = asyncio.create_task(hub.get("/api/v1/log", params={"after": 0}))
        await gate.wait()
        await push(hub, qa, [qa.publish({**body, "title": {"en": "Second"}})])
        # Handed the early read, the late pull would wait for it (and for release): a timeout, not a hang.
        late = await asyncio.wait_for(hub.get("/api/v1/log", params={"after": 0}), 5)
        assert len((await late.json())["entries"]) == 2
        release.set()
        assert len((await (await early).json())["entries"]) == 1

    @pytest.mark.parametrize("query", [{"after": "-1"}, {"after": "x"}, {"limit": "0"}, {"limit": "100000"}])
    async def test_bad_parameters_are_problems(self, hub: Any, query: dict[str, str]) -> None:
        """Out-of-range or non-numeric parameters get a 400 problem."""
        r = await hub.get("/api/v1/log", params=query)
        assert r.status == 400 and (await r.json())["reason"] == "bad-parameter"

    async def test_registry_served_signed(self, hub: Any, hub_dir: Path) -> None:
        """The registry is served byte for byte as signed."""
        r = await hub.get("/api/v1/registry")
        assert await r.read() == (hub_dir / "registry.json").read_bytes()

    async def test_status_lists_members(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """Status shows every member with its envelope count and refusals."""
        qa = members["QA"]
        await push(hub, qa, [qa.publish(body), qa.publish({**body, "status": "nope"})])
        doc = await (await hub.get("/api/v1/status")).json()
        by = {m["code"]: m for m in doc["members"]}
        assert by["QA"]["envelopes"] == 1 and by["QA"]["refused"] == 1 and by["KR"]["envelopes"] == 0

    async def test_status_counts_are_the_logs_without_counting_it(self, hub: Any, members: dict[str, Member],
                                                                 body: dict) -> None:
        """Each member's envelope count is its chain head's seq (chains are gap-free from 1): the same as counting
        the log, which status no longer does (it cost up to 449 ms a request at 1,000,000 entries)."""
        qa, kr = members["QA"], members["KR"]
        envs = [qa.publish(body) for _ in range(3)]
        await push(hub, qa, envs[:2])
        await push(hub, kr, [kr.publish(body)])
        await push(hub, qa, [envs[1], envs[2], qa.publish({**body, "status": "nope"})])  # a duplicate, a refusal
        doc = await (await hub.get("/api/v1/status")).json()
        store = hub.server.app[SERVICE].store
        async with store.engine.connect() as conn:
            counted = dict((await conn.execute(sa.select(log.c.origin, sa.func.count()).group_by(log.c.origin))).all())
        assert counted == {"QA": 3, "KR": 1}
        assert {m["code"]: m["envelopes"] for m in doc["members"]} == {**counted, "TR": 0}


class TestVerifiableLog:
    async def test_push_answer_carries_signed_checkpoint(self, hub: Any, members: dict[str, Member],
                                                         body: dict) -> None:
        """A push is answered with a hub-signed checkpoint whose tree covers the accepted envelopes."""
        qa = members["QA"]
        envs = [qa.publish(body) for _ in range(3)]
        _, doc = await push(hub, qa, envs)
        signed = parse_checkpoint(doc["checkpoint"])
        reg = hub.server.app[SERVICE].registry.registry
        assert signed.verify(reg.hub_public_keys(), reg.member_keys()) == []
        assert signed.checkpoint.size == 3
        assert signed.checkpoint.root_bytes == merkle.root([merkle.leaf_hash(e.leaf) for e in envs])

    async def test_proofs_of_an_empty_log_are_not_found_not_a_server_error(self, hub: Any) -> None:
        for path in ("/api/v1/log/proof/inclusion", "/api/v1/log/proof/consistency", "/api/v1/log/checkpoint"):
            r = await hub.get(path)
            assert r.status == 404 and (await r.json())["reason"] == "no-checkpoint", path

    async def test_long_poll_past_max_wait_is_held_max_wait_not_refused(self, aiohttp_client: Any, hub_dir: Path,
                                                                       db_url: str) -> None:
        """§8.3 allows wait up to 30 s; a hub configured shorter holds it its own max_wait."""
        short = await aiohttp_client(create_app(HubConfig.load(hub_dir, db_url=db_url, verify_workers=0, max_wait=0)))
        r = await short.get("/api/v1/log", params={"wait": "30"})
        assert r.status == 200 and (await r.json())["entries"] == []
        assert (await short.get("/api/v1/log", params={"wait": "31"})).status == 400

    async def test_inclusion_proof_for_every_entry(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """Every entry's inclusion proof verifies against the checkpoint root."""
        qa, kr = members["QA"], members["KR"]
        envs = [qa.publish(body) for _ in range(4)] + [kr.publish(body) for _ in range(3)]
        await push(hub, qa, envs[:4])
        await push(hub, kr, envs[4:])
        cp = parse_checkpoint(await (await hub.get("/api/v1/log/checkpoint")).json()).checkpoint
        assert cp.size == 7
        for i, env in enumerate(envs):
            doc = await (await hub.get("/api/v1/log/proof/inclusion", params={"index": i, "size": 7})).json()
            merkle.verify_inclusion(merkle.leaf_hash(env.leaf), i, 7, [bytes.fromhex(h) for h in doc["proof"]],
                                    cp.root_bytes)

    async def test_consistency_between_checkpoints(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """The checkpoint after a second push is provably an extension of the first."""
        qa = members["QA"]
        _, first = await push(hub, qa, [qa.publish(body) for _ in range(3)])
        _, second = await push(hub, qa, [qa.publish(body) for _ in range(5)])
        a, b = parse_checkpoint(first["checkpoint"]).checkpoint, parse_checkpoint(second["checkpoint"]).checkpoint
        doc = await (await hub.get("/api/v1/log/proof/consistency", params={"from": a.size, "to": b.size})).json()
        merkle.verify_consistency(a.size, b.size, a.root_bytes, b.root_bytes, [bytes.fromhex(h) for h in doc["proof"]])
        old = await (await hub.get("/api/v1/log/checkpoint", params={"size": 3})).json()
        assert parse_checkpoint(old).checkpoint == a

    async def test_member_cosignature_published(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A member co-signs a checkpoint it verified; anyone then fetches it with that co-signature."""
        qa, kr = members["QA"], members["KR"]
        _, doc = await push(hub, qa, [qa.publish(body)])
        signed = parse_checkpoint(doc["checkpoint"])
        data = json.dumps({"size": 1, "signature": cosign(signed, kr.key)}).encode()
        headers = {"Content-Type": "application/json", **httpsig.sign_request(
            "POST", HUB_URL + "/api/v1/log/cosignatures", {"Content-Type": "application/json"}, data,
            private_key=kr.key.key, keyid=kr.key.kid, created=int(time.time()), nonce="n1")}
        r = await hub.post("/api/v1/log/cosignatures", data=data, headers=headers)
        assert r.status == 201, await r.text()
        reg = hub.server.app[SERVICE].registry.registry
        fetched = parse_checkpoint(await (await hub.get("/api/v1/log/checkpoint")).json())
        assert fetched.verify(reg.hub_public_keys(), reg.member_keys()) == ["KR"]

    async def test_cosignatures_kept_in_the_logs_group_commit(self, hub: Any, members: dict[str, Member],
                                                              body: dict, monkeypatch: pytest.MonkeyPatch) -> None:
        """Co-signatures (every member's, each second) are kept by the log's writer in its group commit with the
        pushes, never in a transaction of their own (an fsync each, and a wait for SQLite's one writer); the
        checkpoint and the proofs they and the nodes ask for are answered from memory, the checkpoint of each
        commit and its Merkle nodes being final."""
        qa, kr = members["QA"], members["KR"]
        _, doc = await push(hub, qa, [qa.publish(body) for _ in range(3)])
        _, later = await push(hub, qa, [qa.publish(body) for _ in range(2)])
        store = hub.server.app[SERVICE].store

        async def no_read(*_: Any) -> Any:
            raise AssertionError("read from the database")

        monkeypatch.setattr(store, "add_cosignature", no_read)
        monkeypatch.setattr(store, "nodes", no_read)
        monkeypatch.setattr(store, "checkpoint", no_read)
        cosigned: list[Any] = []
        append = LogTransaction.append

        async def counted(tx: LogTransaction, *args: Any, **kw: Any) -> Any:
            cosigned.append(len(kw.get("cosigned", ())))
            return await append(tx, *args, **kw)

        monkeypatch.setattr(LogTransaction, "append", counted)
        signed = parse_checkpoint(doc["checkpoint"])
        sends = []
        for i, member in enumerate((qa, kr)):
            data = json.dumps({"size": 3, "signature": cosign(signed, member.key)}).encode()
            headers = {"Content-Type": "application/json", **httpsig.sign_request(
                "POST", HUB_URL + "/api/v1/log/cosignatures", {"Content-Type": "application/json"}, data,
                private_key=member.key.key, keyid=member.key.kid, created=int(time.time()), nonce=f"g{i}")}
            sends.append(hub.post("/api/v1/log/cosignatures", data=data, headers=headers))
        assert [r.status for r in await asyncio.gather(*sends)] == [201, 201]
        assert sum(cosigned) == 2 and len(cosigned) <= 2
        proof = await (await hub.get("/api/v1/log/proof/consistency", params={"from": 3, "to": 5})).json()
        b = parse_checkpoint(later["checkpoint"]).checkpoint
        merkle.verify_consistency(3, 5, signed.checkpoint.root_bytes, b.root_bytes,
                                  [bytes.fromhex(h) for h in proof["proof"]])
        monkeypatch.undo()
        reg = hub.server.app[SERVICE].registry.registry
        fetched = parse_checkpoint(await (await hub.get("/api/v1/log/checkpoint", params={"size": 3})).json())
        assert sorted(fetched.verify(reg.hub_public_keys(), reg.member_keys())) == ["KR", "QA"]

    async def test_cosignature_by_other_key_refused(self, hub: Any, members: dict[str, Member], body: dict) -> None:
        """A member cannot file a co-signature made with another member's (or no member's) key."""
        qa, kr = members["QA"], members["KR"]
        _, doc = await push(hub, qa, [qa.publish(body)])
        forged = cosign(parse_checkpoint(doc["checkpoint"]), SigningKey.generate())
        data = json.dumps({"size": 1, "signature": forged}).encode()
        headers = {"Content-Type": "application/json", **httpsig.sign_request(
            "POST", HUB_URL + "/api/v1/log/cosignatures", {"Content-Type": "application/json"}, data,
            private_key=kr.key.key, keyid=kr.key.kid, created=int(time.time()), nonce="n2")}
        r = await hub.post("/api/v1/log/cosignatures", data=data, headers=headers)
        assert r.status == 422 and (await r.json())["reason"] == "bad-cosignature"

    async def test_tree_restored_after_restart(self, aiohttp_client: Any, hub_dir: Path, members: dict[str, Member],
                                               body: dict, db_url: str) -> None:
        """A restarted hub rebuilds its tree from stored nodes and keeps extending the same log."""
        qa = members["QA"]
        cfg = HubConfig.load(hub_dir, db_url=db_url, verify_workers=0)
        first = await aiohttp_client(create_app(cfg))
        await push(first, qa, [qa.publish(body) for _ in range(5)])
        await first.close()
        second = await aiohttp_client(create_app(cfg))
        _, doc = await push(second, qa, [qa.publish(body) for _ in range(2)])
        cp = parse_checkpoint(doc["checkpoint"]).checkpoint
        rows = await second.server.app[SERVICE].store.read_log(0, 100)
        leaves = [merkle.leaf_hash(leaf_bytes(json.loads(e.envelope))) for e in rows]
        assert cp.size == 7 and cp.root_bytes == merkle.root(leaves)


def test_log_row_holds_the_log_columns_in_order() -> None:
    """The writer inserts a LogRow's fields positionally (db.insert_many) between position and received_at."""
    from federation.hub.store.log import LogRow, log

    assert list(LogRow._fields) == [c.key for c in log.columns][1:-1]
