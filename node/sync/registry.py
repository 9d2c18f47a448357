"""The registry the node follows: the current signed registry, and the one place a newer one is accepted.

A registry fetched from the hub replaces the current one only if it is a valid successor (PROTOCOL.md §12):
signed by a hub key the current one trusts, not a rollback, not frozen, and exactly what the members' signed
decisions give. A refused one leaves the current registry in place and raises an alarm for the status page.
A newer one is kept in the node's directory, so a restart cannot roll back.

It also remembers when each ended key's end became known: the ``issued_at`` of the first version this node held
that carried it (for the version it started from: that version's). A log entry signed by a key that ended before
the hub logged it is refused, unless the end was published after that (an end dated back to a compromise): then
it is kept and marked (``judge_logged_key``, docs/adr/0019). Ends published since the last re-judging of held
envelopes wait in ``rejudge``; both are kept beside the registry file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path

from federation.protocol.envelope import format_time, parse_time
from federation.protocol.errors import IpdnError
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
        # kid -> (its end, when that end became known); kids whose held envelopes are still to be re-judged
        self.ends: dict[str, tuple[datetime, datetime]] = {}
        self.rejudge: set[str] = set()
        self._load_ends()

    def end_known_at(self, kid: str) -> datetime | None:
        """When the current end of key ``kid`` became known (None: it has none)."""
        end = self.ends.get(kid)
        return end[1] if end is not None else None

    def _ends_path(self) -> Path | None:
        return self.path.with_name(self.path.name + ".key-ends.json") if self.path is not None else None

    def _load_ends(self) -> None:
        kept: dict[str, list[str]] = {}
        path = self._ends_path()
        if path is not None and path.exists():
            with contextlib.suppress(ValueError, OSError):
                doc = json.loads(path.read_text())
                kept, self.rejudge = doc.get("ends", {}), set(doc.get("rejudge", []))
        self._note_ends(self.current, kept, initial=True)

    def _note_ends(self, reg: SignedRegistry, kept: dict[str, list[str]], *, initial: bool = False) -> None:
        """Ends of ``reg``'s keys: an end already known keeps its time; a new one is known from ``reg``'s issued_at,
        or the current version's expiry if earlier (and its key's held envelopes are to be re-judged)."""
        issued = parse_time(reg.registry.issued_at)
        if not initial:  # a hub that withheld the end could not have gone on past its last version's expiry
            issued = min(issued, parse_time(self.current.registry.expires_at))
        ends: dict[str, tuple[datetime, datetime]] = {}
        for kid, key in reg.registry.member_keys().items():
            if key.not_after is None:
                continue
            before = self.ends.get(kid) or _kept(kept.get(kid))
            if before is not None and before[0] == key.not_after:
                ends[kid] = before
                continue
            ends[kid] = (key.not_after, issued)
            if not initial:
                self.rejudge.add(kid)
        self.ends = ends

    def _save_ends(self) -> None:
        path = self._ends_path()
        if path is None:
            return
        doc = {"ends": {k: [format_time(e), format_time(at)] for k, (e, at) in sorted(self.ends.items())},
               "rejudge": sorted(self.rejudge)}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)

    def rejudged(self, kids: Iterable[str]) -> None:
        """The held envelopes of these keys were re-judged against their ends."""
        self.rejudge -= set(kids)
        self._save_ends()

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
        self._note_ends(new, {})
        self._save_ends()  # before the registry: a crash in between re-judges once more, never less
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


def _kept(entry: list[str] | None) -> tuple[datetime, datetime] | None:
    try:
        return (parse_time(entry[0]), parse_time(entry[1])) if entry else None
    except (IpdnError, IndexError, TypeError):
        return None
