"""Make every conformance case from fixed keys and a fixed "now": running it twice writes the same bytes.

``python -m federation.conformance.generate [--out DIR] [--check]`` writes ``DIR/<category>.json`` (default: the
repository's ``conformance/``); ``--check`` writes nothing and exits 1 when a committed file differs from a fresh
generation. Every signature is Ed25519 (deterministic, RFC 8032) by a key made from a seed below; every time is
fixed; nothing random is used. The case format and the runner protocol are in ``conformance/README.md``.

Refusal cases are named after the attack they stop.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from federation.protocol import checkpoint as cp
from federation.protocol import governance, httpsig, merkle, webhooks
from federation.protocol.canonical import canonical_bytes, sha256_hex
from federation.protocol.envelope import TYP as ENVELOPE_TYP
from federation.protocol.envelope import format_time, leaf_bytes
from federation.protocol.keys import PublicKey, SigningKey, b64u_encode, thumbprint
from federation.protocol.registry import KeyEntry, Member, SignedRegistry, genesis, sign_registry

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "conformance"
FORMAT_VERSION = 1

# The Ed25519 seeds (RFC 8032 private keys) of every party in the suite. Published on purpose: these keys sign
# test data only.
SEEDS = {
    "hub": "67d4e7c9435655d3b5fbd3dc1805fbedd9e575e526d06fc2e868a60245873916",
    "rogue_hub": "34555e3468644ec8279034751aefd7c64d68af33bc4655f1a90f4d058b3585bf",
    "qa": "f3d6458d9be94ea0cd9218a410b61d15b7601b2f24ab6688e74956eb5f90243c",
    "qa_old": "f3775b2f3db20a771f21f8b92e05c1d4749ed32af0cdeae08dfaf478f06186a7",
    "qa_new": "5e8d097ec95a7b12884acda21261087dcbfef5a342278ff8a3a9e666a38eadd7",
    "kr": "194a2d9e29fc6a6f5709a5b9537857439c3113dbbda8ebfa278cc09c1198b6a1",
    "tr": "abd343952fcdbe4309fcef14cd436039e83f288b72d61166e7b930882c8560ab",
    "rogue": "4994102ee35f04c2690094e386d93eb7455aef0da83fa64fbbaf498c6ed7f7ba",
    "applicant": "1f813ed79147f323dd8f2ff1b001e5caacc5b9b2794d90aa5caa79eff273756a",
    "webhook": "0293018a112520076f165085b4c063ce61b094840388b73bbddaa6807ef2d00d",
    "webhook_other": "379c02d35a3604cf438ee82ec74eb8b827a8c0527e36c6412f8cc012a59b0d72",
}
WEBHOOK_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode("ascii")

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # the moment every case is judged at
NOW_TEXT = format_time(NOW)
NOW_UNIX = int(NOW.timestamp())
GENESIS_AT = datetime(2026, 1, 1, tzinfo=UTC)
VECTOR_LIFETIME = timedelta(days=365)  # the registries' lifetime in these vectors (fixed: they stay byte-stable)
QA_OLD_ENDS = "2026-06-01T00:00:00.000Z"  # QA's previous key stopped signing then (a rotation)
QA_NEW_STARTS = "2026-11-30T09:00:00.000Z"  # QA's next key signs from then on (a rotation under way)
HUB_URL = "https://hub.ipdn.example"
PUSH_PATH = "/api/v1/envelopes"
MAX_SKEW = 300

CATEGORIES = ("strict-json", "envelopes", "chains", "registries", "checkpoints", "proofs", "push", "webhooks")

DESCRIPTIONS = {
    "strict-json": "Strict JSON intake (PROTOCOL §2): the bytes of one document, refused before any other "
                   "processing with the reason named.",
    "envelopes": "Envelope verification (PROTOCOL §3, §5): one envelope's bytes as received, the keys with their "
                 "members and windows, the time now. One case for every refusal the verifier emits.",
    "chains": "An origin's chain (PROTOCOL §3.3, §5 step 6, §8.2): a valid envelope judged against the hashes the "
              "receiver holds from its origin (seq 1, 2, ... in order).",
    "registries": "Registry updates (PROTOCOL §7, §12): the registry the node trusts, the one it is offered, the "
                  "time now.",
    "checkpoints": "Checkpoints and co-signatures (PROTOCOL §11): a checkpoint judged against the registry's hub "
                   "keys and network; a member's co-signature judged as the hub keeps it.",
    "proofs": "RFC 9162 inclusion and consistency proofs (PROTOCOL §11) over a log of real envelopes.",
    "push": "RFC 9421 signed push requests (PROTOCOL §8.2): the request as the hub receives it, after the "
            "requests it accepted before, judged at the hub's time now.",
    "webhooks": "Standard Webhooks deliveries (PROTOCOL §13.3): the headers and raw body a partner receives, the "
                "node's pinned webhook key, the partner's time now.",
}


# -- keys ------------------------------------------------------------------------------------------------


def key(name: str) -> SigningKey:
    return SigningKey(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SEEDS[name])))


def bare_jwk(k: SigningKey) -> dict[str, str]:
    return {"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(k.public.raw), "kid": k.kid}


def key_entry(name: str, member: str | None, *, status: str | None = "active", not_before: str | None = None,
              not_after: str | None = None) -> dict[str, Any]:
    """One key of a case's trust context (``member`` null: a hub key)."""
    entry: dict[str, Any] = {"member": member}
    if member is not None and status is not None:
        entry["status"] = status
    entry.update({"jwk": bare_jwk(key(name)), "not_before": not_before, "not_after": not_after})
    return entry


MEMBER_KEYS = [
    key_entry("qa", "QA"), key_entry("qa_old", "QA", not_after=QA_OLD_ENDS), key_entry("kr", "KR"),
    key_entry("qa_new", "QA", not_before=QA_NEW_STARTS), key_entry("tr", "TR", status="suspended"),
]
HUB_KEYS = [key_entry("hub", None)]
# A weak key (PROTOCOL.md §3.1): the identity point, of small order; no private key signs for it, and some
# verifiers accept any signature under it.
WEAK_JWK = {"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(bytes([1]) + bytes(31)),
            "kid": thumbprint(b64u_encode(bytes([1]) + bytes(31)))}


