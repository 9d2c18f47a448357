"""Why plans changed (cultural-event/v2 ``status_reason``, docs/adr/0031) on the public side: the record page beside
the status in the reader's language, with its lang and dir; the first line of the iCalendar DESCRIPTION; the news
feeds' footer; a ``dc:description`` per language in oai_dc. The record comes from another member's log, as most do
(a node shows reasons whether or not it writes them itself)."""

from __future__ import annotations

import json
from typing import Any

import icalendar
import pytest
from aiohttp.test_utils import TestClient
from lxml import etree, html

from node.app import create_app
from node.appkeys import SERVICE
from node.config import NodeConfig
from node.partners import oaipmh
from node.partners.feeds import ICS_PATH, JSON_FEED_PATH
from node.records.service import NodeService
from tests.support.factories import EXAMPLES, Member

EVENT_V2 = "https://schemas.ipdn.network/cultural-event/v2"
REASON = json.loads((EXAMPLES / "cultural-event" / "v2" / "valid" / "01-concert-cancelled-with-reason.json")
                    .read_text(encoding="utf-8"))


@pytest.fixture
async def client(aiohttp_client: Any, config: NodeConfig) -> TestClient:
    """QA's node with the default settings (it writes v1 only, and shows v2 records of others)."""
    return await aiohttp_client(create_app(config, sync=False))


@pytest.fixture
async def record_id(client: TestClient, kr: Member) -> str:
    """A cancelled concert of KR's with its reason in Korean, Arabic and English, applied from the log."""
    service: NodeService = client.app[SERVICE]
    report = await service.applier.apply_log(0, [(1, kr.publish(REASON, record_id="KR:gugak", schema=EVENT_V2)
                                                   .to_dict())])
    assert (report.applied, report.quarantined) == (1, [])
    return "KR:gugak"


async def page(client: TestClient, record_id: str, **params: str) -> Any:
    resp = await client.get(f"/events/{record_id}", params=params)
    assert resp.status == 200, await resp.text()
    return html.fromstring(await resp.text())


class TestRecordPage:
    @pytest.mark.parametrize(("lang", "dir_", "label"), [("en", "ltr", "Reason"), ("ar", "rtl", "السبب")])
    async def test_reason_beside_the_status_in_the_readers_language(self, client: TestClient, record_id: str,
                                                                    lang: str, dir_: str, label: str) -> None:
        """The banner and the details show the reason in the reader's language, in an element with its lang and
        dir, after the page's own word for it."""
        tree = await page(client, record_id, lang=lang)
        assert (tree.get("lang"), tree.get("dir")) == (lang, dir_)
        (notice,) = tree.xpath("//p[@role='status']")
        (bdi,) = notice.xpath(".//bdi[@class='reason']")
        assert (bdi.get("lang"), bdi.get("dir"), bdi.text_content()) == (lang, dir_, REASON["status_reason"][lang])
        assert label in notice.text_content()
        (dd,) = tree.xpath("//dd[@class='reason']")
        assert (dd.get("lang"), dd.get("dir"), dd.text_content()) == (lang, dir_, REASON["status_reason"][lang])
        assert dd.getprevious().tag == "dt" and dd.getprevious().text_content() == label

    async def test_reader_of_another_language_gets_english(self, client: TestClient, record_id: str) -> None:
        """A language the reason is not given in falls back to English, marked as English."""
        tree = await page(client, record_id, lang="tr")
        (dd,) = tree.xpath("//dd[@class='reason']")
        assert (dd.get("lang"), dd.get("dir")) == ("en", "ltr")

    async def test_no_reason_no_row(self, client: TestClient, kr: Member) -> None:
        """A cancellation without a reason (v1) shows the status only."""
        service: NodeService = client.app[SERVICE]
        body = {k: v for k, v in REASON.items() if k != "status_reason"}
        await service.applier.apply_log(0, [(1, kr.publish(body, record_id="KR:plain").to_dict())])
        tree = await page(client, "KR:plain")
        assert tree.xpath("//p[@role='status']") and not tree.xpath("//*[contains(@class, 'reason')]")


class TestFeeds:
    async def test_ics_description_begins_with_the_reason(self, client: TestClient, record_id: str) -> None:
        """iCalendar: DESCRIPTION's first line is for people, the status and the reason in the feed's language."""
        for lang in ("en", "ar"):
            resp = await client.get(ICS_PATH, params={"lang": lang})
            (ev,) = icalendar.Calendar.from_ical(await resp.text()).walk("VEVENT")
            first = str(ev["DESCRIPTION"]).split("\n")[0]
            assert first == f"Cancelled: {REASON['status_reason'][lang]}"
            assert str(ev["STATUS"]) == "CANCELLED"

    async def test_json_feed_footer_names_the_reason(self, client: TestClient, record_id: str) -> None:
        """JSON Feed: a Reason line after the status in the item's text."""
        resp = await client.get(JSON_FEED_PATH, params={"lang": "en"})
        (item,) = (await resp.json())["items"]
        assert f"Reason: {REASON['status_reason']['en']}" in item["content_text"]

    async def test_oai_dc_has_a_description_per_language(self, client: TestClient, record_id: str) -> None:
        """oai_dc: after the status statement, one dc:description per language of the reason, with xml:lang."""
        rec = await client.app[SERVICE].get(record_id)
        dc = oaipmh.dublin_core(rec, page_url="https://node.example/events/KR:gugak",
                                record_url="https://node.example/api/v1/records/KR%3Agugak")
        descriptions = [(d.get("{http://www.w3.org/XML/1998/namespace}lang"), d.text)
                        for d in dc.iter(f"{{{oaipmh.DC_NS}}}description")]
        assert descriptions[0] == ("en", "Status: cancelled.")
        assert sorted(descriptions[1:4]) == sorted(REASON["status_reason"].items())
        etree.tostring(dc)  # serialisable as it stands
