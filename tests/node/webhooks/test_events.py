"""Webhooks, the pure part (node/webhooks/events.py): Standard Webhooks signatures checked by a real consumer
library (v1) and by the spec's own recipe (v1a), the attacks a receiver must refuse, ids, event types,
filters, the URL rule and the retry schedule."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from standardwebhooks import Webhook, WebhookVerificationError

from federation.protocol.keys import SigningKey
from node.config import NodeConfig
from node.errors import BadQueryError, ConfigError
from node.records.filters import RecordFilter
from node.store.records import search_values
from node.webhooks import events as webhooks
from node.webhooks.events import EventFilter, WebhookUrlError, check_url
from tests.support.webhook_receiver import SignatureError, verify_v1a

BODY = b'{"type":"record.published","timestamp":"2026-12-01T10:00:00.000Z","data":{"record_id":"QA:1"}}'
KINDS = ("capacity-programme", "cultural-event")


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


def signed(key: SigningKey, secret: str | None, *, body: bytes = BODY, msg_id: str = "msg_01JDTEST",
           timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return webhooks.headers(msg_id, ts, body, key=key, secret=secret)


class TestSigning:
    def test_v1a_is_ed25519_over_id_timestamp_body(self, key: SigningKey) -> None:
        """The spec's recipe, step by step with cryptography: base64 Ed25519 over ``{id}.{timestamp}.{body}``,
        checked against the published ``whpk_`` key."""
        h = signed(key, None, timestamp=1674087231)
        [sig] = h["webhook-signature"].split(" ")
        version, _, value = sig.partition(",")
        assert version == "v1a"
        public = webhooks.parse_public_key(webhooks.public_key_text(key))
        public.verify(base64.b64decode(value), b"msg_01JDTEST.1674087231." + BODY)  # raises if wrong
        assert webhooks.public_key_text(key).startswith("whpk_")
        assert len(base64.b64decode(webhooks.public_key_text(key)[5:])) == 32

    def test_v1_verifies_with_the_standardwebhooks_library(self, key: SigningKey) -> None:
        """A consumer using the reference library accepts the delivery and gets the parsed body."""
        secret = webhooks.new_secret()
        h = signed(key, secret)
        assert Webhook(secret).verify(BODY, h) == json.loads(BODY)
        versions = [s.split(",")[0] for s in h["webhook-signature"].split(" ")]
        assert versions == ["v1", "v1a"]  # both, space-separated
        verify_v1a(webhooks.public_key_text(key), h, BODY)

    def test_v1_is_hmac_sha256_of_the_decoded_secret(self, key: SigningKey) -> None:
        """v1 is HMAC-SHA256 keyed with the base64-decoded secret (32 bytes), over id.timestamp.body."""
        secret = webhooks.new_secret()
        h = signed(key, secret, timestamp=1700000000)
        raw = base64.b64decode(secret.removeprefix("whsec_"))
        assert len(raw) == 32  # the spec asks for 24 to 64 bytes
        mac = hmac.new(raw, b"msg_01JDTEST.1700000000." + BODY, hashlib.sha256).digest()
        assert h["webhook-signature"].split(" ")[0] == "v1," + base64.b64encode(mac).decode()

    def test_headers_follow_the_spec(self, key: SigningKey) -> None:
        """webhook-id, webhook-timestamp (integer seconds) and a JSON content type."""
        h = signed(key, None, timestamp=1700000000)
        assert h["webhook-id"] == "msg_01JDTEST" and h["webhook-timestamp"] == "1700000000"
        assert h["content-type"] == "application/json"

    def test_tampered_body_fails_signature_check(self, key: SigningKey) -> None:
        """One byte of the body changed in transit: neither signature verifies."""
        secret = webhooks.new_secret()
        h = signed(key, secret)
        tampered = BODY.replace(b"QA:1", b"QA:2")
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(tampered, h)
        with pytest.raises(SignatureError):
            verify_v1a(webhooks.public_key_text(key), h, tampered)

    def test_wrong_timestamp_fails_signature_check(self, key: SigningKey) -> None:
        """The timestamp is signed: changing it (to dodge the replay window) breaks both signatures."""
        secret = webhooks.new_secret()
        h = signed(key, secret, timestamp=int(time.time()) - 10)
        forged = {**h, "webhook-timestamp": str(int(time.time()))}
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(BODY, forged)
        with pytest.raises(SignatureError):
            verify_v1a(webhooks.public_key_text(key), forged, BODY)

    def test_replayed_old_timestamp_is_refused(self, key: SigningKey) -> None:
        """A genuine delivery captured and replayed an hour later: the signature is valid, the time is not."""
        secret = webhooks.new_secret()
        h = signed(key, secret, timestamp=int(time.time()) - 3600)
        with pytest.raises(WebhookVerificationError, match="too old"):
            Webhook(secret).verify(BODY, h)
        with pytest.raises(SignatureError, match="tolerance"):
            verify_v1a(webhooks.public_key_text(key), h, BODY)

    def test_swapped_webhook_id_fails_signature_check(self, key: SigningKey) -> None:
        """The id is signed: a replay under a fresh id (to get past deduplication) is refused."""
        secret = webhooks.new_secret()
        h = {**signed(key, secret), "webhook-id": "msg_01JDOTHER"}
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(BODY, h)
        with pytest.raises(SignatureError):
            verify_v1a(webhooks.public_key_text(key), h, BODY)

    def test_forged_signature_by_another_key_refused(self, key: SigningKey) -> None:
        """Someone else's Ed25519 key (or another subscription's secret) proves nothing."""
        h = signed(SigningKey.generate(), webhooks.new_secret())
        with pytest.raises(SignatureError):
            verify_v1a(webhooks.public_key_text(key), h, BODY)
        with pytest.raises(WebhookVerificationError):
            Webhook(webhooks.new_secret()).verify(BODY, h)

    def test_ed25519_rejects_a_flipped_bit(self, key: SigningKey) -> None:
        """A signature with one bit flipped does not verify against the whpk_ key."""
        content = webhooks.signed_content("msg_x", 1, BODY)
        sig = bytearray(key.sign(content))
        sig[0] ^= 1
        with pytest.raises(InvalidSignature):
            webhooks.parse_public_key(webhooks.public_key_text(key)).verify(bytes(sig), content)

    def test_key_file_made_once_with_mode_0600(self, tmp_path: Path) -> None:
        """The webhook key is made once, private (0600), and the same key is loaded after."""
        path = tmp_path / "webhook.key.pem"
        first = webhooks.load_or_create_key(path)
        assert path.stat().st_mode & 0o777 == 0o600
        assert webhooks.load_or_create_key(path).kid == first.kid


class TestIds:
    def test_message_ids_are_ulids_without_dots_and_sort_by_time(self) -> None:
        """msg_ + 26-character ULID: unique, time-ordered, no '.' (the signed string's delimiter)."""
        t = datetime(2026, 12, 1, tzinfo=UTC)
        a, b = webhooks.new_id("msg_", t), webhooks.new_id("msg_", t + timedelta(milliseconds=1))
        assert a.startswith("msg_") and len(a) == 30 and "." not in a
        assert a < b and a != webhooks.new_id("msg_", t)

    def test_secrets_are_fresh_and_prefixed(self) -> None:
        """Every subscription gets its own whsec_ secret."""
        a, b = webhooks.new_secret(), webhooks.new_secret()
        assert a.startswith("whsec_") and a != b


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
        import dataclasses

        for bad in ({"webhook_schedule": ""}, {"webhook_schedule": "0,-5"}, {"webhook_schedule": "0,x"},
                    {"webhook_jitter": 1.5}, {"webhook_concurrency": 0}):
            with pytest.raises(ConfigError):
                dataclasses.replace(config, **bad)
