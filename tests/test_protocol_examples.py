"""docs/PROTOCOL.md appendix A (worked examples) is what docs/examples/protocol_examples.py prints, and every example
verifies with the project's own code: the envelope with the envelope verifier (and ``ipdn verify``), the
checkpoint with the checkpoint verifier, the push with the hub's RFC 9421 verifier, the webhook delivery as a
partner verifies it (§13.3). Each check reads the example from the printed text, as a reader of the document would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from federation.cli.main import main as ipdn
from federation.conformance import adapter
from federation.conformance import generate as g
from federation.protocol import httpsig, merkle, webhooks
from federation.protocol.canonical import canonical_bytes, sha256_hex
from federation.protocol.checkpoint import parse_checkpoint
from federation.protocol.envelope import Envelope, leaf_bytes
from federation.protocol.keys import PublicKey, b64u_decode
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import keys_resolver, verify_envelope
from tests.support.paths import ROOT

SCRIPT = ROOT / "docs" / "examples" / "protocol_examples.py"
PROTOCOL = ROOT / "docs" / "PROTOCOL.md"
FENCE = re.compile(r"^```[a-z]*\n.*?\n```$", re.S | re.M)


@pytest.fixture(scope="module")
def printed() -> str:
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, check=True, cwd=ROOT / "docs")
    return out.stdout.decode("utf-8")


@pytest.fixture(scope="module")
def examples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("protocol_examples", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def texts(examples: ModuleType, anchor: str) -> list[str]:
    return [b.text for b in examples.blocks() if b.anchor == anchor]


def http_message(text: str) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path, headers, body) of an example request: header lines, an empty line, the body."""
    head, body = text.split("\n\n", 1)
    request_line, *lines = head.split("\n")
    method, path, _ = request_line.split(" ")
    headers = dict(line.split(": ", 1) for line in lines)
    data = body.encode("utf-8")
    assert int(headers.pop("Content-Length")) == len(data)
    return method, path, headers, data


def test_every_printed_block_is_in_the_document(printed: str, examples: ModuleType) -> None:
    document = PROTOCOL.read_text(encoding="utf-8")
    blocks = FENCE.findall(printed)
    assert len(blocks) == len(examples.blocks()) >= 15
    missing = [b.split("\n", 2)[1][:80] for b in blocks if b not in document]
    assert not missing, f"paste `python {SCRIPT.relative_to(ROOT)}` into PROTOCOL.md appendix A: {missing}"
    assert printed == examples.markdown()  # the script prints what the module builds, from any directory


def test_the_document_names_its_version_and_the_appendix() -> None:
    document = PROTOCOL.read_text(encoding="utf-8")
    assert document.splitlines()[2] == "protocol: 1.1"
    assert "## Appendix A. Worked examples" in document
    for anchor in ("A.1", "A.2", "A.3", "A.4"):
        assert document.count(f"(§{anchor})") + document.count(f"appendix {anchor}") >= 1, anchor


def test_envelope_example_is_canonical_and_verifies(examples: ModuleType, tmp_path: Path) -> None:
    jwk_text, header_text, payload_text, envelope_text, facts = texts(examples, "A.1")
    jwk = json.loads(jwk_text)
    key = PublicKey.from_jwk(jwk)
    assert key.member == "QA" and key.kid == jwk["kid"]
    env_obj = json.loads(envelope_text)
    header, payload = b64u_decode(env_obj["protected"]), b64u_decode(env_obj["payload"])
    assert header == header_text.encode() and payload == payload_text.encode()
    # RFC 8785 bytes: they stay valid where verifiers refuse non-canonical headers and payloads (§3.1, §3.2)
    assert canonical_bytes(json.loads(header)) == header and canonical_bytes(json.loads(payload)) == payload
    result = verify_envelope(envelope_text.encode(), keys=keys_resolver({key.kid: key}), schemas=default_schemas(),
                             now=g.NOW)
    assert result.ok, result.failures
    env = Envelope.from_bytes(envelope_text.encode())
    assert env.to_bytes() == envelope_text.encode()
    lines = dict(line.split(None, 1) for line in facts.replace("leaf input", "leaf_input")
                 .replace("leaf hash", "leaf_hash").splitlines())
    assert lines["hash"] == env.hash == sha256_hex(payload)
    assert lines["leaf_input"].encode() == leaf_bytes(env_obj) == env.leaf
    assert lines["leaf_hash"] == merkle.leaf_hash(env.leaf).hex()
    # the command partners run, with the key bound to its member by the JWK
    jwk_file, env_file = tmp_path / "QA.jwk.json", tmp_path / "envelope.json"
    jwk_file.write_text(jwk_text)
    env_file.write_text(envelope_text)
    assert ipdn(["verify", "--keys", str(jwk_file), str(env_file)]) == 0


