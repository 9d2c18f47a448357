"""Webhooks, the node's pure part (node/webhooks/events.py): the webhook key file, event types, filters, the URL
rule and the retry schedule. The signing itself is protocol: tests/federation/protocol/test_webhooks.py."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from node.config import NodeConfig
from node.errors import BadQueryError, ConfigError
from node.records.filters import RecordFilter
from node.store.records import search_values
from node.webhooks import events as webhooks
from node.webhooks.events import EventFilter, WebhookUrlError, check_url, load_or_create_key

KINDS = ("capacity-programme", "cultural-event")


class TestKeyFile:
    def test_key_file_made_once_with_mode_0600(self, tmp_path: Path) -> None:
        """The webhook key is made once, private (0600), and the same key is loaded after."""
        path = tmp_path / "webhook.key.pem"
        first = load_or_create_key(path)
        assert path.stat().st_mode & 0o777 == 0o600
        assert load_or_create_key(path).kid == first.kid


class TestEvents:
    @pytest.mark.parametrize(("op", "status", "previous", "expected"), [
        ("put", "scheduled", None, "record.published"),
        ("put", "scheduled", {"op": "put", "status": "scheduled"}, "record.updated"),
        ("put", "cancelled", {"op": "put", "status": "scheduled"}, "record.cancelled"),
        ("put", "cancelled", {"op": "put", "status": "cancelled"}, "record.updated"),
        ("put", "scheduled", {"op": "put", "status": "cancelled"}, "record.updated"),
        ("delete", "deleted", {"op": "put", "status": "scheduled"}, "record.deleted"),
        ("put", "scheduled", {"op": "delete", "status": "deleted"}, "record.published"),
    ])
    def test_event_type(self, op: str, status: str, previous: dict[str, str] | None, expected: str) -> None:
        """The event type follows from the new version and the one it replaces."""
        assert webhooks.event_type(op, status, previous) == expected

    def test_body_is_minified_json_with_type_timestamp_data(self) -> None:
        """The body is minified UTF-8 JSON {type, timestamp, data}, sent byte for byte as signed."""
        body = webhooks.event_body("record.updated", datetime(2026, 12, 1, 10, tzinfo=UTC), {"record_id": "QA:ü"})
        assert body == '{"type":"record.updated","timestamp":"2026-12-01T10:00:00.000Z","data":{"record_id":"QA:ü"}}'\
            .encode()


def values(body: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
    return {"kind": "cultural-event", "origin": "QA", "status": (body or {}).get("status", "deleted"),
            **search_values(body), **kw}


class TestFilters:
    def test_record_filters_match_like_the_record_api(self, event: dict[str, Any]) -> None:
        """Kind, origin, country, language, status and tag match as the record API's SQL does (case rules included)."""
        v = values(event)
        country = event["participating_countries"][0]
        lang = next(iter(event["title"]))
        assert RecordFilter().matches(v)
        assert RecordFilter(kind="cultural-event", origin="QA", country=country.lower(), lang=lang.upper(),
                            status=event["status"]).matches(v)
        assert not RecordFilter(kind="capacity-programme").matches(v)
        assert not RecordFilter(country="ZZ").matches(v)
        assert not RecordFilter(tag="no-such-tag").matches(v)

    def test_a_record_leaving_the_filter_is_still_announced(self, event: dict[str, Any]) -> None:
        """status=scheduled wants the cancellation of a scheduled event; country=X wants its deletion."""
        old = values({**event, "status": "scheduled"}, op="put")
        new = values({**event, "status": "cancelled"}, op="put")
        f = EventFilter(RecordFilter(status="scheduled"))
        assert f.wants("record.cancelled", new, old)
        assert not f.wants("record.published", new, None)
        tombstone = values(None, op="delete")
        g = EventFilter(RecordFilter(country=event["participating_countries"][0]))
        assert g.wants("record.deleted", tombstone, old) and not g.wants("record.deleted", tombstone, None)

    def test_types_filter(self, event: dict[str, Any]) -> None:
        """types limits a subscription to some event types."""
        f = EventFilter(types=("record.cancelled",))
        assert f.wants("record.cancelled", values(event), None) and not f.wants("record.updated", values(event), None)

    def test_parse_is_strict(self) -> None:
        """Unknown kinds, malformed codes or tags, unknown event types or filter names are refused."""
        f = EventFilter.parse({"kind": "cultural-event", "origin": "qa", "types": ["record.deleted"]}, KINDS)
        assert f.to_dict() == {"kind": "cultural-event", "origin": "QA", "types": ["record.deleted"]}
        assert EventFilter.from_dict(f.to_dict()) == f
        for bad in ({"kind": "recipe"}, {"origin": "Qatar"}, {"country": "QAT"}, {"lang": "not a tag"},
                    {"types": ["record.created"]}, {"colour": "red"}, {"tag": 5}, {"status": "x" * 201}, []):
            with pytest.raises(BadQueryError):
                EventFilter.parse(bad, KINDS)


