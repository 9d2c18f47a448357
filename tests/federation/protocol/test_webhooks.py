"""Webhook signing, the protocol part (federation/protocol/webhooks.py, docs/PROTOCOL.md §13.2-13.3): Standard
Webhooks signatures checked by a real consumer library (v1) and by the spec's own recipe (v1a), the attacks a
receiver must refuse, message ids and secrets."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.exceptions import InvalidSignature
from standardwebhooks import Webhook, WebhookVerificationError

from federation.protocol import webhooks
from federation.protocol.keys import SigningKey
from tests.support.webhook_receiver import SignatureError, verify_v1a

BODY = b'{"type":"record.published","timestamp":"2026-12-01T10:00:00.000Z","data":{"record_id":"QA:1"}}'


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


def signed(key: SigningKey, secret: str | None, *, body: bytes = BODY, msg_id: str = "msg_01JDTEST",
           timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return webhooks.headers(msg_id, ts, body, key=key, secret=secret)


def assert_refused(key: SigningKey, secret: str, headers: dict[str, str], body: bytes = BODY, *,
                   v1: str | None = None, v1a: str | None = None) -> None:
    """Neither the standardwebhooks library (v1, by ``secret``) nor the spec's recipe (v1a, by ``key``'s whpk_ key)
    accepts the delivery; ``v1``/``v1a``: what their errors must say."""
    with pytest.raises(WebhookVerificationError, match=v1):
        Webhook(secret).verify(body, headers)
    with pytest.raises(SignatureError, match=v1a):
        verify_v1a(webhooks.public_key_text(key), headers, body)


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
        assert_refused(key, secret, h, BODY.replace(b"QA:1", b"QA:2"))

    def test_wrong_timestamp_fails_signature_check(self, key: SigningKey) -> None:
        """The timestamp is signed: changing it (to dodge the replay window) breaks both signatures."""
        secret = webhooks.new_secret()
        h = signed(key, secret, timestamp=int(time.time()) - 10)
        assert_refused(key, secret, {**h, "webhook-timestamp": str(int(time.time()))})

    def test_replayed_old_timestamp_is_refused(self, key: SigningKey) -> None:
        """A genuine delivery captured and replayed an hour later: the signature is valid, the time is not."""
        secret = webhooks.new_secret()
        h = signed(key, secret, timestamp=int(time.time()) - 3600)
        assert_refused(key, secret, h, v1="too old", v1a="tolerance")

    def test_swapped_webhook_id_fails_signature_check(self, key: SigningKey) -> None:
        """The id is signed: a replay under a fresh id (to get past deduplication) is refused."""
        secret = webhooks.new_secret()
        assert_refused(key, secret, {**signed(key, secret), "webhook-id": "msg_01JDOTHER"})

    def test_forged_signature_by_another_key_refused(self, key: SigningKey) -> None:
        """Someone else's Ed25519 key (or another subscription's secret) proves nothing."""
        assert_refused(key, webhooks.new_secret(), signed(SigningKey.generate(), webhooks.new_secret()))

    def test_ed25519_rejects_a_flipped_bit(self, key: SigningKey) -> None:
        """A signature with one bit flipped does not verify against the whpk_ key."""
        content = webhooks.signed_content("msg_x", 1, BODY)
        sig = bytearray(key.sign(content))
        sig[0] ^= 1
        with pytest.raises(InvalidSignature):
            webhooks.parse_public_key(webhooks.public_key_text(key)).verify(bytes(sig), content)


class TestIds:
    def test_message_ids_are_ulids_without_dots_and_sort_by_time(self) -> None:
        """msg_ + 26-character ULID: unique, time-ordered, no '.' (the signed string's delimiter)."""
        t = datetime(2026, 12, 1, tzinfo=UTC)
        a, b = webhooks.new_id("msg_", t), webhooks.new_id("msg_", t + timedelta(milliseconds=1))
        assert a.startswith("msg_") and len(a) == 30 and "." not in a
        assert a < b and a != webhooks.new_id("msg_", t)

    def test_secrets_are_fresh_and_prefixed(self) -> None:
        """Every subscription gets its own whsec_ secret, 32 random bytes (the HMAC key) in base64."""
        a, b = webhooks.new_secret(), webhooks.new_secret()
        assert a.startswith("whsec_") and a != b
        assert len(webhooks.secret_bytes(a)) == webhooks.SECRET_BYTES == 32

    def test_malformed_public_key_refused(self) -> None:
        """Only a ``whpk_`` key of base64 is read."""
        with pytest.raises(ValueError, match="not a whpk_ key"):
            webhooks.parse_public_key("whsec_" + "A" * 44)
        with pytest.raises(binascii.Error):  # a ValueError
            webhooks.parse_public_key("whpk_not base64!")