def b64(data: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4): how a case carries exact bytes."""
    return base64.b64encode(data).decode("ascii")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- records and envelopes ------------------------------------------------------------------------------

ORGANIZER = {"name": {"en": "Cultural Village Foundation (Katara)"}, "country": "QA", "url": "https://www.katara.net"}
RIGHTS = "https://creativecommons.org/licenses/by/4.0/"
EVENT_SCHEMA = "https://schemas.ipdn.network/cultural-event/v1"
EVENT_SCHEMA_V2 = "https://schemas.ipdn.network/cultural-event/v2"
REASON = {"en": "The hall is closed for repairs.", "ar": "القاعة مغلقة للصيانة."}
PROGRAMME_SCHEMA = "https://schemas.ipdn.network/capacity-programme/v1"


def event_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": {"en": "Calligraphy night", "ar": "ليلة الخط العربي"},
        "event_type": "exhibition", "status": "scheduled",
        "start": "2026-12-10T18:00:00+03:00", "end": "2026-12-10T21:00:00+03:00", "timezone": "Asia/Qatar",
        "attendance_mode": "offline",
        "venue": {"name": {"en": "Katara Cultural Village"}, "city": {"en": "Doha"}, "country": "QA"},
        "organizers": [ORGANIZER], "rights": RIGHTS,
    }
    body.update(changes)
    return body


def programme_body() -> dict[str, Any]:
    return {"title": {"en": "Digital diplomacy workshop"}, "programme_type": "workshop", "status": "open",
            "provider": ORGANIZER, "format": "online", "start_date": "2026-12-14", "end_date": "2026-12-16",
            "rights": RIGHTS}


def payload(origin: str = "QA", seq: Any = 1, prev: str | None = None, **changes: Any) -> dict[str, Any]:
    """An envelope payload as a dict (so a case can break any rule a Payload would refuse to hold)."""
    p: dict[str, Any] = {"origin": origin, "seq": seq, "prev": prev, "record_id": f"{origin}:evt-{seq}",
                         "version": 1, "kind": "cultural-event", "schema": EVENT_SCHEMA, "op": "put",
                         "issued_at": "2026-11-30T08:00:00.000Z", "body": event_body()}
    p.update(changes)
    return {k: v for k, v in p.items() if v is not _DROP}


_DROP = object()  # payload(body=_DROP) leaves the member out


def header(signer: SigningKey, typ: Any = ENVELOPE_TYP, **changes: Any) -> dict[str, Any]:
    h: dict[str, Any] = {"alg": "EdDSA", "kid": signer.kid, "typ": typ}
    h.update(changes)
    return {k: v for k, v in h.items() if v is not _DROP}


def raw_jws(header_bytes: bytes, payload_bytes: bytes, signer: SigningKey) -> dict[str, str]:
    """A flattened JWS over exactly these header and payload bytes (signed as RFC 7515 §5.1 says)."""
    protected, body = b64u_encode(header_bytes), b64u_encode(payload_bytes)
    return {"protected": protected, "payload": body,
            "signature": b64u_encode(signer.sign(f"{protected}.{body}".encode("ascii")))}


def signed(p: dict[str, Any], signer: SigningKey | None = None, h: dict[str, Any] | None = None) -> dict[str, str]:
    signer = signer or key("qa")
    return raw_jws(canonical_bytes(h or header(signer)), canonical_bytes(p), signer)


def wire(obj: Any) -> bytes:
    """Compact JSON, as a producer sends an envelope."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def case(cid: str, description: str, input_: dict[str, Any], expected: str | None = None) -> dict[str, Any]:
    """One case; ``expected`` None means accept, else the refusal reason."""
    return {"id": cid, "description": description, "input": input_,
            "expected": "accept" if expected is None else {"reason": expected}}


# -- strict JSON -------------------------------------------------------------------------------------------


def strict_json_cases() -> list[dict[str, Any]]:
    def c(cid: str, description: str, data: bytes, expected: str | None = None, **limits: int) -> dict[str, Any]:
        return case(cid, description, {"document_b64": b64(data), "max_bytes": limits.get("max_bytes", 262144),
                                       "max_depth": limits.get("max_depth", 32)}, expected)

    deep = b"[" * 32 + b"]" * 32
    return [
        c("plain-object-accepted", "An ordinary object.", b'{"origin":"QA","seq":1,"title":{"ar":"\xd9\x84"}}'),
        c("escaped-surrogate-pair-accepted", "A correctly paired surrogate escape is one character.",
          b'{"emoji":"\\ud83d\\ude00"}'),
        c("depth-at-limit-accepted", "Arrays nested exactly max_depth deep.", deep),
        c("largest-safe-integer-accepted", "2^53 - 1 is the largest integer every party reads exactly.",
          b'{"n":9007199254740991,"m":-9007199254740991}'),
        c("size-at-limit-accepted", "A document exactly max_bytes long.", b'{"a":"' + b"x" * 1016 + b'"}',
          max_bytes=1024),
        c("duplicate-key-refused", "Two members with one name: two parsers could read two different values.",
          b'{"op":"put","op":"delete"}', "duplicate-key"),
        c("duplicate-key-nested-refused", "A duplicate name deep inside is refused as well.",
          b'{"body":{"venue":{"country":"QA","country":"KR"}}}', "duplicate-key"),
        c("duplicate-key-by-escape-refused", "\"a\" and \"\\u0061\" are the same name once decoded.",
          b'{"a":1,"\\u0061":2}', "duplicate-key"),
        c("lone-high-surrogate-refused", "An unpaired high surrogate escape cannot be encoded as UTF-8.",
          b'{"title":"\\ud800"}', "lone-surrogate"),
        c("lone-low-surrogate-refused", "An unpaired low surrogate escape.", b'{"title":"x\\udc00y"}',
          "lone-surrogate"),
        c("lone-surrogate-in-member-name-refused", "Member names are strings too.", b'{"\\udbff":1}',
          "lone-surrogate"),
        c("nan-refused", "NaN is not JSON.", b'{"n":NaN}', "non-finite-number"),
        c("infinity-refused", "Infinity is not JSON.", b'{"n":Infinity}', "non-finite-number"),
        c("negative-infinity-refused", "-Infinity is not JSON.", b'{"n":-Infinity}', "non-finite-number"),
        c("integer-above-safe-range-refused", "2^53 is read differently by double-based parsers.",
          b'{"seq":9007199254740992}', "number-out-of-range"),
        c("integer-below-safe-range-refused", "-(2^53) likewise.", b'{"n":-9007199254740992}',
          "number-out-of-range"),
        c("number-overflowing-double-refused", "1e400 is infinity as a double.", b'{"n":1e400}',
          "number-out-of-range"),
        c("too-deep-refused", "One level deeper than max_depth (stack exhaustion in recursive parsers).",
          b"[" * 33 + b"]" * 33, "too-deep"),
        c("too-deep-objects-refused", "Objects count as levels too.", b'{"a":' * 33 + b"1" + b"}" * 33, "too-deep"),
        c("byte-order-mark-refused", "A UTF-8 BOM before the text (RFC 8259 §8.1).", b'\xef\xbb\xbf{"a":1}', "bom"),
        c("too-large-refused", "One byte over max_bytes: refused before parsing.", b'{"a":"' + b"x" * 1017 + b'"}',
          "too-large", max_bytes=1024),
        c("overlong-utf8-refused", "An overlong encoding of '/' can slip past byte filters.",
          b'{"a":"\xc0\xaf"}', "invalid-utf8"),
        c("encoded-surrogate-utf8-refused", "A surrogate encoded directly in UTF-8 (CESU-8).",
          b'{"a":"\xed\xa0\x80"}', "invalid-utf8"),
        c("truncated-utf8-refused", "A multi-byte sequence cut short.", b'{"a":"\xd9"}', "invalid-utf8"),
        c("trailing-comma-refused", "Not RFC 8259.", b'{"a":1,}', "malformed-json"),
        c("two-json-texts-refused", "Exactly one JSON text.", b'{"a":1}{"a":2}', "malformed-json"),
        c("single-quotes-refused", "Not RFC 8259.", b"{'a':1}", "malformed-json"),
        c("empty-document-refused", "No JSON text at all.", b"", "malformed-json"),
        c("comment-refused", "JSON has no comments.", b'{"a":1 /* x */}', "malformed-json"),
    ]


# -- envelopes ---------------------------------------------------------------------------------------------


def envelope_input(data: bytes, keys: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"envelope_b64": b64(data), "keys": MEMBER_KEYS if keys is None else keys, "now": NOW_TEXT}