class TestUrlRule:
    @pytest.mark.parametrize("url", ["https://hooks.example.org/ipdn", "https://hooks.example.org:8443/a?b=c",
                                     "https://93.184.216.34/hook", "https://[2606:4700::1]/hook"])
    def test_https_to_public_hosts_is_accepted(self, url: str) -> None:
        """https to a host name or a public address is a valid subscription URL."""
        assert check_url(url, allow_loopback=False) == url

    @pytest.mark.parametrize(("url", "why"), [
        ("http://hooks.example.org/ipdn", "https"),
        ("https://user:pw@hooks.example.org/", "user name or password"),
        ("https://token@hooks.example.org/", "user name or password"),
        ("ftp://hooks.example.org/", "https"),
        ("https://10.0.0.5/hook", "not a public address"),
        ("https://192.168.1.1/hook", "not a public address"),
        ("https://169.254.169.254/latest/meta-data", "not a public address"),
        ("https://[fd00::1]/hook", "not a public address"),
        ("https://[::ffff:10.0.0.1]/hook", "not a public address"),
        ("https://127.0.0.1/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback"),
        ("https://hooks.example.org/#frag", "fragment"),
        ("https:///nohost", "host"),
        ("https://hooks.example.org/a b", "whitespace"),
        ("https://hooks.example.org:99999/", "cannot be read"),
    ])
    def test_ssrf_and_credential_urls_refused(self, url: str, why: str) -> None:
        """Plain http, credentials, private/link-local/metadata addresses, loopback, fragments are refused."""
        with pytest.raises(WebhookUrlError, match=why) as e:
            check_url(url, allow_loopback=False)
        assert e.value.reason == "webhook-url-refused"

    def test_loopback_only_when_allowed_and_then_http_too(self) -> None:
        """webhook_allow_loopback admits loopback receivers (http too) and nothing else."""
        for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]:9/h", "https://127.0.0.2/"):
            assert check_url(url, allow_loopback=True) == url
        with pytest.raises(WebhookUrlError, match="https"):
            check_url("http://hooks.example.org/", allow_loopback=True)
        with pytest.raises(WebhookUrlError):
            check_url("https://10.1.2.3/", allow_loopback=True)

    def test_addresses_allowed_at_connect_time(self) -> None:
        """At connect time only global unicast addresses pass (loopback when allowed)."""
        assert webhooks.address_allowed("93.184.216.34", allow_loopback=False)
        assert not webhooks.address_allowed("127.0.0.1", allow_loopback=False)
        assert webhooks.address_allowed("127.0.0.1", allow_loopback=True)
        for private in ("10.0.0.1", "172.16.0.1", "192.168.0.1", "169.254.169.254", "0.0.0.0", "::",  # noqa: S104 "fe80::1",
                        "224.0.0.1", "::ffff:192.168.0.1", "100.64.0.1"):
            assert not webhooks.address_allowed(private, allow_loopback=True), private


class TestSchedule:
    def test_default_schedule_spans_more_than_a_day(self, config: NodeConfig) -> None:
        """The default schedule: at once, then backing off over a day (Standard Webhooks advice)."""
        s = config.webhook_retry_schedule
        assert s[0] == 0 and len(s) == 8
        assert timedelta(hours=24) < timedelta(seconds=sum(s)) < timedelta(hours=30)

    def test_jitter_scales_each_wait_and_the_schedule_ends(self) -> None:
        """Each wait is the step scaled into [1 - jitter, 1]; past the last step there is none."""
        s = (0.0, 5.0, 300.0)
        assert webhooks.retry_delay(s, 1, 0.0, 0.5) == 5.0
        assert webhooks.retry_delay(s, 2, 0.999, 0.5) == pytest.approx(150.15)
        assert webhooks.retry_delay(s, 2, 0.999, 1.0) == pytest.approx(0.3)  # full jitter
        assert webhooks.retry_delay(s, 3, 0.5, 0.5) is None

    def test_bad_schedule_is_a_config_error(self, config: NodeConfig) -> None:
        """A malformed schedule or out-of-range setting fails at configuration time."""
        for bad in ({"webhook_schedule": ""}, {"webhook_schedule": "0,-5"}, {"webhook_schedule": "0,x"},
                    {"webhook_jitter": 1.5}, {"webhook_concurrency": 0}):
            with pytest.raises(ConfigError):
                dataclasses.replace(config, **bad)
