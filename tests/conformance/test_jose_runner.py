"""A second, independent runner: the envelope, checkpoint and webhook cases decided by a plain JOSE library
(joserfc) plus only docs/PROTOCOL.md's own rules, written out here; nothing of this project's verifier
(federation.protocol) is imported. It must agree with ``expected`` case by case.

What joserfc decides: the JWS signature itself (``bad-signature``) and the algorithm allow-list
(``unsupported-alg``: joserfc is told to accept EdDSA only). What no JOSE library decides, and this file therefore
implements from the document: strict JSON intake (§2: ``too-large``, ``bom``, ``invalid-utf8``,
``malformed-json``, ``duplicate-key``, ``non-finite-number``, ``number-out-of-range``, ``lone-surrogate``,
``too-deep``), strict base64url and the container shape (``malformed-envelope``), the ``typ`` (``wrong-typ``),
``crit``/``b64``, the JCS form of header and payload (``header-not-canonical``, ``payload-not-canonical``, by the
``rfc8785`` library), weak keys (``bad-key``, by libsodium's point check), the payload's members
(``malformed-envelope``, ``foreign-record-id``, ``bidi-in-identifier``),
the key's member and window (``key-unknown``, ``key-not-origin``, ``key-not-valid``), the clock
(``issued-in-future``), the schema (``unknown-schema``, ``kind-mismatch``, ``schema-invalid``, by the
``jsonschema`` library over the files in schemas/ and the §4 rules), the checkpoint's payload, hub-first rule and
network (§11) and the webhook's timestamp tolerance (§13.3).
"""

from __future__ import annotations

import base64
import json
import re
import zoneinfo
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.jsonschema
import rfc8785
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from nacl.bindings import crypto_core_ed25519_is_valid_point

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "conformance"
# PROTOCOL §3.1 fixes alg "EdDSA"; RFC 9864 deprecates that name for "Ed25519", and joserfc warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
JOSE_DECIDES = frozenset({"bad-signature", "unsupported-alg"})


class Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def cases(category: str) -> list[dict[str, Any]]:
    return json.loads((CASES / f"{category}.json").read_text(encoding="utf-8"))["cases"]


# -- §2 strict JSON --------------------------------------------------------------------------------------


def strict_loads(data: bytes, max_bytes: int = 262144, max_depth: int = 32) -> Any:
    if len(data) > max_bytes:
        raise Refused("too-large")
    if data.startswith(b"\xef\xbb\xbf"):
        raise Refused("bom")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("invalid-utf8") from None

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in items}) != len(items):
            raise Refused("duplicate-key")
        return dict(items)

    def constant(_: str) -> Any:
        raise Refused("non-finite-number")

    def integer(t: str) -> int:
        if abs(int(t)) > 2**53 - 1:
            raise Refused("number-out-of-range")
        return int(t)

    def real(t: str) -> float:
        if float(t) in (float("inf"), float("-inf")):
            raise Refused("number-out-of-range")
        return float(t)

    try:
        value = json.JSONDecoder(object_pairs_hook=pairs, parse_constant=constant, parse_int=integer,
                                 parse_float=real).decode(text)
    except RecursionError:
        raise Refused("too-deep") from None
    except ValueError:
        raise Refused("malformed-json") from None
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise Refused("lone-surrogate") from None
        elif isinstance(node, dict | list):
            if depth > max_depth:
                raise Refused("too-deep")
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            stack += [(c, depth + 1) for c in children]
    return value