def envelope_cases() -> list[dict[str, Any]]:
    qa, kr, qa_old, rogue = key("qa"), key("kr"), key("qa_old"), key("rogue")
    good = signed(payload())

    def c(cid: str, description: str, data: bytes | dict[str, Any], expected: str | None = None) -> dict[str, Any]:
        return case(cid, description, envelope_input(data if isinstance(data, bytes) else wire(data)), expected)

    def with_payload_bytes(raw: bytes, signer: SigningKey = qa) -> dict[str, str]:
        return raw_jws(canonical_bytes(header(signer)), raw, signer)

    def with_header(h: dict[str, Any] | bytes, signer: SigningKey = qa) -> dict[str, str]:
        raw = h if isinstance(h, bytes) else canonical_bytes(h)
        return raw_jws(raw, canonical_bytes(payload()), signer)

    p_bytes = canonical_bytes(payload())
    other = canonical_bytes(payload(body=event_body(title={"en": "Calligraphy night (moved)"})))
    swapped = dict(good, payload=b64u_encode(other))
    good_b = wire(good)
    return [
        # accepted
        c("valid-event-accepted", "A cultural event signed by its origin's key.", good),
        c("valid-programme-accepted", "A capacity programme.",
          signed(payload(kind="capacity-programme", schema=PROGRAMME_SCHEMA, body=programme_body()))),
        c("valid-tombstone-accepted", "A delete: no body, nothing to validate.",
          signed(payload(op="delete", version=2, body=_DROP))),
        c("valid-later-seq-accepted", "seq 7 with a prev hash: without a chain head the chain is not judged.",
          signed(payload(seq=7, prev="a" * 64))),
        c("bidi-in-free-text-accepted", "Bidirectional controls are allowed in free text (Arabic prose).",
          signed(payload(body=event_body(title={"ar": "\u200fليلة الخط\u200f"})))),
        c("old-key-within-its-window-accepted",
          "An envelope signed with QA's previous key before that key's not_after stays valid.",
          signed(payload(issued_at="2026-05-31T23:59:59.999Z"), qa_old)),
        c("issued-at-skew-limit-accepted", "issued_at exactly now + 5 minutes is not in the future.",
          signed(payload(issued_at="2026-12-01T10:05:00.000Z"))),
        c("microsecond-issued-at-accepted", "issued_at may carry up to six fractional digits.",
          signed(payload(issued_at="2026-11-30T08:00:00.123456Z"))),
        c("issued-at-with-offset-accepted", "Producers write UTC with Z, but consumers read any RFC 3339 offset "
                                            "(§1): 11:00+03:00 is 08:00Z.",
          signed(payload(issued_at="2026-11-30T11:00:00.000+03:00"))),
        c("issued-at-lowercase-t-and-z-accepted", "RFC 3339 allows t and z in lower case (§1).",
          signed(payload(issued_at="2026-11-30t08:00:00.000z"))),
        c("issued-at-seven-fraction-digits-accepted", "Any number of fractional digits; beyond the sixth they are "
                                                      "ignored (§1).",
          signed(payload(issued_at="2026-11-30T08:00:00.1234567Z"))),
        c("issued-at-without-fraction-accepted",
          "Producers write milliseconds (§1), but a time without a fraction is still RFC 3339 UTC: receivers read it.",
          signed(payload(issued_at="2026-11-30T08:00:00Z"))),
        c("astral-characters-in-canonical-payload-accepted",
          "JCS bytes holding characters beyond U+FFFF, written as UTF-8 (not as surrogate escapes).",
          signed(payload(body=event_body(title={"en": "Calligraphy night \U0001f58b"},
                                         tags=["\U0001f3a8", "art"])))),
        # intake: one record, one byte string (§3.1, §3.2): correctly signed bytes that are not the JCS form
        c("indented-payload-refused",
          "The same payload indented: a second byte string, so a second hash (another chain link and log entry) "
          "for one record.",
          with_payload_bytes(json.dumps(payload(), indent=1, ensure_ascii=False).encode("utf-8")),
          "payload-not-canonical"),
        c("payload-with-unicode-escapes-refused", "Arabic written as \\u escapes instead of UTF-8.",
          with_payload_bytes(json.dumps(payload(), separators=(",", ":"), sort_keys=True).encode("ascii")),
          "payload-not-canonical"),
        c("payload-members-unsorted-refused", "The payload's members in another order.",
          with_payload_bytes(wire(dict(reversed(list(payload().items()))))), "payload-not-canonical"),
        c("payload-escaped-solidus-refused", "'/' written as '\\/' in the schema $id.",
          with_payload_bytes(p_bytes.replace(b"https://schemas", b"https:\\/\\/schemas")), "payload-not-canonical"),
        c("header-with-spaces-refused", "The protected header with a space after each separator.",
          with_header(json.dumps(header(qa), sort_keys=True).encode("ascii")), "header-not-canonical"),
        c("header-members-unsorted-refused", "The protected header's members in another order.",
          with_header(wire({"typ": ENVELOPE_TYP, "kid": qa.kid, "alg": "EdDSA"})), "header-not-canonical"),
        # intake: the envelope's bytes
        c("envelope-byte-order-mark-refused", "A BOM before the envelope.", b"\xef\xbb\xbf" + good_b, "bom"),
        case("envelope-too-large-refused", "An envelope over the receiver's limit (here max_bytes 2048; the "
                                           "default is 256 KiB).",
             {**envelope_input(good_b[:-1] + b',"pad":"' + b"x" * 2048 + b'"}'), "max_bytes": 2048},
             "too-large"),
        c("envelope-invalid-utf8-refused", "Invalid UTF-8 around the envelope's members.",
          good_b[:-1] + b',"x":"\xff"}', "invalid-utf8"),
        c("envelope-not-json-refused", "Truncated envelope bytes.", good_b[:-2], "malformed-json"),
        c("envelope-duplicate-member-refused",
          "Two payload members: one verifier would check one, another the other.",
          good_b[:-1] + b',"payload":"' + b64u_encode(other).encode() + b'"}', "duplicate-key"),
        c("envelope-nan-refused", "A NaN where a verifier expects nothing.", good_b[:-1] + b',"n":NaN}',
          "non-finite-number"),
        c("envelope-huge-number-refused", "A number outside the I-JSON range.", good_b[:-1] + b',"n":1e999}',
          "number-out-of-range"),
        c("envelope-lone-surrogate-refused", "An unpaired surrogate escape.", good_b[:-1] + b',"\\ud800":1}',
          "lone-surrogate"),
        c("envelope-too-deep-refused", "Nesting beyond 32 levels.", good_b[:-1] + b',"x":' + b"[" * 40 + b"]" * 40
          + b"}", "too-deep"),
        # intake: the JWS container
        c("extra-jws-member-refused", "An unprotected header smuggled beside the three members.",
          {**good, "header": {"kid": kr.kid}}, "malformed-envelope"),
        c("missing-signature-member-refused", "No signature member.",
          {"protected": good["protected"], "payload": good["payload"]}, "malformed-envelope"),
        c("general-serialization-refused", "The general JSON serialization is not an envelope.",
          {"payload": good["payload"], "signatures": [{"protected": good["protected"],
                                                       "signature": good["signature"]}]}, "malformed-envelope"),
        c("padded-base64url-refused", "B64U without padding: one encoding per byte string.",
          {**good, "signature": good["signature"] + "=="}, "malformed-envelope"),
        c("standard-base64-alphabet-refused", "'+' and '/' are not base64url.",
          {**good, "protected": good["protected"][:-2] + "+/"}, "malformed-envelope"),
        c("non-zero-trailing-bits-refused",
          "Unused trailing bits set: a second encoding of the same signature (malleability).",
          {**good, "signature": good["signature"][:-1] + chr(ord(good["signature"][-1]) + 1)}, "malformed-envelope"),
        c("non-string-member-refused", "JWS members are strings.", {**good, "payload": 1}, "malformed-envelope"),
        # intake: the protected header
        c("alg-none-refused", "alg none: the classic JOSE signature bypass.", with_header(header(qa, alg="none")),
          "unsupported-alg"),
        c("alg-hmac-refused", "HS256 keyed with the public key (algorithm confusion).",
          with_header(header(qa, alg="HS256")), "unsupported-alg"),
        c("alg-missing-refused", "The algorithm is never left to the verifier's default.",
          with_header(header(qa, alg=_DROP)), "unsupported-alg"),
        c("registry-typ-presented-as-envelope-refused",
          "A signature over a registry must not pass as an envelope (cross-protocol confusion).",
          with_header(header(qa, typ="ipdn-registry+jws")), "wrong-typ"),
        c("checkpoint-typ-presented-as-envelope-refused", "Nor one over a checkpoint.",
          with_header(header(qa, typ="ipdn-checkpoint+jws")), "wrong-typ"),
        c("typ-missing-refused", "The typ is required.", with_header(header(qa, typ=_DROP)), "wrong-typ"),
        c("kid-missing-refused", "No kid: the verifier would have to guess the key.",
          with_header(header(qa, kid=_DROP)), "malformed-envelope"),
        c("kid-not-string-refused", "kid is a string.", with_header(header(qa, kid=7)), "malformed-envelope"),
        c("crit-header-refused", "crit names extensions nobody agreed on.", with_header(header(qa, crit=["exp"])),
          "malformed-envelope"),
        c("unencoded-payload-option-refused", "b64: false (RFC 7797) would change what the signature covers.",
          with_header(header(qa, b64=False)), "malformed-envelope"),
        c("header-not-object-refused", "The protected header is a JSON object.",
          with_header(b'["EdDSA"]'), "malformed-envelope"),
        c("header-duplicate-alg-refused", "Two alg members in the protected header.",
          with_header(b'{"alg":"none","alg":"EdDSA","kid":"' + qa.kid.encode() + b'","typ":"ipdn-envelope+jws"}'),
          "duplicate-key"),
        c("header-too-deep-refused", "The header nests at most 2 levels.",
          with_header(header(qa, x5c=[["a"]])), "too-deep"),
        c("bidi-in-kid-refused", "A right-to-left override hides what the kid says.",
          with_header(header(qa, kid=qa.kid + "\u202e")), "bidi-in-identifier"),
        c("short-signature-refused", "An Ed25519 signature is 64 bytes.",
          {**good, "signature": b64u_encode(b"\x00" * 63)}, "bad-signature"),
        # intake: the payload
        c("payload-not-json-refused", "The payload bytes are one JSON text.", with_payload_bytes(b"{not json"),
          "malformed-json"),
        c("payload-duplicate-member-refused",
          "Two op members in the signed bytes: one reader deletes, another updates.",
          with_payload_bytes(p_bytes[:-1] + b',"op":"delete"}'), "duplicate-key"),
        c("payload-lone-surrogate-refused", "An unpaired surrogate in the signed payload.",
          with_payload_bytes(p_bytes.replace(b'"Calligraphy night"', b'"Calligraphy \\udfff"')),
          "lone-surrogate"),
        c("payload-unknown-member-refused",
          "A member one verifier ignores and another honours gives one signature two meanings.",
          signed({**payload(), "supersedes": "QA:evt-0"}), "malformed-envelope"),
        c("payload-missing-member-refused", "issued_at is required.", signed(payload(issued_at=_DROP)),
          "malformed-envelope"),
        c("payload-not-object-refused", "The payload is an object.", with_payload_bytes(b"[1,2]"),
          "malformed-envelope"),
        c("seq-zero-refused", "seq starts at 1.", signed(payload(seq=0)), "malformed-envelope"),
        c("seq-as-string-refused", "seq is an integer.", signed(payload(seq="1")), "malformed-envelope"),
        c("first-envelope-with-prev-refused", "seq 1 has prev null.", signed(payload(prev="b" * 64)),
          "malformed-envelope"),
        c("prev-not-lowercase-hex-refused", "prev is lower-case hex SHA-256.", signed(payload(seq=2, prev="B" * 64)),
          "malformed-envelope"),
        c("delete-with-body-refused", "A tombstone carries no body.", signed(payload(op="delete")),
          "malformed-envelope"),
        c("put-without-body-refused", "A put carries a body.", signed(payload(body=_DROP)), "malformed-envelope"),
        c("unknown-op-refused", "op is put or delete.", signed(payload(op="merge")), "malformed-envelope"),
        c("issued-at-without-offset-refused", "A time without an offset names no instant (§1).",
          signed(payload(issued_at="2026-11-30T08:00:00.000")), "malformed-envelope"),
        c("issued-at-impossible-date-refused", "February 30th.", signed(payload(issued_at="2026-02-30T08:00:00Z")),
          "malformed-envelope"),
        c("origin-lowercase-refused", "origin is an upper-case ISO 3166-1 code.",
          signed(payload(origin="qa", record_id="QA:evt-1")), "malformed-envelope"),
        c("record-id-of-another-origin-refused", "QA publishing KR's record: only the origin may change its records.",
          signed(payload(record_id="KR:evt-1")), "foreign-record-id"),
        c("bidi-in-record-id-refused", "A right-to-left override in an identifier makes two ids look alike.",
          signed(payload(record_id="QA:evt\u202e1")), "bidi-in-identifier"),
        c("kind-with-bidi-refused", "Identifiers refuse every bidi control (U+2066 here).",
          signed(payload(kind="cultural\u2066-event")), "bidi-in-identifier"),
        # key
        case("small-order-key-in-key-list-refused",
             "The identity point listed as a QA key beside its real ones: a weak key is refused wherever a key is "
             "read, never dropped (a verifier that dropped it would judge the envelope as if it were not there).",
             {**envelope_input(wire(good)), "keys": [*MEMBER_KEYS, {"member": "QA", "status": "active",
                                                                    "jwk": WEAK_JWK, "not_before": None,
                                                                    "not_after": None}]}, "bad-key"),
        c("unknown-key-refused", "A key no registry lists.", signed(payload(), rogue), "key-unknown"),
        c("key-of-another-member-refused", "KR's valid key signing an envelope of origin QA (impersonation).",
          signed(payload(), kr), "key-not-origin"),
        c("key-used-after-its-window-refused",
          "QA's previous key, stolen after the rotation, signing something new.",
          signed(payload(issued_at="2026-06-01T00:00:00.000Z"), qa_old), "key-not-valid"),
        c("key-used-before-its-window-refused", "QA's next key signing before its not_before (backdating with a "
                                                "key that was not yet trusted).",
          signed(payload(), key("qa_new")), "key-not-valid"),
        # time
        c("issued-in-future-refused", "issued_at more than 5 minutes after now (pre-signed for later).",
          signed(payload(issued_at="2026-12-01T10:05:00.001Z")), "issued-in-future"),
        # signature
        c("payload-swapped-under-signature-refused", "Another payload under the original signature.", swapped,
          "bad-signature"),
        c("signature-by-other-key-with-claimed-kid-refused", "Signed by a rogue key that names QA's kid.",
          raw_jws(canonical_bytes(header(qa)), p_bytes, rogue), "bad-signature"),
        c("all-zero-signature-refused", "A zero signature.", {**good, "signature": b64u_encode(
            b"\x00" * 64)}, "bad-signature"),
        # schema
        c("unknown-schema-refused", "A schema $id the verifier does not hold.",
          signed(payload(schema="https://schemas.ipdn.network/cultural-event/v9")), "unknown-schema"),
        c("schema-for-another-kind-refused", "A programme body validated under the event kind.",
          signed(payload(kind="cultural-event", schema=PROGRAMME_SCHEMA, body=programme_body())), "kind-mismatch"),
        c("body-missing-required-field-refused", "No organizers.",
          signed(payload(body={k: v for k, v in event_body().items() if k != "organizers"})), "schema-invalid"),
        c("body-unknown-field-refused", "A field the schema does not define.",
          signed(payload(body=event_body(ticket_price=10))), "schema-invalid"),
        c("end-before-start-refused", "rule:end-before-start.",
          signed(payload(body=event_body(end="2026-12-10T17:00:00+03:00"))), "schema-invalid"),
        c("unknown-timezone-refused", "rule:unknown-timezone.",
          signed(payload(body=event_body(timezone="Mars/Olympus_Mons"))), "schema-invalid"),
        # cultural-event/v2 (PROTOCOL.md §4, docs/adr/0031): a verifier holds every version and validates the pinned one
        c("event-v2-with-reason-accepted", "A cancellation with its reason (status_reason), pinned to v2.",
          signed(payload(schema=EVENT_SCHEMA_V2, body=event_body(status="cancelled", status_reason=REASON)))),
        c("event-v2-without-reason-accepted", "A v1 body pinned to v2 (every v1 body is a valid v2 body).",
          signed(payload(schema=EVENT_SCHEMA_V2))),
        c("reason-under-v1-refused", "status_reason in a body pinned to v1, which has no such field (no other "
                                     "version may be substituted).",
          signed(payload(body=event_body(status="cancelled", status_reason=REASON))), "schema-invalid"),
        c("reason-with-scheduled-status-refused", "A reason on an event that goes ahead as planned.",
          signed(payload(schema=EVENT_SCHEMA_V2, body=event_body(status_reason=REASON))), "schema-invalid"),
    ]


