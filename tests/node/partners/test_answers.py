"""The public pages' kept answers (node/partners/answers.py): served again without a query or a render until the
node's data, the registry, the day or the language asked changes; never older than a commit."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

import node.partners.answers as answers
import node.partners.portal
from node.app import create_app
from node.appkeys import SERVICE
from node.config import NodeConfig
from node.records.service import NodeService
from tests.support.factories import example_bodies

BEFORE = datetime(2019, 12, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def still(monkeypatch: pytest.MonkeyPatch) -> None:
    """The answers' time bucket moves only when a test moves it: a page made just before a bucket's end and asked
    again just after it would be made again (a flake seen in CI)."""
    monkeypatch.setattr(answers, "monotonic", lambda: 1000.0)


@pytest.fixture
async def client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    return await aiohttp_client(create_app(config, sync=False))


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each template the portal renders, by name (a kept answer renders none)."""
    seen: list[str] = []
    real = node.partners.portal.env.get_template

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(node.partners.portal.env, "get_template", counting)
    return seen


async def publish(service: NodeService, n: int = 1) -> list[str]:
    ids = []
    for body in example_bodies("cultural-event")[:n]:
        ids.append((await service.create("cultural-event", body)).payload.record_id)
    return ids


async def page(client: TestClient, path: str, status: int = 200, **headers: str) -> tuple[str, Any]:
    resp = await client.get(path, headers=headers)
    text = await resp.text()
    assert resp.status == status, text[:500]
    return text, resp


async def test_same_page_is_answered_again_without_a_query_or_a_render(client: TestClient, renders: list[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    service: NodeService = client.app[SERVICE]
    [rid] = await publish(service)
    service.clock = lambda: BEFORE
    for path in ("/events?lang=en", f"/events/{rid}?lang=en", "/?lang=en", "/members?lang=en"):
        first, r1 = await page(client, path)
        queries: list[str] = []
        for name in ("list_records", "get", "versions", "upcoming"):
            real = getattr(service, name)

            async def counted(*a: Any, _real: Any = real, _name: str = name, _seen: list[str] = queries,
                              **k: Any) -> Any:
                _seen.append(_name)
                return await _real(*a, **k)
            monkeypatch.setattr(service, name, counted)
        renders.clear()
        again, r2 = await page(client, path)
        assert (again, r2.headers["ETag"], r2.headers["Content-Type"]) == (first, r1.headers["ETag"],
                                                                          r1.headers["Content-Type"]), path
        assert r2.headers["Content-Security-Policy"] == r1.headers["Content-Security-Policy"]
        assert (queries, renders) == ([], []), path
        monkeypatch.undo()


async def test_a_commit_is_seen_at_once(client: TestClient) -> None:
    """A record published after a page was kept is on the next answer of that page (the store's generation)."""
    service: NodeService = client.app[SERVICE]
    first = await publish(service)
    service.clock = lambda: BEFORE
    before, _ = await page(client, "/events?lang=en")
    assert first[0] in before
    body = example_bodies("cultural-event")[1]
    second = (await service.create("cultural-event", body)).payload.record_id
    after, _ = await page(client, "/events?lang=en")
    assert second in after and first[0] in after


async def test_an_update_is_seen_on_the_record_page(client: TestClient) -> None:
    service: NodeService = client.app[SERVICE]
    [rid] = await publish(service)
    _, r1 = await page(client, f"/events/{rid}?lang=en")
    body = dict(example_bodies("cultural-event")[0])
    body["title"] = {**body["title"], "en": "A title changed after the page was kept"}
    await service.update(rid, body)
    after, r2 = await page(client, f"/events/{rid}?lang=en")
    assert "A title changed after the page was kept" in after and r1.headers["ETag"] != r2.headers["ETag"]


async def test_each_language_asked_has_its_own_answer(client: TestClient) -> None:
    service: NodeService = client.app[SERVICE]
    await publish(service)
    ar, r_ar = await page(client, "/events", **{"Accept-Language": "ar"})
    en, r_en = await page(client, "/events", **{"Accept-Language": "en"})
    assert 'lang="ar" dir="rtl"' in ar and 'lang="en" dir="ltr"' in en
    assert r_ar.headers["ETag"] != r_en.headers["ETag"]
    ar_again, _ = await page(client, "/events", **{"Accept-Language": "ar"})
    assert ar_again == ar


async def test_kept_answer_is_not_modified_to_its_etag(client: TestClient) -> None:
    service: NodeService = client.app[SERVICE]
    await publish(service)
    _, first = await page(client, "/events?lang=en")
    etag = first.headers["ETag"]
    resp = await client.get("/events?lang=en", headers={"If-None-Match": etag})
    assert resp.status == 304 and resp.headers["ETag"] == etag and await resp.read() == b""
    assert "Content-Security-Policy" in resp.headers


async def test_a_marked_version_is_seen_at_once(client: TestClient) -> None:
    """After-the-fact revocation marks a version (no new record): its page must not stay kept."""
    service: NodeService = client.app[SERVICE]
    [rid] = await publish(service)
    _, r1 = await page(client, f"/events/{rid}?lang=en")
    rec = await service.get(rid)
    assert await service.store.mark([rec.hash], "key-revoked-after-the-fact") == 1
    _, r2 = await page(client, f"/events/{rid}?lang=en")
    assert r1.headers["ETag"] != r2.headers["ETag"]


async def test_the_day_moves_the_home_page(client: TestClient) -> None:
    service: NodeService = client.app[SERVICE]
    await publish(service)
    service.clock = lambda: BEFORE
    _, r1 = await page(client, "/?lang=en")
    service.clock = lambda: datetime(2030, 1, 1, tzinfo=UTC)  # every example is past: nothing coming up
    html, r2 = await page(client, "/?lang=en")
    assert r1.headers["ETag"] != r2.headers["ETag"] and not re.search(r'href="/events/QA:', html)


async def test_answers_live_a_few_seconds_at_most(client: TestClient, renders: list[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process writing the same database wakes nobody here: an answer is made again after a while."""
    now = [1000.0]
    monkeypatch.setattr(answers, "monotonic", lambda: now[0])
    await page(client, "/members?lang=en")
    renders.clear()
    await page(client, "/members?lang=en")
    assert renders == []
    now[0] += answers.ANSWER_SECONDS
    await page(client, "/members?lang=en")
    assert renders[0] == "members.html"
