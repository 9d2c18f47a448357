"""The registry the node follows (node/sync/registry.py): a valid successor is accepted and kept, anything else
refused with an alarm."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from federation.protocol.keys import SigningKey
from federation.protocol.registry import KeyEntry, Policies, RegistryError, SignedRegistry, sign_registry
from node.records.service import NodeService


class TestRegistry:
    def _next(self, registry: SignedRegistry, hub_key: SigningKey, **over: Any) -> SignedRegistry:
        over.setdefault("change", {"action": "renew", "documents": []})
        return sign_registry(dataclasses.replace(registry.registry, **over), hub_key)

    async def _refused(self, service: NodeService, offered: SignedRegistry, reason: str, version: int = 1) -> None:
        """``offered`` is refused for ``reason``, the node keeps its registry at ``version``, and the alarm says why."""
        with pytest.raises(RegistryError) as e:
            service.registry_follower.accept(offered.to_bytes())
        assert e.value.reason == reason and service.registry.registry.version == version
        assert [a["reason"] for a in await service.alarms()] == [reason]

    def test_newer_registry_accepted_and_kept(self, service: NodeService, registry: SignedRegistry,
                                              hub_key: SigningKey) -> None:
        """A higher version signed by the trusted hub key replaces the trust anchor on disk."""
        v2 = self._next(registry, hub_key, version=2)
        assert service.registry_follower.accept(v2.to_bytes()) is True
        assert service.registry.registry.version == 2
        path = service.registry_follower.path
        assert path is not None and path.read_bytes() == v2.to_bytes()

    async def test_hub_adds_member_without_votes_refused(self, service: NodeService, registry: SignedRegistry,
                                                          hub_key: SigningKey) -> None:
        """A hub-signed version whose members do not follow from signed decisions is refused (PROTOCOL §12)."""
        reg = registry.registry
        intruder = dataclasses.replace(reg.members[0], code="ZZ")
        bogus = self._next(registry, hub_key, version=2, members=(*reg.members, intruder))
        await self._refused(service, bogus, "unjustified-change")

    async def test_registry_rollback_refused(self, service: NodeService, registry: SignedRegistry,
                                             hub_key: SigningKey) -> None:
        """An older registry is refused, the current one kept, and an alarm raised."""
        service.registry_follower.accept(self._next(registry, hub_key, version=2).to_bytes())
        await self._refused(service, registry, "registry-rollback", version=2)

    async def test_expired_registry_refused(self, service: NodeService, registry: SignedRegistry,
                                            hub_key: SigningKey) -> None:
        """A newer but already expired registry (a freeze attack) is refused."""
        past = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        await self._refused(service, self._next(registry, hub_key, version=2, expires_at=past), "registry-expired")

    async def test_registry_from_untrusted_signer_refused(self, service: NodeService,
                                                          registry: SignedRegistry) -> None:
        """A registry that names its own signer as the hub (so its signature checks out against itself) is
        refused: the signer is not a hub key of the registry the node already trusts."""
        stranger = SigningKey.generate()
        forged = self._next(registry, stranger, version=2, hub_keys=(KeyEntry(jwk=stranger.public.to_jwk()),))
        await self._refused(service, forged, "registry-untrusted-signer")

    async def test_registry_signed_by_retired_hub_key_refused(self, service: NodeService, registry: SignedRegistry,
                                                              hub_key: SigningKey) -> None:
        """A hub key past its not_after in the trusted registry can no longer sign the next version."""
        retired = KeyEntry(jwk=hub_key.public.to_jwk(), not_after="2000-01-01T00:00:00.000Z")
        service.registry_follower.current = sign_registry(dataclasses.replace(registry.registry, hub_keys=(retired,)),
                                                          hub_key)
        await self._refused(service, self._next(service.registry, hub_key, version=2), "registry-untrusted-signer")

    async def test_registry_conflict_refused(self, service: NodeService, registry: SignedRegistry,
                                             hub_key: SigningKey) -> None:
        """Two different documents with the current version (a hub equivocating) are refused, not merged."""
        other = self._next(registry, hub_key, version=1, policies=Policies(max_batch=7))
        await self._refused(service, other, "registry-conflict")
        assert service.registry is registry

    def test_same_registry_again_is_no_change(self, service: NodeService, registry: SignedRegistry) -> None:
        """The very registry the node holds, fetched again, is no change and no alarm."""
        assert service.registry_follower.accept(registry.to_bytes()) is False
        assert service.registry_follower.alarm is None
