"""End to end: a hub whose log went back in time (restored from an older backup after a kill -9, or rebuilt after
losing its disk) reads the rest back from the members' nodes, verified against the checkpoint it signed and they
co-signed, and the federation carries on by itself: every record at every node exactly once, pushes continue, and
``ipdn audit --from-checkpoint`` (from before the loss) passes. The runbook is docs/operating-hub.md, "Recover the
log from the members"; these tests follow it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.factories import example_bodies
from tests.support.harness import IPDN, Federation, http, log_entries, wait_for

pytestmark = pytest.mark.e2e

NODE_ENV = {"IPDN_NODE_BACKOFF_CAP": "1", "IPDN_NODE_BACKOFF_BASE": "0.1", "IPDN_NODE_CHECKPOINT_INTERVAL": "0.2",
            "IPDN_NODE_LONG_POLL_WAIT": "2", "IPDN_NODE_WITNESS_INTERVAL": "0.2"}


def ipdn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IPDN, *args], capture_output=True, text=True, timeout=120, check=False)


def hub_env(f: Federation) -> dict[str, str]:
    """The hub knows where the members' nodes are (member_endpoints) and retries recovery rounds quickly."""
    return {"IPDN_HUB_MEMBER_ENDPOINTS": ",".join(f"{m}={f.url(m)}" for m in f.members),
            "IPDN_HUB_RECOVERY_INTERVAL": "0.5"}


def status(f: Federation, name: str) -> dict[str, Any]:
    return dict(http("GET", f.url(name) + "/api/v1/status")[1])


def publish_round(f: Federation, n: int, start: int = 0) -> list[str]:
    bodies = example_bodies("cultural-event")
    return [f.publish(f.members[i % 3], "cultural-event", bodies[i % len(bodies)])["record_id"]
            for i in range(start, start + n)]


def settle(f: Federation, size: int) -> None:
    """Every node accepted (and co-signed at the hub) a checkpoint of ``size``: what the members hold of the log."""
    for m in f.members:
        wait_for(f"{m} accepting and co-signing checkpoint {size}",
                 lambda m=m: (s := status(f, m))["log"]["checkpoint"] and s["log"]["checkpoint"]["size"] == size
                 and s["log"]["cosigned_size"] == size, timeout=30)


def everyone_holds_once(f: Federation, ids: list[str]) -> None:
    """Every node holds every record exactly once, the hub's log holds each origin's envelope once, and no node
    is halted or has anything rejected or pending."""
    def done(m: str) -> bool:
        held = [r["record_id"] for r in f.records(m)]
        s = status(f, m)
        return sorted(held) == sorted(ids) and not s["log"]["halted"] and s["outbox"]["pending"] == 0 \
            and s["outbox"]["rejected"] == 0
    for m in f.members:
        try:
            wait_for(f"every record once at {m}, nothing pending", lambda m=m: done(m), timeout=60)
        except AssertionError:
            raise AssertionError(f"{m}: {status(f, m)}\n{f.log(m, 3000)}\nhub: {f.log('hub', 3000)}") from None
    entries = log_entries(f.hub_url)
    assert [e["position"] for e in entries] == list(range(1, len(entries) + 1))
    assert len({e["envelope"]["signature"] for e in entries}) == len(entries) == len(ids)


