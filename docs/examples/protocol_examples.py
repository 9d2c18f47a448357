"""Print the worked examples of docs/PROTOCOL.md (appendix A) as Markdown, byte for byte.

``python docs/examples/protocol_examples.py`` prints every block; the appendix is this output pasted as it is, and
tests/test_protocol_examples.py fails when a block printed here is missing from PROTOCOL.md or does not verify.
Every value comes from the conformance suite's fixed keys and times (federation/conformance/generate.py: the
published test seeds, "now" 2026-12-01T10:00:00.000Z): nothing random, so the output never changes.

The four examples are one story: QA's first envelope (A.1) is log position 1 of the seven-entry log whose
checkpoint the hub signed and QA co-signed (A.2); the push that sent it (A.3); the webhook delivery a partner
gets when a node applied it (A.4).
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from federation.conformance import generate as g  # noqa: E402
from federation.protocol import checkpoint as cp  # noqa: E402
from federation.protocol import httpsig, merkle, webhooks  # noqa: E402
from federation.protocol.canonical import sha256_hex  # noqa: E402
from federation.protocol.envelope import leaf_bytes  # noqa: E402
from federation.protocol.keys import b64u_decode  # noqa: E402
from node.store.records import StoredRecord  # noqa: E402
from node.webhooks.events import event_body, event_type  # noqa: E402

PUSH_CREATED = g.NOW_UNIX - 2  # as the conformance suite's signed push
WEBHOOK_TIMESTAMP = g.NOW_UNIX - 1  # as the conformance suite's signed delivery
APPLIED_AT = datetime(2026, 12, 1, 9, 59, 58, 120000, tzinfo=UTC)  # when the node applied A.1's envelope


@dataclass(frozen=True)
class Block:
    """One fenced block of the appendix: its anchor, the sentence before it, its language and text."""

    anchor: str
    caption: str
    lang: str
    text: str

    def markdown(self) -> str:
        return f"{self.caption}\n\n```{self.lang}\n{self.text}\n```"


def _json(obj: object) -> str:
    """Compact JSON as the wire carries it (UTF-8, no escapes for non-ASCII)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def jwk(name: str, member: str | None) -> dict[str, str]:
    out = g.bare_jwk(g.key(name))
    if member is not None:
        out["ipdn_member"] = member
    return out


def envelope() -> dict[str, str]:
    """QA's first envelope: seq 1, a cultural event, signed by QA's current key."""
    return g.chain(1, "QA")[0]


def envelope_blocks() -> list[Block]:
    env = envelope()
    header = b64u_decode(env["protected"])
    payload = b64u_decode(env["payload"])
    leaf = leaf_bytes(env)
    return [
        Block("A.1", "QA's public key as a JWK bound to its member (`ipdn_member`, §3.1); its `kid` is the RFC 7638 "
                     "thumbprint:", "json", _json(jwk("qa", "QA"))),
        Block("A.1", "The protected header's bytes (RFC 8785):", "json", header.decode("utf-8")),
        Block("A.1", "The payload's bytes (RFC 8785: members sorted, no whitespace, non-ASCII as UTF-8 "
                     "characters, not escapes):", "json", payload.decode("utf-8")),
        Block("A.1", "The envelope as sent (flattened JWS, compact JSON):", "json", _json(env)),
        Block("A.1", "Its hash (SHA-256 of the payload bytes, §3.3), its Merkle leaf input (the compact JWS, §11) "
                     "and leaf hash:", "text",
              f"hash       {sha256_hex(payload)}\n"
              f"leaf input {leaf.decode('ascii')}\n"
              f"leaf hash  {merkle.leaf_hash(leaf).hex()}"),
    ]


def checkpoint_document() -> cp.SignedCheckpoint:
    """The hub's checkpoint of the suite's seven-entry log, co-signed by QA."""
    entries = g.log_entries()
    seven = cp.sign_checkpoint("IPDN", 7, g.log_root(entries), g.key("hub"), g.CHECKPOINT_AT)
    return seven.with_signature(cp.cosign(seven, g.key("qa")))


def checkpoint_blocks() -> list[Block]:
    signed = checkpoint_document()
    entries = g.log_entries()
    proof = merkle.inclusion_proof(0, 7, g.get_node_for(entries))
    headers = [b64u_decode(s["protected"]).decode("ascii") for s in signed.signatures]
    return [
        Block("A.2", "The hub's key (a registry hub key, no member):", "json", _json(jwk("hub", None))),
        Block("A.2", "The checkpoint payload's bytes (RFC 8785) for the log of seven entries whose first is A.1's "
                     "envelope:", "json", signed.payload.decode("ascii")),
        Block("A.2", "The protected headers of the hub's signature and of QA's co-signature:", "json",
              "\n".join(headers)),
        Block("A.2", "The checkpoint document as served (general JSON serialization; the hub's signature first):",
              "json", signed.to_bytes().decode("ascii")),
        Block("A.2", "The inclusion proof of A.1's envelope (leaf index 0, position 1) in this tree: "
                     "`GET /api/v1/log/proof/inclusion?index=0&size=7` answers", "json",
              _json({"index": 0, "size": 7, "proof": [h.hex() for h in proof]})),
    ]


