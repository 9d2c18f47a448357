"""Abuse of the hub's intake (in-process app, real store): rate limits, slow and oversized bodies, and every
refused request kept in the quarantine with its bytes as received (docs/adr/0012-faults-and-abuse.md)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from federation.hub.app import create_app
from federation.hub.appkeys import SERVICE
from federation.hub.config import HubConfig
from federation.protocol import httpsig
from tests.support.factories import Member, example_bodies, push_request
from tests.support.hubdir import HUB_URL
from tests.support.timing import eventually


def hub_app(hub_dir: Path, db_url: str, **overrides: Any) -> Any:
    return create_app(HubConfig.load(hub_dir, db_url=db_url, verify_workers=0, **overrides))


async def quarantine(client: Any) -> list[dict[str, Any]]:
    return list(await client.server.app[SERVICE].store.quarantined())


def signed(member: Member, path: str, data: bytes) -> dict[str, str]:
    """A member's RFC 9421 headers for a POST of ``data`` to ``path`` (the body sent may differ: the hub checks
    the signature before it reads the body, the digest after)."""
    headers = {"Content-Type": "application/json"}
    return {**headers, **httpsig.sign_request("POST", HUB_URL + path, headers, data, private_key=member.key.key,
                                              keyid=member.key.kid, created=int(time.time()),
                                              nonce=secrets.token_urlsafe(12))}


def body() -> dict[str, Any]:
    return example_bodies("cultural-event")[0]


class TestRateLimits:
    async def test_member_flooding_pushes_is_rate_limited(self, aiohttp_client: Any, hub_dir: Path,
                                                          members: dict[str, Member], db_url: str) -> None:
        """A member past its burst gets 429 with Retry-After; another member is served meanwhile; the
        shed request is not bad input, so nothing of it is quarantined or appended."""
        hub = await aiohttp_client(hub_app(hub_dir, db_url, push_rate=0.5, push_burst=3))
        qa, kr = members["QA"], members["KR"]
        codes = []
        for _ in range(4):
            data, headers = push_request(qa, [qa.publish(body())], HUB_URL)
            r = await hub.post("/api/v1/envelopes", data=data, headers=headers)
            codes.append(r.status)
        assert codes == [200, 200, 200, 429]
        assert r.content_type == "application/problem+json" and (await r.json())["reason"] == "rate-limited"
        assert 1 <= int(r.headers["Retry-After"]) <= 2
        data, headers = push_request(kr, [kr.publish(body())], HUB_URL)
        assert (await hub.post("/api/v1/envelopes", data=data, headers=headers)).status == 200
        assert hub.server.app[SERVICE].size == 4 and await quarantine(hub) == []

    async def test_outsider_refusal_flood_not_kept_past_budget(self, aiohttp_client: Any,
                                                               hub_dir: Path, db_url: str) -> None:
        """Unsigned garbage is always answered with its reason, but only the per-address budget of it is
        written to the quarantine: refusals cannot be turned into unbounded writes."""
        hub = await aiohttp_client(hub_app(hub_dir, db_url, refusal_rate=0.01, refusal_burst=2))
        for _ in range(5):
            r = await hub.post("/api/v1/envelopes", data=b"garbage")
            assert r.status == 401 and (await r.json())["reason"] == "signature-missing"
        assert len(await quarantine(hub)) == 2


class TestReplays:
    async def test_request_replayed_after_hub_restart_refused(self, aiohttp_client: Any, hub_dir: Path,
                                                             members: dict[str, Member], db_url: str) -> None:
        """The replay cache lives in memory: a request captured before a restart, replayed after it within
        the skew window, cannot be proven unseen, so it is refused (a real node signs every attempt anew)."""
        qa = members["QA"]
        first = await aiohttp_client(hub_app(hub_dir, db_url))
        data, headers = push_request(qa, [qa.publish(body())], HUB_URL)
        assert (await first.post("/api/v1/envelopes", data=data, headers=headers)).status == 200
        await first.close()
        # created has whole seconds: the hub restarts in a later second (its replay cache starts then)
        later = int(time.time()) + 1
        restarted = create_app(HubConfig.load(hub_dir, db_url=db_url, verify_workers=0),
                               clock=lambda: datetime.fromtimestamp(later, UTC))
        second = await aiohttp_client(restarted)
        r = await second.post("/api/v1/envelopes", data=data, headers=headers)
        assert r.status == 401 and (await r.json())["reason"] == "signature-expired"
        fresh_data, fresh_headers = push_request(qa, [qa.publish(body())], HUB_URL, created=later)
        assert (await second.post("/api/v1/envelopes", data=fresh_data, headers=fresh_headers)).status == 200


class TestRefusalsKept:
    async def test_unsigned_garbage_refused_unread_and_kept_without_bytes(self, aiohttp_client: Any, hub_dir: Path,
                                                                         db_url: str) -> None:
        """An unsigned request is refused from its headers: its body is never read (an outsider cannot make the
        hub hold its bytes), and the refusal is kept with its reason, no member, the length it declared."""
        hub = await aiohttp_client(hub_app(hub_dir, db_url))
        sent = b'{"envelopes": [\xff\xfe'
        r = await hub.post("/api/v1/envelopes", data=sent)
        assert r.status == 401
        [q] = await quarantine(hub)
        assert q["reason"] == "signature-missing" and q["member"] is None and bytes(q["envelope"]) == b""
        request = json.loads(q["detail"])["request"]
        assert request["status"] == 401 and request["received_bytes"] == 0
        assert request["content_length"] == len(sent)

    async def test_signed_malformed_batch_kept_under_its_member(self, aiohttp_client: Any, hub_dir: Path,
                                                                members: dict[str, Member], db_url: str) -> None:
        """A member's authenticated but malformed push is kept under that member; nothing is appended."""
        hub = await aiohttp_client(hub_app(hub_dir, db_url))
        qa = members["QA"]
        data = b'{"envelopes": {"not": "a list"}}'
        headers = {"Content-Type": "application/json", **httpsig.sign_request(
            "POST", HUB_URL + "/api/v1/envelopes", {"Content-Type": "application/json"}, data,
            private_key=qa.key.key, keyid=qa.key.kid, created=int(time.time()), nonce="n")}
        r = await hub.post("/api/v1/envelopes", data=data, headers=headers)
        assert r.status == 400 and (await r.json())["reason"] == "malformed-batch"
        [q] = await quarantine(hub)
        assert (q["member"], q["reason"], bytes(q["envelope"])) == ("QA", "malformed-batch", data)
        assert hub.server.app[SERVICE].size == 0


