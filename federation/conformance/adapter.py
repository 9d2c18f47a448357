"""This project's answers to the conformance cases, through the runner protocol (conformance/README.md).

``python -m federation.conformance.adapter`` reads one JSON line per case on stdin, ``{"category", "id",
"input"}``, and writes one JSON line per case on stdout, ``{"id", "result": "accept" | "refuse", "reason"}``,
flushed after each. :func:`decide` is the same decision in-process. Every verdict comes from
``federation.protocol``: the code the hub and the nodes run. Webhook deliveries are the exception: the project
signs them (``federation/protocol/webhooks.py``) and partners verify them, so :func:`verify_webhook` is
PROTOCOL §13.3's five steps written out here.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from federation.protocol import httpsig, merkle, strictjson, webhooks
from federation.protocol.checkpoint import CheckpointError, parse_checkpoint
from federation.protocol.envelope import parse_time
from federation.protocol.errors import IpdnError, KeyFileError
from federation.protocol.governance import check_transition
from federation.protocol.keys import PublicKey
from federation.protocol.registry import accept_update, parse_registry
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import ChainHead, Failure, keys_resolver, verify_envelope

Answer = tuple[str, str | None]  # ("accept", None) or ("refuse", reason)
ACCEPT: Answer = ("accept", None)


class CaseError(ValueError):
    """The case itself is not what the suite's format promises (a broken case, not a verdict)."""


def refuse(reason: str) -> Answer:
    return ("refuse", reason)


def _time(text: str | None) -> datetime | None:
    return parse_time(text) if text is not None else None


def public_keys(entries: list[dict[str, Any]]) -> list[tuple[PublicKey, str | None]]:
    """The keys of a case's trust context, each with its member (None: a hub key) and window, and its status."""
    out = []
    for e in entries:
        k = PublicKey.from_jwk(e["jwk"])
        pub = PublicKey(k.key, k.kid, member=e["member"], not_before=_time(e.get("not_before")),
                        not_after=_time(e.get("not_after")))
        out.append((pub, e.get("status")))
    return out


def member_keys(entries: list[dict[str, Any]]) -> dict[str, PublicKey]:
    return {k.kid: k for k, _ in public_keys(entries) if k.member is not None}


def hub_keys(entries: list[dict[str, Any]]) -> dict[str, PublicKey]:
    return {k.kid: k for k, _ in public_keys(entries) if k.member is None}


# -- the categories --------------------------------------------------------------------------------------


def strict_json(inp: Mapping[str, Any]) -> Answer:
    limits = strictjson.JsonLimits(max_bytes=inp["max_bytes"], max_depth=inp["max_depth"])
    try:
        strictjson.loads(base64.b64decode(inp["document_b64"]), limits)
    except IpdnError as e:
        return refuse(e.reason)
    return ACCEPT


def _first(failures: list[Failure]) -> Answer:
    return refuse(failures[0].reason) if failures else ACCEPT


def envelopes(inp: Mapping[str, Any]) -> Answer:
    limits = strictjson.JsonLimits(max_bytes=inp.get("max_bytes", strictjson.DEFAULT_LIMITS.max_bytes))
    try:  # a weak key in the trust context is refused as such (bad-key), never dropped
        keys = keys_resolver(member_keys(inp["keys"]))
    except KeyFileError as e:
        return refuse(e.reason)
    result = verify_envelope(base64.b64decode(inp["envelope_b64"]), keys=keys,
                             schemas=default_schemas(), now=parse_time(inp["now"]), limits=limits)
    return _first(result.failures)


def chains(inp: Mapping[str, Any]) -> Answer:
    """§5 step 6 as the hub applies it (§8.2): a held number with the same hash is a duplicate (accepted,
    re-sending is safe), with another hash a fork."""
    held: list[str] = inp["chain"]
    head = ChainHead(len(held), held[-1]) if held else None
    result = verify_envelope(base64.b64decode(inp["envelope_b64"]), keys=keys_resolver(member_keys(inp["keys"])),
                             schemas=default_schemas(), now=parse_time(inp["now"]), chain_head=head,
                             check_chain_head=True)
    failures = list(result.failures)
    if failures and failures[-1].reason == "chain-stale" and result.envelope is not None:
        stale = failures.pop()
        if held[result.envelope.payload.seq - 1] != result.envelope.hash:
            failures.append(Failure("chain", "chain-fork", stale.message))
    return _first(failures)


def registries(inp: Mapping[str, Any]) -> Answer:
    """What a node does with a registry the hub offers (node/sync/registry.py): §7's checks, then §12's."""
    try:
        current = parse_registry(json.dumps(inp["trusted"]).encode())
    except IpdnError as e:
        raise CaseError(f"the trusted registry does not load: {e}") from e
    try:
        new = accept_update(current, parse_registry(json.dumps(inp["candidate"]).encode()), parse_time(inp["now"]))
        if new is not current:
            check_transition(current, new)
    except IpdnError as e:
        return refuse(e.reason)
    return ACCEPT