# -- chains ------------------------------------------------------------------------------------------------


def chain(n: int, origin: str = "QA") -> list[dict[str, str]]:
    """An origin's first ``n`` envelopes, each naming the previous one's hash."""
    out, prev = [], None
    for seq in range(1, n + 1):
        issued = format_time(datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=seq))
        doc = signed(payload(origin, seq, prev, issued_at=issued), key(origin.lower()))
        out.append(doc)
        prev = sha256_hex(base64.urlsafe_b64decode(doc["payload"] + "=" * (-len(doc["payload"]) % 4)))
    return out


def payload_hash(doc: dict[str, str]) -> str:
    return sha256_hex(base64.urlsafe_b64decode(doc["payload"] + "=" * (-len(doc["payload"]) % 4)))


def chain_cases() -> list[dict[str, Any]]:
    qa = chain(5)
    hashes = [payload_hash(d) for d in qa]

    def c(cid: str, description: str, doc: dict[str, str], held: list[str], expected: str | None = None
          ) -> dict[str, Any]:
        return case(cid, description, {"envelope_b64": b64(wire(doc)), "keys": MEMBER_KEYS, "now": NOW_TEXT,
                                       "chain": held}, expected)

    fork3 = signed(payload("QA", 3, hashes[1], issued_at="2026-11-01T03:30:00.000Z",
                           body=event_body(status="cancelled")))
    wrong_prev = signed(payload("QA", 4, hashes[1], issued_at="2026-11-01T04:00:00.000Z"))
    return [
        c("first-envelope-accepted", "seq 1 when nothing is held from the origin.", qa[0], []),
        c("valid-successor-accepted", "seq n+1 naming the hash of seq n.", qa[3], hashes[:3]),
        c("exact-duplicate-accepted", "The same envelope again: re-sending is always safe (answered duplicate).",
          qa[1], hashes[:4]),
        c("gap-refused", "seq 5 after 3: an envelope withheld.", qa[4], hashes[:3], "chain-gap"),
        c("first-envelope-missing-refused", "seq 2 when nothing is held.", qa[1], [], "chain-gap"),
        c("prev-mismatch-refused", "seq 4 naming seq 2's hash instead of seq 3's: a rewritten history.",
          wrong_prev, hashes[:3], "chain-fork"),
        c("fork-at-held-seq-refused", "A second, different envelope with a number already held (equivocation).",
          fork3, hashes[:4], "chain-fork"),
        c("fork-at-head-refused", "A different envelope at the head's own number.", fork3, hashes[:3], "chain-fork"),
    ]


