"""The ipdn command line: keygen -> sign -> verify, validate, exit codes."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from federation.protocol.keys import SigningKey, b64u_encode
from federation.protocol.registry import KeyEntry, SignedRegistry, sign_registry
from tests.support.cli import run
from tests.support.factories import EXAMPLES, example_paths

KINDS = ("cultural-event", "capacity-programme")


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    for m in ("QA", "KR"):
        assert run(capsys, "keygen", "--member", m, "--out", str(tmp_path / "keys"))[0] == 0
    return tmp_path / "keys"


class TestKeygen:
    def test_writes_private_pem_0600_and_public_jwk(self, keys: Path) -> None:
        """keygen writes MEMBER.key.pem (owner-only) and MEMBER.pub.jwk.json with the member code."""
        assert stat.S_IMODE((keys / "QA.key.pem").stat().st_mode) == 0o600
        jwk = json.loads((keys / "QA.pub.jwk.json").read_text())
        assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["ipdn_member"] == "QA" and "d" not in jwk

    def test_existing_key_never_overwritten(self, keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Running keygen again refuses (exit 2) rather than destroying a member's key."""
        before = (keys / "QA.key.pem").read_bytes()
        code, _, err = run(capsys, "keygen", "--member", "QA", "--out", str(keys))
        assert code == 2 and "exists" in err and (keys / "QA.key.pem").read_bytes() == before

    def test_bad_member_code_is_usage_error(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A member code that is not ISO 3166-1 alpha-2 is a usage error."""
        assert run(capsys, "keygen", "--member", "Qatar", "--out", str(tmp_path))[0] == 2


class TestSignVerify:
    @pytest.mark.parametrize("path", [p for k in KINDS for p in example_paths(k)], ids=lambda p: p.stem)
    def test_round_trip_every_valid_example(self, keys: Path, tmp_path: Path, path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
        """keygen -> sign -> verify succeeds for every valid example."""
        kind = path.parent.parent.name
        code, out, _ = run(capsys, "sign", "--key", str(keys / "QA.key.pem"), "--origin", "QA", "--kind", kind,
                           "--seq", "1", str(path))
        assert code == 0
        (tmp_path / "env.json").write_text(out)
        code, out, _ = run(capsys, "verify", "--keys", str(keys / "QA.pub.jwk.json"), str(tmp_path / "env.json"))
        assert code == 0 and "OK QA seq 1" in out

    def test_flipped_byte_fails_with_reason(self, keys: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
        """One flipped byte in a signed envelope makes verify exit 1 and name why."""
        _, out, _ = run(capsys, "sign", "--key", str(keys / "QA.key.pem"), "--origin", "QA", "--kind",
                        "cultural-event", "--seq", "1", str(example_paths("cultural-event")[0]))
        doc = json.loads(out)
        payload = bytearray(doc["payload"], "ascii")
        payload[40] = ord("A") if payload[40] != ord("A") else ord("B")
        doc["payload"] = payload.decode()
        (tmp_path / "env.json").write_text(json.dumps(doc))
        code, out, _ = run(capsys, "verify", "--keys", str(keys / "QA.pub.jwk.json"), str(tmp_path / "env.json"))
        assert code == 1 and "FAIL" in out and ("bad-signature" in out or "malformed" in out)

    def test_signed_by_other_member_fails(self, keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An envelope claiming QA but signed with KR's key does not verify."""
        _, out, _ = run(capsys, "sign", "--key", str(keys / "KR.key.pem"), "--origin", "QA", "--kind",
                        "cultural-event", "--seq", "1", str(example_paths("cultural-event")[0]))
        (tmp_path / "env.json").write_text(out)
        code, out, _ = run(capsys, "verify", "--keys", str(keys / "QA.pub.jwk.json"), str(keys / "KR.pub.jwk.json"),
                           str(tmp_path / "env.json"))
        assert code == 1 and "key-not-origin" in out

    def test_fork_in_json_lines_export_named(self, keys: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
        """verify reads JSON Lines; a subset of a chain is fine, but two envelopes that disagree (a second
        seq 2, or a seq 3 naming another seq 2) are named as a fork."""
        def sign(seq: int, prev: str | None, body: Path) -> tuple[str, str]:
            argv = ["sign", "--key", str(keys / "QA.key.pem"), "--origin", "QA", "--kind", "cultural-event",
                    "--seq", str(seq), "--record-id", f"QA:r{seq}", str(body)]
            _, out, err = run(capsys, *argv, *(["--prev", prev] if prev else []))
            return out.strip(), err.split("hash ")[1].strip()

        events = example_paths("cultural-event")
        one, h1 = sign(1, None, events[0])
        _, h2 = sign(2, h1, events[0])
        three, _ = sign(3, h2, events[0])
        other_two, _ = sign(2, h1, events[1])
        (tmp_path / "subset.jsonl").write_text("\n".join([one, three]) + "\n")
        assert run(capsys, "verify", "--keys", str(keys / "QA.pub.jwk.json"), str(tmp_path / "subset.jsonl"))[0] == 0
        (tmp_path / "fork.jsonl").write_text("\n".join([one, other_two, three]) + "\n")
        code, out, _ = run(capsys, "verify", "--keys", str(keys / "QA.pub.jwk.json"), str(tmp_path / "fork.jsonl"))
        assert code == 1 and "chain-fork" in out

    def _tr_envelope_claiming_qa(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
        """TR's key (a plain RFC 7517 JWK, no ipdn_member) and an envelope it signed whose payload says QA."""
        run(capsys, "keygen", "--member", "TR", "--out", str(tmp_path / "tr"))
        jwk = json.loads((tmp_path / "tr" / "TR.pub.jwk.json").read_text())
        del jwk["ipdn_member"]
        plain = tmp_path / "plain.jwk.json"
        plain.write_text(json.dumps(jwk))
        _, out, _ = run(capsys, "sign", "--key", str(tmp_path / "tr" / "TR.key.pem"), "--origin", "QA", "--kind",
                        "cultural-event", "--seq", "1", str(example_paths("cultural-event")[0]))
        (tmp_path / "env.json").write_text(out)
        return plain, tmp_path / "env.json"

    def test_plain_jwk_cannot_verify_another_origins_envelope(self, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
        """A JWK bound to no member would vouch for every origin: alone it is a usage error asking for --member
        (exit 2); bound with --member TR it verifies TR's envelopes only, so TR's envelope claiming QA is
        key-not-origin (exit 1). Never 0."""
        plain, env = self._tr_envelope_claiming_qa(tmp_path, capsys)
        code, out, err = run(capsys, "verify", "--keys", str(plain), str(env))
        assert code == 2 and "--member" in err and "OK" not in out
        code, out, _ = run(capsys, "verify", "--keys", str(plain), "--member", "TR", str(env))
        assert code == 1 and "key-not-origin" in out and "OK" not in out

    def test_member_option_binds_a_plain_jwk(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--member QA binds a plain JWK to QA: QA's own envelopes verify with it."""
        run(capsys, "keygen", "--member", "QA", "--out", str(tmp_path / "qa"))
        jwk = json.loads((tmp_path / "qa" / "QA.pub.jwk.json").read_text())
        del jwk["ipdn_member"]
        (tmp_path / "plain.jwk.json").write_text(json.dumps(jwk))
        _, out, _ = run(capsys, "sign", "--key", str(tmp_path / "qa" / "QA.key.pem"), "--origin", "QA", "--kind",
                        "cultural-event", "--seq", "1", str(example_paths("cultural-event")[0]))
        (tmp_path / "env.json").write_text(out)
        code, out, _ = run(capsys, "verify", "--keys", str(tmp_path / "plain.jwk.json"), "--member", "qa",
                           str(tmp_path / "env.json"))
        assert code == 0 and "OK QA seq 1" in out

    def test_small_order_key_refused_as_bad_key(self, keys: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
        """The identity point (small order: some libraries accept any signature under it) is refused as bad-key,
        not mistaken for an input file."""
        weak = tmp_path / "weak.jwk.json"
        weak.write_text(json.dumps({"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(bytes([1]) + bytes(31)),
                                    "ipdn_member": "QA"}))
        _, out, _ = run(capsys, "sign", "--key", str(keys / "QA.key.pem"), "--origin", "QA", "--kind",
                        "cultural-event", "--seq", "1", str(example_paths("cultural-event")[0]))
        (tmp_path / "env.json").write_text(out)
        code, out, err = run(capsys, "verify", "--keys", str(weak), str(tmp_path / "env.json"))
        assert code == 2 and "bad-key" in err and str(weak) in err and "OK" not in out

    def test_second_key_not_dropped_silently(self, keys: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
        """A usable key beside a weak one: the weak one is reported (bad-key), nothing is verified with a key
        list the user did not mean; every unusable key is named."""
        weak = tmp_path / "weak.jwk.json"
        weak.write_text(json.dumps({"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(bytes(32)),
                                    "ipdn_member": "KR"}))
        unbound = tmp_path / "unbound.jwk.json"
        jwk = json.loads((keys / "KR.pub.jwk.json").read_text())
        del jwk["ipdn_member"]
        unbound.write_text(json.dumps(jwk))
        _, out, _ = run(capsys, "sign", "--key", str(keys / "QA.key.pem"), "--origin", "QA", "--kind",
                        "cultural-event", "--seq", "1", str(example_paths("cultural-event")[0]))
        (tmp_path / "env.json").write_text(out)
        code, out, err = run(capsys, "verify", "--keys", str(keys / "QA.pub.jwk.json"), str(weak), str(unbound),
                             str(tmp_path / "env.json"))
        assert code == 2 and "OK" not in out and "key-unknown" not in out
        assert f"{weak}: bad-key" in err and f"{unbound}: no member binding" in err

    def test_registry_with_small_order_key_refused_as_bad_key(self, tmp_path: Path, hub_key: SigningKey,
                                                              registry: SignedRegistry,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
        """A registry listing a weak member key does not load: bad-key (exit 2)."""
        reg = registry.registry
        weak = KeyEntry(jwk={"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(bytes(32))})
        bogus = replace(reg, members=(replace(reg.members[0], keys=(*reg.members[0].keys, weak)), *reg.members[1:]))
        (tmp_path / "registry.json").write_bytes(sign_registry(bogus, hub_key).to_bytes())
        (tmp_path / "env.json").write_text("{}")
        code, _, err = run(capsys, "verify", "--registry", str(tmp_path / "registry.json"), str(tmp_path / "env.json"))
        assert code == 2 and "bad-key" in err

    def test_refuses_to_sign_invalid_body(self, keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """sign never produces an envelope for an invalid record."""
        bad = EXAMPLES / "cultural-event" / "invalid" / "missing-title.json"
        code, out, err = run(capsys, "sign", "--key", str(keys / "QA.key.pem"), "--origin", "QA", "--kind",
                             "cultural-event", "--seq", "1", str(bad))
        assert code == 1 and out == "" and "required" in err


class TestValidate:
    def test_valid_examples_exit_zero(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Every valid example validates (kind guessed from the body)."""
        paths = [str(p) for k in KINDS for p in example_paths(k)]
        assert run(capsys, "validate", *paths)[0] == 0

    @pytest.mark.parametrize("kind", KINDS)
    def test_every_invalid_example_fails_with_its_reason(self, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
        """Each invalid example exits 1 and prints its JSON pointer and keyword."""
        manifest = json.loads((EXAMPLES / kind / "invalid" / "expected.json").read_text())
        for name, exp in manifest.items():
            code, out, _ = run(capsys, "validate", "--kind", kind, str(EXAMPLES / kind / "invalid" / name))
            assert code == 1, name
            assert f"{exp['pointer'] or '/'} {exp['keyword']}:" in out, (name, out)

    def test_json_lines_reports_line_numbers(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """In JSON Lines each failure names its line."""
        good = example_paths("cultural-event")[0].read_text()
        f = tmp_path / "x.jsonl"
        f.write_text(json.dumps(json.loads(good)) + "\n" + '{"event_type": "gala"}\n')
        code, out, _ = run(capsys, "validate", str(f))
        assert code == 1 and f"{f}:1: valid" in out and f"{f}:2:" in out

    def test_duplicate_key_file_fails_intake(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Strict intake applies to files too."""
        (tmp_path / "d.json").write_text('{"event_type": "gala", "event_type": "concert"}')
        code, out, _ = run(capsys, "validate", str(tmp_path / "d.json"))
        assert code == 1 and "duplicate-key" in out

    def test_missing_file_is_usage_error(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A file that cannot be read exits 2."""
        assert run(capsys, "validate", str(tmp_path / "nope.json"))[0] == 2

    def test_no_arguments_is_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        """No files: argparse's usage error, exit 2."""
        assert run(capsys, "validate")[0] == 2


class TestConsoleScript:
    def test_ipdn_entry_point_runs(self) -> None:
        """The installed `ipdn` script runs (as partners and scripts call it)."""
        ipdn = Path(sys.executable).parent / "ipdn"
        p = subprocess.run([str(ipdn), "--help"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and "keygen" in p.stdout and "verify" in p.stdout