def checkpoints(inp: Mapping[str, Any]) -> Answer:
    """A checkpoint as a node reads one (node/sync/logtrust.py); a co-signature as the hub keeps one."""
    hubs, members = hub_keys(inp["keys"]), member_keys(inp["keys"])
    try:
        signed = parse_checkpoint(inp["checkpoint"])
        if inp["check"] == "cosignature":
            mine = {kid: k for kid, k in members.items() if k.member == inp["member"]}
            with_it = signed.with_signature(inp["cosignature"])
            return ACCEPT if inp["member"] in with_it.verify(hubs, mine) else refuse("bad-cosignature")
        signed.verify(hubs, {})
    except CheckpointError as e:
        return refuse(e.reason)
    if signed.checkpoint.network != inp["network"]:
        return refuse("checkpoint-bad-signature")  # as node/sync/logtrust.py (README: ambiguities)
    return ACCEPT


def proofs(inp: Mapping[str, Any]) -> Answer:
    try:
        if inp["check"] == "inclusion":
            merkle.verify_inclusion(merkle.leaf_hash(inp["entry"].encode("ascii")), inp["index"], inp["size"],
                                    [bytes.fromhex(h) for h in inp["proof"]], bytes.fromhex(inp["root"]))
        else:
            merkle.verify_consistency(inp["from"], inp["to"], bytes.fromhex(inp["root_from"]),
                                      bytes.fromhex(inp["root_to"]), [bytes.fromhex(h) for h in inp["proof"]])
    except merkle.MerkleProofError as e:
        return refuse(e.reason)
    return ACCEPT


def push(inp: Mapping[str, Any]) -> Answer:
    """A push as the hub authenticates it (federation/hub/api/intake.py): the key of an active member valid now,
    the target URI from the registry's hub URL, then the replay memory."""
    now = int(inp["now"])
    at = datetime.fromtimestamp(now, tz=UTC)
    valid = {k.kid: k.key for k, status in public_keys(inp["keys"])
             if k.member is not None and status == "active" and k.valid_at(at)}
    replays = httpsig.ReplayCache(window=inp["max_skew"], since=inp["started_at"])

    def check(req: Mapping[str, Any]) -> None:
        sig = httpsig.verify_request(req["method"], inp["hub_url"].rstrip("/") + req["path"], req["headers"],
                                     base64.b64decode(req["body_b64"]), resolve_key=valid.get, now=now,
                                     max_skew=inp["max_skew"])
        replays.check_and_remember(sig.keyid, sig.signature, sig.created, now)

    for earlier in inp["seen"]:
        try:
            check(earlier)
        except httpsig.HttpSignatureError as e:
            raise CaseError(f"a request the case says was accepted is refused: {e.reason}") from e
    try:
        check(inp["request"])
    except httpsig.HttpSignatureError as e:
        return refuse(e.reason)
    return ACCEPT


def verify_webhook(headers: Mapping[str, str], body: bytes, public_key: str, now: int, tolerance: int) -> Answer:
    """PROTOCOL §13.3: a fresh ``webhook-timestamp`` and a ``v1a`` signature by the pinned key over
    ``{webhook-id}.{webhook-timestamp}.{body}`` (the body as received)."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lower.get(n) for n in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if msg_id is None or stamp is None or signatures is None:
        return refuse("signature-missing")
    if not stamp.isascii() or not stamp.isdigit():
        return refuse("signature-malformed")
    ts = int(stamp)
    if ts < now - tolerance:
        return refuse("signature-expired")
    if ts > now + tolerance:
        return refuse("signature-from-future")
    key: Ed25519PublicKey = webhooks.parse_public_key(public_key)
    content = webhooks.signed_content(msg_id, ts, body)
    for item in signatures.split(" "):
        version, _, value = item.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(value, validate=True), content)
        except (InvalidSignature, binascii.Error, ValueError):
            continue
        return ACCEPT
    return refuse("bad-signature")


def webhook_deliveries(inp: Mapping[str, Any]) -> Answer:
    return verify_webhook(inp["headers"], base64.b64decode(inp["body_b64"]), inp["public_key"], int(inp["now"]),
                          int(inp["tolerance_seconds"]))


DECIDERS: dict[str, Callable[[Mapping[str, Any]], Answer]] = {
    "strict-json": strict_json, "envelopes": envelopes, "chains": chains, "registries": registries,
    "checkpoints": checkpoints, "proofs": proofs, "push": push, "webhooks": webhook_deliveries,
}


def decide(category: str, inp: Mapping[str, Any]) -> Answer:
    """This project's verdict on one case's input.

    Raises:
        CaseError: an unknown category, or a case whose context does not load.
    """
    decider = DECIDERS.get(category)
    if decider is None:
        raise CaseError(f"unknown category {category!r}")
    return decider(inp)


def answer_line(line: str) -> dict[str, Any]:
    """One answer of the runner protocol for one request line."""
    request = json.loads(line)
    cid = request.get("id")
    try:
        result, reason = decide(request["category"], request["input"])
    except (CaseError, KeyError, TypeError, ValueError) as e:
        return {"id": cid, "result": "error", "reason": None, "detail": f"{type(e).__name__}: {e}"}
    return {"id": cid, "result": result, "reason": reason}


def main() -> int:
    for line in sys.stdin:
        if line.strip():
            sys.stdout.write(json.dumps(answer_line(line)) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