async def trickle(data: bytes, every: float, sent: list[bytes] | None = None) -> AsyncIterator[bytes]:
    """A slow client's body, a byte every ``every`` seconds (kept in ``sent`` as they go)."""
    for i in range(len(data)):
        yield data[i:i + 1]
        if sent is not None:
            sent.append(data[i:i + 1])
        await asyncio.sleep(every)


class TestSlowAndLargeBodies:
    async def test_slowloris_body_cut_after_timeout(self, aiohttp_client: Any, hub_dir: Path,
                                                    members: dict[str, Member], db_url: str) -> None:
        """A member's body sent a byte at a time is refused with 408 once the body timeout passes, and what arrived
        is kept; the hub answers other clients meanwhile."""
        hub = await aiohttp_client(hub_app(hub_dir, db_url, body_timeout=0.6))
        sent: list[bytes] = []
        data = b'{"envelopes":[' + b" " * 100
        slow = asyncio.create_task(hub.post("/api/v1/envelopes", data=trickle(data, 0.1, sent),
                                            headers=signed(members["QA"], "/api/v1/envelopes", data)))
        await eventually(lambda: len(sent) >= 2)  # the slow body is arriving
        t = time.monotonic()
        assert (await hub.get("/api/v1/status")).status == 200
        assert time.monotonic() - t < 0.3
        r = await asyncio.wait_for(slow, 10)
        assert r.status == 408 and (await r.json())["reason"] == "request-timeout"
        [q] = await quarantine(hub)
        assert q["reason"] == "request-timeout" and b'{"envelopes":['.startswith(bytes(q["envelope"]))
        assert len(bytes(q["envelope"])) >= 3

    async def test_chunked_body_past_the_limit_refused_unread(self, aiohttp_client: Any, hub_dir: Path,
                                                              members: dict[str, Member], db_url: str) -> None:
        """A (signed) body without Content-Length is read only up to the limit, then refused with 413."""
        hub = await aiohttp_client(hub_app(hub_dir, db_url, quarantine_max_bytes=1024))

        async def endless() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b"[" * 1024

        r = await hub.post("/api/v1/log/cosignatures", data=endless(),
                           headers=signed(members["QA"], "/api/v1/log/cosignatures", b"["))
        assert r.status == 413 and (await r.json())["reason"] == "too-large"
        [q] = await quarantine(hub)
        request = json.loads(q["detail"])["request"]
        assert request["received_bytes"] == 16 * 1024 and len(bytes(q["envelope"])) == 1024

    async def test_client_vanishing_mid_body_is_a_refusal_not_a_crash(self, hub_dir: Path, db_url: str,
                                                                      members: dict[str, Member],
                                                                      caplog: pytest.LogCaptureFixture) -> None:
        """A (member's) client that promises 1,000 bytes and hangs up after 40 is refused (kept, with what was read),
        and the hub logs no internal error for it. (Served as ``ipdn hub serve`` does, without handler cancellation,
        which aiohttp's test server turns on.)"""
        runner = web.AppRunner(hub_app(hub_dir, db_url), handler_cancellation=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            sent = b'{"envelopes":[' + b" " * 26
            head = "".join(f"{k}: {v}\r\n" for k, v in signed(members["QA"], "/api/v1/envelopes", b"{}").items())
            writer.write(b"POST /api/v1/envelopes HTTP/1.1\r\nHost: hub.test\r\n" + head.encode() +
                         b"Content-Length: 1000\r\n\r\n" + sent)
            await writer.drain()
            writer.close()  # TCP delivers the 40 bytes before the hang-up, whenever the hub reads them
            store = runner.app[SERVICE].store
            rows = await eventually(store.quarantined)
            # What arrived before the hang-up is kept, as far as it was read: aiohttp reports the hang-up before
            # the bytes still buffered when the hub only starts reading after the hang-up (its signature checked).
            assert rows[0]["reason"] == "incomplete-body" and sent.startswith(bytes(rows[0]["envelope"]))
            assert not [r for r in caplog.records if r.name == "ipdn.http" and r.levelname == "ERROR"]
        finally:
            await runner.cleanup()

    async def test_declared_oversized_body_refused_before_reading(self, aiohttp_client: Any, hub_dir: Path,
                                                                  db_url: str) -> None:
        """A Content-Length over the limit is refused at once with 413; not a byte of the body is read."""
        hub = await aiohttp_client(hub_app(hub_dir, db_url, max_batch_bytes=1000))
        r = await hub.post("/api/v1/envelopes", data=b"x" * 5000)
        assert r.status == 413 and (await r.json())["reason"] == "too-large"
        [q] = await quarantine(hub)
        assert json.loads(q["detail"])["request"]["received_bytes"] == 0


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR", logger="ipdn.hub")


class TestQuarantineBounds:
    async def test_member_cannot_fill_disk_with_refused_envelopes(self, aiohttp_client: Any, hub_dir: Path,
                                                                  members: dict[str, Member], db_url: str) -> None:
        """A member pushing malformed envelopes (ten such pushes grew a hub's database by 668 MiB when each was kept
        whole) fills only its share of the quarantine: each envelope is kept up to ``quarantine_max_bytes`` (past it
        a prefix, with its length and SHA-256), at most ``quarantine_member_bytes`` per member and
        ``quarantine_total_bytes`` in all; past them a refusal keeps its reason, length and digest but no bytes, past
        ``quarantine_member_items`` it is only counted; what was cut is counted (status, metrics) and an alarm
        raised. Another member's evidence is still kept whole within its own share."""
        token = "tok"
        hub = await aiohttp_client(hub_app(
            hub_dir, db_url, quarantine_max_bytes=8192, quarantine_member_bytes=16 * 1024,
            quarantine_total_bytes=32 * 1024, quarantine_member_items=12,
            operator_token_sha256=hashlib.sha256(token.encode()).hexdigest()))
        qa, kr = members["QA"], members["KR"]
        junk = [{"junk": f"{i:04d}" + "x" * 10_000} for i in range(8)]  # 10 KB each, no envelope at all
        for _ in range(2):
            data, headers = push_request(qa, junk, HUB_URL)
            r = await hub.post("/api/v1/envelopes", data=data, headers=headers)
            assert r.status == 200 and {x["status"] for x in (await r.json())["results"]} == {"rejected"}
        forged = kr.publish({**body(), "event_type": "gala"})  # KR's schema-invalid envelope: small, kept whole
        data, headers = push_request(kr, [forged], HUB_URL)
        assert (await hub.post("/api/v1/envelopes", data=data, headers=headers)).status == 200

        r = await hub.get("/api/v1/quarantine", params={"limit": "100"}, headers={"Authorization": f"Bearer {token}"})
        items = list(reversed((await r.json())["items"]))  # oldest first
        mine = [i for i in items if i["member"] == "QA"]
        assert len(mine) == 12  # quarantine_member_items; the other 4 only counted
        wire = [json.dumps(j, separators=(",", ":")).encode() for j in junk]
        for item, sent in zip(mine, wire + wire, strict=False):
            assert item["size"] == len(sent) and item["input_sha256"] == hashlib.sha256(sent).hexdigest()
            assert item["truncated"] is True and item["sha256"] == hashlib.sha256(item["envelope"].encode()).hexdigest()
        # 8 KiB prefixes up to the member's 16 KiB; then reason, length and digest only
        assert [i["kept_bytes"] for i in mine] == [8192] * 2 + [0] * 10
        assert [i["bound"] for i in mine] == ["item"] * 2 + ["member"] * 10
        assert wire[1][:8192].decode() == mine[1]["envelope"]
        [theirs] = [i for i in items if i["member"] == "KR"]
        assert theirs["truncated"] is False and theirs["bound"] is None
        assert json.loads(theirs["envelope"]) == forged.to_dict()

        status = await (await hub.get("/api/v1/status")).json()
        store = status["quarantine_store"]
        assert store["kept_bytes"] == 2 * 8192 + theirs["size"] and store["items"] == 13
        assert store["dropped_items"] == 4 and store["truncated_items"] == 12
        assert store["dropped_bytes"] == sum(map(len, wire + wire)) - 2 * 8192
        assert [a["reason"] for a in status["alarms"]] == ["quarantine-bound-reached"]
        assert "member QA" in status["alarms"][0]["detail"]
        metrics = await (await hub.get("/metrics")).text()
        assert f'ipdn_hub_quarantine_dropped_bytes_total{{member="QA"}} {float(store["dropped_bytes"])}' in metrics
        assert 'ipdn_hub_quarantine_dropped_items_total{member="QA"} 4.0' in metrics
        assert 'ipdn_hub_alarms{reason="quarantine-bound-reached"} 1.0' in metrics

    async def test_total_bound_keeps_refusals_without_their_bytes(self, aiohttp_client: Any, hub_dir: Path,
                                                                  members: dict[str, Member], db_url: str) -> None:
        """Members together cannot pass ``quarantine_total_bytes``: once it is reached every member's refusals are
        kept without bytes (first come, first kept: evidence already held is never evicted)."""
        hub = await aiohttp_client(hub_app(hub_dir, db_url, quarantine_max_bytes=4096,
                                           quarantine_member_bytes=64 * 1024, quarantine_total_bytes=10_000))
        junk = [{"junk": "y" * 5000}] * 2
        for code in ("QA", "KR"):
            data, headers = push_request(members[code], junk, HUB_URL)
            assert (await hub.post("/api/v1/envelopes", data=data, headers=headers)).status == 200
        rows = sorted(await quarantine(hub), key=lambda q: q["id"])
        assert [(q["member"], len(bytes(q["envelope"])), q["bound"]) for q in rows] == [
            ("QA", 4096, "item"), ("QA", 4096, "item"), ("KR", 0, "total"), ("KR", 0, "total")]
        usage = await hub.server.app[SERVICE].store.quarantine_usage()
        assert sum(u["kept_bytes"] for u in usage.values()) == 8192
