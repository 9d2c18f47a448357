"""The bad-input corpus (tests/corpus/) sent to a real hub process and a real node process.

Every case is refused with its RFC 9457 problem (type, reason, status); the process keeps serving; nothing of it
reaches the log or the node's records; and each refusal at the hub is in the quarantine, with the bytes as they
arrived (or, for a body too large to keep whole, its digest and length). The node's authoring API answers its
operator with the reason and writes nothing (the operator's own input: refused, not quarantined).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.protocol import httpsig
from federation.server.web import PROBLEM_BASE
from tests.corpus import make_corpus
from tests.support.harness import Federation, http

pytestmark = pytest.mark.e2e

CORPUS = Path(make_corpus.__file__).resolve().parent
MANIFEST = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
CASES = {c["name"]: c for c in MANIFEST["cases"]}


def case_bytes(case: dict[str, Any]) -> bytes:
    data = (CORPUS / "cases" / case["file"]).read_bytes()
    return gzip.decompress(data) if case["file"].endswith(".gz") else data


class TestCorpusFiles:
    def test_corpus_is_what_the_generator_writes(self) -> None:
        """The committed files and manifest are byte for byte what make_corpus.py makes (so each case's
        bytes are explained by code, and a changed generator cannot leave a stale corpus behind)."""
        make_corpus.build()
        on_disk = {p.name: p.read_bytes() for p in (CORPUS / "cases").iterdir()}
        assert on_disk == make_corpus.FILES
        assert (CORPUS / "manifest.json").read_text(encoding="utf-8") == make_corpus.manifest_text()

    def test_corpus_covers_the_issue(self) -> None:
        """Malformed and truncated JSON, duplicate keys, huge and deep bodies, invalid UTF-8, bidi controls,
        wrong types, schema violations, wrong or revoked keys, replays, chain gaps and forks: each is a case."""
        reasons = {c["reason"] for c in CASES.values()}
        assert {"malformed-json", "duplicate-key", "too-large", "too-deep", "invalid-utf8", "bidi-in-identifier",
                "malformed-batch", "malformed-envelope", "schema-invalid", "bad-signature", "key-unknown",
                "unknown-key", "signature-replayed", "chain-gap", "chain-fork"} <= reasons
        assert "truncated-json" in CASES and "revoked-key-push" in CASES


@pytest.fixture(scope="module")
def corpus_fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A hub (1 MiB push limit) and QA's node, the members holding the corpus's keys; HU's key revoked."""
    members = MANIFEST["members"]
    f = Federation(tmp_path_factory.mktemp("corpus"), members).init(
        keys_given={m: make_corpus.corpus_key(m) for m in members})
    try:
        f.start("hub", env={"IPDN_HUB_MAX_BATCH_BYTES": str(1024 * 1024)})
        f.start("QA")
        f.cli("governance", "revoke", "--hub", f.hub_url, "--member", "HU",
              "--key", str(f.root / "keys" / "HU.key.pem"), "--kid", make_corpus.corpus_key("HU").kid)
        yield f
    finally:
        f.close()



def send(f: Federation, case: dict[str, Any]) -> tuple[int, Any, bytes]:
    """Send a case as its manifest says; the answer and the bytes sent."""
    where, path = case["endpoint"].split(":", 1)
    body = case_bytes(case)
    if where == "node":
        code, doc = http("POST", f.url("QA") + path, data=body, token=f.tokens["QA"], timeout=30)
        return code, doc, body
    headers = {"Content-Type": "application/json"}
    if case["sign"]:
        key = make_corpus.corpus_key(case["sign"])
        headers.update(httpsig.sign_request(
            "POST", f.hub_url + path, headers, body, private_key=key.key, keyid=key.kid,
            created=int(time.time()) + case.get("created_offset", 0), nonce=f"{case['name']}-{time.time_ns()}"))
    sent = body + b" " if case.get("tamper") else body
    if case.get("replay"):
        first = http("POST", f.hub_url + path, data=sent, headers=headers)
        assert first[0] == 200, first
    code, doc = http("POST", f.hub_url + path, data=sent, headers=headers, timeout=30)
    return code, doc, sent


def newest_refusal(f: Federation) -> dict[str, Any]:
    code, doc = http("GET", f.hub_url + "/api/v1/quarantine?limit=1", token=f.tokens["hub"])
    assert code == 200
    return dict(doc["items"][0]) if doc["items"] else {}


def check_problem(doc: Any, status: int, reason: str) -> None:
    assert isinstance(doc, dict) and doc["type"] == PROBLEM_BASE + reason, doc
    assert doc["reason"] == reason and doc["status"] == status and doc["title"] and doc["detail"]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_refused_with_reason_and_kept(corpus_fed: Federation, name: str) -> None:
    """One corpus case: refused with its reason; the process lives; nothing partial is written; the refusal
    is kept in the hub's quarantine with the bytes as received."""
    f, case = corpus_fed, CASES[name]
    for before in case.get("before", []):  # the chain state the case is refused against (idempotent)
        code, doc, _ = send(f, CASES[before])
        assert code == 200 and all(r["status"] in ("accepted", "duplicate") for r in doc["results"]), doc
    log_size = http("GET", f.hub_url + "/api/v1/status")[1]["log_size"]
    node_before = http("GET", f.url("QA") + "/api/v1/status")[1]
    last_refusal = newest_refusal(f).get("id")

    code, doc, sent = send(f, case)

    assert code == case["status"], (code, doc)
    if case["level"] == "setup":
        assert [r["status"] for r in doc["results"]] in (["accepted"], ["duplicate"])
        return
    if case["level"] == "envelope":
        [result] = doc["results"]
        assert result["status"] == "rejected"
        check_problem(result["problem"], 422, case["reason"])
    else:
        check_problem(doc, case["status"], case["reason"])
    hub_status = http("GET", f.hub_url + "/api/v1/status")  # alive, and nothing appended
    assert hub_status[0] == 200 and hub_status[1]["log_size"] == log_size

    if case["endpoint"].startswith("node:"):
        node_after = http("GET", f.url("QA") + "/api/v1/status")[1]
        assert (node_after["records"], node_after["outbox"]) == (node_before["records"], node_before["outbox"])
        return
    kept = newest_refusal(f)
    assert kept["id"] != last_refusal and kept["reason"] == case["reason"]
    if case["level"] == "envelope":
        envelope = json.loads(sent)["envelopes"][0]
        if kept["truncated"]:  # past quarantine_max_bytes: a prefix, with the length and digest of all of it
            whole = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
            assert kept["size"] == len(whole) and kept["input_sha256"] == hashlib.sha256(whole).hexdigest()
            assert whole.startswith(kept["envelope"].encode()) and kept["bound"] == "item"
        else:
            assert json.loads(kept["envelope"]) == envelope  # the envelope as received
        assert kept["member"] == case["sign"]
        return
    request = kept["detail"]["request"]
    assert request["sha256"] == hashlib.sha256(sent[:request["received_bytes"]]).hexdigest()
    assert kept["size"] == request["received_bytes"] and kept["input_sha256"] == request["sha256"]
    if request["received_bytes"] == len(sent) and not kept["truncated"]:
        assert kept["sha256"] == hashlib.sha256(sent).hexdigest()  # kept whole, byte for byte
    else:  # refused from its headers (never read), or too large to keep whole: a prefix, its length and digest
        assert request["content_length"] == len(sent)
