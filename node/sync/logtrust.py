"""Trust the math, not the hub (docs/ARCHITECTURE.md, trust model; PROTOCOL.md §11): the node's checks of the hub's log.

Pure functions, no I/O: the sync engine fetches documents and proofs, these judge them. Every failure
that shows the hub misbehaving raises :class:`~node.errors.LogMisbehaviourError` whose ``reason`` is
the alarm the status page shows; the node then keeps the evidence and stops applying from the hub.

Alarms:

- ``log-entry-malformed``: a log entry lacks the JWS members ``protected``, ``payload``, ``signature``
  (the Merkle leaf input), so no checkpoint can cover it.
- ``checkpoint-bad-signature``: a checkpoint is not signed by a hub key of the registry (or names
  another network).
- ``checkpoint-rollback``: the hub's latest checkpoint is smaller than one the node accepted.
- ``log-inconsistent``: a checkpoint of the node's size has another root than the entries the node
  pulled, or it is not consistent with the last checkpoint the node accepted.
- ``own-envelope-not-included``: the checkpoint in a push answer does not include an own envelope
  the hub acknowledged.
- ``split-view``: a peer holds a hub-signed checkpoint that contradicts the node's (same size and
  another root, or no valid consistency proof between them).
- ``frontier-incomplete`` (node/sync/trust.py): a database from before the frontier was kept does not
  hold an envelope for every position up to its cursor, so the node cannot know its own root.

A document that cannot even be parsed is a protocol error (retried), not evidence. A checkpoint whose
hub signature does not verify halts too (someone is feeding the node false checkpoints), except from a
peer: that shows the peer misbehaving, not the hub.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from federation.protocol import merkle, strictjson
from federation.protocol.checkpoint import CheckpointError, SignedCheckpoint, parse_checkpoint
from federation.protocol.envelope import leaf_bytes
from federation.protocol.errors import StrictJsonError
from federation.protocol.registry import Registry
from node.errors import HubProtocolError, LogMisbehaviourError

JWS_MEMBERS = ("protected", "payload", "signature")
_CHECKPOINT_LIMITS = strictjson.JsonLimits(max_bytes=1024 * 1024, max_depth=4)


def dump(obj: Any) -> bytes:
    """A JSON value as compact bytes (for evidence of something received already parsed)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def entry_leaf(position: int, obj: Any) -> bytes:
    """The Merkle leaf hash of the log entry at ``position``: SHA-256(0x00 || protected.payload.signature).

    Raises:
        LogMisbehaviourError: ``log-entry-malformed``.
    """
    if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) and obj[k].isascii() for k in JWS_MEMBERS):
        raise LogMisbehaviourError(f"log entry {position} lacks the JWS members {', '.join(JWS_MEMBERS)}",
                                   reason="log-entry-malformed", offending=dump(obj))
    return merkle.leaf_hash(leaf_bytes(obj))


def read_checkpoint(raw: bytes, registry: Registry, source: str = "the hub") -> SignedCheckpoint:
    """Parse a checkpoint document and check the hub's signature over it.

    Raises:
        HubProtocolError: not a checkpoint document at all.
        LogMisbehaviourError: ``checkpoint-bad-signature`` (also for another network's checkpoint).
    """
    try:
        signed = parse_checkpoint(strictjson.loads(raw, _CHECKPOINT_LIMITS))
    except (CheckpointError, StrictJsonError) as e:
        raise HubProtocolError(f"{source} served no checkpoint document: {e.message}") from e
    try:
        signed.verify(registry.hub_public_keys(), {})
    except CheckpointError as e:
        raise LogMisbehaviourError(f"checkpoint of size {signed.checkpoint.size} from {source}: {e.message}",
                                   reason="checkpoint-bad-signature", offending=raw) from e
    if signed.checkpoint.network != registry.network:
        raise LogMisbehaviourError(f"checkpoint from {source} is for network {signed.checkpoint.network!r}",
                                   reason="checkpoint-bad-signature", offending=raw)
    return signed


def stored_checkpoint(raw: bytes | None) -> SignedCheckpoint | None:
    """A checkpoint this node accepted earlier (verified then; parsed again, not re-verified)."""
    return parse_checkpoint(json.loads(raw)) if raw is not None else None


def proof_hashes(hexes: Any) -> list[bytes]:
    """The hashes of a proof answer (a list of hex strings).

    Raises:
        HubProtocolError: not a list of hex strings.
    """
    try:
        if not isinstance(hexes, list):
            raise TypeError("not a list")
        return [bytes.fromhex(h) for h in hexes]
    except (TypeError, ValueError) as e:
        raise HubProtocolError(f"proof is not a list of hex hashes: {e}") from e


def check_consistent(old: SignedCheckpoint, new: SignedCheckpoint, proof: Sequence[bytes], offending: bytes,
                     reason: str = "log-inconsistent") -> None:
    """``new`` extends ``old`` (RFC 9162 consistency; equal sizes need equal roots).

    Raises:
        LogMisbehaviourError: ``reason`` (``log-inconsistent`` or ``split-view``).
    """
    a, b = old.checkpoint, new.checkpoint
    try:
        merkle.verify_consistency(a.size, b.size, a.root_bytes, b.root_bytes, proof)
    except merkle.MerkleProofError as e:
        raise LogMisbehaviourError(f"checkpoint {b.size} ({b.root}) does not extend checkpoint {a.size} ({a.root}): "
                                   f"{e.message}", reason=reason, offending=offending) from e


def check_included(leaf: bytes, position: int, signed: SignedCheckpoint, proof: Sequence[bytes],
                   offending: bytes) -> None:
    """The own envelope with leaf hash ``leaf`` is at ``position`` in the tree of ``signed``.

    Raises:
        LogMisbehaviourError: ``own-envelope-not-included``.
    """
    cp = signed.checkpoint
    try:
        if position > cp.size:
            raise merkle.InclusionProofError(f"position {position} is beyond the checkpoint's size {cp.size}")
        merkle.verify_inclusion(leaf, position - 1, cp.size, proof, cp.root_bytes)
    except merkle.MerkleProofError as e:
        raise LogMisbehaviourError(f"own envelope the hub acknowledged at position {position} is not in checkpoint "
                                   f"{cp.size}: {e.message}", reason="own-envelope-not-included",
                                   offending=offending) from e
