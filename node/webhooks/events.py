"""Webhooks, the node's pure part: its webhook key file, events, filters, URL rules, the retry schedule.

A delivery is an HTTP POST of one event (docs/PROTOCOL.md §13), signed as Standard Webhooks by
federation/protocol/webhooks.py (ids, secrets, the ``whpk_`` key text, headers): that part is protocol,
which partners verify. The webhook key lives in the node directory (``webhook.key.pem``, mode 0600),
made at ``ipdn node init`` or first use.

The delivery worker is node/webhooks/delivery.py, the queue node/webhooks/store.py, the partner API
node/webhooks/api.py.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from federation.protocol.envelope import format_time
from federation.protocol.errors import InputError
from federation.protocol.keys import SigningKey
from node.errors import BadQueryError
from node.records.filters import RecordFilter

SUBSCRIPTION_PREFIX = "sub_"  # a subscription's id: this prefix and a ULID (federation.protocol.webhooks.new_id)

PUBLISHED, UPDATED, CANCELLED, DELETED = "record.published", "record.updated", "record.cancelled", "record.deleted"
EVENT_TYPES = (PUBLISHED, UPDATED, CANCELLED, DELETED)

MAX_URL = 2000

# -- the webhook key ------------------------------------------------------------------------------------------


def load_or_create_key(path: Path) -> SigningKey:
    """The node's webhook signing key at ``path``, made (mode 0600) if there is none yet."""
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            SigningKey.generate().save(path)
    return SigningKey.load(path)


# -- events ---------------------------------------------------------------------------------------------


def event_type(op: str, status: str, previous: Mapping[str, Any] | None) -> str:
    """The event a newly current record version makes, given the version it replaces (None: none held).

    A deletion is ``record.deleted``; a record new to this node, or restored from a tombstone, is
    ``record.published``; a version that turns the status to ``cancelled`` is ``record.cancelled``;
    anything else (a cancelled record edited again, or no longer cancelled) is ``record.updated``.
    """
    if op == "delete":
        return DELETED
    if previous is None or previous.get("op") == "delete":
        return PUBLISHED
    if status == "cancelled" and previous.get("status") != "cancelled":
        return CANCELLED
    return UPDATED


def event_body(type_: str, at: datetime, item: dict[str, Any]) -> bytes:
    """The body sent: ``{"type", "timestamp", "data"}``, minified UTF-8 JSON; ``data`` is the record API's
    item (with its signed ``envelope``), ``timestamp`` when this node applied the change."""
    doc = {"type": type_, "timestamp": format_time(at), "data": item}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What a subscription wants: records passing ``records`` (the record API's filters) and, if
    ``types`` is not empty, only those event types."""

    records: RecordFilter = field(default_factory=RecordFilter)
    types: tuple[str, ...] = ()

    @classmethod
    def parse(cls, doc: Any, kinds: Sequence[str]) -> EventFilter:
        """From a subscription's ``filters`` object (``kind``, ``origin``, ``country``, ``lang``, ``status``,
        ``tag``, ``types``). Raises BadQueryError."""
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise BadQueryError("filters is a JSON object")
        unknown = set(doc) - {"kind", "origin", "country", "lang", "status", "tag", "types"}
        if unknown:
            raise BadQueryError(f"unknown filters {sorted(unknown)} (kind, origin, country, lang, status, tag, types)")
        types = doc.get("types") or []
        if not isinstance(types, list) or any(t not in EVENT_TYPES for t in types):
            raise BadQueryError(f"types is a list of {', '.join(EVENT_TYPES)}")
        return cls(RecordFilter.parse(doc, kinds=kinds), tuple(sorted(set(types))))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = self.records.to_dict()
        if self.types:
            out["types"] = list(self.types)
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> EventFilter:
        """As stored (trusted: parsed when the subscription was made)."""
        return cls(RecordFilter(**{k: v for k, v in doc.items() if k != "types"}), tuple(doc.get("types", ())))

    def wants(self, type_: str, new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
        """Whether an event goes to this subscription: its type is wanted, and the new version *or the one
        it replaces* passes the record filters, so a record that stops matching (cancelled, deleted,
        moved to another country) is announced to those who had it."""
        if self.types and type_ not in self.types:
            return False
        return self.records.matches(new) or (old is not None and self.records.matches(old))


# -- where deliveries may go (SSRF) ----------------------------------------------------------------------


class WebhookUrlError(InputError):
    """A subscription URL the node will not call."""

    reason = "webhook-url-refused"


def address_allowed(address: str, *, allow_loopback: bool) -> bool:
    """A resolved or literal IP address a delivery may connect to: a global unicast one, or loopback when
    the node allows it (tests, a receiver on the same machine). Private, link-local (cloud metadata),
    multicast, reserved and unspecified addresses never."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return allow_loopback
    return ip.is_global and not ip.is_multicast


def _loopback_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def check_url(url: Any, *, allow_loopback: bool) -> str:
    """A subscription URL the node may POST to, as given.

    The rule: ``https://`` with a host name or a public IP address; no user name or password in it, no
    fragment. ``http://`` only to a loopback host (127.0.0.0/8, ::1, localhost), and loopback hosts at all
    only when the node's ``webhook_allow_loopback`` is on. Host names are checked again when each
    delivery connects: an address that is not public (private ranges, link-local, loopback unless
    allowed) is refused then, whatever the name resolved to (node/webhooks/delivery.py).

    Raises:
        WebhookUrlError.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise WebhookUrlError(f"url is an https URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise WebhookUrlError(f"url cannot be read: {e}") from e
    host = (parts.hostname or "").rstrip(".")
    if parts.scheme not in ("https", "http") or not host:
        raise WebhookUrlError("url is an https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlError("url must not carry a user name or password")
    if parts.fragment:
        raise WebhookUrlError("url must not have a fragment")
    if port == 0:
        raise WebhookUrlError("url has port 0")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise WebhookUrlError("url holds whitespace or control characters")
    try:
        ip: Any = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    loopback = _loopback_name(host.lower()) or (ip is not None and ip.is_loopback)
    if loopback and not allow_loopback:
        raise WebhookUrlError("url is a loopback address, which this node does not call")
    if ip is not None and not loopback and not address_allowed(host, allow_loopback=False):
        raise WebhookUrlError(f"url names {host}, which is not a public address")
    if parts.scheme == "http" and not loopback:
        raise WebhookUrlError("url must be https:// (plain http only to a loopback receiver)")
    return url


# -- the retry schedule -------------------------------------------------------------------------------------


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"0,5,300,..."``: seconds before each attempt (the first counted from the event). Raises ValueError."""
    values = tuple(float(v) for v in text.split(",") if v.strip())
    if not values or any(v < 0 for v in values):
        raise ValueError("webhook_schedule is a comma-separated list of seconds, at least one, none negative")
    return values


def retry_delay(schedule: Sequence[float], attempts: int, rng: float, jitter: float) -> float | None:
    """Seconds to wait after the ``attempts``-th failed attempt, or None when the schedule is exhausted.

    The wait is the schedule's step scaled by a random factor in ``[1 - jitter, 1]`` (``rng`` in [0, 1)):
    ``jitter`` 1 is full jitter; the default 0.5 keeps a 10-hour step between 5 and 10 hours.
    """
    if attempts >= len(schedule):
        return None
    return schedule[attempts] * (1.0 - jitter * rng)