# -- registries ---------------------------------------------------------------------------------------------

NAMES = {"QA": {"en": "Katara – Cultural Village Foundation", "ar": "المؤسسة العامة للحي الثقافي كتارا"},
         "KR": {"en": "Korea Foundation"}, "TR": {"en": "Yunus Emre Institute"}}


def registry_v1() -> SignedRegistry:
    founders = [(PublicKey(key(c.lower()).public.key, key(c.lower()).kid, member=c), NAMES[c])
                for c in ("QA", "KR", "TR")]
    return genesis(hub_key=key("hub"), hub_url=HUB_URL, founders=founders, now=GENESIS_AT,
                   lifetime=VECTOR_LIFETIME)


def doc_dict(d: governance.Document) -> dict[str, str]:
    return d.to_dict()


def registry_cases() -> list[dict[str, Any]]:
    v1 = registry_v1()
    hub, qa, applicant = key("hub"), key("qa"), key("applicant")
    when = datetime(2026, 11, 30, tzinfo=UTC)

    def app(base: int = 1, signer: SigningKey = applicant) -> governance.Document:
        return governance.sign_document({"type": "application", "base": base, "member": "SG",
                                         "names": {"en": "Singapore International Foundation"},
                                         "key": bare_jwk(applicant)}, signer, now=when)

    def vote(subject: governance.Document, voter: str, base: int = 1) -> governance.Document:
        return governance.sign_document({"type": "vote", "base": base, "proposal": subject.hash, "voter": voter,
                                         "decision": "approve"}, key(voter.lower()), now=when)

    application = app()
    admit = {"action": "admit", "documents": [doc_dict(d) for d in (application, vote(application, "QA"),
                                                                    vote(application, "KR"))]}
    v2 = governance.next_version(v1, admit, hub, now=when, lifetime=VECTOR_LIFETIME)
    renewed = governance.next_version(v1, {"action": "renew", "documents": []}, hub, now=when - timedelta(days=1),
                                      lifetime=VECTOR_LIFETIME)
    frozen = governance.next_version(v1, {"action": "renew", "documents": []}, hub, now=GENESIS_AT,
                                     lifetime=timedelta(days=30))

    def forged(change: dict[str, Any], members: tuple[Member, ...] | None = None, version: int = 2,
               rogue: bool = False) -> SignedRegistry:
        """A registry version signed by ``signer`` whose content its change does not justify as claimed."""
        reg = v1.registry
        if members is None:  # SG admitted, as an honest admission would
            sg = Member(code="SG", names={"en": "Singapore International Foundation"}, role="member",
                        status="active", keys=(KeyEntry(jwk=bare_jwk(applicant), not_before=format_time(when)),))
            members = (*reg.members, sg)
        new = replace(reg, version=version, issued_at=format_time(when), expires_at=format_time(when
                                                                                              + timedelta(days=365)),
                      members=tuple(sorted(members, key=lambda m: m.code)), change=change)
        signer = key("rogue_hub") if rogue else hub
        if rogue:  # a self-consistent registry from a hub the node never trusted
            new = replace(new, hub_keys=(KeyEntry(jwk=bare_jwk(signer)),))
        return sign_registry(new, signer)

    one_vote = {"action": "admit", "documents": [doc_dict(application), doc_dict(vote(application, "QA"))]}
    stale_app = app(base=7)
    stale = {"action": "admit", "documents": [doc_dict(d) for d in (stale_app, vote(stale_app, "QA", 7),
                                                                    vote(stale_app, "KR", 7))]}
    bad_app = app(signer=key("rogue"))
    bad_sig = {"action": "admit", "documents": [doc_dict(d) for d in (bad_app, vote(bad_app, "QA"),
                                                                      vote(bad_app, "KR"))]}
    kr_suspended = tuple(replace(m, status="suspended") if m.code == "KR" else m for m in v1.registry.members)
    rotation_body = {"type": "rotation", "base": 1, "member": "QA", "new_key": bare_jwk(key("qa_new")),
                     "effective": "2026-11-30T01:00:00.000Z"}
    rotate = {"action": "rotate", "documents": [
        doc_dict(governance.sign_document(rotation_body, qa, now=when)),
        doc_dict(governance.sign_document(rotation_body, key("qa_new"), now=when))]}
    rotated = governance.next_version(v1, rotate, hub, now=when, lifetime=VECTOR_LIFETIME)
    skipped = replace(renewed.registry, version=3)
    tampered = dict(v2.document.to_dict())
    tampered["payload"] = b64u_encode(v2.document.payload.replace(b'"SG"', b'"SX"'))

    def c(cid: str, description: str, trusted: SignedRegistry, candidate: SignedRegistry | dict[str, str],
          expected: str | None = None) -> dict[str, Any]:
        cand = candidate if isinstance(candidate, dict) else candidate.document.to_dict()
        return case(cid, description, {"trusted": trusted.document.to_dict(), "candidate": cand,
                                       "now": NOW_TEXT}, expected)

    return [
        c("valid-admission-accepted", "Version 2 admits SG with an application and a quorum (2 of 3) of votes.",
          v1, v2),
        c("valid-rotation-accepted", "Version 2 rotates QA's key: signed by the current and the new key.",
          v1, rotated),
        c("valid-renewal-accepted", "Version 2 renews the registry and changes nothing else.", v1, renewed),
        c("same-version-same-bytes-accepted", "The version already trusted, byte for byte: nothing to do.", v2, v2),
        c("rollback-refused", "A hub serving version 1 to a node at version 2 (undoing an admission or a "
                              "revocation).", v2, v1, "registry-rollback"),
        c("same-version-other-content-refused", "Two different registries both numbered 2 (a split view).",
          v2, renewed, "registry-conflict"),
        c("expired-registry-refused", "A frozen hub offering a version that expired before now.", v1, frozen,
          "registry-expired"),
        c("untrusted-signer-refused", "A registry signed by a hub key it lists itself but the node never trusted "
                                      "(a hijacked hub).", v1,
          forged({"action": "admit", "documents": admit["documents"]}, rogue=True),
          "registry-untrusted-signer"),
        c("tampered-registry-refused", "A member code changed after the hub signed.", v1, tampered,
          "registry-bad-signature"),
        c("quorum-not-met-refused", "An admission with one vote of the two needed.", v1, forged(one_vote),
          "quorum-not-met"),
        c("governance-replayed-from-other-base-refused",
          "Votes collected for registry version 7 replayed onto version 1.", v1, forged(stale),
          "stale-governance-document"),
        c("application-not-signed-by-presented-key-refused",
          "An application signed by a key other than the one it asks to register.", v1, forged(bad_sig),
          "bad-governance-signature"),
        c("unjustified-change-refused", "A renewal that also suspends KR: the hub deciding alone.", v1,
          forged({"action": "renew", "documents": []}, kr_suspended), "unjustified-change"),
        c("version-skipped-refused", "Version 3 offered to a node at version 1: every step must be checked.", v1,
          sign_registry(skipped, hub), "registry-version-skipped"),
        c("small-order-member-key-refused",
          "A version admitting SG with the all-zero key (small order: OpenSSL accepts an all-zero signature for any "
          "message under it, so SG could sign anything).", v1,
          forged(admit, (*v1.registry.members, Member(code="SG", names={"en": "Singapore International Foundation"},
                                                       keys=(KeyEntry(jwk=WEAK_JWK, not_before=format_time(when)),)))),
          "bad-key"),
    ]


