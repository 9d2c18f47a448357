"""The node's own keys (node/own_keys.py): which key signs when, key rotation at a running node, warnings."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from federation.cli.main import main
from federation.protocol.envelope import Envelope, format_time, parse_time
from federation.protocol.governance import next_version
from federation.protocol.keys import SigningKey
from federation.protocol.registry import KeyEntry, SignedRegistry, sign_registry
from node.app import create_app
from node.appkeys import ENGINE, SERVICE
from node.errors import ConfigError, KeyNotValidError, RotationError
from node.own_keys import KEYS_FILE, OwnKeys, Rotation
from node.store.outbox import PENDING
from tests.support.factories import Member
from tests.support.nodes import TOKEN, Net, driven_engine, make_config
from tests.support.timing import FakeClock

AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def rotated(registry: SignedRegistry, hub_key: SigningKey, rotation: Rotation) -> SignedRegistry:
    """The next registry version, as the hub publishes it on receiving the rotation's two documents."""
    return next_version(registry, {"action": "rotate", "documents": list(rotation.documents)}, hub_key,
                        now=parse_time(rotation.effective) - MINUTE)


def renewed(registry: SignedRegistry, hub_key: SigningKey) -> SignedRegistry:
    return next_version(registry, {"action": "renew", "documents": []}, hub_key, now=datetime.now(UTC))


def with_key_window(registry: SignedRegistry, hub_key: SigningKey, member: str, not_after: datetime) -> SignedRegistry:
    """The registry with ``member``'s keys ending at ``not_after`` (as a revocation or a rotation leaves them)."""
    reg = registry.registry
    members = tuple(dataclasses.replace(m, keys=tuple(KeyEntry(k.jwk, k.not_before, format_time(not_after))
                                                      for k in m.keys)) if m.code == member else m
                    for m in reg.members)
    return sign_registry(dataclasses.replace(reg, members=members), hub_key)


def kid_of(env: Envelope | dict[str, Any]) -> str:
    return (env if isinstance(env, Envelope) else Envelope.from_dict(env)).kid


@pytest.fixture
def keys(tmp_path: Path, qa: Member) -> OwnKeys:
    """QA's node keys, saved in a node directory."""
    return OwnKeys("QA", qa.key, directory=tmp_path)


class TestWhichKeySigns:
    def test_current_key_signs_until_effective_then_the_new_one(self, keys: OwnKeys, registry: SignedRegistry,
                                                                hub_key: SigningKey, qa: Member) -> None:
        """After a rotation the registry lists, the old key signs before ``effective`` and the new one from it
        on: each envelope is signed by the key verifiers will hold valid at its issued_at."""
        rotation = keys.start_rotation(registry.registry, T0, timedelta(seconds=60))
        reg = rotated(registry, hub_key, rotation).registry
        effective = parse_time(rotation.effective)
        assert effective == T0 + MINUTE
        assert keys.signing_key(reg, effective - timedelta(milliseconds=1)) is qa.key
        new = keys.signing_key(reg, effective)
        assert new is not None and new.kid == rotation.kid != qa.key.kid

    def test_rotation_not_yet_fetched_still_ends_the_old_key(self, keys: OwnKeys, registry: SignedRegistry,
                                                             qa: Member) -> None:
        """Bug it prevents: the registry the node holds predates its own rotation (the hub published it, the
        node has not fetched it), so it shows the old key valid forever. Signing with it after
        ``effective`` makes envelopes the hub refuses; the node signs with no key instead."""
        rotation = keys.start_rotation(registry.registry, T0, timedelta(seconds=60))
        effective = parse_time(rotation.effective)
        assert keys.signing_key(registry.registry, effective - timedelta(milliseconds=1)) is qa.key
        assert keys.signing_key(registry.registry, effective) is None
        with pytest.raises(KeyNotValidError, match="not in registry version 1 yet"):
            keys.require_signing_key(registry.registry, effective)

    def test_rotation_the_registry_moved_past_ends_nothing(self, keys: OwnKeys, registry: SignedRegistry,
                                                           hub_key: SigningKey, qa: Member) -> None:
        """A rotation made for version 1 that version 2 does not carry can never be decided (documents count
        only for their base): the old key goes on signing after its ``effective``."""
        rotation = keys.start_rotation(registry.registry, T0, timedelta(seconds=60))
        v2 = renewed(registry, hub_key).registry
        assert keys.signing_key(v2, parse_time(rotation.effective) + MINUTE) is qa.key
        assert keys.pending_rotation(v2, T0) is None

    def test_key_outside_its_registry_window_never_signs(self, tmp_path: Path, registry: SignedRegistry,
                                                         hub_key: SigningKey, qa: Member) -> None:
        """A key the registry ended (revoked) is not used, even though the node still holds it."""
        ended = with_key_window(registry, hub_key, "QA", T0).registry
        keys = OwnKeys("QA", qa.key, directory=tmp_path)
        assert keys.signing_key(ended, T0 - timedelta(seconds=1)) is qa.key
        assert keys.signing_key(ended, T0) is None

    def test_registry_without_any_own_key_refused_at_start(self, tmp_path: Path, registry: SignedRegistry) -> None:
        """A node whose keys the registry does not list for its member cannot publish: refused at start."""
        with pytest.raises(ConfigError, match="none of the keys"):
            OwnKeys("QA", SigningKey.generate(), directory=tmp_path).require_listed(registry.registry)
        with pytest.raises(ConfigError, match="not a member"):
            OwnKeys("TR", SigningKey.generate(), directory=tmp_path).require_listed(registry.registry)


