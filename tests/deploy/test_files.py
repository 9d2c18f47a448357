"""What this machine can check of deploy/ without a container runtime or an init system.

- the Dockerfile, structurally (multi-stage, non-root user, health check, files it copies exist);
- the compose file parsed, every service wired (and ``docker compose config`` where the plugin exists);
- the systemd units with ``systemd-analyze verify`` and ``security --offline`` where systemd-analyze exists;
- the nginx and Caddy configurations with ``nginx -t`` and ``caddy validate`` where they are installed,
  and against the services' own limits (long-poll wait, request size) always.

Tools missing here skip with the reason (``make deploy-tools`` installs systemd-analyze and shellcheck).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.hub.config import HubConfig
from node.config import NodeConfig
from tests.support import paths
from tests.support.tlscerts import TestCA

ROOT = paths.ROOT
DEPLOY = ROOT / "deploy"
IPDN = Path(sys.executable).parent / "ipdn"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed here (see make deploy-tools)")
    return path


def _seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)?", value)
    assert m, value
    return int(m[1]) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m[2]]


def _size(value: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)(B|iB)?", value)
    assert m, value
    return int(m[1]) * 1024 ** " kmg".index(m[2].lower() or " ")


@pytest.fixture(scope="module")
def stages() -> list[list[str]]:
    """The Dockerfile's instructions, continuation lines joined, grouped by stage."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    out: list[list[str]] = []
    for ln in lines:
        if ln.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(ln)
    return out


class TestDockerfile:
    def test_multi_stage_build_then_slim_runtime(self, stages: list[list[str]]) -> None:
        """A build stage makes wheels; the runtime stage copies only those from it (no compiler, no source)."""
        assert len(stages) >= 2
        assert re.match(r"FROM \S+ AS build$", stages[0][0], re.IGNORECASE)
        runtime = stages[-1]
        assert any(ln.startswith("COPY --from=build /wheels") for ln in runtime)
        assert not any(re.match(r"COPY (federation|node|schemas)\b", ln) for ln in runtime)

    def test_runtime_runs_as_a_dedicated_unprivileged_user(self, stages: list[list[str]]) -> None:
        users = [ln.split()[1] for ln in stages[-1] if ln.startswith("USER ")]
        assert users, "no USER in the runtime stage: the container would run as root"
        assert users[-1].split(":")[0] not in ("0", "root")

    def test_health_check_and_entrypoint(self, stages: list[list[str]]) -> None:
        runtime = " ".join(stages[-1])
        assert re.search(r'HEALTHCHECK .*CMD \["ipdn-entrypoint", "health"\]', runtime)
        assert 'ENTRYPOINT ["ipdn-entrypoint"]' in runtime
        assert "COPY --chmod=0755 deploy/entrypoint.sh /usr/local/bin/ipdn-entrypoint" in runtime

    def test_copied_paths_exist_and_base_image_pinned(self, stages: list[list[str]]) -> None:
        """Every COPY source from the build context exists; the base image names a version, not latest."""
        for ln in (ln for stage in stages for ln in stage if ln.startswith("COPY ") and "--from=" not in ln):
            for src in [a for a in ln.split()[1:-1] if not a.startswith("--")]:
                assert (ROOT / src).exists(), f"{ln}: {src} is not in the repository"
        base = re.search(r"ARG PYTHON_IMAGE=(\S+)", (DEPLOY / "Dockerfile").read_text())
        assert base and re.fullmatch(r"python:3\.\d+-slim-\w+", base[1])

    def test_docker_build_where_a_daemon_runs(self) -> None:
        """`docker build` needs a daemon; this machine has only the client (skip says so)."""
        docker = need("docker")
        if subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False).returncode != 0:
            pytest.skip("docker has no daemon here: the image is not built on this machine")
        p = subprocess.run([docker, "build", "-q", "-f", str(DEPLOY / "Dockerfile"), str(ROOT)],
                           capture_output=True, text=True, timeout=900, check=False)
        assert p.returncode == 0, p.stderr[-2000:]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