def push_request() -> dict[str, object]:
    """A.1's envelope pushed by QA, as the conformance suite's accepted push (nonce ``n-0001``)."""
    return g.push_request(created=PUSH_CREATED, nonce="n-0001")


def push_blocks() -> list[Block]:
    req = push_request()
    headers: dict[str, str] = req["headers"]  # type: ignore[assignment]
    body = base64.b64decode(str(req["body_b64"]))
    k = g.key("qa")
    params = httpsig.SignatureParams(created=PUSH_CREATED, keyid=k.kid, alg="ed25519", nonce="n-0001")
    base = httpsig.signature_base("POST", g.HUB_URL + g.PUSH_PATH, headers, httpsig.DEFAULT_COMPONENTS, params)
    host = g.HUB_URL.removeprefix("https://")
    request = "\n".join([f"POST {g.PUSH_PATH} HTTP/1.1", f"Host: {host}",
                         *(f"{name}: {value}" for name, value in headers.items()),
                         f"Content-Length: {len(body)}", "", body.decode("utf-8")])
    return [
        Block("A.3", f"The signature base (RFC 9421 §2.5; lines end in LF, no final LF) for `@target-uri` "
                     f"`{g.HUB_URL}{g.PUSH_PATH}`, `created` {PUSH_CREATED}:", "text", base),
        Block("A.3", "The request as sent (the body is one line, compact JSON):", "http", request),
    ]


def webhook_body() -> bytes:
    """The event a node sends when it applies A.1's envelope (a record new to it: ``record.published``), built by
    the node's own code: the record API's item of the stored version, in ``{"type", "timestamp", "data"}``."""
    env = envelope()
    payload = json.loads(b64u_decode(env["payload"]))
    stored = StoredRecord(
        record_id=payload["record_id"], origin=payload["origin"], kind=payload["kind"], version=payload["version"],
        op=payload["op"], status=payload["body"]["status"], title=None,
        body_json=json.dumps(payload["body"], ensure_ascii=False), hash=sha256_hex(b64u_decode(env["payload"])),
        seq=payload["seq"], issued_at=payload["issued_at"], updated_at=APPLIED_AT,
        envelope=_json(env).encode("ascii"))
    kind = event_type(payload["op"], stored.status, None)
    return event_body(kind, APPLIED_AT, stored.item())


def webhook_blocks() -> list[Block]:
    body = webhook_body()
    signer = g.key("webhook")
    signature = webhooks.signature_header(g.MSG_ID, WEBHOOK_TIMESTAMP, body, key=signer, secret=g.WEBHOOK_SECRET)
    content_head = f"{g.MSG_ID}.{WEBHOOK_TIMESTAMP}."
    request = "\n".join(["POST /hooks/ipdn HTTP/1.1", "Host: partner.example", "content-type: application/json",
                         f"webhook-id: {g.MSG_ID}", f"webhook-timestamp: {WEBHOOK_TIMESTAMP}",
                         f"webhook-signature: {signature}", f"Content-Length: {len(body)}", "",
                         body.decode("utf-8")])
    return [
        Block("A.4", "The node's webhook key and the subscription's secret (standard base64 with padding):", "text",
              f"whpk {webhooks.public_key_text(signer)}\nwhsec {g.WEBHOOK_SECRET}"),
        Block("A.4", "Both signatures cover these bytes (then the body, byte for byte):", "text", content_head),
        Block("A.4", "The delivery as sent:", "http", request),
    ]


def blocks() -> list[Block]:
    return [*envelope_blocks(), *checkpoint_blocks(), *push_blocks(), *webhook_blocks()]


TITLES = {
    "A.1": "### A.1 An envelope (§3)",
    "A.2": "### A.2 A checkpoint with a co-signature (§11)",
    "A.3": "### A.3 A push request (§8.2)",
    "A.4": "### A.4 A webhook delivery (§13)",
}


def markdown() -> str:
    out: list[str] = []
    current = None
    for b in blocks():
        if b.anchor != current:
            current = b.anchor
            out.append(TITLES[b.anchor])
        out.append(b.markdown())
    return "\n\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