class TestRotationKept:
    def test_restart_keeps_the_pending_key(self, tmp_path: Path, keys: OwnKeys, registry: SignedRegistry,
                                           hub_key: SigningKey, qa: Member) -> None:
        """The new key (mode 0600) and its rotation are on disk before anything is sent: a node restarted
        with the rotation pending holds both keys and switches at ``effective``."""
        key_path = tmp_path / "QA.key.pem"
        qa.key.save(key_path)
        rotation = keys.start_rotation(registry.registry, T0, timedelta(seconds=60))
        assert (tmp_path / rotation.file).stat().st_mode & 0o777 == 0o600
        again = OwnKeys.load("QA", key_path, tmp_path)
        assert [k.kid for k in again.keys] == [qa.key.kid, rotation.kid]
        assert again.rotations == (rotation,)
        reg = rotated(registry, hub_key, rotation).registry
        again.require_listed(reg)
        new = again.signing_key(reg, parse_time(rotation.effective))
        assert new is not None and new.kid == rotation.kid

    def test_key_file_swapped_under_keys_json_refused(self, tmp_path: Path, keys: OwnKeys,
                                                      registry: SignedRegistry, qa: Member) -> None:
        """A rotated key file that is not the key keys.json lists stops the node at start."""
        key_path = tmp_path / "QA.key.pem"
        qa.key.save(key_path)
        rotation = keys.start_rotation(registry.registry, T0, timedelta(seconds=60))
        (tmp_path / rotation.file).unlink()
        SigningKey.generate().save(tmp_path / rotation.file)
        with pytest.raises(ConfigError, match="holds key"):
            OwnKeys.load("QA", key_path, tmp_path)

    def test_second_rotation_refused_while_one_is_pending(self, keys: OwnKeys, registry: SignedRegistry,
                                                          hub_key: SigningKey) -> None:
        """One rotation at a time: a second one before the first took effect would leave the network with
        two overlapping successors."""
        rotation = keys.start_rotation(registry.registry, T0, timedelta(seconds=60))
        with pytest.raises(RotationError) as e:
            keys.start_rotation(registry.registry, T0, timedelta(seconds=60))
        assert e.value.reason == "rotation-pending"
        v2 = rotated(registry, hub_key, rotation)
        with pytest.raises(RotationError):  # decided but not yet effective: still pending
            keys.start_rotation(v2.registry, T0, timedelta(seconds=60))
        after = parse_time(rotation.effective)
        assert keys.start_rotation(v2.registry, after, timedelta(seconds=60)).base == 2

    def test_discarded_rotation_forgets_its_key(self, tmp_path: Path, keys: OwnKeys,
                                                registry: SignedRegistry, qa: Member) -> None:
        """A rotation the hub refused is forgotten with its key file (the key was never registered)."""
        key_path = tmp_path / "QA.key.pem"
        qa.key.save(key_path)
        rotation = keys.start_rotation(registry.registry, T0, timedelta(seconds=60))
        keys.discard(rotation)
        assert not (tmp_path / rotation.file).exists()
        assert [k.kid for k in OwnKeys.load("QA", key_path, tmp_path).keys] == [qa.key.kid]
        assert keys.signing_key(registry.registry, T0 + 2 * MINUTE) is qa.key