def test_checkpoint_example_verifies_and_proves_the_envelope(examples: ModuleType) -> None:
    hub_jwk, payload_text, headers_text, document_text, proof_text = texts(examples, "A.2")
    hub = PublicKey.from_jwk(json.loads(hub_jwk))
    qa = PublicKey.from_jwk(json.loads(texts(examples, "A.1")[0]))
    signed = parse_checkpoint(json.loads(document_text))
    assert canonical_bytes(json.loads(document_text)) == document_text.encode()
    assert signed.payload == payload_text.encode() == canonical_bytes(json.loads(payload_text))
    assert [b64u_decode(s["protected"]).decode() for s in signed.signatures] == headers_text.split("\n")
    assert signed.verify({hub.kid: hub}, {qa.kid: qa}) == ["QA"]
    assert signed.checkpoint.network == "IPDN" and signed.checkpoint.size == 7
    answer = json.loads(proof_text)
    leaf = merkle.leaf_hash(leaf_bytes(json.loads(texts(examples, "A.1")[3])))
    merkle.verify_inclusion(leaf, answer["index"], answer["size"], [bytes.fromhex(h) for h in answer["proof"]],
                            signed.checkpoint.root_bytes)


def test_push_example_verifies_as_the_hub_verifies_it(examples: ModuleType) -> None:
    base_text, request_text = texts(examples, "A.3")
    method, path, headers, body = http_message(request_text)
    qa = PublicKey.from_jwk(json.loads(texts(examples, "A.1")[0]))
    target = g.HUB_URL + path  # the hub URL from the registry plus the path as received (§8.2)
    sig = httpsig.verify_request(method, target, headers, body, resolve_key={qa.kid: qa.key}.get,
                                 now=g.NOW_UNIX, max_skew=300)
    assert sig.keyid == qa.kid and sig.components == httpsig.DEFAULT_COMPONENTS and sig.label == "sig1"
    params = httpsig.SignatureParams(created=sig.created, keyid=sig.keyid, alg="ed25519", nonce=sig.nonce)
    assert httpsig.signature_base(method, target, headers, sig.components, params) == base_text
    qa.key.verify(base64.b64decode(headers["Signature"].split(":")[1]), base_text.encode("ascii"))
    assert json.loads(body)["envelopes"] == [json.loads(texts(examples, "A.1")[3])]


def test_webhook_example_verifies_as_a_partner_verifies_it(examples: ModuleType) -> None:
    keys_text, content_head, request_text = texts(examples, "A.4")
    keys = dict(line.split(" ", 1) for line in keys_text.splitlines())
    method, _, headers, body = http_message(request_text)
    assert method == "POST" and headers["content-type"] == "application/json"
    assert adapter.verify_webhook(headers, body, keys["whpk"], g.NOW_UNIX, 300) == adapter.ACCEPT
    assert f"{headers['webhook-id']}.{headers['webhook-timestamp']}." == content_head
    content = content_head.encode() + body
    v1 = next(s.removeprefix("v1,") for s in headers["webhook-signature"].split(" ") if s.startswith("v1,"))
    mac = hmac.new(webhooks.secret_bytes(keys["whsec"]), content, hashlib.sha256).digest()
    assert hmac.compare_digest(base64.b64decode(v1), mac)
    event = json.loads(body)
    assert body == json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()  # minified, UTF-8
    assert event["type"] == "record.published" and event["data"]["envelope"] == json.loads(texts(examples, "A.1")[3])
    qa = PublicKey.from_jwk(json.loads(texts(examples, "A.1")[0]))
    data = event["data"]
    result = verify_envelope(json.dumps(data["envelope"]).encode(), keys=keys_resolver({qa.kid: qa}),
                             schemas=default_schemas(), now=g.NOW)
    assert result.ok and result.envelope is not None
    assert data["hash"] == result.envelope.hash and data["body"] == result.envelope.payload.body