def audit_passes(f: Federation, saved: Path) -> str:
    earlier = ["--from-checkpoint", str(saved)] if saved.exists() else []
    p = ipdn("audit", "--hub", f.hub_url, "--registry", str(f.root / "hub" / "registry.json"), *earlier,
             "--save-checkpoint", str(saved))
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_hub_restored_from_old_backup_recovers_from_members(fed_sqlite: Federation) -> None:
    """7 records, a backup, 10 more (co-signed by every node), kill -9, the old backup restored: the hub starts
    read-only (503 hub-recovering: no node sees a rollback, nothing lands at positions the nodes hold), reads
    entries 8..17 back from the members, verified against checkpoint 17, and resumes; a record published while it
    was down arrives everywhere; the audit from checkpoint 17 passes."""
    f = fed_sqlite
    root = f.root
    f.start("hub", env=hub_env(f))
    f.start_many(f.members, env=NODE_ENV)
    ids = publish_round(f, 7)
    settle(f, 7)
    backup = ipdn("hub", "backup", "--dir", str(root / "hub"), "--out", str(root / "hub-old.tar.gz"),
                  "--include-secrets")
    assert backup.returncode == 0, backup.stderr
    ids += publish_round(f, 10, start=7)
    settle(f, 17)
    saved = root / "audit-last.json"
    audit_passes(f, saved)  # an auditor's checkpoint of size 17, from before the loss

    f.kill("hub")  # kill -9: the disk is fine, but the operator restores last night's backup anyway
    (root / "hub").rename(root / "hub.crashed")
    restored = ipdn("hub", "restore", "--dir", str(root / "hub"), "--from", str(root / "hub-old.tar.gz"))
    assert restored.returncode == 0, restored.stderr
    assert "starts read-only" in restored.stdout
    ids += publish_round(f, 1, start=17)  # authoring goes on meanwhile; the push waits for the hub
    # A member that does not answer keeps the hub read-only: the restored hub waits for TR.
    f.stop("TR")
    f.start("hub", env=hub_env(f))
    code, problem = http("POST", f.hub_url + "/api/v1/envelopes", data=b"{}")
    assert code == 503 and problem["reason"] == "hub-recovering", problem
    assert http("GET", f.hub_url + "/api/v1/log/checkpoint")[0] == 503  # no node is shown the rewound log

    dry = ipdn("hub", "recover", "--from-members", "--dir", str(root / "hub"), "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "TR" in dry.stdout and "largest co-signed checkpoint: 17" in dry.stdout, dry.stdout
    waiting = ipdn("hub", "recover", "--from-members", "--dir", str(root / "hub"))
    assert waiting.returncode == 3, waiting.stdout + waiting.stderr  # recovered to 17, but TR was not asked yet
    assert "still read-only" in waiting.stdout, waiting.stdout
    assert http("GET", f.hub_url + "/api/v1/log/checkpoint")[0] == 503

    f.start("TR", env=NODE_ENV)
    done = wait_for("the hub resuming once TR answers", lambda: (p := ipdn(
        "hub", "recover", "--from-members", "--dir", str(root / "hub"))).returncode == 0 and p, timeout=60)
    assert "taking pushes" in done.stdout, done.stdout
    everyone_holds_once(f, ids)
    for m in f.members:
        assert status(f, m)["alarms"] == [], (m, status(f, m))

    ids += publish_round(f, 3, start=18)  # pushes continue at the right positions
    everyone_holds_once(f, ids)
    out = audit_passes(f, saved)
    assert f"entries verified {len(ids)} of {len(ids)}" in out, out


def test_hub_rebuilt_from_one_node_after_disk_loss(fed_sqlite: Federation) -> None:
    """The hub's disk is gone: a new directory with the hub key (key backup) and a node's registry, and
    ``ipdn hub recover --from-members --member KR=URL`` with the hub stopped rebuilds the whole log from KR alone,
    verified against the checkpoint every node co-signed; served again, the nodes carry on by themselves."""
    f = fed_sqlite
    root = f.root
    f.start("hub")
    f.start_many(f.members, env=NODE_ENV)
    ids = publish_round(f, 9)
    settle(f, 9)
    saved = root / "audit-last.json"
    audit_passes(f, saved)

    f.kill("hub")
    lost = root / "hub.lost"
    (root / "hub").rename(lost)
    new = root / "hub"
    new.mkdir()
    shutil.copy2(lost / "hub.key.pem", new / "hub.key.pem")  # from the key backup
    shutil.copy2(root / "KR" / "registry.json", new / "registry.json")  # any node's copy
    (new / "hub.toml").write_text((lost / "hub.toml").read_text())  # or written again: port, token digest
    shutil.copy2(lost / "operator.token", new / "operator.token")

    rebuilt = ipdn("hub", "recover", "--from-members", "--dir", str(new), "--member", f"KR={f.url('KR')}")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "recovering on its database directly" in rebuilt.stderr
    assert "recovered: appended 9 entries from KR" in rebuilt.stdout, rebuilt.stdout

    f.start("hub")
    ids += publish_round(f, 3, start=9)
    everyone_holds_once(f, ids)
    out = audit_passes(f, saved)
    assert f"entries verified {len(ids)} of {len(ids)}" in out, out


def test_nodes_halted_by_a_rewound_hub_resume_once_it_recovers(fed_sqlite: Federation) -> None:
    """A backup restored by hand (no marker) and served without the members' addresses: every node sees the log
    go back (checkpoint-rollback) and halts, rightly. Served again knowing where the members are, the hub finds a
    larger co-signed checkpoint at start, goes read-only and recovers; the nodes see their checkpoint extended and
    resume with no operator at any node."""
    f = fed_sqlite
    root = f.root
    f.start("hub")
    f.start_many(f.members, env=NODE_ENV)
    ids = publish_round(f, 4)
    settle(f, 4)
    assert ipdn("hub", "backup", "--dir", str(root / "hub"), "--out", str(root / "old.tar.gz"),
                "--include-secrets").returncode == 0
    ids += publish_round(f, 6, start=4)
    settle(f, 10)

    f.kill("hub")
    (root / "hub").rename(root / "hub.crashed")
    assert ipdn("hub", "restore", "--dir", str(root / "hub"), "--from", str(root / "old.tar.gz")).returncode == 0
    (root / "hub" / "recovering").unlink()  # as if the files were copied back by hand
    f.start("hub")
    for m in f.members:
        evidence = wait_for(f"{m} halting on the rewound log", lambda m=m: (s := status(f, m))["log"]["evidence"]
                            and s["log"]["evidence"], timeout=30)
        assert evidence[0]["reason"] == "checkpoint-rollback", evidence
    f.stop("hub")

    f.start("hub", env=hub_env(f))  # the members' addresses known: the start-up probe finds checkpoint 10
    everyone_holds_once(f, ids)
    ids += publish_round(f, 3, start=10)
    everyone_holds_once(f, ids)
    for m in f.members:
        assert status(f, m)["alarms"] == [], (m, status(f, m))