class TestKeyAlarms:
    def test_key_expiring_within_the_warning_period(self, keys: OwnKeys, registry: SignedRegistry,
                                                    hub_key: SigningKey) -> None:
        """The current key ends in 10 days with no successor: key-expiring with 30 days' warning, none with 5."""
        reg = with_key_window(registry, hub_key, "QA", T0 + timedelta(days=10)).registry
        [alarm] = keys.alarms(reg, T0, timedelta(days=30))
        assert alarm["reason"] == "key-expiring" and "10.0 days" in alarm["detail"]
        assert keys.alarms(reg, T0, timedelta(days=5)) == []
        assert keys.alarms(registry.registry, T0, timedelta(days=30)) == []  # unbounded: nothing to say

    def test_no_warning_when_a_successor_takes_over(self, keys: OwnKeys, registry: SignedRegistry,
                                                    hub_key: SigningKey) -> None:
        """During a rotation the old key ends within a minute, but the new key takes over then: no alarm."""
        rotation = keys.start_rotation(registry.registry, T0, timedelta(seconds=60))
        assert keys.alarms(rotated(registry, hub_key, rotation).registry, T0, timedelta(days=30)) == []

    def test_key_not_valid_when_no_own_key_is(self, keys: OwnKeys, registry: SignedRegistry,
                                              hub_key: SigningKey) -> None:
        """Every key ended: key-not-valid (the node refuses to author)."""
        reg = with_key_window(registry, hub_key, "QA", T0).registry
        [alarm] = keys.alarms(reg, T0, timedelta(days=30))
        assert alarm["reason"] == "key-not-valid"

    async def test_status_lists_keys_and_warns(self, aiohttp_client: Any, tmp_path: Path, qa: Member,
                                               registry: SignedRegistry, hub_key: SigningKey) -> None:
        """The status page names each own key with its window and raises key-expiring (config key_warn_days)."""
        soon = datetime.now(UTC) + timedelta(days=3)
        config = make_config(tmp_path, qa, with_key_window(registry, hub_key, "QA", soon), key_warn_days=7)
        client = await aiohttp_client(create_app(config, sync=False))
        doc = await (await client.get("/api/v1/status")).json()
        assert [a["reason"] for a in doc["alarms"]] == ["key-expiring"]
        assert doc["keys"] == [{"kid": qa.key.kid, "current": True, "listed": True, "not_before": None,
                                "not_after": format_time(soon), "rotation": None}]


