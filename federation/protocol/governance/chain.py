"""Walking the registry chain: from a version one trusts to the latest, each step justified (PROTOCOL.md §12).

One implementation for everyone who follows the registry from an older version: the auditor
(federation/audit.py), the incoming hub of a handover (federation/hub/handover.py) and the node
(node/sync/registry.py, one step at a time through :func:`check_successor`). Pure: the caller passes a
``fetch(version)`` (None: the latest) that answers the document's bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from federation.protocol.envelope import parse_time
from federation.protocol.governance.evolve import check_transition
from federation.protocol.registry import RegistryError, SignedRegistry, parse_registry

__all__ = ["FetchVersion", "check_successor", "walk_chain"]

FetchVersion = Callable[[int | None], bytes]
"""``fetch(version)``: the bytes of registry ``version`` as the hub serves it; ``None``: the latest."""


def check_successor(prev: SignedRegistry, new: SignedRegistry) -> None:
    """Whether ``new`` is the justified successor of ``prev``: signed by a hub key ``prev`` lists (valid when
    ``new`` was issued), and exactly what its change's signed documents make of ``prev``.

    Raises:
        RegistryError: registry-untrusted-signer.
        GovernanceError: registry-version-skipped, registry-time-reversed, unjustified-change, ...
    """
    signer = prev.registry.hub_public_keys().get(new.document.kid)
    if signer is None or not signer.valid_at(parse_time(new.registry.issued_at)) \
            or not new.document.verify_with(signer):
        raise RegistryError(f"registry v{new.registry.version} is not signed by a hub key of "
                            f"v{prev.registry.version}", reason="registry-untrusted-signer")
    check_transition(prev, new)


def walk_chain(anchor: SignedRegistry, fetch: FetchVersion) -> list[SignedRegistry]:
    """``anchor`` and every version after it up to the latest the hub serves, each checked against its
    predecessor with :func:`check_successor`.

    Raises:
        RegistryError: a document that does not parse or is not signed as it must be, or a latest version
            older than ``anchor`` (registry-rollback) or another document with ``anchor``'s version
            (registry-conflict).
        GovernanceError: a step its signed documents do not justify.
    """
    latest = parse_registry(fetch(None))
    target = latest.registry.version
    if target < anchor.registry.version:
        raise RegistryError(f"the latest registry version {target} is older than {anchor.registry.version}",
                            reason="registry-rollback")
    if target == anchor.registry.version:
        if latest.hash != anchor.hash:
            raise RegistryError("two different registries with one version", reason="registry-conflict")
        return [anchor]
    chain = [anchor]
    for version in range(anchor.registry.version + 1, target + 1):
        new = latest if version == target else parse_registry(fetch(version))
        if new.registry.version != version:
            raise RegistryError(f"asked for registry v{version}, served v{new.registry.version}",
                                reason="registry-version-skipped")
        check_successor(chain[-1], new)
        chain.append(new)
    return chain