class TestCompose:
    def test_hub_postgres_and_two_nodes(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        assert {"hub", "postgres", "node-qa", "node-kr"} <= set(services)
        assert services["hub"]["environment"]["ROLE"] == "hub"
        assert services["hub"]["environment"]["IPDN_HUB_DB_URL"].startswith("postgresql+asyncpg://")
        assert {services[n]["environment"]["ROLE"] for n in ("node-qa", "node-kr")} == {"node"}

    def test_every_long_running_service_has_a_health_check_and_a_volume(self, compose: dict[str, Any]) -> None:
        for name in ("hub", "postgres", "node-qa", "node-kr"):
            svc = compose["services"][name]
            assert svc["healthcheck"]["test"], name
            named = {v.split(":")[0] for v in svc["volumes"]}
            assert named <= set(compose["volumes"]), f"{name} mounts an undeclared volume"

    def test_start_order_waits_for_health(self, compose: dict[str, Any]) -> None:
        """The hub waits for a healthy PostgreSQL, the nodes for a healthy hub (whose registry they need)."""
        services = compose["services"]
        for name, svc in services.items():
            for dep, cond in (svc.get("depends_on") or {}).items():
                assert dep in services, f"{name} depends on unknown {dep}"
                assert cond["condition"] in ("service_healthy", "service_completed_successfully")
        assert services["hub"]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services["node-qa"]["depends_on"]["hub"]["condition"] == "service_healthy"

    def test_containers_hardened(self, compose: dict[str, Any]) -> None:
        for name in ("hub", "node-qa", "node-kr"):
            svc = compose["services"][name]
            assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"], name
            assert "no-new-privileges:true" in svc["security_opt"], name

    def test_docker_compose_config(self) -> None:
        """The compose plugin's own parser, where installed (it is not on this machine)."""
        docker = need("docker")
        if subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode != 0:
            pytest.skip("the docker compose plugin is not installed here")
        p = subprocess.run([docker, "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "-q"],
                           capture_output=True, text=True, env={"IPDN_PG_PASSWORD": "x", "PATH": "/usr/bin:/bin"},
                           check=False)
        assert p.returncode == 0, p.stderr


UNITS = ["ipdn-hub.service", "ipdn-node@.service"]


class TestSystemdUnits:
    @pytest.fixture
    def installed(self, tmp_path: Path) -> Path:
        """The units as installed against this checkout: /opt/ipdn/bin/ipdn replaced by the venv's ipdn
        (systemd-analyze checks that ExecStart's binary exists)."""
        for unit in UNITS:
            text = (DEPLOY / "systemd" / unit).read_text().replace("/opt/ipdn/bin/ipdn", str(IPDN))
            (tmp_path / unit).write_text(text)
        return tmp_path

    @pytest.mark.parametrize("unit", UNITS)
    def test_sandboxing_directives(self, unit: str) -> None:
        """A dedicated user, a read-only system, no capabilities, no new privileges, a syscall allow-list."""
        directives = {}
        for ln in (DEPLOY / "systemd" / unit).read_text().splitlines():
            if "=" in ln and not ln.startswith("#"):
                k, v = ln.split("=", 1)
                directives.setdefault(k, []).append(v)
        assert directives["User"] == ["ipdn"] and directives["NoNewPrivileges"] == ["yes"]
        assert directives["ProtectSystem"] == ["strict"] and directives["ProtectHome"] == ["yes"]
        assert directives["PrivateTmp"] == ["yes"] and directives["CapabilityBoundingSet"] == [""]
        assert directives["SystemCallFilter"][0] == "@system-service"
        assert directives["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
        assert directives["ReadWritePaths"][0].startswith("/var/lib/ipdn/")

    @pytest.mark.parametrize("unit", ["ipdn-hub.service", "ipdn-node@KR.service"])
    def test_systemd_analyze_verify(self, unit: str, installed: Path) -> None:
        """No error and no warning (an unknown or misspelt directive is only a warning: it fails here)."""
        tool = need("systemd-analyze")
        p = subprocess.run([tool, "verify", str(installed / unit)], capture_output=True, text=True, check=False,
                           cwd=installed)
        assert p.returncode == 0 and p.stderr.strip() == "", p.stderr

    @pytest.mark.parametrize("unit", UNITS)
    def test_exposure_rated_ok(self, unit: str, installed: Path) -> None:
        """systemd's own sandbox review rates each unit's exposure at most 2.0 of 10 ("OK")."""
        tool = need("systemd-analyze")
        p = subprocess.run([tool, "security", "--offline=yes", "--no-pager", str(installed / unit)],
                           capture_output=True, text=True, check=False)
        m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout)
        assert m, p.stdout[-500:] + p.stderr
        assert float(m[1]) <= 2.0, p.stdout


class TestReverseProxies:
    @pytest.fixture
    def tls_files(self, tmp_path: Path) -> dict[str, str]:
        """Stand-ins for the operator's or ACME's files, made by the test."""
        ca = TestCA(tmp_path / "pki")
        server = ca.issue("server", server=True)
        (tmp_path / "cache").mkdir()
        return {"cert": str(server.cert), "key": str(server.key), "ca": str(ca.cert), "cache": str(tmp_path / "cache")}

    def _nginx_copy(self, name: str, tmp_path: Path, files: dict[str, str]) -> Path:
        text = (DEPLOY / "nginx" / name).read_text()
        text = re.sub(r"/etc/letsencrypt/live/[^/]+/fullchain\.pem", files["cert"], text)
        text = re.sub(r"/etc/letsencrypt/live/[^/]+/privkey\.pem", files["key"], text)
        text = text.replace("/etc/ipdn/tls/members-ca.pem", files["ca"]).replace("/var/cache/nginx", files["cache"])
        out = tmp_path / name
        out.write_text(text)
        return out

    def test_nginx_configurations_pass_nginx_t(self, tmp_path: Path, tls_files: dict[str, str]) -> None:
        nginx = need("nginx")
        hub = self._nginx_copy("ipdn-hub.conf", tmp_path, tls_files)
        node = self._nginx_copy("ipdn-node.conf", tmp_path, tls_files)
        main = tmp_path / "nginx.conf"
        main.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                        f"http {{\n  include {hub};\n  include {node};\n}}\n")
        p = subprocess.run([nginx, "-t", "-c", str(main)], capture_output=True, text=True, check=False)
        assert p.returncode == 0 and "test is successful" in p.stderr, p.stderr

    def test_caddyfile_validates(self, tmp_path: Path, tls_files: dict[str, str]) -> None:
        caddy = need("caddy")
        conf = tmp_path / "Caddyfile"
        conf.write_text((DEPLOY / "caddy" / "Caddyfile").read_text().replace("/etc/ipdn/tls/members-ca.pem",
                                                                             tls_files["ca"]))
        env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
               "PATH": "/usr/bin:/bin"}
        p = subprocess.run([caddy, "validate", "--config", str(conf), "--adapter", "caddyfile"],
                           capture_output=True, text=True, env=env, timeout=60, check=False)
        assert p.returncode == 0 and "Valid configuration" in p.stdout + p.stderr, p.stderr
        assert "not formatted" not in p.stderr

    def test_proxies_outwait_the_long_poll_and_admit_a_full_batch(self) -> None:
        """The proxies' read timeouts exceed the hub's longest long-poll, and their body limits admit the
        largest push the hub and a node accept (a proxy that cut either would break sync, silently)."""
        hub, node_max = HubConfig(dir=Path("/")), NodeConfig.__dataclass_fields__["max_request_bytes"].default
        nginx_hub = (DEPLOY / "nginx" / "ipdn-hub.conf").read_text()
        log_block = nginx_hub.split("location = /api/v1/log {", 1)[1].split("}", 1)[0]
        assert _seconds(re.search(r"proxy_read_timeout (\w+);", log_block)[1]) > hub.max_wait  # type: ignore[index]
        assert _size(re.search(r"client_max_body_size (\w+);", nginx_hub)[1]) >= hub.max_batch_bytes  # type: ignore[index]
        nginx_node = (DEPLOY / "nginx" / "ipdn-node.conf").read_text()
        assert _size(re.search(r"client_max_body_size (\w+);", nginx_node)[1]) >= node_max  # type: ignore[index]
        caddy = (DEPLOY / "caddy" / "Caddyfile").read_text()
        assert _seconds(re.search(r"response_header_timeout (\w+)", caddy)[1]) > hub.max_wait  # type: ignore[index]
        sizes = [_size(s) for s in re.findall(r"max_size (\w+)", caddy)]
        assert sizes[0] >= hub.max_batch_bytes and sizes[1] >= node_max
