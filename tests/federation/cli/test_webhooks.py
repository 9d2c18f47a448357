"""``ipdn node webhook add|list|remove|deliveries|enable|disable|retry`` and the webhook key ``node init`` makes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from federation.protocol.webhooks import public_key_text
from node.config import load_config
from node.store.records import NodeStore
from node.webhooks.events import load_or_create_key
from node.webhooks.store import AttemptResult
from tests.support.cli import ipdn
from tests.support.factories import Member

HOOK = "https://hooks.museum.example/ipdn"


@pytest.fixture
def node(tmp_path: Path, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> Path:
    key, reg = files
    d = tmp_path / "qa"
    assert ipdn("node", "init", "--dir", str(d), "--member", "QA", "--key", str(key), "--registry", str(reg)) == 0
    out = capsys.readouterr().out
    assert f"webhook signing key {public_key_text(load_or_create_key(d / 'webhook.key.pem'))}" in out
    return d


def add(node: Path, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert ipdn("node", "webhook", "add", "--dir", str(node), "--partner", "museum", "--url", HOOK, "--json",
                *args) == 0
    return dict(json.loads(capsys.readouterr().out))


def run(node: Path, capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> str:
    assert ipdn("node", "webhook", *args, "--dir", str(node)) == code
    return capsys.readouterr().out


def test_init_makes_the_webhook_key(node: Path) -> None:
    """node init makes webhook.key.pem, private."""
    assert (node / "webhook.key.pem").stat().st_mode & 0o777 == 0o600


def test_add_list_remove(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """add prints the secret once; list and remove work by partner and id."""
    sub = add(node, capsys, "--kind", "cultural-event", "--country", "qa", "--type", "record.cancelled",
              "--type", "record.deleted")
    assert sub["secret"].startswith("whsec_") and sub["partner"] == "museum"
    assert sub["filters"] == {"kind": "cultural-event", "country": "qa",
                              "types": ["record.cancelled", "record.deleted"]}
    listed = json.loads(run(node, capsys, "list", "--json"))
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
    assert sub["id"] in run(node, capsys, "list", "--partner", "museum")
    assert json.loads(run(node, capsys, "list", "--partner", "library", "--json")) == []
    assert "removed" in run(node, capsys, "remove", sub["id"])
    run(node, capsys, "remove", sub["id"], code=2)


@pytest.mark.parametrize("args", [("--url", "http://hooks.museum.example/"), ("--url", "https://10.0.0.1/h"),
                                  ("--kind", "recipe"), ("--partner", "")])
def test_add_refuses_what_the_api_refuses(node: Path, args: tuple[str, ...]) -> None:
    """The CLI applies the same URL, kind and partner-name rules as the API (exit 2)."""
    base = {"--partner": "museum", "--url": HOOK}
    base.update(dict([args]))
    flat = [x for kv in base.items() for x in kv]
    assert ipdn("node", "webhook", "add", "--dir", str(node), *flat) == 2


def test_failures_are_listed_and_can_be_retried(node: Path, capsys: pytest.CaptureFixture[str], qa: Member,
                                                event: dict[str, Any]) -> None:
    """A delivery that failed for good shows with --failed and its last error; enable and retry queue it."""
    sub = add(node, capsys)
    config = load_config(node)

    async def fail_one() -> str:
        store = await NodeStore.open(config.db_url, "QA")
        try:
            await store.author(qa.publish(event, record_id="QA:one"), datetime.now(UTC))
            [row] = await store.webhooks.due_deliveries(sub["id"], datetime.now(UTC), 10)
            await store.webhooks.record_attempt(row, AttemptResult(datetime.now(UTC), 410, "HTTP 410: gone", 5),
                                                next_attempt_at=None, disable_after=timedelta(days=5))
            return row.id
        finally:
            await store.close()

    msg_id = asyncio.run(fail_one())
    out = run(node, capsys, "deliveries", "--failed")
    assert msg_id in out and "FAILED" in out and "HTTP 410: gone" in out
    [d] = json.loads(run(node, capsys, "deliveries", "--failed", "--json"))
    assert (d["id"], d["type"], d["tried"][0]["status"]) == (msg_id, "record.published", 410)
    assert "DISABLED (gone" in run(node, capsys, "list")
    assert "1 failed deliveries queued again" in run(node, capsys, "enable", sub["id"], "--retry-failed")
    assert json.loads(run(node, capsys, "deliveries", "--failed", "--json")) == []
    assert "disabled" in run(node, capsys, "disable", sub["id"], "--reason", "partner asked")
    [listed] = json.loads(run(node, capsys, "list", "--json"))
    assert listed["disabled"]["reason"] == "operator" and listed["disabled"]["detail"] == "partner asked"
    assert "0 failed deliveries" in run(node, capsys, "retry", sub["id"])


def test_add_notes_a_partner_who_cannot_manage_it(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """add warns when the partner has no live webhooks key."""
    args = ("node", "webhook", "add", "--dir", str(node), "--partner", "museum", "--url", HOOK)
    assert ipdn(*args) == 0
    assert "no live key of 'museum' has the webhooks scope" in capsys.readouterr().err
    assert ipdn("node", "partner", "add", "--dir", str(node), "museum", "--scope", "webhooks") == 0
    assert ipdn(*args) == 0
    assert "note" not in capsys.readouterr().err
