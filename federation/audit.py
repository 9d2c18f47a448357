"""``ipdn audit``: check a hub from outside, trusting nothing but a registry file.

The auditor fetches the hub's latest signed checkpoint and checks the hub's signature (and which members co-signed
it), downloads the whole log up to the checkpoint's size, verifies every envelope exactly as a node would
(docs/PROTOCOL.md §5, with each origin's chain), recomputes the RFC 9162 Merkle root over every entry and compares it
with the checkpoint's. Given the checkpoint of an earlier audit, it also checks the hub's consistency proof from that
checkpoint to the new one, so a hub that rewrote or dropped history since then is caught even where every envelope
still verifies.

The registry the auditor holds (say the genesis) is only where trust starts: the audit walks the hub's registry chain
from it to the latest version, checking each step as nodes do (:func:`federation.protocol.governance.walk_chain`, §12),
and verifies each envelope against the version in force when it was issued (so members admitted, re-keyed or
removed later are judged as nodes judged them). A forged version in the chain fails the audit.

The audit itself (:func:`audit`) is a pure function of a ``fetch(path) -> bytes`` callable (the hub's HTTP interface,
§8), the registry and a clock, so tests drive it with an in-memory hub; :class:`HttpFetcher` is the thin
``urllib.request`` implementation the command uses. Nothing here raises for what the hub serves: every problem is an
:class:`AuditFailure` in the :class:`AuditReport`. Only an unreachable hub raises (:class:`HubUnreachable`).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from federation.progress import ProgressCallback
from federation.protocol import merkle, strictjson
from federation.protocol.checkpoint import Checkpoint, CheckpointError, SignedCheckpoint, parse_checkpoint
from federation.protocol.envelope import Envelope, leaf_bytes, parse_time
from federation.protocol.errors import IpdnError, StrictJsonError
from federation.protocol.governance import GovernanceError, walk_chain
from federation.protocol.keys import PublicKey
from federation.protocol.registry import Registry, RegistryError, SignedRegistry
from federation.protocol.schemas import SchemaSet, default_schemas
from federation.protocol.verify import ChainHead, KeyResolver, judge_logged_key, verify_envelope

__all__ = [
    "PAGE_LIMIT",
    "AuditFailure",
    "AuditReport",
    "Fetch",
    "HttpFetcher",
    "HubHttpError",
    "HubUnreachable",
    "KeysInForce",
    "audit",
    "load_checkpoint",
    "registry_chain",
    "save_checkpoint",
]

PAGE_LIMIT = 1000
"""Entries per log page (the hub's maximum, PROTOCOL.md §8.3)."""

Fetch = Callable[[str], bytes]
"""``fetch(path)``: the body of ``GET <hub><path>`` (path with its query, e.g. ``/api/v1/log?after=0&limit=1000``).

Raises :class:`HubHttpError` for an HTTP error answer and :class:`HubUnreachable` when no answer came."""


_UNKNOWN = ""  # the hash of a chain head whose envelope did not verify
_DOC_LIMITS = strictjson.JsonLimits(max_bytes=1024 * 1024, max_depth=8)


class HubUnreachable(IpdnError):
    """The hub did not answer at all (connection refused, DNS, TLS, timeout): the audit could not run."""

    reason = "hub-unreachable"


class HubHttpError(IpdnError):
    """The hub answered with an HTTP error; ``reason`` is the problem document's slug when it sent one."""

    reason = "hub-error"

    def __init__(self, path: str, status: int, message: str, *, reason: str | None = None) -> None:
        super().__init__(f"GET {path}: HTTP {status}: {message}", reason=reason)
        self.path, self.status = path, status


@dataclass(frozen=True, slots=True)
class AuditFailure:
    """One thing that did not verify. ``position`` is the log position it concerns, when it concerns one entry."""

    reason: str
    message: str
    position: int | None = None
    where: str = ""  # for failures about the log as a whole: "at size 40", "from 30 to 40"

    def __str__(self) -> str:
        if self.position is not None:
            return f"position {self.position}: {self.reason}: {self.message}"
        where = f" {self.where}" if self.where else ""
        return f"{self.reason}{where}: {self.message}"


@dataclass(slots=True)
class AuditReport:
    """What an audit found. ``ok`` only when the checkpoint, every entry, the root and any consistency proof verify."""

    checkpoint: SignedCheckpoint | None = None  # the hub's checkpoint (None: the log is empty, or it did not parse)
    checkpoint_valid: bool = False  # the hub's signature on it verified
    log_size: int = 0  # the checkpoint's size: what was audited
    entries_read: int = 0
    entries_verified: int = 0  # entries whose every check passed
    heads: dict[str, ChainHead] = field(default_factory=dict)  # per origin, after the last entry read
    cosigners: list[str] = field(default_factory=list)
    consistent_from: int | None = None  # size of the earlier checkpoint proven to be a prefix
    # positions of entries signed by a key whose end, published after the hub logged them, lies before them: kept
    # in the log (not a failure of the hub), not verified (PROTOCOL.md §10, docs/adr/0019)
    revoked_after: list[int] = field(default_factory=list)
    failures: list[AuditFailure] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def failure_lines(self) -> list[str]:
        return [str(f) for f in self.failures]

    def summary_lines(self, hub: str = "") -> list[str]:
        lines = [f"hub {hub}".rstrip()]
        cp = self.checkpoint.checkpoint if self.checkpoint else None
        if cp is None:
            lines.append("log size 0: the hub holds no checkpoint (empty log)" if self.ok
                         else "checkpoint: none verified")
        else:
            signed = "signed by the hub" if self.checkpoint_valid else "NOT signed by a hub key"
            lines.append(f"log size {cp.size}, root {cp.root}, checkpoint issued {cp.issued_at}, {signed}")
        lines.append(f"entries verified {self.entries_verified} of {self.log_size} ({self.entries_read} read)")
        heads = ", ".join(f"{o} seq {h.seq}" for o, h in sorted(self.heads.items()))
        lines.append(f"origins {len(self.heads)}: {heads or '-'}")
        lines.append(f"co-signed by {', '.join(sorted(self.cosigners)) or 'no member'}")
        if self.consistent_from is not None:
            lines.append(f"consistent with the earlier checkpoint of size {self.consistent_from}")
        if self.revoked_after:
            shown = ", ".join(map(str, self.revoked_after[:20])) + (", ..." if len(self.revoked_after) > 20 else "")
            lines.append(f"signed by a key revoked after the fact (kept, not verified): {len(self.revoked_after)} "
                         f"entries, positions {shown}")
        lines.append(f"elapsed {self.elapsed:.1f} s")
        lines.append("OK" if self.ok else f"FAILED: {len(self.failures)} failure(s)")
        return lines


# -- the audit -----------------------------------------------------------------------------------------------


def audit(fetch: Fetch, registry: SignedRegistry, *, now: datetime, previous: Checkpoint | None = None,
          schemas: SchemaSet | None = None, page_limit: int = PAGE_LIMIT, progress: ProgressCallback | None = None,
          clock: Callable[[], float] = time.monotonic) -> AuditReport:
    """Audit the hub behind ``fetch`` against ``registry`` (the only thing trusted: the hub's registry chain is
    walked from it, each version checked), at ``now`` (the time envelope times are judged at; ``clock`` only
    measures how long the audit took).

    ``previous`` is the checkpoint of an earlier audit (its hub signature already checked, see
    :func:`load_checkpoint`): the hub must prove its current log extends it. Raises only
    :class:`HubUnreachable` (from ``fetch``); everything else the hub does wrong is a failure in the report.
    """
    started = clock()
    report = AuditReport()
    try:
        _audit(fetch, registry, report, previous, now, schemas or default_schemas(), page_limit, progress)
    except HubHttpError as e:
        report.failures.append(AuditFailure(e.reason, e.message))
    report.elapsed = clock() - started
    return report


def registry_chain(fetch: Fetch, anchor: SignedRegistry) -> list[SignedRegistry]:
    """``anchor`` and every later version the hub serves (``GET /api/v1/registry[?version=K]``), each checked
    against its predecessor (:func:`federation.protocol.governance.walk_chain`).

    Raises:
        RegistryError, GovernanceError: a version that is not the justified successor of the one before.
        HubHttpError, HubUnreachable: from ``fetch``.
    """
    return walk_chain(anchor, lambda v: fetch("/api/v1/registry" if v is None else f"/api/v1/registry?version={v}"))


class KeysInForce:
    """Member keys as the registry chain had them: an envelope is judged by the version in force when it was
    issued, or, for a key that version does not list yet, by the first later version issued within the clock
    skew that does (a member's clock may run a little behind the hub's)."""

    def __init__(self, chain: list[SignedRegistry], skew: timedelta) -> None:
        self.chain = chain
        self.issued = [parse_time(r.registry.issued_at) for r in chain]
        self.skew = skew

    def at(self, when: datetime) -> KeyResolver:
        first = max(0, bisect.bisect_right(self.issued, when) - 1)

        def get(kid: str) -> PublicKey | None:
            for i in range(first, len(self.chain)):
                if i > first and self.issued[i] > when + self.skew:
                    break
                key = self.chain[i].registry.member_keys().get(kid)
                if key is not None:
                    return key
            return None

        return get


def _audit(fetch: Fetch, anchor: SignedRegistry, report: AuditReport, previous: Checkpoint | None, now: datetime,
           schemas: SchemaSet, page_limit: int, progress: ProgressCallback | None) -> None:
    fail = report.failures.append
    try:
        chain = registry_chain(fetch, anchor)
    except (RegistryError, GovernanceError) as e:
        # Without a justified chain from the registry trusted, nothing after it can be judged.
        fail(AuditFailure(e.reason, f"registry chain: {e.message}"))
        return
    registry = chain[-1].registry
    signed = _fetch_checkpoint(fetch, registry, report)
    if signed is None:
        if not report.failures and previous is not None:  # the log is empty now, but was not
            fail(AuditFailure("consistency-proof-invalid", "the hub now holds no checkpoint: a log never shrinks",
                              where=f"from {previous.size} to 0"))
        return
    cp = signed.checkpoint
    report.log_size = cp.size

    # Every entry up to the checkpoint's size, each verified, each hashed into the tree.
    frontier = merkle.Frontier()
    skew = timedelta(seconds=registry.policies.clock_skew_seconds)
    env_limits = strictjson.JsonLimits(max_bytes=registry.policies.max_envelope_bytes)
    page_limits = strictjson.JsonLimits(max_bytes=page_limit * (registry.policies.max_envelope_bytes + 64) + 65536,
                                        max_depth=8)
    keys = KeysInForce(chain, skew)
    after = 0
    latest_receipt: datetime | None = None
    while frontier.size < cp.size:
        path = f"/api/v1/log?after={after}&limit={page_limit}"
        entries = _page_entries(fetch(path), page_limits, after)
        if isinstance(entries, AuditFailure):
            fail(entries)
            return
        if not entries:
            break
        for entry in entries:
            if frontier.size >= cp.size:
                break
            expected = frontier.size + 1
            position = entry.get("position") if isinstance(entry, dict) else None
            obj = entry.get("envelope") if isinstance(entry, dict) else None
            if type(position) is not int or position <= after:
                fail(AuditFailure("malformed-log-page", f"entry without a position above {after}", expected))
                return
            if position != expected:
                fail(AuditFailure("position-gap", f"the hub served position {position} next: entries "
                                                  f"{expected}..{position - 1} are missing", expected))
            after = position
            frontier.append(merkle.leaf_hash(_leaf(obj)))
            report.entries_read += 1
            received = _receipt(entry, position, latest_receipt, now, skew, report)
            if received is not None:
                latest_receipt = received if latest_receipt is None else max(latest_receipt, received)
            ok = _verify_entry(obj, position, report, keys, schemas, now, skew, env_limits, received)
            if ok and received is not None and position not in report.revoked_after[-1:]:
                report.entries_verified += 1
            if progress is not None:
                progress(frontier.size, cp.size)
            if previous is not None and frontier.size == previous.size and frontier.root() != previous.root_bytes:
                fail(AuditFailure("history-rewritten", "the first entries no longer hash to the root of the earlier "
                                  f"checkpoint ({previous.root})", where=f"at size {previous.size}"))

    if frontier.size < cp.size:
        fail(AuditFailure("log-truncated", f"the hub served {frontier.size} entries; its checkpoint covers {cp.size}",
                          where=f"at size {frontier.size}"))
    elif frontier.root() != cp.root_bytes:
        fail(AuditFailure("root-mismatch", f"the entries hash to {frontier.root().hex()}, the checkpoint says "
                          f"{cp.root}", where=f"at size {cp.size}"))
    if previous is not None:
        _check_consistency(fetch, previous, cp, report)


def _fetch_checkpoint(fetch: Fetch, registry: Registry, report: AuditReport) -> SignedCheckpoint | None:
    """The hub's latest checkpoint, its signature checked; None when it holds none (or it failed to verify)."""
    fail = report.failures.append
    try:
        data = fetch("/api/v1/log/checkpoint")
    except HubHttpError as e:
        if e.status == 404 and e.reason == "no-checkpoint":
            return None  # the log is empty
        raise
    try:
        signed = parse_checkpoint(strictjson.loads(data, _DOC_LIMITS))
    except (CheckpointError, StrictJsonError) as e:
        fail(AuditFailure("checkpoint-invalid", f"the hub's checkpoint does not parse: {e.message}"))
        return None
    report.checkpoint = signed
    try:
        report.cosigners = signed.verify(registry.hub_public_keys(), registry.member_keys())
    except CheckpointError as e:
        fail(AuditFailure(e.reason, f"{e.message}: no hub key in the registry made its first signature"))
        return None
    report.checkpoint_valid = True
    if signed.checkpoint.network != registry.network:
        fail(AuditFailure("checkpoint-wrong-network", f"the checkpoint is for {signed.checkpoint.network!r}, "
                                                      f"the registry for {registry.network!r}"))
        return None
    return signed


def _page_entries(data: bytes, limits: strictjson.JsonLimits, after: int) -> list[Any] | AuditFailure:
    where = f"after position {after}"
    try:
        doc = strictjson.loads(data, limits)
    except StrictJsonError as e:
        return AuditFailure(e.reason, f"log page: {e.message}", where=where)
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        return AuditFailure("malformed-log-page", 'a log page is {"entries": [...], "next", "size"}', where=where)
    return list(doc["entries"])


def _leaf(obj: Any) -> bytes:
    """The Merkle leaf input of a served envelope: its compact JWS; anything else hashes as its JSON (and so
    cannot match an honest tree)."""
    if isinstance(obj, dict) and all(isinstance(obj.get(k), str) for k in ("protected", "payload", "signature")):
        with contextlib.suppress(UnicodeEncodeError):
            return leaf_bytes(obj)
    return json.dumps(obj, ensure_ascii=False, sort_keys=True).encode()


def _receipt(entry: Any, position: int, latest: datetime | None, now: datetime, skew: timedelta,
             report: AuditReport) -> datetime | None:
    """The entry's receipt time (§8.3), or None with a ``receipt-time-invalid`` failure: missing, not a time, in the
    future, or more than the skew before an earlier entry's."""
    try:
        received = parse_time(entry.get("received_at"))
    except IpdnError as e:
        report.failures.append(AuditFailure("receipt-time-invalid", f"no receipt time: {e.message}", position))
        return None
    if received > now + skew or (latest is not None and received < latest - skew):
        report.failures.append(AuditFailure("receipt-time-invalid", f"received at {received.isoformat()}: "
                                            + ("in the future" if received > now + skew else
                                               f"before an earlier entry ({latest.isoformat() if latest else ''})"),
                                            position))
        return None
    return received


def _verify_entry(obj: Any, position: int, report: AuditReport, keys: KeysInForce, schemas: SchemaSet,
                  now: datetime, skew: timedelta, limits: strictjson.JsonLimits,
                  received: datetime | None = None) -> bool:
    """Verify one entry's envelope and its place in its origin's chain, its key also at the hub's receipt time
    ``received`` by the version in force then; record failures. True when all passed."""
    try:
        env = Envelope.from_dict(obj, limits)
    except IpdnError as e:
        report.failures.append(AuditFailure(e.reason, e.message, position))
        return False
    p = env.payload
    head = report.heads.get(p.origin)
    if head is not None and head.hash == _UNKNOWN and p.seq == head.seq + 1:
        head = ChainHead(head.seq, p.prev or "")  # the entry before was not authentic: its true hash is unknown
    result = verify_envelope(env, keys=keys.at(p.issued), schemas=schemas, now=now, chain_head=head,
                             check_chain_head=True, max_future_skew=skew)
    if received is not None and not any(f.check == "key" for f in result.failures):
        # The hub judges a push with the registry it holds then; so does the auditor (docs/adr/0019).
        then = keys.at(received)(env.kid)
        verdict = judge_logged_key(then, p.issued, received, skew, None) if then is not None else None
        if verdict is not None:
            result.failures.insert(0, verdict)
        else:
            latest = keys.chain[-1].registry.member_keys().get(env.kid)
            if latest is not None and judge_logged_key(latest, p.issued, received, skew, None) is not None:
                report.revoked_after.append(position)
    for f in result.failures:
        message = f.message
        if f.reason == "chain-stale":
            message += ": the log holds this origin's seq twice (a duplicate entry or a fork)"
        report.failures.append(AuditFailure(f.reason, message, position))
    # A stale entry leaves the head where it is; a gap or a fork moves it on, so one bad entry is reported once
    # (a successor that chains on an authentic entry the hub replaced shows the break). An entry whose key or
    # signature fails is not the origin's: its hash is not the one the origin's next envelope names.
    if head is None or p.seq > head.seq:
        authentic = not any(f.check in ("key", "signature") for f in result.failures)
        report.heads[p.origin] = ChainHead(p.seq, env.hash if authentic else _UNKNOWN)
    return result.ok


def _check_consistency(fetch: Fetch, previous: Checkpoint, cp: Checkpoint, report: AuditReport) -> None:
    where = f"from {previous.size} to {cp.size}"
    fail = report.failures.append
    if previous.size > cp.size:
        fail(AuditFailure("consistency-proof-invalid", "the log is shorter than at the earlier audit: a log never "
                          "shrinks", where=where))
        return
    if previous.size == 0:  # every log extends the empty one
        report.consistent_from = 0
        return
    proof: list[bytes] = []
    if previous.size < cp.size:
        data = fetch(f"/api/v1/log/proof/consistency?from={previous.size}&to={cp.size}")
        try:
            doc = strictjson.loads(data, _DOC_LIMITS)
            if not isinstance(doc, dict) or doc.get("from") != previous.size or doc.get("to") != cp.size \
                    or not isinstance(doc.get("proof"), list):
                raise ValueError('a consistency proof is {"from", "to", "proof": [hex, ...]} for the sizes asked')
            proof = [bytes.fromhex(h) for h in doc["proof"]]
        except (StrictJsonError, ValueError, TypeError) as e:
            fail(AuditFailure("consistency-proof-invalid", f"the hub's proof does not parse: {e}", where=where))
            return
    try:
        merkle.verify_consistency(previous.size, cp.size, previous.root_bytes, cp.root_bytes, proof)
    except merkle.MerkleProofError as e:
        fail(AuditFailure(e.reason, f"{e.message}: the hub rewrote or dropped history since the earlier checkpoint",
                          where=where))
        return
    report.consistent_from = previous.size


# -- checkpoint files ----------------------------------------------------------------------------------------


def load_checkpoint(path: Path, registry: Registry) -> Checkpoint:
    """A checkpoint saved by an earlier audit, its hub signature checked against the registry.

    Raises:
        CheckpointError: unreadable, not a checkpoint, or not signed by a hub key of the registry.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from e
    try:
        signed = parse_checkpoint(strictjson.loads(data, _DOC_LIMITS))
    except StrictJsonError as e:
        raise CheckpointError(f"{path}: {e.message}") from e
    signed.verify(registry.hub_public_keys(), {})
    return signed.checkpoint


def save_checkpoint(signed: SignedCheckpoint, path: Path) -> None:
    """Write a verified checkpoint (with its co-signatures) for the next audit's ``--from-checkpoint``, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(signed.to_bytes() + b"\n")
    os.replace(tmp, path)


# -- HTTP -------------------------------------------------------------------------------------------------


class HttpFetcher:
    """:data:`Fetch` over HTTP(S) with ``urllib.request``: ``GET <base_url><path>``.

    Raises ``ValueError`` at construction for a URL that is not http(s)://host[...].
    """

    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"--hub must be an http:// or https:// URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def __call__(self, path: str) -> bytes:
        url = self.base_url + path
        headers = {"Accept": "application/json", "User-Agent": "ipdn-audit"}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 (scheme checked in __init__)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (scheme checked)
                return bytes(response.read())
        except urllib.error.HTTPError as e:
            raise _http_error(path, e) from e
        except (urllib.error.URLError, OSError, HTTPException) as e:
            why = e.reason if isinstance(e, urllib.error.URLError) else e
            raise HubUnreachable(f"cannot reach {self.base_url}: {why}") from e


def _http_error(path: str, e: urllib.error.HTTPError) -> HubHttpError:
    reason, detail = None, str(e.reason)
    with contextlib.suppress(OSError, ValueError, HTTPException):
        problem = json.loads(e.read(65536))
        if isinstance(problem, dict):
            reason = problem.get("reason") if isinstance(problem.get("reason"), str) else None
            detail = str(problem.get("detail") or detail)
    return HubHttpError(path, e.code, detail, reason=reason)
