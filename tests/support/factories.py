"""Builders shared by tests and benchmarks: example records and envelopes in a chain."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from federation.protocol.envelope import Envelope, Payload, format_time, sign_envelope
from federation.protocol.keys import PublicKey, SigningKey
from federation.protocol.schemas import SCHEMA_ROOT, default_schemas

EXAMPLES = SCHEMA_ROOT / "examples"


def example_paths(kind: str, valid: bool = True) -> list[Path]:
    return sorted((EXAMPLES / kind / ("valid" if valid else "invalid")).glob("*.json"))


def example_bodies(kind: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in example_paths(kind)]


@dataclass
class Member:
    """A member with a key and its own chain; ``publish`` makes the next envelope."""

    code: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    seq: int = 0
    prev: str | None = None

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public.key, self.key.kid, member=self.code)

    def publish(self, body: dict[str, Any] | None, *, kind: str = "cultural-event", record_id: str | None = None,
                version: int = 1, issued: datetime | None = None, schema: str | None = None,
                key: SigningKey | None = None) -> Envelope:
        self.seq += 1
        payload = Payload(
            origin=self.code, seq=self.seq, prev=self.prev,
            record_id=record_id or f"{self.code}:r{self.seq}", version=version, kind=kind,
            schema=schema or default_schemas().schema_id(kind), op="put" if body is not None else "delete",
            issued_at=format_time(issued or datetime.now(UTC)), body=body,
        )
        env = sign_envelope(key or self.key, payload)
        self.prev = env.hash
        return env


def push_request(member: Member, envelopes: list[Any], hub_url: str, *, created: int | None = None,
                 key: SigningKey | None = None) -> tuple[bytes, dict[str, str]]:
    """A push body and its RFC 9421 headers, as a node sends them."""
    import secrets
    import time

    from federation.protocol import httpsig

    body = json.dumps({"envelopes": [e.to_dict() if isinstance(e, Envelope) else e for e in envelopes]}).encode()
    headers = {"Content-Type": "application/json"}
    signer = key or member.key
    headers.update(httpsig.sign_request("POST", hub_url.rstrip("/") + "/api/v1/envelopes", headers, body,
                                        private_key=signer.key, keyid=signer.kid,
                                        created=int(time.time()) if created is None else created,
                                        nonce=secrets.token_urlsafe(12)))
    return body, headers