def b64u(text: Any) -> bytes:
    """§1: unpadded base64url, one encoding per byte string."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        raise Refused("malformed-envelope")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise Refused("malformed-envelope")
    return raw


# -- §3, §5 envelopes --------------------------------------------------------------------------------------

BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# §1: any RFC 3339 date-time with an offset; fractional digits beyond the sixth are ignored.
TIME = r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]+))?([Zz]|[+-][0-9]{2}:[0-9]{2})"
FIELDS = {"origin", "seq", "prev", "record_id", "version", "kind", "schema", "op", "issued_at", "body"}


def when(text: str) -> datetime:
    m = re.fullmatch(TIME, text) if isinstance(text, str) else None
    if m is None:
        raise Refused("malformed-envelope")
    day, clock, fraction, offset = m.groups()
    fraction = "." + fraction[:6].ljust(6, "0") if fraction else ""
    try:
        return datetime.fromisoformat(f"{day}T{clock}{fraction}{'+00:00' if offset in 'Zz' else offset}")
    except ValueError:
        raise Refused("malformed-envelope") from None


def schema_registry() -> tuple[referencing.Registry[Any], dict[str, str]]:
    resources, kinds = [], {}
    for path in sorted((ROOT / "schemas").glob("*/v*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        resources.append((doc["$id"], referencing.jsonschema.DRAFT202012.create_resource(doc)))
        if path.parent.name in ("cultural-event", "capacity-programme"):
            kinds[doc["$id"]] = path.parent.name
    return referencing.Registry().with_resources(resources), kinds


REGISTRY, KIND_OF = schema_registry()


def schema_issues(schema_id: str, kind: str, body: dict[str, Any]) -> str | None:
    if schema_id not in KIND_OF:
        return "unknown-schema"
    if KIND_OF[schema_id] != kind:
        return "kind-mismatch"
    validator = jsonschema.Draft202012Validator({"$ref": schema_id}, registry=REGISTRY)
    if any(True for _ in validator.iter_errors(body)):
        return "schema-invalid"
    if isinstance(body.get("timezone"), str) and body["timezone"] not in zoneinfo.available_timezones():
        return "schema-invalid"
    start, end, parse = (("start", "end", datetime.fromisoformat) if kind == "cultural-event"
                         else ("start_date", "end_date", date.fromisoformat))
    if isinstance(body.get(end), str) and parse(body[end]) < parse(body[start]):
        return "schema-invalid"
    return None


def jose_verify(obj: dict[str, str], jwk: dict[str, str]) -> bool:
    """joserfc verifies the flattened JWS exactly as received (EdDSA only)."""
    try:
        jws.deserialize_json(obj, OKPKey.import_key(jwk), algorithms=["EdDSA"])  # type: ignore[arg-type]
    except JoseError:
        return False
    return True


def verify_envelope(inp: dict[str, Any]) -> str | None:
    data = base64.b64decode(inp["envelope_b64"])
    obj = strict_loads(data, inp.get("max_bytes", 262144))
    if not isinstance(obj, dict) or set(obj) != {"protected", "payload", "signature"}:
        raise Refused("malformed-envelope")
    protected, payload_bytes, sig = b64u(obj["protected"]), b64u(obj["payload"]), b64u(obj["signature"])
    header = strict_loads(protected, 2048, 2)
    if not isinstance(header, dict):
        raise Refused("malformed-envelope")
    if rfc8785.dumps(header) != protected:  # §3.1: the header bytes are its JCS form
        raise Refused("header-not-canonical")
    if header.get("alg") != "EdDSA":
        raise Refused("unsupported-alg")
    if header.get("typ") != "ipdn-envelope+jws":
        raise Refused("wrong-typ")
    if not isinstance(header.get("kid"), str) or "crit" in header or "b64" in header:
        raise Refused("malformed-envelope")
    if BIDI & set(header["kid"]):
        raise Refused("bidi-in-identifier")
    if len(sig) != 64:
        raise Refused("bad-signature")
    p = strict_loads(payload_bytes)
    if rfc8785.dumps(p) != payload_bytes:  # §3.2: one record, one byte string
        raise Refused("payload-not-canonical")
    if not isinstance(p, dict) or set(p) - FIELDS or (FIELDS - {"body"}) - set(p):
        raise Refused("malformed-envelope")
    for name in ("origin", "record_id", "kind", "schema"):
        if not isinstance(p[name], str):
            raise Refused("malformed-envelope")
        if BIDI & set(p[name]):
            raise Refused("bidi-in-identifier")
    m = re.fullmatch(r"([A-Z]{2}):[A-Za-z0-9._-]{1,64}", p["record_id"])
    ok = (re.fullmatch("[A-Z]{2}", p["origin"]) and m and re.fullmatch("[a-z][a-z0-9-]{0,63}", p["kind"])
          and re.fullmatch(r"https://[A-Za-z0-9.-]+/[A-Za-z0-9._/-]+", p["schema"]))
    if not ok:
        raise Refused("malformed-envelope")
    if m and m.group(1) != p["origin"]:
        raise Refused("foreign-record-id")
    for name in ("seq", "version"):
        if type(p[name]) is not int or not 1 <= p[name] <= 2**53 - 1:
            raise Refused("malformed-envelope")
    if (p["prev"] is not None) if p["seq"] == 1 else not (isinstance(p["prev"], str)
                                                          and re.fullmatch("[0-9a-f]{64}", p["prev"])):
        raise Refused("malformed-envelope")
    if p["op"] not in ("put", "delete") or (p["op"] == "put") != isinstance(p.get("body"), dict) \
            or (p["op"] == "delete" and "body" in p):
        raise Refused("malformed-envelope")
    issued = when(p["issued_at"])
    failures = []
    if not all(crypto_core_ed25519_is_valid_point(b64u(e["jwk"]["x"])) for e in inp["keys"]):
        raise Refused("bad-key")  # §3.1: a weak key is refused wherever a key is read
    keys = {e["jwk"]["kid"]: e for e in inp["keys"] if e["member"] is not None}
    entry = keys.get(header["kid"])
    if entry is None:
        failures.append("key-unknown")
    elif entry["member"] != p["origin"]:
        failures.append("key-not-origin")
    elif (entry["not_before"] and issued < when(entry["not_before"])) or (
            entry["not_after"] and issued >= when(entry["not_after"])):
        failures.append("key-not-valid")
    if issued > datetime.fromisoformat(inp["now"].replace("Z", "+00:00")) + timedelta(minutes=5):
        failures.append("issued-in-future")
    if entry is not None and not jose_verify(obj, entry["jwk"]):
        failures.append("bad-signature")
    if p["op"] == "put":
        problem = schema_issues(p["schema"], p["kind"], p["body"])
        if problem:
            failures.append(problem)
    return failures[0] if failures else None


def decide(verify: Any, inp: dict[str, Any]) -> str | None:
    try:
        return verify(inp)  # type: ignore[no-any-return]
    except Refused as e:
        return e.reason


def expected_reason(c: dict[str, Any]) -> str | None:
    return None if c["expected"] == "accept" else c["expected"]["reason"]


@pytest.mark.parametrize("c", cases("envelopes"), ids=lambda c: c["id"])
def test_envelope_case_by_a_jose_library(c: dict[str, Any]) -> None:
    assert decide(verify_envelope, c["input"]) == expected_reason(c)


# -- §11 checkpoints ----------------------------------------------------------------------------------------


def verify_checkpoint(inp: dict[str, Any]) -> str | None:
    doc = inp["checkpoint"]
    try:
        payload = strict_loads(b64u(doc["payload"]), 65536, 4)
        headers = [strict_loads(b64u(s["protected"]), 65536, 4) for s in doc["signatures"]]
    except Refused:
        return "checkpoint-invalid"
    if not isinstance(payload, dict) or set(payload) != {"network", "size", "root", "issued_at"} \
            or type(payload["size"]) is not int or not re.fullmatch("[0-9a-f]{64}", str(payload["root"])):
        return "checkpoint-invalid"
    if any(h.get("alg") != "EdDSA" or h.get("typ") != "ipdn-checkpoint+jws" or not isinstance(h.get("kid"), str)
           for h in headers):
        return "checkpoint-invalid"
    hub = {e["jwk"]["kid"]: e["jwk"] for e in inp["keys"] if e["member"] is None}

    def signed_by(sig: dict[str, str], keys: dict[str, dict[str, str]]) -> bool:
        kid = json.loads(b64u(sig["protected"]))["kid"]
        flat = {"protected": sig["protected"], "payload": doc["payload"], "signature": sig["signature"]}
        return kid in keys and jose_verify(flat, keys[kid])

    if inp["check"] == "cosignature":
        mine = {e["jwk"]["kid"]: e["jwk"] for e in inp["keys"] if e["member"] == inp["member"]}
        ok = signed_by(doc["signatures"][0], hub) and signed_by(inp["cosignature"], mine)
        return None if ok else "bad-cosignature"
    if not doc["signatures"] or not signed_by(doc["signatures"][0], hub) or payload["network"] != inp["network"]:
        return "checkpoint-bad-signature"
    return None


@pytest.mark.parametrize("c", cases("checkpoints"), ids=lambda c: c["id"])
def test_checkpoint_case_by_a_jose_library(c: dict[str, Any]) -> None:
    assert verify_checkpoint(c["input"]) == expected_reason(c)


# -- §13.3 webhooks ------------------------------------------------------------------------------------------


def verify_webhook(inp: dict[str, Any]) -> str | None:
    headers, body, now = inp["headers"], base64.b64decode(inp["body_b64"]), inp["now"]
    if not {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(headers):
        return "signature-missing"
    stamp = headers["webhook-timestamp"]
    if not re.fullmatch("[0-9]+", stamp):
        return "signature-malformed"
    if int(stamp) < now - inp["tolerance_seconds"]:
        return "signature-expired"
    if int(stamp) > now + inp["tolerance_seconds"]:
        return "signature-from-future"
    raw = base64.b64decode(inp["public_key"].removeprefix("whpk_"))
    key = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()})
    content = f"{headers['webhook-id']}.{stamp}.".encode() + body
    eddsa = jws.JWSRegistry.algorithms["EdDSA"]
    for item in headers["webhook-signature"].split(" "):
        version, _, value = item.partition(",")
        if version == "v1a" and eddsa.verify(content, base64.b64decode(value), key):
            return None
    return "bad-signature"


@pytest.mark.parametrize("c", cases("webhooks"), ids=lambda c: c["id"])
def test_webhook_case_by_a_jose_library(c: dict[str, Any]) -> None:
    assert verify_webhook(c["input"]) == expected_reason(c)


def test_the_jose_library_decides_signatures_itself() -> None:
    """The cases whose reason is the JOSE library's own are there, and the library alone refuses them."""
    reasons = {expected_reason(c) for c in cases("envelopes")}
    assert reasons >= JOSE_DECIDES
    good = next(c for c in cases("envelopes") if c["id"] == "valid-event-accepted")
    obj = json.loads(base64.b64decode(good["input"]["envelope_b64"]))
    jwk = next(e["jwk"] for e in good["input"]["keys"] if e["member"] == "QA")
    assert jose_verify(obj, jwk)
    tampered = {**obj, "payload": obj["payload"][:-4] + "AAAA"}
    assert not jose_verify(tampered, jwk)
