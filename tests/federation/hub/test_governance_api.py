"""The hub's governance interface: documents in, justified registry versions out, an audit trail kept."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from federation.hub.app import create_app
from federation.hub.appkeys import SERVICE
from federation.hub.config import HubConfig
from federation.protocol.governance import check_transition, sign_document
from federation.protocol.keys import SigningKey
from federation.protocol.registry import genesis, parse_registry
from tests.support.factories import Member, example_bodies, push_request

HUB_URL = "http://hub.test"
FOUNDERS = ("QA", "TR", "KR")


@pytest.fixture
def members() -> dict[str, Member]:
    return {c: Member(c) for c in FOUNDERS}


HubFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
def make_hub(aiohttp_client: Any, tmp_path: Path, members: dict[str, Member], db_url: str) -> HubFactory:
    """A hub with the founders as members; keyword arguments override its settings."""

    async def make(**overrides: Any) -> Any:
        hub_key = SigningKey.generate()
        hub_key.save(tmp_path / "hub.key.pem")
        reg = genesis(hub_key=hub_key, hub_url=HUB_URL,
                      founders=[(m.public, {"en": c}) for c, m in members.items()], now=datetime.now(UTC))
        (tmp_path / "registry.json").write_bytes(reg.to_bytes())
        cfg = HubConfig.load(tmp_path, db_url=db_url, verify_workers=0, **overrides)
        return await aiohttp_client(create_app(cfg))

    return make


@pytest.fixture
async def hub(make_hub: HubFactory) -> Any:
    return await make_hub()


async def submit(hub: Any, *docs: Any) -> tuple[int, Any]:
    r = await hub.post("/api/v1/governance", json={"documents": [d.to_dict() for d in docs]})
    return r.status, await r.json()


def application(key: SigningKey, base: int = 1, member: str = "MZ", name: str = "Mozambique Cultural Institute"
                ) -> Any:
    return sign_document({"type": "application", "base": base, "member": member,
                          "names": {"pt": "Instituto Cultural de Moçambique", "en": name},
                          "endpoint": "https://ipdn.mz.example", "key": key.public.to_jwk()},
                         key, now=datetime.now(UTC))


def vote(m: Member, subject: Any, base: int = 1) -> Any:
    return sign_document({"type": "vote", "base": base, "proposal": subject.hash, "voter": m.code,
                          "decision": "approve"}, m.key, now=datetime.now(UTC))


class TestAdmissionOverHttp:
    async def test_member_admitted_when_votes_reach_quorum(self, hub: Any, members: dict[str, Member],
                                                           tmp_path: Path) -> None:
        """Application, then votes: nothing changes until the second of three approves; then v2 lists MZ,
        follows justifiably from v1, is served and written to registry.json, and MZ can push."""
        mz_key = SigningKey.generate()
        app_doc = application(mz_key)
        assert (await submit(hub, app_doc))[0] == 202
        await submit(hub, vote(members["QA"], app_doc))
        overview = await (await hub.get("/api/v1/governance")).json()
        assert overview["registry_version"] == 1
        assert overview["pending"][0]["approve"] == ["QA"] and overview["pending"][0]["needed"] == 2
        _, doc = await submit(hub, vote(members["TR"], app_doc))
        assert doc["registry_version"] == 2
        v1 = parse_registry(await (await hub.get("/api/v1/registry", params={"version": 1})).read())
        v2 = parse_registry(await (await hub.get("/api/v1/registry")).read())
        check_transition(v1, v2)
        assert v2.registry.member("MZ") is not None
        assert parse_registry((tmp_path / "registry.json").read_bytes()).registry.version == 2
        mz = Member("MZ", key=mz_key)
        data, headers = push_request(mz, [mz.publish(example_bodies("cultural-event")[0])], HUB_URL)
        r = await hub.post("/api/v1/envelopes", data=data, headers=headers)
        assert (await r.json())["results"][0]["status"] == "accepted"

    async def test_admission_without_quorum_changes_nothing(self, hub: Any, members: dict[str, Member]) -> None:
        """One approval of three: the registry stays at version 1."""
        app_doc = application(SigningKey.generate())
        await submit(hub, app_doc, vote(members["QA"], app_doc))
        reg = parse_registry(await (await hub.get("/api/v1/registry")).read())
        assert reg.registry.version == 1 and reg.registry.member("MZ") is None

    async def test_vote_for_stale_registry_refused(self, hub: Any, members: dict[str, Member]) -> None:
        """Documents made against another registry version are refused with the reason."""
        app_doc = application(SigningKey.generate(), base=7)
        status, doc = await submit(hub, app_doc)
        assert status == 403 and doc["reason"] == "stale-governance-document"

    async def test_audit_trail_keeps_every_document(self, hub: Any, members: dict[str, Member]) -> None:
        """Every document received is listed with the version that decided it."""
        app_doc = application(SigningKey.generate())
        await submit(hub, app_doc, vote(members["QA"], app_doc), vote(members["KR"], app_doc))
        trail = (await (await hub.get("/api/v1/governance")).json())["trail"]
        assert [t["type"] for t in trail].count("vote") == 2
        assert {t["decided_in"] for t in trail} == {2}

    async def test_rotation_takes_effect_immediately(self, hub: Any, members: dict[str, Member]) -> None:
        """A rotation signed by the current and the new key needs no vote."""
        kr, new = members["KR"], SigningKey.generate()
        body = {"type": "rotation", "base": 1, "member": "KR", "new_key": new.public.to_jwk()}
        first = sign_document(body, kr.key, now=datetime.now(UTC))
        second = sign_document(first.body, new, now=datetime.now(UTC))
        _, doc = await submit(hub, first, second)
        assert doc["registry_version"] == 2
        reg = parse_registry(await (await hub.get("/api/v1/registry")).read()).registry
        assert new.kid in reg.member_keys()


class TestRefusals:
    async def test_forged_vote_refused_at_once(self, hub: Any, members: dict[str, Member]) -> None:
        """A vote signed by a key outside the registry is refused with the reason, and cannot block the
        decision the real votes then make."""
        app_doc = application(SigningKey.generate())
        await submit(hub, app_doc)
        forged = sign_document({"type": "vote", "base": 1, "proposal": app_doc.hash, "voter": "KR",
                                "decision": "approve"}, SigningKey.generate(), now=datetime.now(UTC))
        status, doc = await submit(hub, forged)
        assert status == 403 and doc["reason"] == "bad-governance-signature"
        _, doc = await submit(hub, vote(members["QA"], app_doc), vote(members["TR"], app_doc))
        assert doc["registry_version"] == 2

    async def test_forged_rotation_explained(self, hub: Any, members: dict[str, Member]) -> None:
        """A rotation not signed by the member's key never passes: the submitter is told why."""
        new = SigningKey.generate()
        body = {"type": "rotation", "base": 1, "member": "KR", "new_key": new.public.to_jwk()}
        first = sign_document(body, SigningKey.generate(), now=datetime.now(UTC))
        status, doc = await submit(hub, first, sign_document(first.body, new, now=datetime.now(UTC)))
        assert status == 403 and doc["reason"] == "bad-governance-signature"
        reg = parse_registry(await (await hub.get("/api/v1/registry")).read())
        assert reg.registry.version == 1


