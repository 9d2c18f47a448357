"""Backup and restore with real processes: a hub and two nodes run and take records; the node and the
hub are backed up while running (the hub while a node keeps publishing); both are restored into fresh
directories, started from them, and everything is verified again: ``ipdn audit`` of the restored hub's
log, and every record the restored node holds verifies offline against the registry."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from federation.protocol.registry import load_registry
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import verify_envelope
from tests.support.factories import example_bodies
from tests.support.harness import IPDN, Federation, http, wait_for
from tests.support.postgres import pg_database

pytestmark = pytest.mark.e2e


def ipdn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IPDN, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, str]]:
    """Database URLs for hub and KR: the originals, and empty ones to restore into (PostgreSQL only)."""
    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        if request.param == "postgres":
            for name in ("hub", "KR", "hub-restored", "KR-restored"):
                urls[name] = await stack.enter_async_context(pg_database())
        yield urls


class TestBackupRestore:
    def test_restored_hub_and_node_verify_everything(self, tmp_path: Path, backend: dict[str, str]) -> None:
        """Back up KR, then the hub while QA publishes; restore both elsewhere, serve them, audit the hub
        (every envelope, every chain, the Merkle root against the signed checkpoint) and verify KR's records."""
        bodies = example_bodies("cultural-event")
        originals = {k: v for k, v in backend.items() if k in ("hub", "KR")}
        with Federation(tmp_path, ["QA", "KR"], originals).init() as f:
            f.start_all()
            ids = [f.publish("QA", "cultural-event", bodies[i % len(bodies)])["record_id"] for i in range(6)]
            ids += [f.publish("KR", "cultural-event", bodies[i % len(bodies)])["record_id"] for i in range(3)]
            for rid in ids:
                f.wait_record("KR", rid)
            # The node first: the hub's copy is then at least as far along as the node's cursor.
            node = ipdn("node", "backup", "--dir", str(tmp_path / "KR"), "--out", str(tmp_path / "KR.tar.gz"))
            assert node.returncode == 0, node.stderr
            assert "secrets not in the archive" in node.stdout and "KR.key.pem" in node.stdout

            stop = threading.Event()

            def keep_publishing() -> None:
                i = 0
                while not stop.is_set():
                    f.publish("QA", "cultural-event", bodies[i % len(bodies)])
                    i += 1

            writer = threading.Thread(target=keep_publishing)
            writer.start()
            try:
                hub = ipdn("hub", "backup", "--dir", str(tmp_path / "hub"), "--out", str(tmp_path / "hub.tar.gz"),
                           "--include-secrets", "--progress")
            finally:
                stop.set()
                writer.join()
            assert hub.returncode == 0, hub.stderr
            assert "holds private keys" in hub.stdout
            _, status = http("GET", f.hub_url + "/api/v1/status")
            size_at_end = status["log_size"]

        # The originals are gone (moved away); the restored directories take their places and ports.
        for name in ("hub", "KR"):
            (tmp_path / name).rename(tmp_path / f"{name}.orig")
        hub_db = ["--db-url", backend["hub-restored"]] if "hub-restored" in backend else []
        node_db = ["--db-url", backend["KR-restored"]] if "KR-restored" in backend else []
        restored = ipdn("hub", "restore", "--dir", str(tmp_path / "hub"), "--from", str(tmp_path / "hub.tar.gz"),
                        *hub_db)
        assert restored.returncode == 0, restored.stderr
        restored = ipdn("node", "restore", "--dir", str(tmp_path / "KR"), "--from", str(tmp_path / "KR.tar.gz"),
                        *node_db)
        assert restored.returncode == 0, restored.stderr
        assert "KR.key.pem" in restored.stderr  # told to bring the key back from the key backup
        for secret in ("KR.key.pem", "operator.token"):
            shutil.copy2(tmp_path / "KR.orig" / secret, tmp_path / "KR" / secret)

        with Federation(tmp_path, ["QA", "KR"]) as g:
            g.hub_port = g.hub_bind_port = f.hub_port
            g.ports = f.ports
            # The restored hub starts read-only and asks the members it can reach (KR) for more of the log; the
            # node was backed up first, so it holds nothing beyond the hub's backup and the hub resumes at once.
            g.start("KR")
            g.start("hub", env={"IPDN_HUB_MEMBER_ENDPOINTS": f"KR={g.url('KR')}", "IPDN_HUB_RECOVERY_INTERVAL": "0.5"})
            # A deadline, not a pace: recovery rounds run every 0.5 s, but a loaded CI machine (PostgreSQL, two
            # workers) was seen to need more than 30 s for the node to start and answer.
            wait_for("the restored hub resuming", lambda: http("GET", g.hub_url + "/api/v1/log/checkpoint")[0] == 200,
                     timeout=120)
            assert not (tmp_path / "hub" / "recovering").exists()
            audit = ipdn("audit", "--hub", g.hub_url, "--registry", str(tmp_path / "hub" / "registry.json"))
            assert audit.returncode == 0, audit.stdout + audit.stderr
            m = re.search(r"entries verified (\d+) of (\d+)", audit.stdout)
            assert m and m[1] == m[2] and len(ids) <= int(m[1]) <= size_at_end, audit.stdout

            reg = load_registry(tmp_path / "hub" / "registry.json").registry
            schemas, now = default_schemas(), datetime.now(UTC)
            g.tokens["KR"] = (tmp_path / "KR" / "operator.token").read_text().strip()
            held = g.records("KR")
            assert set(ids) <= {item["record_id"] for item in held}
            for item in held:
                result = verify_envelope(json.dumps(item["envelope"]).encode(), keys=reg.member_keys().get,
                                         schemas=schemas, now=now)
                assert result.ok, (item["record_id"], result.failures)
            # The restored node carries on its chain with the restored hub.
            rid = g.publish("KR", "cultural-event", bodies[0])["record_id"]

            def pushed() -> bool:
                return http("GET", g.url("KR") + "/api/v1/status")[1]["outbox"]["pending"] == 0

            wait_for(f"{rid} pushed to the restored hub", pushed, timeout=60)
            _, status = http("GET", g.hub_url + "/api/v1/status")
            assert status["log_size"] == int(m[2]) + 1
