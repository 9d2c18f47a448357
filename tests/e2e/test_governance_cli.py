"""The governance commands against a real hub process: each step is a justified registry version."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from federation.protocol.keys import SigningKey
from federation.protocol.registry import Registry, parse_registry
from tests.support.factories import Member, example_bodies, push_request
from tests.support.harness import IPDN, Federation, http

pytestmark = pytest.mark.e2e


def ipdn(*args: str) -> str:
    p = subprocess.run([IPDN, *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def registry(f: Federation) -> Registry:
    code, doc = http("GET", f.hub_url + "/api/v1/registry")
    assert code == 200
    return parse_registry(json.dumps(doc).encode()).registry


def test_suspend_revoke_rotate_through_the_cli(tmp_path: Path) -> None:
    """suspend (proposal + votes), then a self-revocation, then a rotation: versions 2, 3, 4; a suspended
    member's push is refused; `list` shows what is pending."""
    f = Federation(tmp_path, ["QA", "KR", "TR"]).init()
    keys = f.root / "keys"
    try:
        f.start("hub")
        out = ipdn("governance", "suspend", "--hub", f.hub_url, "--member", "TR", "--as", "QA",
                   "--key", str(keys / "QA.key.pem"), "--reason", "decided by the General Assembly")
        proposal = out.split("submitted proposal ")[1].split()[0]
        assert "suspend" in ipdn("governance", "list", "--hub", f.hub_url)
        for voter in ("QA", "KR"):
            ipdn("governance", "vote", "--hub", f.hub_url, "--member", voter, "--key", str(keys / f"{voter}.key.pem"),
                 "--proposal", proposal)
        reg = registry(f)
        assert reg.version == 2 and reg.member("TR").status == "suspended"  # type: ignore[union-attr]
        assert "nothing pending" in ipdn("governance", "list", "--hub", f.hub_url)

        tr = Member("TR", key=SigningKey.load(keys / "TR.key.pem"))
        data, headers = push_request(tr, [tr.publish(example_bodies("cultural-event")[0])], f.hub_url)
        code, doc = http("POST", f.hub_url + "/api/v1/envelopes", data=data, headers=headers)
        assert code == 401 and doc["reason"] == "unknown-key"

        kr_kid = SigningKey.load(keys / "KR.key.pem").kid
        ipdn("governance", "revoke", "--hub", f.hub_url, "--member", "KR", "--key", str(keys / "KR.key.pem"),
             f"--kid={kr_kid}")  # a kid may begin with "-": as one argument (failed CI once)
        reg = registry(f)
        assert reg.version == 3 and reg.member_keys()[kr_kid].not_after is not None

        ipdn("keygen", "--member", "QA", "--out", str(tmp_path / "new"))
        ipdn("governance", "rotate", "--hub", f.hub_url, "--member", "QA", "--key", str(keys / "QA.key.pem"),
             "--new-key", str(tmp_path / "new" / "QA.key.pem"))
        reg = registry(f)
        new_kid = SigningKey.load(tmp_path / "new" / "QA.key.pem").kid
        assert reg.version == 4 and new_kid in reg.member_keys()
        trail = http("GET", f.hub_url + "/api/v1/governance")[1]["trail"]
        assert sorted({t["decided_in"] for t in trail}) == [2, 3, 4]
    finally:
        f.close()