class TestGovernanceSpam:
    """The attack that found these: an outsider posted 600 self-signed applications, all stored; each new
    submission then took 3.5 s and /healthz up to 1.6 s; a document with a broken signature was answered 403
    but stored and listed as pending all the same."""

    async def test_broken_signature_application_not_stored(self, hub: Any) -> None:
        """Refused before anything is stored: not pending, not in the trail; the refusal is in the quarantine."""
        app_doc, other = application(SigningKey.generate()), application(SigningKey.generate(), name="Other")
        broken = {**app_doc.to_dict(), "signature": other.to_dict()["signature"]}
        r = await hub.post("/api/v1/governance", json={"documents": [broken]})
        assert r.status == 403 and r.content_type == "application/problem+json"
        assert (await r.json())["reason"] == "bad-governance-signature"
        overview = await (await hub.get("/api/v1/governance")).json()
        assert overview["pending"] == [] and overview["trail"] == []
        kept = await hub.server.app[SERVICE].store.quarantined(reason="bad-governance-signature")
        assert len(kept) == 1 and json.loads(kept[0]["envelope"]) == {"documents": [broken]}

    async def test_application_flood_from_one_source_rate_limited(self, make_hub: HubFactory) -> None:
        """Past the per-address burst, 429 with Retry-After, read no further: only the burst is stored."""
        hub = await make_hub(governance_rate=0.001, governance_burst=5)
        statuses = []
        for i in range(20):
            r = await hub.post("/api/v1/governance", json={"documents": [application(SigningKey.generate(),
                                                                                     name=f"Applicant {i}").to_dict()]})
            statuses.append(r.status)
            if r.status == 429:
                assert (await r.json())["reason"] == "rate-limited" and int(r.headers["Retry-After"]) >= 1
        assert statuses == [202] * 5 + [429] * 15
        assert len((await (await hub.get("/api/v1/governance")).json())["pending"]) == 5

    async def test_application_flood_from_one_key_rate_limited(self, make_hub: HubFactory) -> None:
        """One applicant key signing many applications (from any number of addresses) is limited too."""
        hub = await make_hub(governance_key_rate=0.001, governance_key_burst=2)
        key = SigningKey.generate()
        statuses = [(await submit(hub, application(key, name=f"Name {i}")))[0] for i in range(4)]
        assert statuses == [202, 202, 429, 429]

    async def test_pending_applications_bounded(self, make_hub: HubFactory, members: dict[str, Member]) -> None:
        """Past max_pending_applications a new application is 503 too-many-pending-applications (nothing
        stored); votes still count, and once one is decided a new application is taken again."""
        hub = await make_hub(max_pending_applications=3)
        apps = [application(SigningKey.generate(), member=code) for code in ("MZ", "NG", "SG")]
        for a in apps:
            assert (await submit(hub, a))[0] == 202
        status, problem = await submit(hub, application(SigningKey.generate(), member="PH"))
        assert status == 503 and problem["reason"] == "too-many-pending-applications"
        assert "3 applications are pending" in problem["detail"]
        assert len((await (await hub.get("/api/v1/governance")).json())["trail"]) == 3
        _, doc = await submit(hub, vote(members["QA"], apps[0]), vote(members["TR"], apps[0]))
        assert doc["registry_version"] == 2  # the others were made for v1: no longer pending at v2
        assert (await submit(hub, application(SigningKey.generate(), base=2, member="PH")))[0] == 202

    async def test_listing_and_submitting_fast_with_thousands_pending(self, hub: Any, members: dict[str, Member],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        """With 2,000 pending applications held, the listing reads them in one query and a new submission reads
        only the documents of the subject it touches (not all 2,000): its cost does not grow with the spam. Counted,
        not timed, so it holds on a loaded machine."""
        store = hub.server.app[SERVICE].store
        now = datetime.now(UTC)
        docs = [application(SigningKey.generate(), name=f"Applicant {i}") for i in range(2000)]
        for d in docs:
            await store.add_governance(d.hash, d.type, 1, d.hash, json.dumps(d.to_dict()).encode(), now)
        reads: list[int] = []
        real = store.governance_documents

        async def counted(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
            rows = await real(*args, **kwargs)
            reads.append(len(rows))
            return rows

        monkeypatch.setattr(store, "governance_documents", counted)
        overview = await (await hub.get("/api/v1/governance")).json()
        assert len(overview["pending"]) == 2000
        assert len(reads) <= 2, reads  # a fixed number of queries (pending, trail), not one per applicant
        reads.clear()
        status, _ = await submit(hub, vote(members["QA"], docs[-1]))
        assert status == 202
        assert sum(reads) <= 4, reads  # the touched applicant's documents (its application, the vote), not 2,000