# -- the log: envelopes, checkpoints, proofs ------------------------------------------------------------------


def log_entries() -> list[bytes]:
    """Seven log entries (leaf inputs): QA's first four envelopes and KR's first three, interleaved."""
    qa, kr = chain(4, "QA"), chain(3, "KR")
    docs = [qa[0], kr[0], qa[1], qa[2], kr[1], qa[3], kr[2]]
    return [leaf_bytes(d) for d in docs]


def get_node_for(leaves: list[bytes]) -> Callable[[int, int], bytes]:
    hashes = [merkle.leaf_hash(e) for e in leaves]

    def get_node(level: int, index: int) -> bytes:
        width = 1 << level
        return merkle.root(hashes[index * width:(index + 1) * width])
    return get_node


def log_root(entries: list[bytes]) -> bytes:
    return merkle.root([merkle.leaf_hash(e) for e in entries])


CHECKPOINT_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def checkpoint_cases() -> list[dict[str, Any]]:
    entries = log_entries()
    hub, qa, kr = key("hub"), key("qa"), key("kr")
    seven = cp.sign_checkpoint("IPDN", 7, log_root(entries), hub, CHECKPOINT_AT)
    six = cp.sign_checkpoint("IPDN", 6, log_root(entries[:6]), hub, CHECKPOINT_AT)
    witnessed = seven.with_signature(cp.cosign(seven, qa)).with_signature(cp.cosign(seven, kr))

    def general(payload_bytes: bytes, signers: list[tuple[SigningKey, str]]) -> dict[str, Any]:
        sigs = []
        for signer, typ in signers:
            protected = b64u_encode(canonical_bytes({"alg": "EdDSA", "kid": signer.kid, "typ": typ}))
            sig = signer.sign(f"{protected}.{b64u_encode(payload_bytes)}".encode("ascii"))
            sigs.append({"protected": protected, "signature": b64u_encode(sig)})
        return {"payload": b64u_encode(payload_bytes), "signatures": sigs}

    def body(**changes: Any) -> bytes:
        d = {**seven.checkpoint.to_dict(), **changes}
        return canonical_bytes(d)

    tampered = dict(seven.to_dict(), payload=b64u_encode(body(size=8)))
    other_root = dict(seven.to_dict(), payload=b64u_encode(body(root=log_root(entries[:6]).hex())))
    keys = HUB_KEYS + MEMBER_KEYS

    def c(cid: str, description: str, doc: dict[str, Any], expected: str | None = None) -> dict[str, Any]:
        return case(cid, description, {"check": "checkpoint", "checkpoint": doc, "keys": keys, "network": "IPDN"},
                    expected)

    def co(cid: str, description: str, member: str, entry: dict[str, str], expected: str | None = None
           ) -> dict[str, Any]:
        return case(cid, description, {"check": "cosignature", "checkpoint": seven.to_dict(), "member": member,
                                       "cosignature": entry, "keys": keys, "network": "IPDN"}, expected)

    typ = cp.TYP
    return [
        c("hub-signed-checkpoint-accepted", "Size 7 and its root, signed by the registry's hub key.", seven.to_dict()),
        c("witnessed-checkpoint-accepted", "The same checkpoint with QA's and KR's co-signatures.",
          witnessed.to_dict()),
        c("checkpoint-by-unknown-hub-key-refused", "A checkpoint signed by a key the registry does not list as the "
                                                    "hub's (a fake hub).",
          general(seven.payload, [(key("rogue_hub"), typ)]), "checkpoint-bad-signature"),
        c("checkpoint-signed-by-member-key-refused", "A member's key is not a hub key.",
          general(seven.payload, [(qa, typ)]), "checkpoint-bad-signature"),
        c("checkpoint-size-tampered-refused", "The size raised after signing (hiding entries behind a larger "
                                               "tree).", tampered, "checkpoint-bad-signature"),
        c("checkpoint-root-tampered-refused", "The root replaced after signing (a split view).", other_root,
          "checkpoint-bad-signature"),
        c("checkpoint-of-other-network-refused", "A checkpoint validly signed for another network (replayed "
                                                 "across networks).",
          general(body(network="IPDN-STAGING"), [(hub, typ)]), "checkpoint-bad-signature"),
        c("cosignature-first-refused", "The first signature must be the hub's: a co-signature alone proves "
                                       "nothing about the log.",
          general(seven.payload, [(qa, typ), (hub, typ)]), "checkpoint-bad-signature"),
        c("checkpoint-no-signatures-refused", "An unsigned checkpoint.",
          {"payload": seven.to_dict()["payload"], "signatures": []}, "checkpoint-bad-signature"),
        c("envelope-typ-on-checkpoint-refused", "A signature made as an envelope presented as a checkpoint's.",
          general(seven.payload, [(hub, ENVELOPE_TYP)]), "checkpoint-invalid"),
        c("checkpoint-extra-member-refused", "The payload has exactly network, size, root, issued_at.",
          general(body(tree="rfc9162"), [(hub, typ)]), "checkpoint-invalid"),
        c("checkpoint-root-not-hex-refused", "The root is lower-case hex SHA-256.",
          general(body(root="Z" * 64), [(hub, typ)]), "checkpoint-invalid"),
        co("own-cosignature-accepted", "QA co-signs the checkpoint it verified.", "QA", cp.cosign(seven, qa)),
        co("cosignature-by-another-member-refused", "QA submitting KR's co-signature as its own.", "QA",
           cp.cosign(seven, kr), "bad-cosignature"),
        co("cosignature-of-other-checkpoint-refused", "A co-signature of size 6 offered for size 7.", "QA",
           cp.cosign(six, qa), "bad-cosignature"),
        co("cosignature-by-unknown-key-refused", "A co-signature by a key no registry lists.", "QA",
           cp.cosign(seven, key("rogue")), "bad-cosignature"),
        co("cosignature-tampered-refused", "A co-signature with a flipped byte.", "QA",
           {**cp.cosign(seven, qa), "signature": b64u_encode(b"\x01" * 64)}, "bad-cosignature"),
    ]


