"""The node's own keys: which one signs at a given time, the rotations the node started, warnings.

Which of a member's keys may sign when is the registry's to say (docs/PROTOCOL.md §7 windows, §12
``rotate``). The node adds the one thing only it knows: a rotation it submitted that its registry may
not show yet (the hub published the next version, the node has not fetched it). From such a
rotation's ``effective`` time on, the node signs with none of the keys it replaces, even where its
registry still shows them valid: the hub and every member would refuse what they sign. A rotation
the registry has moved past without listing its key is void (a governance document counts only for
the transition from its ``base``), so it ends nothing.

Everything lives in the node directory: the first key at ``key_path`` (node.toml), each rotated key in
``key-<kid prefix>.pem`` (mode 0600), and ``keys.json`` listing the rotations in order, each with its
two signed documents. A key and its rotation are saved (and synced) before the documents are sent: a
rotation the hub published must never leave the member without its new key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from federation.protocol.envelope import format_time, parse_time
from federation.protocol.errors import IpdnError
from federation.protocol.governance import sign_document
from federation.protocol.keys import SigningKey
from federation.protocol.registry import KeyEntry, Registry
from node.errors import ConfigError, KeyNotValidError, RotationError

KEYS_FILE = "keys.json"
MAX_EFFECTIVE_IN = timedelta(days=366)  # how far ahead a rotation may take effect


class RotationState(Enum):
    DECIDED = "decided"  # the registry lists the new key
    UNDECIDED = "undecided"  # the registry is still at the rotation's base version (or older)
    VOID = "void"  # the registry moved past the base without it: it can never be decided


@dataclass(frozen=True, slots=True)
class Rotation:
    """A rotation this node started: its new key's file and id, when it takes over, and what was sent."""

    file: str  # the new key's PEM, relative to the node directory
    kid: str
    effective: str  # RFC 3339: the replaced keys end here, the new key starts here
    base: int  # the registry version the documents were made against
    documents: tuple[dict[str, str], ...]  # the rotation signed by the current key, then by the new key

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rotation:
        rotation = cls(file=str(d["file"]), kid=str(d["kid"]), effective=str(d["effective"]), base=int(d["base"]),
                       documents=tuple(dict(x) for x in d["documents"]))
        parse_time(rotation.effective)
        return rotation

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "kid": self.kid, "effective": self.effective, "base": self.base,
                "documents": list(self.documents)}

    def state(self, registry: Registry, member: str) -> RotationState:
        m = registry.member(member)
        if m is not None and any(e.jwk.get("kid") == self.kid for e in m.keys):
            return RotationState.DECIDED
        return RotationState.UNDECIDED if registry.version <= self.base else RotationState.VOID


