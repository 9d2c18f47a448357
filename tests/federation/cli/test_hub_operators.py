"""``ipdn hub operator add|list|disable|enable``: dashboard accounts, hashed, in the hub's database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from federation.hub.config import HubConfig
from federation.hub.store.log import HubStore
from federation.server.ui.passwords import verify_password
from tests.support.cli import run


@pytest.fixture
def hub_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert run(capsys, "keygen", "--member", "QA", "--out", str(tmp_path / "keys"))[0] == 0
    assert run(capsys, "hub", "init", "--dir", str(tmp_path / "hub"), "--url", "http://127.0.0.1:8440",
               "--founder", str(tmp_path / "keys" / "QA.pub.jwk.json"))[0] == 0
    return tmp_path / "hub"


def account(hub_dir: Path, name: str) -> dict | None:
    async def read() -> dict | None:
        store = await HubStore.open(HubConfig.load(hub_dir).db_url)
        try:
            return await store.operator(name)
        finally:
            await store.close()
    return asyncio.run(read())


def test_add_list_disable_enable(hub_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The password is stored only as an scrypt hash; disable and enable flip the account; all in the trail."""
    secret = tmp_path / "pw"
    secret.write_text("a long enough password\n")
    assert run(capsys, "hub", "operator", "add", "amal", "--dir", str(hub_dir), "--password-file", str(secret))[0] == 0
    held = account(hub_dir, "amal")
    assert held is not None and held["password_hash"].startswith("scrypt$") and not held["disabled"]
    assert verify_password("a long enough password", held["password_hash"])
    assert "a long enough password" not in (hub_dir / "hub.db").read_bytes().decode("latin-1")
    code, out, _ = run(capsys, "hub", "operator", "list", "--dir", str(hub_dir))
    assert code == 0 and out.startswith("amal\tenabled\tlast sign-in never")
    assert run(capsys, "hub", "operator", "disable", "amal", "--dir", str(hub_dir))[0] == 0
    assert account(hub_dir, "amal")["disabled"]  # type: ignore[index]
    assert run(capsys, "hub", "operator", "enable", "amal", "--dir", str(hub_dir))[0] == 0
    assert not account(hub_dir, "amal")["disabled"]  # type: ignore[index]


def test_password_from_stdin(hub_dir: Path) -> None:
    """Without --password-file and without a terminal, the password is the first line of stdin."""
    ipdn = str(Path(sys.executable).parent / "ipdn")
    p = subprocess.run([ipdn, "hub", "operator", "add", "noor", "--dir", str(hub_dir)],
                       input="typed into a pipe 123\n", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert verify_password("typed into a pipe 123", account(hub_dir, "noor")["password_hash"])  # type: ignore[index]


@pytest.mark.parametrize(("args", "message"), [
    (["add", "x", "--password-file", "{short}"], "at least 12"),
    (["add", "bad name!", "--password-file", "{ok}"], "operator name"),
    (["disable", "nobody"], "no operator"),
])
def test_refusals(hub_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                  message: str) -> None:
    (tmp_path / "short").write_text("short\n")
    (tmp_path / "ok").write_text("long enough password\n")
    argv = [a.format(short=tmp_path / "short", ok=tmp_path / "ok") for a in args]
    code, _, err = run(capsys, "hub", "operator", argv[0], *argv[1:], "--dir", str(hub_dir))
    assert code != 0 and message in err


def test_duplicate_refused(hub_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok").write_text("long enough password\n")
    args = ["hub", "operator", "add", "amal", "--dir", str(hub_dir), "--password-file", str(tmp_path / "ok")]
    assert run(capsys, *args)[0] == 0
    code, _, err = run(capsys, *args)
    assert code != 0 and "exists" in err


def test_totp_enrol_prints_the_authenticator_uri_keeps_the_secret_and_remove(
        hub_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pw").write_text("a long enough password\n")
    assert run(capsys, "hub", "operator", "add", "amal", "--dir", str(hub_dir), "--password-file",
               str(tmp_path / "pw"))[0] == 0
    code, out, _ = run(capsys, "hub", "operator", "totp", "amal", "--dir", str(hub_dir))
    secret = out.split("secret: ", 1)[1].split()[0]
    assert code == 0 and f"uri: otpauth://totp/IPDN%20hub:amal?secret={secret}&issuer=IPDN%20hub" in out
    stored = account(hub_dir, "amal")
    assert stored is not None and stored["totp_secret"] == secret
    assert run(capsys, "hub", "operator", "totp", "nobody", "--dir", str(hub_dir))[0] == 2
    assert run(capsys, "hub", "operator", "totp", "amal", "--remove", "--dir", str(hub_dir))[0] == 0
    stored = account(hub_dir, "amal")
    assert stored is not None and stored["totp_secret"] is None