def proof_cases() -> list[dict[str, Any]]:
    entries = log_entries()
    get_node = get_node_for(entries)
    texts = [e.decode("ascii") for e in entries]

    def roots(n: int) -> str:
        return log_root(entries[:n]).hex()

    def inclusion(index: int, size: int) -> list[str]:
        return [h.hex() for h in merkle.inclusion_proof(index, size, get_node)]

    def consistency(a: int, b: int) -> list[str]:
        return [h.hex() for h in merkle.consistency_proof(a, b, get_node)]

    def inc(cid: str, description: str, entry: str, index: int, size: int, proof: list[str], root: str,
            expected: str | None = None) -> dict[str, Any]:
        return case(cid, description, {"check": "inclusion", "entry": entry, "index": index, "size": size,
                                       "proof": proof, "root": root}, "inclusion-proof-invalid" if expected else None)

    def con(cid: str, description: str, a: int, b: int, proof: list[str], root_a: str, root_b: str,
            expected: str | None = None) -> dict[str, Any]:
        return case(cid, description, {"check": "consistency", "from": a, "to": b, "proof": proof,
                                       "root_from": root_a, "root_to": root_b},
                    "consistency-proof-invalid" if expected else None)

    def flip(proof: list[str], i: int = 0) -> list[str]:
        out = list(proof)
        out[i] = ("0" if out[i][0] != "0" else "1") + out[i][1:]
        return out

    bad = "refused"
    return [
        inc("inclusion-first-leaf-accepted", "Leaf 0 of 7.", texts[0], 0, 7, inclusion(0, 7), roots(7)),
        inc("inclusion-middle-leaf-accepted", "Leaf 3 of 7.", texts[3], 3, 7, inclusion(3, 7), roots(7)),
        inc("inclusion-last-leaf-accepted", "Leaf 6 of 7 (the right edge).", texts[6], 6, 7, inclusion(6, 7),
            roots(7)),
        inc("inclusion-single-leaf-tree-accepted", "A tree of one: the empty proof, the root is the leaf hash.",
            texts[0], 0, 1, [], roots(1)),
        inc("inclusion-tampered-hash-refused", "One proof hash altered.", texts[3], 3, 7, flip(inclusion(3, 7)),
            roots(7), bad),
        inc("inclusion-other-entry-refused", "An envelope that is not in the log, with another leaf's proof.",
            texts[2], 3, 7, inclusion(3, 7), roots(7), bad),
        inc("inclusion-wrong-index-refused", "The right entry claimed at another position.", texts[3], 2, 7,
            inclusion(3, 7), roots(7), bad),
        inc("inclusion-extra-hash-refused", "A trailing proof hash (proofs have exactly the implied length).",
            texts[3], 3, 7, [*inclusion(3, 7), "00" * 32], roots(7), bad),
        inc("inclusion-index-beyond-size-refused", "Index 7 in a tree of 7.", texts[6], 7, 7, inclusion(6, 7),
            roots(7), bad),
        inc("inclusion-under-other-root-refused", "A valid proof checked against another checkpoint's root.",
            texts[3], 3, 7, inclusion(3, 7), roots(6), bad),
        con("consistency-accepted", "Size 3 is a prefix of size 7.", 3, 7, consistency(3, 7), roots(3), roots(7)),
        con("consistency-from-perfect-tree-accepted", "Size 4 (a perfect subtree) to size 7.", 4, 7,
            consistency(4, 7), roots(4), roots(7)),
        con("consistency-from-one-accepted", "Size 1 to size 7.", 1, 7, consistency(1, 7), roots(1), roots(7)),
        con("consistency-equal-sizes-accepted", "from = to: an empty proof and equal roots.", 7, 7, [], roots(7),
            roots(7)),
        con("consistency-tampered-refused", "A proof hash altered.", 3, 7, flip(consistency(3, 7)), roots(3),
            roots(7), bad),
        con("consistency-rewritten-history-refused", "The old root is not a prefix of the new tree (a log that "
                                                      "rewrote entry 0).", 3, 7, consistency(3, 7),
            flip([roots(3)])[0], roots(7), bad),
        con("consistency-equal-sizes-different-roots-refused", "from = to with two roots: a split view.", 7, 7, [],
            roots(7), roots(6), bad),
        con("consistency-equal-sizes-with-proof-refused", "from = to needs an empty proof.", 7, 7,
            consistency(3, 7)[:1], roots(7), roots(7), bad),
        con("consistency-from-empty-refused", "A proof from size 0 proves nothing.", 0, 7, [], merkle.EMPTY_ROOT.hex(),
            roots(7), bad),
        con("consistency-shrinking-log-refused", "from > to: a log never shrinks.", 7, 3, consistency(3, 7),
            roots(7), roots(3), bad),
        con("consistency-short-proof-refused", "A proof missing its last hash.", 3, 7, consistency(3, 7)[:-1],
            roots(3), roots(7), bad),
    ]


# -- push requests (RFC 9421) --------------------------------------------------------------------------------


def push_body() -> bytes:
    return wire({"envelopes": [chain(1, "QA")[0]]})


def push_request(*, created: int = NOW_UNIX - 2, nonce: str | None = "n-0001", signer: str = "qa",
                 body: bytes | None = None, components: tuple[str, ...] = httpsig.DEFAULT_COMPONENTS,
                 target: str = HUB_URL + PUSH_PATH, alg_param: str | None = None) -> dict[str, Any]:
    body = push_body() if body is None else body
    k = key(signer)
    if alg_param is None:
        headers = httpsig.sign_request("POST", target, {}, body, private_key=k.key, keyid=k.kid, created=created,
                                       nonce=nonce, components=components)
    else:  # a parameter set sign_request will not make
        params = httpsig.SignatureParams(created=created, keyid=k.kid, alg=alg_param, nonce=nonce)
        headers = {"Content-Digest": httpsig.content_digest(body)}
        base = httpsig.signature_base("POST", target, headers, components, params)
        headers.update(httpsig.format_signature_headers("sig1", components, params, k.sign(base.encode("ascii"))))
    return {"method": "POST", "path": PUSH_PATH, "headers": {"Content-Type": "application/json", **headers},
            "body_b64": b64(body)}


