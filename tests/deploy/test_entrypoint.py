"""The image's entrypoint run outside a container: first start initialises the data directory, the
service answers /healthz, ``health`` says so, SIGTERM stops it cleanly, a second start skips the
initialisation; a hub and a node started this way sync with each other."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import paths
from tests.support.factories import example_bodies
from tests.support.harness import free_port, http, wait_for

pytestmark = pytest.mark.e2e

ENTRYPOINT = paths.ROOT / "deploy" / "entrypoint.sh"
BIN = str(Path(sys.executable).parent)


def _env(**values: str) -> dict[str, str]:
    """The process environment with the venv's ipdn first on PATH, no inherited IPDN_* settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("IPDN_", "ROLE"))}
    return {**base, "PATH": f"{BIN}:{base.get('PATH', '/usr/bin:/bin')}", "IPDN_LISTEN_HOST": "127.0.0.1", **values}


class Service:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.port = int(env["IPDN_PORT"])
        with log.open("ab") as out:
            self.proc = subprocess.Popen([str(ENTRYPOINT)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exited {self.proc.returncode}: {self.log.read_text()[-1500:]}")
        try:
            return http("GET", self.url + "/healthz", timeout=2)[0] == 200
        except OSError:
            return False

    def stop(self) -> int:
        """SIGTERM to the entrypoint's process (which exec'd ipdn): its exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise
        return self.proc.returncode


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    out = tmp_path / "keys"
    for member in ("QA", "KR"):
        subprocess.run([f"{BIN}/ipdn", "keygen", "--member", member, "--out", str(out)], check=True,
                       capture_output=True)
    return out


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for s in reversed(started):
        s.stop()


class TestEntrypoint:
    def test_hub_and_node_initialise_serve_and_sync(self, tmp_path: Path, keys: Path,
                                                    services: list[Service]) -> None:
        """ROLE=hub and ROLE=node each initialise on first start, pass the health check and sync a record;
        SIGTERM exits 0; the node starts again from its directory without re-initialising."""
        hub_port = free_port()
        hub = Service(_env(ROLE="hub", IPDN_DIR=str(tmp_path / "hub"), IPDN_PORT=str(hub_port),
                           IPDN_PUBLIC_URL=f"http://127.0.0.1:{hub_port}", IPDN_FOUNDERS_DIR=str(keys)),
                      tmp_path / "hub.log")
        services.append(hub)
        wait_for("the hub's /healthz", hub.healthy)
        assert (tmp_path / "hub" / "registry.json").exists()
        node_env = _env(ROLE="node", IPDN_DIR=str(tmp_path / "qa"), IPDN_PORT=str(free_port()), IPDN_MEMBER="QA",
                        IPDN_KEY_FILE=str(keys / "QA.key.pem"),
                        IPDN_REGISTRY_FILE=str(tmp_path / "hub" / "registry.json"))
        node = Service(node_env, tmp_path / "qa.log")
        services.append(node)
        wait_for("the node's /healthz", node.healthy)
        health = subprocess.run([str(ENTRYPOINT), "health"], env=node_env, capture_output=True, check=False)
        assert health.returncode == 0, health.stderr

        token = (tmp_path / "qa" / "operator.token").read_text().strip()
        code, _ = http("POST", node.url + "/api/v1/records", {"kind": "cultural-event",
                                                              "body": example_bodies("cultural-event")[0]}, token=token)
        assert code == 201
        wait_for("the record in the hub's log", lambda: http("GET", hub.url + "/api/v1/status")[1]["log_size"] == 1)

        assert node.stop() == 0
        again = Service(node_env, tmp_path / "qa.log")
        services.append(again)
        wait_for("the node's second start", again.healthy)
        assert again.log.read_text().count("initialised in") == 1  # no second init

    def test_health_fails_when_nothing_answers(self, tmp_path: Path) -> None:
        env = _env(ROLE="node", IPDN_DIR=str(tmp_path), IPDN_PORT=str(free_port()))
        p = subprocess.run([str(ENTRYPOINT), "health"], env=env, capture_output=True, text=True, check=False)
        assert p.returncode == 1 and "unhealthy" in p.stderr

    @pytest.mark.parametrize(("env", "says"), [
        ({}, "set ROLE=hub or ROLE=node"),
        ({"ROLE": "hub"}, "IPDN_PUBLIC_URL"),
        ({"ROLE": "node"}, "IPDN_MEMBER"),
    ])
    def test_missing_settings_stop_with_one_line(self, tmp_path: Path, env: dict[str, str], says: str) -> None:
        """A first start without what initialisation needs exits 2, saying which variable, on one line."""
        p = subprocess.run([str(ENTRYPOINT)], env=_env(IPDN_DIR=str(tmp_path / "d"), **env), capture_output=True,
                           text=True, check=False, timeout=30)
        assert p.returncode == 2 and says in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr

    def test_shellcheck(self) -> None:
        tool = shutil.which("shellcheck")
        if tool is None:
            pytest.skip("shellcheck is not installed here (see make deploy-tools)")
        p = subprocess.run([tool, "-s", "sh", str(ENTRYPOINT)], capture_output=True, text=True, check=False)
        assert p.returncode == 0, p.stdout
