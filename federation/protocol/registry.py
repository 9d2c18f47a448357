"""The registry: the signed, versioned list of members, their keys, the hub, and the policies.

It is the trust anchor of every party (docs/PROTOCOL.md §7). A node starts from a registry file its
operator obtained out of band (as X-Road's configuration anchor); every later version must be signed
by a hub key of the version the node already trusts, carry a higher version number (no rollback),
and not be expired (no freeze). Members and keys come from nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from federation.protocol import jws, strictjson
from federation.protocol.canonical import canonical_bytes, sha256_hex
from federation.protocol.envelope import format_time, parse_time
from federation.protocol.errors import EnvelopeFormatError, IpdnError, StrictJsonError, TrustError
from federation.protocol.keys import PublicKey, SigningKey

TYP = "ipdn-registry+jws"
ROLES = ("chair", "member", "observer")
STATUSES = ("applicant", "active", "suspended", "withdrawn")
# Days, not a year: a hub that stops renewing (or an attacker who blocks renewals) can withhold a revocation or a
# suspension only this long before nodes stop applying what it serves (PROTOCOL.md §7, docs/adr/0020).
DEFAULT_LIFETIME = timedelta(days=7)


class RegistryError(TrustError):
    reason = "registry-invalid"


@dataclass(frozen=True, slots=True)
class Policies:
    """Network-wide limits and rules, signed with the registry (defaults documented in PROTOCOL.md §7)."""

    admission_threshold: str = "2/3"  # fraction of active members whose votes admit an applicant
    max_batch: int = 500  # envelopes per push
    max_envelope_bytes: int = 256 * 1024
    clock_skew_seconds: int = 300  # allowed skew for issued_at and HTTP signature created

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Policies:
        known = {k: d[k] for k in ("admission_threshold", "max_batch", "max_envelope_bytes", "clock_skew_seconds")
                 if k in d}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return {"admission_threshold": self.admission_threshold, "max_batch": self.max_batch,
                "max_envelope_bytes": self.max_envelope_bytes, "clock_skew_seconds": self.clock_skew_seconds}


@dataclass(frozen=True, slots=True)
class KeyEntry:
    jwk: dict[str, str]
    not_before: str | None = None
    not_after: str | None = None

    def public(self, member: str | None) -> PublicKey:
        k = PublicKey.from_jwk({x: self.jwk[x] for x in ("kty", "crv", "x", "kid") if x in self.jwk})
        return PublicKey(k.key, k.kid, member=member,
                         not_before=parse_time(self.not_before) if self.not_before else None,
                         not_after=parse_time(self.not_after) if self.not_after else None)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeyEntry:
        return cls(jwk=dict(d["jwk"]), not_before=d.get("not_before"), not_after=d.get("not_after"))

    def to_dict(self) -> dict[str, Any]:
        return {"jwk": self.jwk, "not_before": self.not_before, "not_after": self.not_after}


@dataclass(frozen=True, slots=True)
class Member:
    code: str
    names: dict[str, str]
    role: Literal["chair", "member", "observer"] = "member"
    status: Literal["applicant", "active", "suspended", "withdrawn"] = "active"
    keys: tuple[KeyEntry, ...] = ()
    endpoint: str | None = None  # the member node's public URL, from its application
    contact: dict[str, str] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Member:
        if d.get("role") not in ROLES or d.get("status") not in STATUSES:
            raise RegistryError(f"member {d.get('code')}: bad role or status")
        return cls(code=d["code"], names=dict(d["names"]), role=d["role"], status=d["status"],
                   keys=tuple(KeyEntry.from_dict(k) for k in d["keys"]), endpoint=d.get("endpoint"),
                   contact=dict(d["contact"]) if d.get("contact") else None)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"code": self.code, "names": self.names, "role": self.role, "status": self.status,
                             "keys": [k.to_dict() for k in self.keys]}
        if self.endpoint:
            d["endpoint"] = self.endpoint
        if self.contact:
            d["contact"] = self.contact
        return d


@dataclass(frozen=True, slots=True)
class Registry:
    version: int
    issued_at: str
    expires_at: str
    hub_url: str
    hub_keys: tuple[KeyEntry, ...]
    members: tuple[Member, ...]
    policies: Policies = field(default_factory=Policies)
    network: str = "IPDN"
    # How this version follows from the previous one: {"action", "documents": [signed inputs]} (§12).
    change: dict[str, Any] | None = None
    # The key maps, built once: they are read for every envelope and request verified.
    _member_keys: Mapping[str, PublicKey] | None = field(default=None, init=False, repr=False, compare=False)
    _hub_keys: Mapping[str, PublicKey] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Registry:
        try:
            reg = cls(version=d["version"], issued_at=d["issued_at"], expires_at=d["expires_at"],
                      hub_url=d["hub"]["url"], hub_keys=tuple(KeyEntry.from_dict(k) for k in d["hub"]["keys"]),
                      members=tuple(Member.from_dict(m) for m in d["members"]),
                      policies=Policies.from_dict(d.get("policies", {})), network=d.get("network", "IPDN"),
                      change=d.get("change"))
            parse_time(reg.issued_at)
            parse_time(reg.expires_at)
            reg.member_keys(), reg.hub_public_keys()  # every key is usable (PROTOCOL.md §3.1), or none loads
        except (KeyError, TypeError, AttributeError, IpdnError) as e:
            # A weak or unusable key keeps its reason (bad-key, PROTOCOL.md §3.1): the whole document is refused.
            reason = "bad-key" if isinstance(e, IpdnError) and e.reason == "bad-key" else None
            raise RegistryError(f"registry document is malformed: {e}", reason=reason) from e
        if type(reg.version) is not int or reg.version < 1:
            raise RegistryError("registry version must be an integer >= 1")
        codes = [m.code for m in reg.members]
        if len(set(codes)) != len(codes):
            raise RegistryError("a member is listed twice")
        return reg

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, "version": self.version, "issued_at": self.issued_at,
                "expires_at": self.expires_at,
                "hub": {"url": self.hub_url, "keys": [k.to_dict() for k in self.hub_keys]},
                "members": [m.to_dict() for m in self.members], "policies": self.policies.to_dict(),
                "change": self.change}

    def member(self, code: str) -> Member | None:
        return next((m for m in self.members if m.code == code), None)

    def member_keys(self) -> Mapping[str, PublicKey]:
        """Every member key by kid, with its member and validity window (for envelope verification)."""
        keys = self._member_keys
        if keys is None:
            keys = MappingProxyType({k.kid: k for m in self.members for k in (e.public(m.code) for e in m.keys)})
            object.__setattr__(self, "_member_keys", keys)
        return keys

    def hub_public_keys(self) -> Mapping[str, PublicKey]:
        keys = self._hub_keys
        if keys is None:
            keys = MappingProxyType({k.kid: k for k in (e.public(None) for e in self.hub_keys)})
            object.__setattr__(self, "_hub_keys", keys)
        return keys

    def expired(self, now: datetime) -> bool:
        return now >= parse_time(self.expires_at)

    def expires_in(self, now: datetime) -> timedelta:
        """Time left before this version lapses at ``now`` (negative once it has)."""
        return parse_time(self.expires_at) - now


@dataclass(frozen=True, slots=True)
class SignedRegistry:
    """A registry with the JWS it arrived in (kept byte for byte, to serve and to store)."""

    registry: Registry
    document: jws.SignedDocument

    @property
    def hash(self) -> str:
        return sha256_hex(self.document.payload)

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.document.to_dict())


def sign_registry(registry: Registry, hub_key: SigningKey) -> SignedRegistry:
    return SignedRegistry(registry, jws.sign(canonical_bytes(registry.to_dict()), hub_key, TYP))


def parse_registry(data: bytes) -> SignedRegistry:
    """Parse and check a registry document's own signature (by one of the hub keys it lists).

    Raises:
        RegistryError: malformed, or not signed by a hub key it lists (reason registry-invalid).
    """
    try:
        doc = jws.parse(strictjson.loads(data, strictjson.JsonLimits(max_bytes=4 * 1024 * 1024)), TYP)
        reg = Registry.from_dict(strictjson.loads(doc.payload, strictjson.JsonLimits(max_bytes=4 * 1024 * 1024)))
    except (StrictJsonError, EnvelopeFormatError) as e:
        raise RegistryError(f"registry document: {e.message}") from e
    key = reg.hub_public_keys().get(doc.kid)
    if key is None or not doc.verify_with(key):
        raise RegistryError("registry is not signed by a hub key it lists", reason="registry-bad-signature")
    return SignedRegistry(reg, doc)


def accept_update(current: SignedRegistry, new: SignedRegistry, now: datetime) -> SignedRegistry:
    """Decide whether a node moves from ``current`` to ``new``.

    Raises:
        RegistryError: with reason registry-rollback (older version), registry-conflict (same
            version, other content), registry-expired (freeze), or registry-untrusted-signer (not
            signed by a hub key of the version already trusted).
    """
    if new.registry.version < current.registry.version:
        raise RegistryError(f"registry version {new.registry.version} is older than {current.registry.version}",
                            reason="registry-rollback")
    if new.registry.version == current.registry.version:
        if new.hash != current.hash:
            raise RegistryError("two different registries with one version", reason="registry-conflict")
        return current
    if new.registry.expired(now):
        raise RegistryError("registry has expired", reason="registry-expired")
    signer = current.registry.hub_public_keys().get(new.document.kid)
    if signer is None or not signer.valid_at(now) or not new.document.verify_with(signer):
        raise RegistryError("registry update is not signed by a trusted hub key", reason="registry-untrusted-signer")
    return new


def genesis(*, hub_key: SigningKey, hub_url: str, founders: list[tuple[PublicKey, dict[str, str]]],
            now: datetime, chair: str | None = None, lifetime: timedelta = DEFAULT_LIFETIME) -> SignedRegistry:
    """Version 1, issued at ``now``, listing the founders as active members (the first founder chairs unless
    ``chair``)."""
    chair = chair or (founders[0][0].member if founders else None)
    members = tuple(
        Member(code=str(pub.member), names=names, role="chair" if pub.member == chair else "member",
               status="active", keys=(KeyEntry(jwk=_bare_jwk(pub)),))
        for pub, names in founders
    )
    hub_pub = hub_key.public
    reg = Registry(version=1, issued_at=format_time(now), expires_at=format_time(now + lifetime), hub_url=hub_url,
                   hub_keys=(KeyEntry(jwk=_bare_jwk(hub_pub), not_before=None),), members=members)
    return sign_registry(reg, hub_key)


def _bare_jwk(pub: PublicKey) -> dict[str, str]:
    jwk = pub.to_jwk()
    jwk.pop("ipdn_member", None)
    return jwk


def load_registry(path: Path) -> SignedRegistry:
    try:
        return parse_registry(path.read_bytes())
    except OSError as e:
        raise RegistryError(f"cannot read {path}: {e.strerror}") from e


def load_registry_keys(path: Path) -> Mapping[str, PublicKey]:
    """The member keys of a registry file (signature checked), for offline verification."""
    return load_registry(path).registry.member_keys()