class TestAuthoringKey:
    async def test_no_valid_key_refused_with_503_and_nothing_stored(self, aiohttp_client: Any, tmp_path: Path,
                                                                     qa: Member, registry: SignedRegistry,
                                                                     hub_key: SigningKey,
                                                                     event: dict[str, Any]) -> None:
        """Every own key has ended and the hub cannot say otherwise: publishing answers 503 key-not-valid
        rather than sign an envelope the hub would refuse (which would stop the outbox)."""
        ended = with_key_window(registry, hub_key, "QA", datetime.now(UTC) - MINUTE)
        client = await aiohttp_client(create_app(make_config(tmp_path, qa, ended), sync=False))
        resp = await client.post("/api/v1/records", json={"kind": "cultural-event", "body": event}, headers=AUTH)
        assert resp.status == 503
        problem = await resp.json()
        assert problem["reason"] == "key-not-valid" and "QA" in problem["detail"]
        service = client.app[SERVICE]
        assert (await service.counts()).own == 0 and await service.store.heads(["QA"]) == {}

    async def test_registry_fetched_when_no_key_is_valid(self, net: Net, hub_key: SigningKey,
                                                         event: dict[str, Any]) -> None:
        """The hub published the node's rotation, the node has not fetched it and ``effective`` has passed:
        the node fetches the registry before signing, and signs with the new key."""
        async with driven_engine(net.config) as engine:
            service = engine.service
            now = datetime.now(UTC)
            rotation = service.keys.start_rotation(service.registry.registry, now - MINUTE, timedelta(seconds=30))
            net.hub.registry = next_version(net.registry, {"action": "rotate", "documents": list(rotation.documents)},
                                            hub_key, now=datetime.now(UTC))
            env = await service.create("cultural-event", event)
            assert service.registry.registry.version == 2 and kid_of(env) == rotation.kid
            await engine.push_once()
            assert [e.hash for e in net.hub.log] == [env.hash] and net.hub.push_keyids == [rotation.kid]