def _write_synced(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` atomically (temporary file, fsync, rename) with ``mode`` from the first byte."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class OwnKeys:
    """A member's private keys held by its node, oldest first, with the rotations that added them."""

    def __init__(self, member: str, first: SigningKey, *, directory: Path | None = None,
                 rotations: Sequence[tuple[Rotation, SigningKey]] = ()) -> None:
        self.member = member
        self.directory = directory  # where rotated keys and keys.json are saved (None: in memory only)
        self._keys: list[SigningKey] = [first, *(k for _, k in rotations)]
        self._rotations: list[Rotation | None] = [None, *(r for r, _ in rotations)]  # what added each key

    @classmethod
    def load(cls, member: str, key_path: Path, directory: Path) -> OwnKeys:
        """The first key and every rotated key listed in ``directory/keys.json``.

        Raises:
            ConfigError: a key file cannot be read, keys.json is malformed, or a key is not the one listed.
        """
        try:
            first = SigningKey.load(key_path)
            path = directory / KEYS_FILE
            rotations = []
            if path.exists():
                for d in json.loads(path.read_text(encoding="utf-8"))["rotations"]:
                    rotation = Rotation.from_dict(d)
                    key = SigningKey.load(directory / rotation.file)
                    if key.kid != rotation.kid:
                        raise ConfigError(f"{rotation.file} holds key {key.kid}, {KEYS_FILE} lists {rotation.kid}")
                    rotations.append((rotation, key))
        except IpdnError as e:
            raise ConfigError(f"own keys: {e.message}") from e
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"own keys: {directory / KEYS_FILE} cannot be read: {e}") from e
        return cls(member, first, directory=directory, rotations=rotations)

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        return tuple(self._keys)

    @property
    def rotations(self) -> tuple[Rotation, ...]:
        return tuple(r for r in self._rotations if r is not None)

    # -- which key signs ----------------------------------------------------------------------------------

    def _entries(self, registry: Registry) -> dict[str, KeyEntry]:
        m = registry.member(self.member)
        return {str(e.jwk.get("kid")): e for e in m.keys} if m is not None else {}

    def signing_key(self, registry: Registry, when: datetime) -> SigningKey | None:
        """The own key to sign with at ``when``: the newest one the registry shows valid then and no rotation
        this node started has replaced by then; None if there is none."""
        listed = registry.member_keys()  # built once per registry version: every signed request asks (a pull too)
        for i in reversed(range(len(self._keys))):
            key = self._keys[i]
            public = listed.get(key.kid)
            if public is None or public.member != self.member or not public.valid_at(when):
                continue
            if any(r is not None and parse_time(r.effective) <= when
                   and r.state(registry, self.member) is not RotationState.VOID for r in self._rotations[i + 1:]):
                continue  # replaced, whether or not the registry held here shows it yet
            return key
        return None

    def require_listed(self, registry: Registry) -> None:
        """Raises ConfigError if the registry lists none of these keys for the member (the node could not
        publish at all: another member's key, or a registry from another network)."""
        if registry.member(self.member) is None:
            raise ConfigError(f"{self.member} is not a member in registry version {registry.version}")
        if not set(self._entries(registry)) & {k.kid for k in self._keys}:
            raise ConfigError(f"none of the keys this node holds ({', '.join(k.kid for k in self._keys)}) is one "
                              f"of {self.member}'s keys in registry version {registry.version}")

    def require_signing_key(self, registry: Registry, when: datetime) -> SigningKey:
        """Raises KeyNotValidError when :meth:`signing_key` finds none."""
        key = self.signing_key(registry, when)
        if key is None:
            raise KeyNotValidError(self._none_valid(registry, when))
        return key

    def _none_valid(self, registry: Registry, when: datetime) -> str:
        pending = [r for r in self.rotations if r.state(registry, self.member) is RotationState.UNDECIDED]
        why = (f"; the rotation to {pending[-1].kid} (effective {pending[-1].effective}) is not in registry version "
               f"{registry.version} yet: the node follows the registry, or run `ipdn node rotate-key` again to "
               "resubmit it" if pending else "")
        return (f"none of {self.member}'s keys held by this node is valid at {format_time(when)} by registry version "
                f"{registry.version}{why}")

    # -- rotating ----------------------------------------------------------------------------------------

    def pending_rotation(self, registry: Registry, now: datetime) -> Rotation | None:
        """The last rotation started that has not run its course: not in the registry yet, or not effective yet."""
        for r in reversed(self.rotations):
            state = r.state(registry, self.member)
            if state is RotationState.UNDECIDED or (state is RotationState.DECIDED and parse_time(r.effective) > now):
                return r
        return None

    def start_rotation(self, registry: Registry, now: datetime, effective_in: timedelta) -> Rotation:
        """Make a new key and the rotation to it (effective ``effective_in`` from ``now``) against ``registry``,
        both saved before anything is sent.

        Raises:
            KeyNotValidError: no own key is valid now (nothing to sign the rotation with).
            RotationError: ``rotation-pending``: a rotation started earlier has not run its course.
        """
        if self.directory is None:
            raise RuntimeError("OwnKeys without a directory cannot keep a new key")
        if (pending := self.pending_rotation(registry, now)) is not None:
            raise RotationError(f"the rotation to {pending.kid} (effective {pending.effective}) has not run its "
                                "course yet", reason="rotation-pending")
        current = self.require_signing_key(registry, now)
        new = SigningKey.generate()
        body = {"type": "rotation", "base": registry.version, "member": self.member, "new_key": new.public.to_jwk(),
                "effective": format_time(now + effective_in)}
        first = sign_document(body, current, now=now)
        proof = sign_document(first.body, new, now=now)  # the same payload, signed by the new key (possession)
        name = f"key-{new.kid[:16]}.pem"
        _write_synced(self.directory / name, new.to_pem(), 0o600)
        rotation = Rotation(file=name, kid=new.kid, effective=str(body["effective"]), base=registry.version,
                            documents=(first.to_dict(), proof.to_dict()))
        self._keys.append(new)
        self._rotations.append(rotation)
        self._save()
        return rotation

    def discard(self, rotation: Rotation) -> None:
        """Forget a rotation the hub refused: its key was never registered, so its file goes too."""
        i = self._rotations.index(rotation)
        del self._keys[i], self._rotations[i]
        self._save()
        if self.directory is not None:
            (self.directory / rotation.file).unlink(missing_ok=True)

    def _save(self) -> None:
        if self.directory is None:
            return
        doc = {"member": self.member, "rotations": [r.to_dict() for r in self.rotations]}
        _write_synced(self.directory / KEYS_FILE, json.dumps(doc, indent=2).encode() + b"\n", 0o600)

    # -- status ------------------------------------------------------------------------------------------

    def alarms(self, registry: Registry, now: datetime, warn: timedelta) -> list[dict[str, str]]:
        """``key-not-valid`` when no own key is valid now; ``key-expiring`` when the current one ends within
        ``warn`` and no own key takes over when it does."""
        current = self.signing_key(registry, now)
        if current is None:
            return [{"reason": "key-not-valid", "detail": self._none_valid(registry, now) + "; authoring is refused"}]
        end = self._entries(registry)[current.kid].not_after
        if end is None:
            return []
        ends = parse_time(end)
        if ends - now <= warn and self.signing_key(registry, ends) is None:
            days = max(0.0, (ends - now).total_seconds() / 86400)
            return [{"reason": "key-expiring",
                     "detail": f"key {current.kid} ends at {end} (in {days:.1f} days) and no key of this node takes "
                               "over then: rotate it (ipdn node rotate-key)"}]
        return []

    def describe(self, registry: Registry, now: datetime) -> list[dict[str, Any]]:
        """Each own key with its window in the registry and its part now (for the status page)."""
        entries, current = self._entries(registry), self.signing_key(registry, now)
        out = []
        for key, rotation in zip(self._keys, self._rotations, strict=True):
            entry = entries.get(key.kid)
            out.append({"kid": key.kid, "current": key is current, "listed": entry is not None,
                        "not_before": entry.not_before if entry else None,
                        "not_after": entry.not_after if entry else None,
                        "rotation": None if rotation is None else {
                            "effective": rotation.effective, "base": rotation.base,
                            "state": rotation.state(registry, self.member).value}})
        return out

