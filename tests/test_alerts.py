"""The example alert rules (deploy/prometheus/alerts.yml) parse, pass ``promtool check rules`` where promtool is
installed, and use only metrics that a hub or a node exposes at /metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import paths
from tests.support.apps import hub_app, node_app
from tests.support.factories import Member

RULES = paths.ROOT / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\b(ipdn_[a-z0-9_]+)")
SUFFIXES = ("_total", "_count", "_sum", "_bucket", "_created")


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


def family(name: str) -> str:
    for s in SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return name


def test_rules_are_well_formed() -> None:
    """Every rule is an alert with an expression, a severity and a summary; names are unique."""
    found = rules()
    assert {"IpdnMemberSilent", "IpdnMemberLagHigh", "IpdnRefusalsSpiking", "IpdnCheckpointInconsistency",
            "IpdnMemberKeyExpiring", "IpdnNodeKeyExpiring"} <= {r["alert"] for r in found}
    assert len({r["alert"] for r in found}) == len(found)
    for r in found:
        assert r["expr"].strip() and r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"]


def test_promtool_accepts_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    p = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


async def test_every_metric_in_rules_is_exposed(aiohttp_client: Any, tmp_path: Path) -> None:
    """Each ipdn_* metric an expression names is a family in the hub's or a node's /metrics output."""
    exposed: set[str] = set()
    (tmp_path / "hub").mkdir()
    (tmp_path / "node").mkdir()
    for app in (hub_app(tmp_path / "hub", [Member("QA")]), node_app(tmp_path / "node")):
        client = await aiohttp_client(app)
        text = await (await client.get("/metrics")).text()
        exposed |= {f.name for f in text_string_to_metric_families(text)}
    used = {family(m) for r in rules() for m in METRIC.findall(r["expr"])}
    assert used and used - exposed == set(), f"alert rules use metrics no app exposes: {sorted(used - exposed)}"


def test_example_scrape_config_sends_a_token() -> None:
    """deploy/prometheus/prometheus.yml loads the rules and every job sends a bearer token from a file: /metrics is
    operator-only (federation/server/access.py), and a token in the file itself would sit in backups and diffs."""
    doc = yaml.safe_load((RULES.parent / "prometheus.yml").read_text(encoding="utf-8"))
    assert doc["rule_files"] == [RULES.name]
    for job in doc["scrape_configs"]:
        auth = job["authorization"]
        assert auth["type"] == "Bearer" and auth["credentials_file"].startswith("/") and "credentials" not in auth