async def _rotate(client: TestClient, effective_in: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.post("/api/v1/keys/rotate", json={"effective_in": effective_in}, headers=AUTH)
    return resp.status, dict(await resp.json())


async def _publish(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/api/v1/records", json={"kind": "cultural-event", "body": body}, headers=AUTH)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


class TestRotateKeyApi:
    async def test_rotation_at_a_running_node_switches_at_effective(self, aiohttp_client: Any, net: Net, qa: Member,
                                                                    event: dict[str, Any]) -> None:
        """POST /api/v1/keys/rotate: the hub publishes version 2 with the new key from ``effective``; the node
        holds it at once, signs with the old key before ``effective`` and the new one after, pushes with
        the key valid now, and every envelope is accepted."""
        client = await aiohttp_client(create_app(net.config, sync=False))
        clock = client.app[SERVICE].clock = net.hub.clock = FakeClock()  # the node and the hub share one clock
        status, doc = await _rotate(client, 1)
        assert status == 201, doc
        assert (doc["registry_version"], doc["hub_registry_version"], doc["base"]) == (2, 2, 1)
        assert net.hub.registry.registry.member("QA").keys[-1].jwk["kid"] == doc["kid"]
        assert (net.config.dir / doc["file"]).stat().st_mode & 0o777 == 0o600
        before = await _publish(client, event)
        clock.set(parse_time(doc["effective"]))  # the new key's first instant, the old key's first instant ended
        after = await _publish(client, event)
        assert kid_of(before["envelope"]) == qa.key.kid and kid_of(after["envelope"]) == doc["kid"]
        await client.app[ENGINE].push_once()
        assert [e.payload.seq for e in net.hub.log] == [1, 2]
        assert net.hub.push_keyids == [doc["kid"]]  # the old key has ended: the fake hub would refuse it
        assert await client.app[SERVICE].store.outbox.entries(PENDING, 10) == []

    async def test_restart_keeps_the_rotated_key(self, aiohttp_client: Any, net: Net, qa: Member,
                                                 event: dict[str, Any]) -> None:
        """A node restarted after a rotation loads both keys (node.toml's and keys.json's) and signs with the
        one the registry says is valid."""
        client = await aiohttp_client(create_app(net.config, sync=False))
        clock = client.app[SERVICE].clock = net.hub.clock = FakeClock()
        status, doc = await _rotate(client, 0.2)
        assert status == 201
        await client.close()
        clock.advance(0.3)  # restarted after effective
        client = await aiohttp_client(create_app(net.config, sync=False))
        client.app[SERVICE].clock = clock
        state = await (await client.get("/api/v1/status")).json()
        assert [(k["kid"], k["current"]) for k in state["keys"]] == [(qa.key.kid, False), (doc["kid"], True)]
        assert state["keys"][1]["rotation"]["state"] == "decided" and state["registry_version"] == 2
        assert kid_of((await _publish(client, event))["envelope"]) == doc["kid"]

    async def test_refused_rotation_forgets_the_new_key(self, aiohttp_client: Any, net: Net, qa: Member,
                                                        event: dict[str, Any]) -> None:
        """The hub refuses the documents: 409 rotation-refused with its reason; no key file, no rotation kept,
        the old key goes on signing."""
        net.hub.governance_refusal = "stale-governance-document"
        client = await aiohttp_client(create_app(net.config, sync=False))
        clock = client.app[SERVICE].clock = net.hub.clock = FakeClock()
        status, doc = await _rotate(client, 1)
        assert status == 409 and doc["reason"] == "rotation-refused" and "stale-governance-document" in doc["detail"]
        assert list(net.config.dir.glob("key-*.pem")) == []
        assert json.loads((net.config.dir / KEYS_FILE).read_text())["rotations"] == []
        clock.advance(1.1)  # past the refused rotation's effective: nothing ended
        assert kid_of((await _publish(client, event))["envelope"]) == qa.key.kid

    async def test_rotation_without_answer_kept_then_resubmitted(self, aiohttp_client: Any, net: Net,
                                                                 event: dict[str, Any]) -> None:
        """The hub does not answer the submission: 503, the new key is kept (the hub might hold the
        rotation). Past ``effective`` with the registry unchanged the node refuses to author (it cannot
        know which key the network accepts); running rotate-key again resubmits the same rotation."""
        net.hub.governance_down = True
        client = await aiohttp_client(create_app(net.config, sync=False))
        clock = client.app[SERVICE].clock = net.hub.clock = FakeClock()
        status, doc = await _rotate(client, 0.1)
        assert status == 503 and doc["reason"] == "hub-unavailable"
        [rotation] = client.app[SERVICE].keys.rotations
        clock.advance(0.2)  # past effective
        resp = await client.post("/api/v1/records", json={"kind": "cultural-event", "body": event}, headers=AUTH)
        assert resp.status == 503 and (await resp.json())["reason"] == "key-not-valid"
        net.hub.governance_down = False
        status, doc = await _rotate(client, 60)
        assert status == 200 and doc["resubmitted"] is True and doc["kid"] == rotation.kid
        assert doc["effective"] == rotation.effective and doc["registry_version"] == 2
        assert kid_of((await _publish(client, event))["envelope"]) == rotation.kid

    async def test_rotation_needs_the_operator_token(self, aiohttp_client: Any, net: Net) -> None:
        """Rotating is an operator action; a bad delay is a 400."""
        client = await aiohttp_client(create_app(net.config, sync=False))
        assert (await client.post("/api/v1/keys/rotate", json={"effective_in": 5})).status == 401
        for bad in (-1, "60", True, 10**9):
            assert (await _rotate(client, bad))[0] == 400
        assert net.hub.governance == []


class TestRotateKeyCommand:
    async def test_command_rotates_the_running_nodes_key(self, aiohttp_server: Any, net: Net,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
        """``ipdn node rotate-key --dir`` reads the operator token from the node directory and asks the
        running node to rotate; exit 0 and the new kid printed. A refusal exits 1 with the reason."""
        server = await aiohttp_server(create_app(net.config, sync=False))
        (net.config.dir / "operator.token").write_text(TOKEN + "\n")
        url = str(server.make_url("/"))
        code = await asyncio.to_thread(main, ["node", "rotate-key", "--dir", str(net.config.dir), "--url", url,
                                              "--effective-in", "30"])
        out = capsys.readouterr().out
        assert code == 0, out
        [rotation] = server.app[SERVICE].keys.rotations
        assert f"rotation to key {rotation.kid}" in out and "registry version 2" in out
        code = await asyncio.to_thread(main, ["node", "rotate-key", "--dir", str(net.config.dir), "--url", url])
        assert code == 1 and "rotation-pending" in capsys.readouterr().err
