"""Every ``ipdn`` command documents itself with an example, and fails with one line and a non-zero exit."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.cli.main import build_parser, main


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("ipdn",),
             ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser, the command groups included, with its command path."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


ALL = list(commands(build_parser()))


class TestHelp:
    def test_every_command_is_walked(self) -> None:
        """The walk reaches the nested commands (a broken walk would pass every check below vacuously)."""
        paths = {" ".join(p) for p, _ in ALL}
        assert {"ipdn audit", "ipdn hub backup", "ipdn node restore", "ipdn governance vote"} <= paths
        assert len(paths) >= 25

    @pytest.mark.parametrize(("path", "parser"), ALL, ids=[" ".join(p) for p, _ in ALL])
    def test_help_has_an_example_of_the_command(self, path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
        """The help's epilog gives an example invoking this very command (or, for a group, one of its own)."""
        epilog = parser.epilog or ""
        assert "example" in epilog.lower(), f"{' '.join(path)} --help has no example"
        assert " ".join(path) + " " in epilog, f"{' '.join(path)}: the example does not run this command"

    def test_help_exits_zero(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as e:
            main(["hub", "backup", "--help"])
        assert e.value.code == 0 and "examples:" in capsys.readouterr().out


class TestFailures:
    @pytest.mark.parametrize("argv", [
        ["hub", "serve", "--dir", "{tmp}/none"],
        ["node", "serve", "--dir", "{tmp}/none"],
        ["hub", "backup", "--dir", "{tmp}", "--out", "{tmp}/b.tar.gz"],
        ["node", "restore", "--dir", "{tmp}/new", "--from", "{tmp}/missing.tar.gz"],
        ["audit", "--hub", "http://127.0.0.1:9", "--registry", "{tmp}/none.json"],
        ["validate", "{tmp}/none.json"],
        ["node", "rotate-key", "--dir", "{tmp}"],
    ])
    def test_failure_is_one_line_and_non_zero(self, argv: list[str], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
        """A command that cannot run says why on exactly one stderr line prefixed ``ipdn``, and exits 2."""
        code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
        err = capsys.readouterr().err
        assert code == 2
        assert len(err.strip().splitlines()) == 1 and err.startswith("ipdn"), err

    def test_bad_tls_setting_stops_serve_on_one_line(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
        """A TLS file that cannot be read stops ``hub serve`` before it listens, naming the file."""
        assert main(["keygen", "--member", "QA", "--out", str(tmp_path / "keys")]) == 0
        assert main(["hub", "init", "--dir", str(tmp_path / "hub"), "--url", "https://127.0.0.1:9",
                     "--founder", str(tmp_path / "keys" / "QA.pub.jwk.json")]) == 0
        capsys.readouterr()
        monkeypatch.setenv("IPDN_HUB_TLS_CERT", "missing.pem")
        assert main(["hub", "serve", "--dir", str(tmp_path / "hub")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "missing.pem" in err and err.startswith("ipdn: bad-config")


def test_light_commands_start_without_the_web_and_database_layers() -> None:
    """`ipdn keygen`, `sign`, `verify` register no command group: the node's and hub's modules (web apps, SQLAlchemy,
    about a second of every start, paid by each member's key generation) are not imported; `ipdn node` imports its
    own group only, and not the web app it serves (imported by `serve` itself)."""
    import subprocess
    import sys

    probe = ("import sys; from federation.cli.main import build_parser; p = build_parser({!r}); "
             "print(sorted(m for m in ('node.app', 'federation.hub.app', 'sqlalchemy', 'federation.cli.node', "
             "'federation.cli.hub', 'aiohttp.web') if m in sys.modules))")
    node = ["aiohttp.web", "federation.cli.node", "sqlalchemy"]
    for command, loaded in (("keygen", []), ("verify", []), ("node", node)):
        out = subprocess.run([sys.executable, "-c", probe.format(command)], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str(loaded), (command, out.stdout, out.stderr)


def test_a_kid_beginning_with_a_dash_is_taken_as_written_in_the_help() -> None:
    """A kid is base64url, so one key in 64 has a kid beginning with "-", which argparse reads as an option when it
    is its own argument; the help's form, --kid=KID, takes it."""
    args = build_parser().parse_args(["governance", "revoke", "--hub", "http://hub", "--member", "KR",
                                      "--key", "KR.key.pem", "--kid=-3fQx"])
    assert args.kid == "-3fQx"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["governance", "revoke", "--hub", "http://hub", "--member", "KR",
                                   "--key", "KR.key.pem", "--kid", "-3fQx"])
