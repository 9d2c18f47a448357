"""Webhook signing (docs/PROTOCOL.md §13.2, §13.3): Standard Webhooks 1.0.0 (https://www.standardwebhooks.com).

A delivery is an HTTP POST of one event with the Standard Webhooks headers:

- ``webhook-id``: ``msg_`` and a ULID (time-ordered, 26 Crockford base32 characters), the same on every
  attempt of one delivery: the receiver's deduplication key;
- ``webhook-timestamp``: the attempt's time, integer Unix seconds (a retry gets a new one);
- ``webhook-signature``: space-separated signatures over ``{webhook-id}.{webhook-timestamp}.{body}``:
  always ``v1a,<base64 Ed25519 signature>`` by the node's webhook key (public as ``whpk_<base64>``), and
  ``v1,<base64 HMAC-SHA256>`` with the subscription's secret (``whsec_<base64>``) when it has one.

The webhook key is not the member's record-signing key: it signs transport (this node sent this body
now), the envelope inside the body signs the record (the origin published it), and a partner checks both.
Partners verify from §13.3 alone, so this is protocol: pure functions of their arguments (the time and
the key given, randomness only for new ids and secrets). The node keeps its key file, queue and delivery
worker in node/webhooks/.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from federation.protocol.keys import SigningKey, raw_public

SECRET_PREFIX = "whsec_"  # noqa: S105  (a prefix, not a secret)
PUBLIC_PREFIX = "whpk_"
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes
MESSAGE_PREFIX = "msg_"

# -- identifiers and secrets ------------------------------------------------------------------------------

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str, now: datetime) -> str:
    """``prefix`` and a ULID: 48 bits of milliseconds, 80 random bits, 26 Crockford base32 characters
    (sortable by creation time, no ``.``, which the signed string uses as its delimiter)."""
    n = (int(now.timestamp() * 1000) << 80) | secrets.randbits(80)
    return prefix + "".join(_CROCKFORD[(n >> (5 * i)) & 31] for i in reversed(range(26)))


def new_secret() -> str:
    """A subscription's symmetric secret, ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for: its base64 part, decoded. Raises ValueError."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def public_key_text(key: SigningKey) -> str:
    """The webhook key's public half as the spec serializes it: ``whpk_`` and the 32 raw bytes in base64."""
    return PUBLIC_PREFIX + base64.b64encode(raw_public(key.key.public_key())).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A ``whpk_...`` key (for tests and tools). Raises ValueError."""
    if not text.startswith(PUBLIC_PREFIX):
        raise ValueError(f"not a {PUBLIC_PREFIX} key")
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.removeprefix(PUBLIC_PREFIX), validate=True))


# -- signing ----------------------------------------------------------------------------------------------


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    """What both signatures cover: ``{id}.{timestamp}.{body}``, the body byte for byte as sent."""
    return f"{msg_id}.{timestamp}.".encode() + body


def signature_header(msg_id: str, timestamp: int, body: bytes, *, key: SigningKey, secret: str | None) -> str:
    """The ``webhook-signature`` value: ``v1,<HMAC>`` (with a secret) and ``v1a,<Ed25519>``, space-separated."""
    content = signed_content(msg_id, timestamp, body)
    out = []
    if secret:
        mac = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
        out.append("v1," + base64.b64encode(mac).decode("ascii"))
    out.append("v1a," + base64.b64encode(key.sign(content)).decode("ascii"))
    return " ".join(out)


def headers(msg_id: str, timestamp: int, body: bytes, *, key: SigningKey, secret: str | None) -> dict[str, str]:
    """Every header of one attempt."""
    return {"content-type": "application/json", "user-agent": "ipdn-node-webhooks/1",
            "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(msg_id, timestamp, body, key=key, secret=secret)}
