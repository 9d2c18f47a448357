"""The registry the node follows: the current signed registry, and the one place a newer one is accepted.

A registry fetched from the hub replaces the current one only if it is a valid successor (PROTOCOL.md §12):
signed by a hub key the current one trusts, not a rollback, not frozen, and exactly what the members' signed
decisions give. A refused one leaves the current registry in place and raises an alarm for the status page.
A newer one is kept in the node's directory, so a restart cannot roll back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

from federation.protocol.governance import GovernanceError, check_successor
from federation.protocol.registry import RegistryError, SignedRegistry, accept_update, parse_registry

log = logging.getLogger("ipdn.node")

# Fetches the hub's registry document: the latest (None) or one version.
Fetch = Callable[[int | None], Awaitable[bytes]]


class RegistryFollower:
    def __init__(self, current: SignedRegistry, path: Path | None, clock: Callable[[], datetime]) -> None:
        self.current = current
        self.path = path  # where a newer registry is kept, so a restart cannot roll back
        self.clock = clock
        self.alarm: dict[str, str] | None = None  # why the last one fetched was refused

    def accept(self, data: bytes) -> bool:
        """Move to a registry fetched from the hub if it is a valid successor; True if it is newer.

        A refused one (rollback, freeze, untrusted signer) leaves the current registry in place and
        raises an alarm on the status page.

        Raises:
            RegistryError: the document is not a valid successor of the current registry.
        """
        try:
            new = accept_update(self.current, parse_registry(data), self.clock())
            if new is not self.current:
                # Only one justified step at a time (PROTOCOL.md §12): the members' signed decisions,
                # recomputed here, must give exactly this registry (the step the auditor and the
                # incoming hub of a handover check too: federation.protocol.governance.walk_chain).
                check_successor(self.current, new)
        except (RegistryError, GovernanceError) as e:
            self.alarm = {"reason": e.reason, "detail": e.message}
            raise RegistryError(e.message, reason=e.reason) from e
        self.alarm = None
        if new is self.current:
            return False
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, self.path)
        log.info("registry version %s accepted", new.registry.version)
        self.current = new
        return True

    async def refresh(self, fetch: Fetch) -> bool:
        """Fetch the latest registry and move to it if it is a valid successor; True if it changed.

        Raises:
            HubError (from ``fetch``); RegistryError (rollback, freeze, bad signature: an alarm is raised).
        """
        latest = await fetch(None)
        target = parse_registry(latest).registry.version
        changed = False
        # A node several versions behind walks the chain one justified version at a time.
        for version in range(self.current.registry.version + 1, target):
            changed |= self.accept(await fetch(version))
        return self.accept(latest) or changed