def push_cases() -> list[dict[str, Any]]:
    keys = MEMBER_KEYS

    def c(cid: str, description: str, request: dict[str, Any], expected: str | None = None,
          seen: list[dict[str, Any]] | None = None, started: int = NOW_UNIX - 3600) -> dict[str, Any]:
        return case(cid, description, {"hub_url": HUB_URL, "now": NOW_UNIX, "started_at": started,
                                       "max_skew": MAX_SKEW, "keys": keys, "seen": seen or [], "request": request},
                    expected)

    good = push_request()
    headers = good["headers"]
    other_body = wire({"envelopes": [chain(2, "QA")[1]]})
    return [
        c("signed-push-accepted", "A push signed by QA's key, covering method, target URI and Content-Digest.", good),
        c("second-signature-same-second-accepted", "Another push in the same second with a fresh nonce.",
          push_request(nonce="n-0002"), seen=[good]),
        c("push-at-skew-limit-accepted", "created exactly max_skew seconds ago (and after the hub started).",
          push_request(created=NOW_UNIX - MAX_SKEW, nonce="n-0003")),
        c("replayed-push-refused", "The same signed request sent again (a captured request replayed).", good,
          "signature-replayed", seen=[good]),
        c("stale-signature-refused", "created more than max_skew seconds before now.",
          push_request(created=NOW_UNIX - MAX_SKEW - 1), "signature-expired"),
        c("signature-before-hub-start-refused", "created before the hub started: a request captured before a "
                                                "restart, which the hub's memory of signatures cannot rule out.",
          push_request(created=NOW_UNIX - 200), "signature-expired", started=NOW_UNIX - 100),
        c("signature-from-future-refused", "created more than max_skew seconds after now (pre-signed for later "
                                           "replay).", push_request(created=NOW_UNIX + MAX_SKEW + 1),
          "signature-from-future"),
        c("body-swapped-under-digest-refused", "Another body under the signed Content-Digest.",
          {**good, "body_b64": b64(other_body)}, "content-digest-mismatch"),
        c("digest-replaced-refused", "Body and Content-Digest both replaced: the signature covers the digest.",
          {**good, "body_b64": b64(other_body),
           "headers": {**headers, "Content-Digest": httpsig.content_digest(other_body)}}, "bad-signature"),
        c("signed-for-other-target-refused", "A signature made for another URI replayed at the hub.",
          push_request(target="https://evil.example" + PUSH_PATH), "bad-signature"),
        c("signature-by-other-key-refused", "Signed by a rogue key naming QA's keyid.",
          {**good, "headers": {**headers, "Signature": push_request(signer="rogue")["headers"]["Signature"]}},
          "bad-signature"),
        c("unknown-key-refused", "A keyid the registry does not list.", push_request(signer="rogue"),
          "unknown-key"),
        c("suspended-member-key-refused", "TR is suspended: its key may not push.", push_request(signer="tr"),
          "unknown-key"),
        c("ended-key-refused", "QA's previous key, past its not_after.", push_request(signer="qa_old"),
          "unknown-key"),
        c("unsigned-push-refused", "No Signature-Input and no Signature.",
          {**good, "headers": {"Content-Type": "application/json", "Content-Digest": headers["Content-Digest"]}},
          "signature-missing"),
        c("signature-without-input-refused", "A Signature without its Signature-Input.",
          {**good, "headers": {k: v for k, v in headers.items() if k != "Signature-Input"}}, "signature-malformed"),
        c("garbled-signature-input-refused", "Signature-Input that is not a structured-field dictionary.",
          {**good, "headers": {**headers, "Signature-Input": "sig1=(\"@method\""}}, "signature-malformed"),
        c("other-algorithm-refused", "alg=\"hmac-sha256\": the algorithm is not the sender's choice.",
          push_request(alg_param="hmac-sha256"), "signature-malformed"),
        c("digest-not-covered-refused", "A signature over method and target only: the body could be anything.",
          push_request(components=("@method", "@target-uri")), "signature-coverage-insufficient"),
        c("target-not-covered-refused", "A signature that does not cover the target URI (replayable at another "
                                        "endpoint).",
          push_request(components=("@method", "content-digest")), "signature-coverage-insufficient"),
    ]


# -- webhooks -------------------------------------------------------------------------------------------------

MSG_ID = "msg_01KB2Q9Z6V3D8XQ5T7W4N1C0HR"


def webhook_body() -> bytes:
    env = chain(1, "QA")[0]
    p = payload()
    item = {"record_id": p["record_id"], "origin": "QA", "kind": p["kind"], "version": 1, "op": "put",
            "status": "scheduled", "seq": 1, "hash": payload_hash(env), "issued_at": p["issued_at"],
            "body": p["body"], "envelope": env}
    return wire({"type": "record.published", "timestamp": "2026-12-01T09:59:58.120Z", "data": item})


def webhook_cases() -> list[dict[str, Any]]:
    body = webhook_body()
    signer, other = key("webhook"), key("webhook_other")

    def sig(ts: int, b: bytes = body, k: SigningKey = signer, msg: str = MSG_ID, secret: str | None = WEBHOOK_SECRET
            ) -> str:
        return webhooks.signature_header(msg, ts, b, key=k, secret=secret)

    def c(cid: str, description: str, headers: dict[str, str], expected: str | None = None, b: bytes = body
          ) -> dict[str, Any]:
        return case(cid, description, {"headers": {"content-type": "application/json", **headers},
                                       "body_b64": b64(b), "public_key": webhooks.public_key_text(signer),
                                       "now": NOW_UNIX, "tolerance_seconds": MAX_SKEW}, expected)

    ts = NOW_UNIX - 1

    def h(sig_value: str, t: int | str = ts, msg: str = MSG_ID) -> dict[str, str]:
        return {"webhook-id": msg, "webhook-timestamp": str(t), "webhook-signature": sig_value}

    tampered = body.replace(b'"status":"scheduled"', b'"status":"cancelled"')
    hmac_only = "v1," + base64.b64encode(hmac.new(webhooks.secret_bytes(WEBHOOK_SECRET),
                                                  webhooks.signed_content(MSG_ID, ts, body),
                                                  hashlib.sha256).digest()).decode("ascii")
    return [
        c("signed-delivery-accepted", "v1 (HMAC) and v1a (Ed25519 by the pinned webhook key).", h(sig(ts))),
        c("ed25519-only-delivery-accepted", "A v1a signature alone.", h(sig(ts, secret=None))),
        c("delivery-at-tolerance-accepted", "webhook-timestamp exactly 5 minutes old.",
          h(sig(NOW_UNIX - MAX_SKEW), NOW_UNIX - MAX_SKEW)),
        c("signatures-in-any-order-accepted", "v1a listed before v1.",
          h(" ".join(reversed(sig(ts).split(" "))))),
        c("tampered-body-refused", "The event changed in transit (a record shown cancelled).",
          h(sig(ts)), "bad-signature", tampered),
        c("signed-by-other-key-refused", "Signed by a key other than the pinned one (a forged node).",
          h(sig(ts, k=other, secret=None)), "bad-signature"),
        c("hmac-only-refused", "No v1a signature: the pinned Ed25519 key is what this suite checks (a leaked "
                               "whsec_ secret must not be enough).", h(hmac_only), "bad-signature"),
        c("redated-delivery-refused", "An old delivery re-sent with a fresh webhook-timestamp.",
          h(sig(NOW_UNIX - 4000), ts), "bad-signature"),
        c("new-id-on-old-delivery-refused", "A delivery re-sent under a new webhook-id to defeat deduplication.",
          h(sig(ts), msg="msg_01KB2Q9Z6V3D8XQ5T7W4N1C0HS"), "bad-signature"),
        c("stale-timestamp-refused", "webhook-timestamp more than 5 minutes old (a replay).",
          h(sig(NOW_UNIX - MAX_SKEW - 1), NOW_UNIX - MAX_SKEW - 1), "signature-expired"),
        c("future-timestamp-refused", "webhook-timestamp more than 5 minutes ahead.",
          h(sig(NOW_UNIX + MAX_SKEW + 1), NOW_UNIX + MAX_SKEW + 1), "signature-from-future"),
        c("unsigned-delivery-refused", "No webhook-signature header.",
          {"webhook-id": MSG_ID, "webhook-timestamp": str(ts)}, "signature-missing"),
        c("timestamp-not-integer-refused", "webhook-timestamp is integer Unix seconds.",
          h(sig(ts), "2026-12-01T09:59:59Z"), "signature-malformed"),
    ]


# -- the suite ---------------------------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "strict-json": strict_json_cases, "envelopes": envelope_cases, "chains": chain_cases,
    "registries": registry_cases, "checkpoints": checkpoint_cases, "proofs": proof_cases, "push": push_cases,
    "webhooks": webhook_cases,
}


def build(categories: tuple[str, ...] = CATEGORIES) -> dict[str, dict[str, Any]]:
    """Every category's document: ``{"category", "format", "description", "now", "cases"}``."""
    out = {}
    for name in categories:
        cases = BUILDERS[name]()
        ids = [c["id"] for c in cases]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{name}: duplicate case ids")
        out[name] = {"category": name, "format": FORMAT_VERSION, "description": DESCRIPTIONS[name],
                     "now": NOW_TEXT, "cases": cases}
    return out


def render(document: dict[str, Any]) -> bytes:
    """The file's bytes: two-space indented JSON, keys in the order built, non-ASCII kept, a final newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def files(categories: tuple[str, ...] = CATEGORIES) -> dict[str, bytes]:
    """File name -> bytes of every category."""
    return {f"{name}.json": render(doc) for name, doc in build(categories).items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m federation.conformance.generate", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory for <category>.json")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    args = p.parse_args(argv)
    stale = []
    for name, data in files().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(name)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
