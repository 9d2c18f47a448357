"""Write the bad-input corpus: one file per case under cases/, and manifest.json naming each case's endpoint,
how it is sent and the RFC 9457 reason it must be refused with. ``python -m tests.corpus.make_corpus``.

Everything is deterministic (keys from fixed seeds, Ed25519 signatures, JCS, fixed times), so running this again
gives the same bytes; tests/test_corpus.py checks that the committed files are exactly what this writes. The
keys are test keys, derived from public seeds: never use them anywhere else.

HTTP message signatures (RFC 9421) cannot be in the files: their ``created`` must be fresh. A case names who
signs its request when sent (``sign``) and how the request is spoiled (``tamper``, ``created_offset``,
``replay``); the body is the file. ``before`` lists the cases that must be accepted first (the chain state the
case is refused against).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from federation.protocol.canonical import canonical_bytes
from federation.protocol.envelope import TYP, Envelope, Payload, sign_envelope
from federation.protocol.keys import SigningKey
from federation.protocol.schemas import default_schemas
from tests.support.factories import example_bodies

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"
MANIFEST = HERE / "manifest.json"
ISSUED = "2026-11-01T09:00:00.000Z"  # before any test runs, after no key's validity begins (genesis: open)
PUSH, COSIGN, RECORDS = "hub:/api/v1/envelopes", "hub:/api/v1/log/cosignatures", "node:/api/v1/records"
MEMBERS = ("QA", "KR", "TR", "HU")  # HU's key is revoked by the test before the corpus is sent


def corpus_key(name: str) -> SigningKey:
    """The corpus's key for a member code (or ``stranger``: a key no registry lists)."""
    seed = hashlib.sha256(f"ipdn-exchange test corpus key {name}".encode()).digest()
    return SigningKey(Ed25519PrivateKey.from_private_bytes(seed))


@dataclass
class Case:
    name: str
    endpoint: str
    status: int  # the HTTP status of the answer (200: a batch answered per envelope)
    reason: str  # the problem's reason (the last segment of its type)
    attack: str  # what the input tries, in a few words
    level: str = "request"  # request: the answer is the problem; envelope: results[0].problem is
    sign: str | None = "QA"  # who signs the HTTP request when sent (None: unsigned)
    tamper: bool = False  # change the body after signing
    created_offset: int = 0  # seconds added to the signature's created (stale or from the future)
    replay: bool = False  # send the same signed request twice; the second is the case
    before: list[str] = field(default_factory=list)
    file: str = ""


CASES: list[Case] = []
FILES: dict[str, bytes] = {}


def add(case: Case, body: bytes, *, compress: bool = False) -> None:
    case.file = f"{case.name}.json" + (".gz" if compress else "")
    FILES[case.file] = gzip.compress(body, mtime=0) if compress else body
    CASES.append(case)


def event(**changes: Any) -> dict[str, Any]:
    return {**example_bodies("cultural-event")[0], **changes}


def payload(origin: str, seq: int, prev: str | None, *, body: dict[str, Any] | None = None, **over: Any) -> Payload:
    # The first version, which every body here is meant for (the bad ones too): a newer schema version leaves the
    # corpus's bytes as they are.
    fields: dict[str, Any] = {
        "origin": origin, "seq": seq, "prev": prev, "record_id": f"{origin}:corpus-{seq}", "version": 1,
        "kind": "cultural-event", "schema": default_schemas().versions["cultural-event"][0], "op": "put",
        "issued_at": ISSUED, "body": event() if body is None else body}
    fields.update(over)
    return Payload(**fields)


def envelope(p: Payload, signer: str | None = None) -> Envelope:
    return sign_envelope(corpus_key(signer or p.origin), p)


def raw_envelope(payload_bytes: bytes, signer: str, **header: Any) -> dict[str, str]:
    """A JWS over arbitrary payload bytes (and header changes): well signed, whatever the bytes say."""
    key = corpus_key(signer)
    protected = base64.urlsafe_b64encode(canonical_bytes(
        {"alg": "EdDSA", "kid": key.kid, "typ": TYP, **header})).rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(payload_bytes).rstrip(b"=").decode()
    sig = base64.urlsafe_b64encode(key.sign(f"{protected}.{body}".encode())).rstrip(b"=").decode()
    return {"protected": protected, "payload": body, "signature": sig}


def batch(*envs: Envelope | dict[str, Any]) -> bytes:
    return json.dumps({"envelopes": [e.to_dict() if isinstance(e, Envelope) else e for e in envs]},
                      separators=(",", ":")).encode()


