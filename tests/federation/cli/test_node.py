"""``ipdn node init`` / ``ipdn node serve`` and the node's configuration."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from federation.protocol.keys import SigningKey
from node.config import default_verify_workers, load_config
from node.errors import ConfigError
from tests.support import paths
from tests.support.cli import ipdn
from tests.support.factories import Member
from tests.support.harness import free_port, http, wait_for
from tests.support.nodes import HUB_URL, make_registry

ROOT = paths.ROOT


class TestNodeInit:
    def test_init_creates_a_node_directory(self, tmp_path: Path, files: tuple[Path, Path]) -> None:
        """Key (0600), registry, config with the token's hash, token (0600) and a migrated database."""
        key, reg = files
        node = tmp_path / "qa"
        assert ipdn("node", "init", "--dir", str(node), "--member", "QA", "--key", str(key),
                    "--registry", str(reg), "--port", "9441") == 0
        assert (node / "QA.key.pem").stat().st_mode & 0o777 == 0o600
        assert (node / "operator.token").stat().st_mode & 0o777 == 0o600
        assert (node / "registry.json").read_bytes() == reg.read_bytes()
        token = (node / "operator.token").read_text().strip()
        doc = tomllib.loads((node / "node.toml").read_text())
        assert token not in (node / "node.toml").read_text()
        assert doc["operator_token_hash"] == hashlib.sha256(token.encode()).hexdigest()
        config = load_config(node, env={})
        assert (config.member, config.port, config.key_path) == ("QA", 9441, node / "QA.key.pem")
        assert (node / "node.db").exists()

    def test_init_for_non_member_refused(self, tmp_path: Path, files: tuple[Path, Path]) -> None:
        """A member code the registry does not list: exit 2, no directory."""
        key, reg = files
        assert ipdn("node", "init", "--dir", str(tmp_path / "tr"), "--member", "TR", "--key", str(key),
                    "--registry", str(reg)) == 2
        assert not (tmp_path / "tr").exists()

    def test_init_with_foreign_key_refused(self, tmp_path: Path, files: tuple[Path, Path]) -> None:
        """A key that is not the member's key in the registry: exit 2 (it could not publish anyway)."""
        _, reg = files
        other = tmp_path / "other.pem"
        SigningKey.generate().save(other)
        assert ipdn("node", "init", "--dir", str(tmp_path / "qa"), "--member", "QA", "--key", str(other),
                    "--registry", str(reg)) == 2

    def test_init_with_forged_registry_refused(self, tmp_path: Path, files: tuple[Path, Path]) -> None:
        """A registry whose signature does not verify is not taken as a trust anchor."""
        key, reg = files
        doc = json.loads(reg.read_bytes())
        doc["signature"] = doc["signature"][:-4] + ("AAAA" if not doc["signature"].endswith("AAAA") else "BBBA")
        reg.write_text(json.dumps(doc))
        assert ipdn("node", "init", "--dir", str(tmp_path / "qa"), "--member", "QA", "--key", str(key),
                    "--registry", str(reg)) == 2

    def test_init_twice_refused(self, tmp_path: Path, files: tuple[Path, Path]) -> None:
        """An existing node directory is never overwritten (its key, token and database stay)."""
        key, reg = files
        args = ("node", "init", "--dir", str(tmp_path / "qa"), "--member", "QA", "--key", str(key),
                "--registry", str(reg))
        assert ipdn(*args) == 0
        token = (tmp_path / "qa" / "operator.token").read_text()
        assert ipdn(*args) == 2
        assert (tmp_path / "qa" / "operator.token").read_text() == token

    @pytest.mark.parametrize("command", [["node"], ["node", "init"], ["node", "serve"]])
    def test_every_subcommand_has_an_example(self, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        """``--help`` of node, node init and node serve shows an example."""
        with pytest.raises(SystemExit):
            ipdn(*command, "--help")
        assert f"example: ipdn {' '.join(command)}" in capsys.readouterr().out


class TestNodeConfig:
    @pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 2), (3, 2), (4, 3), (5, 4), (64, 4)])
    def test_verify_workers_by_cores(self, cores: int, workers: int) -> None:
        """None on one core (verified in-process); two on two cores (the writer leaves part of its core idle);
        then the cores but the writer's, at most four."""
        assert default_verify_workers(cores) == workers

    def test_environment_overrides_file(self, tmp_path: Path, files: tuple[Path, Path]) -> None:
        """IPDN_NODE_<KEY> wins over node.toml; values are converted to the field's type."""
        key, reg = files
        assert ipdn("node", "init", "--dir", str(tmp_path / "qa"), "--member", "QA", "--key", str(key),
                    "--registry", str(reg)) == 0
        env = {"IPDN_NODE_PORT": "9000", "IPDN_NODE_DB_URL": "sqlite+aiosqlite:///elsewhere.db",
               "IPDN_NODE_BACKOFF_CAP": "5"}
        config = load_config(tmp_path / "qa", env=env)
        assert (config.port, config.db_url, config.backoff_cap) == (9000, env["IPDN_NODE_DB_URL"], 5.0)
        assert config.db_url != load_config(tmp_path / "qa", env={}).db_url

    def test_token_hash_not_shown(self, tmp_path: Path, files: tuple[Path, Path]) -> None:
        """The configuration's repr (what a log line would show) leaves out the token hash."""
        key, reg = files
        assert ipdn("node", "init", "--dir", str(tmp_path / "qa"), "--member", "QA", "--key", str(key),
                    "--registry", str(reg)) == 0
        config = load_config(tmp_path / "qa", env={})
        assert config.operator_token_hash not in repr(config)

    def test_peers_from_file_or_environment(self, tmp_path: Path) -> None:
        """``peers`` is a comma-separated list of base URLs, in node.toml or IPDN_NODE_PEERS (which wins)."""
        base = 'member = "QA"\nkey_path = "k"\nregistry_path = "r"\noperator_token_hash = "h"\n'
        (tmp_path / "node.toml").write_text(base + 'peers = "https://kr.example/, https://tr.example"\n')
        assert load_config(tmp_path, env={}).peer_urls == ("https://kr.example", "https://tr.example")
        env = {"IPDN_NODE_PEERS": "http://127.0.0.1:8442"}
        assert load_config(tmp_path, env=env).peer_urls == ("http://127.0.0.1:8442",)
        (tmp_path / "node.toml").write_text(base)
        assert load_config(tmp_path, env={}).peer_urls == ()
        with pytest.raises(ConfigError, match="peers"):
            load_config(tmp_path, env={"IPDN_NODE_PEERS": "kr.example"})

    @pytest.mark.parametrize(("text", "env"), [
        ('member = "QA"\n', {}),  # keys missing
        ('member = "QA"\nkey_path = "k"\nregistry_path = "r"\noperator_token_hash = "h"\ncolour = 1\n', {}),
        ('member = "QA"\nkey_path = "k"\nregistry_path = "r"\noperator_token_hash = "h"\n', {"IPDN_NODE_PORT": "x"}),
        ("member = \n", {}),
    ])
    def test_bad_config_refused(self, tmp_path: Path, text: str, env: dict[str, str]) -> None:
        """Missing keys, unknown keys, wrong types and broken TOML are reported, not guessed around."""
        (tmp_path / "node.toml").write_text(text)
        with pytest.raises(ConfigError):
            load_config(tmp_path, env=env)

    def test_missing_directory_refused(self, tmp_path: Path) -> None:
        """Serving a directory that was never initialised says so."""
        with pytest.raises(ConfigError, match="node init"):
            load_config(tmp_path / "nothing", env={})


class TestNodeServe:
    def test_serve_answers_and_stops_on_sigterm(self, tmp_path: Path, qa: Member, hub_key: SigningKey) -> None:
        """``ipdn node serve`` answers /api/v1/status and exits cleanly on SIGTERM (hub unreachable)."""
        key, reg = tmp_path / "QA.key.pem", tmp_path / "registry.json"
        qa.key.save(key)
        reg.write_bytes(make_registry(hub_key, HUB_URL, qa).to_bytes())
        assert ipdn("node", "init", "--dir", str(tmp_path / "qa"), "--member", "QA", "--key", str(key),
                    "--registry", str(reg)) == 0
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "federation", "node", "serve", "--dir", str(tmp_path / "qa"),
                                 "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            def status() -> Any:
                try:
                    return http("GET", f"http://127.0.0.1:{port}/api/v1/status", timeout=1)[1]
                except OSError:  # not listening yet
                    return None

            doc = wait_for("the node serving", status, timeout=15)
            assert doc["member"] == "QA"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