def build() -> None:
    CASES.clear()
    FILES.clear()
    qa1 = envelope(payload("QA", 1, None))
    kr1 = envelope(payload("KR", 1, None))
    hu1 = envelope(payload("HU", 1, None))
    canonical_qa1 = canonical_bytes(payload("QA", 2, qa1.hash).to_dict())

    # -- the chain state every envelope case is refused against: QA and KR each at seq 1 --------------------
    add(Case("setup-qa-seq1", PUSH, 200, "accepted", "none: a valid push", level="setup"), batch(qa1))
    add(Case("setup-kr-seq1", PUSH, 200, "accepted", "none: a valid push", level="setup", sign="KR"), batch(kr1))
    setup = ["setup-qa-seq1", "setup-kr-seq1"]

    # -- the request body: strict JSON and the batch's shape (PROTOCOL.md §2, §8.2) ----------------------------
    good = batch(qa1)
    add(Case("truncated-json", PUSH, 400, "malformed-json", "a body cut short"), good[:len(good) // 2])
    add(Case("trailing-garbage", PUSH, 400, "malformed-json", "two JSON texts, one hidden"), good + b"{}")
    add(Case("empty-body", PUSH, 400, "malformed-json", "nothing at all"), b"")
    add(Case("duplicate-key-batch", PUSH, 400, "duplicate-key", "two readings of one document"),
        b'{"envelopes":[],"envelopes":' + good[len(b'{"envelopes":'):])
    add(Case("invalid-utf8-body", PUSH, 400, "invalid-utf8", "bytes that are not UTF-8"),
        b'{"envelopes":[],"note":"\xc3\x28"}')
    add(Case("overlong-utf8-body", PUSH, 400, "invalid-utf8", "an overlong encoding of '/'"),
        b'{"envelopes":[],"note":"\xc0\xaf"}')
    add(Case("bom-body", PUSH, 400, "bom", "a byte order mark before the JSON"), b"\xef\xbb\xbf" + good)
    add(Case("lone-surrogate-body", PUSH, 400, "lone-surrogate", "an unpaired surrogate escape"),
        b'{"envelopes":[],"note":"\\ud800"}')
    add(Case("nan-body", PUSH, 400, "non-finite-number", "NaN where JSON has none"), b'{"envelopes":[NaN]}')
    add(Case("huge-number-body", PUSH, 400, "number-out-of-range", "a number past IEEE 754"),
        b'{"envelopes":[1e400]}')
    add(Case("big-integer-body", PUSH, 400, "number-out-of-range", "an integer past 2^53"),
        b'{"envelopes":[9007199254740993]}')
    add(Case("deeply-nested-body", PUSH, 400, "too-deep", "100,000 nested arrays (parser recursion)"),
        b'{"envelopes":' + b"[" * 100_000 + b"]" * 100_000 + b"}", compress=True)
    add(Case("huge-body", PUSH, 413, "too-large", "a body past the hub's limit (1 MiB in the test)"),
        b'{"envelopes":["' + b"A" * (1024 * 1024) + b'"]}', compress=True)
    add(Case("envelopes-not-a-list", PUSH, 400, "malformed-batch", "a wrong type for envelopes"),
        b'{"envelopes":{"0":' + qa1.to_bytes() + b"}}")
    add(Case("batch-extra-member", PUSH, 400, "malformed-batch", "a member the schema does not allow"),
        b'{"envelopes":[],"admin":true}')
    add(Case("batch-not-an-object", PUSH, 400, "malformed-batch", "a list for an object"), b"[" + qa1.to_bytes() + b"]")
    add(Case("batch-too-many", PUSH, 413, "batch-too-large", "more envelopes than the registry's max_batch"),
        b'{"envelopes":[' + b",".join([b"{}"] * 501) + b"]}")

    # -- the request's RFC 9421 signature (the body is a valid re-push of QA seq 1) -------------------------
    add(Case("unsigned-push", PUSH, 401, "signature-missing", "a push nobody signed", sign=None, before=setup), good)
    add(Case("stranger-signed-push", PUSH, 401, "unknown-key", "a key outside the registry", sign="stranger"), good)
    add(Case("revoked-key-push", PUSH, 401, "unknown-key", "a key its member revoked", sign="HU"), batch(hu1))
    add(Case("body-swapped-after-signing", PUSH, 401, "content-digest-mismatch", "a body changed in transit",
             tamper=True), good)
    add(Case("stale-signature", PUSH, 401, "signature-expired", "a request signed ten minutes ago",
             created_offset=-600), good)
    add(Case("future-signature", PUSH, 401, "signature-from-future", "a request dated ten minutes ahead",
             created_offset=600), good)
    add(Case("replayed-push", PUSH, 401, "signature-replayed", "the same signed request sent twice",
             replay=True, before=setup), good)

    # -- one envelope of a well-formed, well-signed batch (PROTOCOL.md §3, §5) ------------------------------
    def bad(name: str, reason: str, attack: str, env: Envelope | dict[str, Any], *, compress: bool = False,
            sign: str = "QA") -> None:
        add(Case(name, PUSH, 200, reason, attack, level="envelope", before=setup, sign=sign), batch(env),
            compress=compress)

    qa2 = payload("QA", 2, qa1.hash)
    bad("env-not-a-jws", "malformed-envelope", "an envelope that is no JWS", {"protected": "eyJ9"})
    bad("env-extra-member", "malformed-envelope", "a fourth JWS member",
        {**envelope(qa2).to_dict(), "header": {"kid": "x"}})
    bad("env-alg-none", "unsupported-alg", "alg none (RFC 8725 §3.1)", raw_envelope(canonical_qa1, "QA", alg="none"))
    bad("env-wrong-typ", "wrong-typ", "a registry's typ on an envelope",
        raw_envelope(canonical_qa1, "QA", typ="ipdn-registry+jws"))
    bad("env-truncated-payload", "malformed-json", "payload JSON cut short", raw_envelope(canonical_qa1[:40], "QA"))
    bad("env-duplicate-key-payload", "duplicate-key", "two seqs in one payload",
        raw_envelope(canonical_qa1.replace(b'"seq":2', b'"seq":2,"seq":3'), "QA"))
    bad("env-invalid-utf8-payload", "invalid-utf8", "payload bytes that are not UTF-8",
        raw_envelope(canonical_qa1.replace(b"Doha", b"Doh\xe1"), "QA"))
    bad("env-nan-payload", "non-finite-number", "NaN in a payload",
        raw_envelope(canonical_qa1.replace(b'"version":1', b'"version":NaN'), "QA"))
    bad("env-deeply-nested-payload", "too-deep", "a record body nested 40 deep",
        envelope(payload("QA", 2, qa1.hash, body=event(extra=json.loads("[" * 40 + "]" * 40)))))
    bad("env-too-large", "too-large", "a payload past the registry's envelope limit",
        envelope(payload("QA", 2, qa1.hash, body=event(description={"en": "x" * 300_000}))), compress=True)
    bad("env-bidi-record-id", "bidi-in-identifier", "a record id that reads one way and is another",
        raw_envelope(canonical_bytes({**qa2.to_dict(), "record_id": "QA:corpus-\u202e2-txe"}), "QA"))
    bad("env-bidi-kid", "bidi-in-identifier", "a key id that hides a bidi control",
        raw_envelope(canonical_qa1, "QA", kid=corpus_key("QA").kid[:10] + "\u2067" + corpus_key("QA").kid[10:]))
    bad("env-seq-wrong-type", "malformed-envelope", "a string where seq is an integer",
        raw_envelope(canonical_qa1.replace(b'"seq":2', b'"seq":"2"'), "QA"))
    bad("env-payload-extra-member", "malformed-envelope", "a payload member the protocol lacks",
        raw_envelope(canonical_qa1.replace(b"{", b'{"admin":true,', 1), "QA"))  # in JCS order: "admin" sorts first
    bad("env-payload-not-canonical", "payload-not-canonical", "a signed payload that is not its JCS bytes",
        raw_envelope(canonical_qa1.replace(b'"seq":2', b'"seq": 2'), "QA"))
    bad("env-schema-violation", "schema-invalid", "a body its pinned schema refuses",
        envelope(payload("QA", 2, qa1.hash, body=event(event_type="gala"))))
    bad("env-unknown-schema", "unknown-schema", "a schema version nobody published",
        envelope(payload("QA", 2, qa1.hash, schema="https://schemas.ipdn.network/cultural-event/9.9.9")))
    bad("env-forged-signature", "bad-signature", "QA's kid, another key's signature",
        {**envelope(qa2).to_dict(), "signature": envelope(qa2, "stranger").to_dict()["signature"]})
    bad("env-payload-altered", "bad-signature", "a payload changed after signing",
        {**envelope(qa2).to_dict(), "payload": envelope(payload("QA", 2, qa1.hash, version=7)).to_dict()["payload"]})
    bad("env-stranger-key", "key-unknown", "an envelope signed by a key outside the registry",
        envelope(qa2, "stranger"))
    bad("env-other-members-key", "key-not-origin", "KR's key signing QA's envelope", envelope(qa2, "KR"))
    bad("env-not-own", "not-own-envelope", "QA pushing KR's envelope", envelope(payload("KR", 2, kr1.hash)))
    bad("env-chain-gap", "chain-gap", "seq 3 with no seq 2", envelope(payload("QA", 3, qa1.hash)))
    bad("env-chain-fork", "chain-fork", "a second, different seq 1",
        envelope(payload("QA", 1, None, body=event(status="cancelled"))))
    bad("env-wrong-prev", "chain-fork", "seq 2 naming another predecessor", envelope(payload("QA", 2, "0" * 64)))
    bad("env-issued-in-future", "issued-in-future", "an envelope dated next year",
        envelope(payload("QA", 2, qa1.hash, issued_at="2099-01-01T00:00:00.000Z")))

    # -- co-signatures (PROTOCOL.md §11) -------------------------------------------------------------------------
    add(Case("cosign-malformed", COSIGN, 400, "malformed-cosignature", "a co-signature of the wrong shape",
             before=setup), b'{"size":"1","signature":[]}')
    add(Case("cosign-no-checkpoint", COSIGN, 404, "no-checkpoint", "co-signing a checkpoint never made"),
        b'{"size":999999,"signature":{"protected":"e30","signature":"AA"}}')
    add(Case("cosign-duplicate-key", COSIGN, 400, "duplicate-key", "two sizes in one co-signature"),
        b'{"size":1,"size":2,"signature":{}}')

    # -- the node's authoring API (the operator's input; refused, nothing written) -------------------------------
    def node(name: str, status: int, reason: str, attack: str, body: bytes, *, compress: bool = False) -> None:
        add(Case(name, RECORDS, status, reason, attack, sign="operator"), body, compress=compress)

    record = json.dumps({"kind": "cultural-event", "body": event()}).encode()
    node("node-truncated-json", 400, "malformed-json", "a record cut short", record[:len(record) // 2])
    node("node-duplicate-key", 400, "duplicate-key", "two kinds in one request",
         b'{"kind":"cultural-event","kind":"capacity-programme","body":{}}')
    node("node-invalid-utf8", 400, "invalid-utf8", "bytes that are not UTF-8", record.replace(b"Doha", b"Doh\xff"))
    node("node-deeply-nested", 400, "too-deep", "100,000 nested arrays",
         b'{"kind":"cultural-event","body":' + b"[" * 100_000 + b"]" * 100_000 + b"}", compress=True)
    node("node-huge-body", 413, "too-large", "a body past the node's 1 MiB limit",
         b'{"kind":"cultural-event","body":{"x":"' + b"A" * (2 * 1024 * 1024) + b'"}}', compress=True)
    node("node-wrong-types", 400, "malformed-request", "a number where kind is a string",
         b'{"kind":5,"body":{}}')
    node("node-schema-violation", 422, "schema-invalid", "a record its schema refuses",
         json.dumps({"kind": "cultural-event", "body": event(event_type="gala")}).encode())
    node("node-bidi-kind", 422, "unknown-schema", "a kind that hides a bidi control",
         json.dumps({"kind": "cultural\u202e-event", "body": event()}).encode())


def manifest_text() -> str:
    """manifest.json for the cases :func:`build` made."""
    cases = [{k: v for k, v in asdict(c).items() if k == "sign" or v not in (None, False, 0, [])} for c in CASES]
    about = ("bad inputs, each with the endpoint it is sent to and the reason it must be refused with; "
             "written by tests/corpus/make_corpus.py, sent by tests/e2e/test_corpus.py")
    rows = ",\n  ".join(json.dumps(c, ensure_ascii=False) for c in cases)  # one case a line
    return f'{{"about": {json.dumps(about)},\n "members": {json.dumps(list(MEMBERS))},\n "cases": [\n  {rows}\n]}}\n'


def write() -> None:
    build()
    CASES_DIR.mkdir(exist_ok=True)
    for old in CASES_DIR.iterdir():
        old.unlink()
    for name, data in FILES.items():
        (CASES_DIR / name).write_bytes(data)
    MANIFEST.write_text(manifest_text(), encoding="utf-8")


if __name__ == "__main__":
    write()
    print(f"{len(CASES)} cases in {CASES_DIR}")
