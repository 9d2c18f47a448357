"""Chair handover, the incoming side: import the outgoing hub's registry chain and log, verifying all.

The incoming hub trusts nothing the outgoing one serves: it checks every registry version against its
predecessor (signatures and governance, from the genesis its operator holds), requires the latest to
name this hub (its key and URL), verifies every envelope and rebuilds the Merkle tree, and requires
the root to equal the outgoing hub's latest signed checkpoint. Only then does it store the log, with
the same positions, so nodes continue where they were with no re-sync.
"""

from __future__ import annotations

import json
from pathlib import Path

from federation.audit import Fetch, HttpFetcher
from federation.audit import registry_chain as audit_registry_chain
from federation.hub.store.log import CheckpointRow, HubStore, LogRow
from federation.progress import ProgressCallback
from federation.protocol import merkle
from federation.protocol.checkpoint import parse_checkpoint
from federation.protocol.envelope import Envelope, leaf_bytes, parse_time
from federation.protocol.errors import IpdnError, TrustError
from federation.protocol.keys import SigningKey
from federation.protocol.registry import SignedRegistry, load_registry
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import ChainHead, check_chain, verify_envelope
from federation.server.times import Clock, utcnow


class HandoverError(TrustError):
    reason = "handover-invalid"


def registry_chain(fetch: Fetch, anchor: SignedRegistry) -> list[SignedRegistry]:
    """Every version after ``anchor`` up to the latest, each checked against its predecessor
    (:func:`federation.protocol.governance.walk_chain`, as the auditor and the nodes do)."""
    return audit_registry_chain(fetch, anchor)


async def import_hub(hub_dir: Path, db_url: str, source: str, *, fetch: Fetch | None = None,
                     progress: ProgressCallback | None = None, clock: Clock = utcnow) -> int:
    """Import into ``hub_dir`` (holding hub.key.pem and the genesis registry.json); the log size."""
    fetch = fetch or HttpFetcher(source)
    key = SigningKey.load(hub_dir / "hub.key.pem")
    chain = registry_chain(fetch, load_registry(hub_dir / "registry.json"))
    latest = chain[-1]
    if key.kid not in latest.registry.hub_public_keys():
        raise HandoverError("the latest registry does not name this hub's key: the handover is not decided yet")
    checkpoint = parse_checkpoint(json.loads(fetch("/api/v1/log/checkpoint")))
    all_hub_keys = {k: v for r in chain for k, v in r.registry.hub_public_keys().items()}
    checkpoint.verify(all_hub_keys, {})
    size = checkpoint.checkpoint.size
    store = await HubStore.open(db_url)
    try:
        if await store.size():
            raise HandoverError("the target database already holds a log")
        rows, nodes, frontier = [], [], merkle.Frontier()
        received = []  # the outgoing hub's receipt times, kept: nodes judge key windows at them (§8.3)
        keys = {k: v for r in chain for k, v in r.registry.member_keys().items()}
        heads: dict[str, ChainHead] = {}
        schemas = default_schemas()
        after = 0
        while after < size:
            entries = json.loads(fetch(f"/api/v1/log?after={after}&limit=1000"))["entries"][: size - after]
            if not entries:
                raise HandoverError(f"the outgoing hub's log ends at {after}, its checkpoint says {size}")
            for entry in entries:
                if entry["position"] != after + 1:
                    raise HandoverError(f"log positions jump from {after} to {entry['position']}")
                env = Envelope.from_dict(entry["envelope"])
                p = env.payload
                try:
                    received.append(parse_time(entry.get("received_at")))
                except IpdnError as e:
                    raise HandoverError(f"position {after + 1}: no receipt time: {e.message}") from e
                failures = verify_envelope(env, keys=keys.get, schemas=schemas, now=p.issued).failures
                chained = check_chain(env, heads.get(p.origin))
                if chained:
                    failures.append(chained)
                if failures:
                    raise HandoverError(f"position {after + 1}: {failures[0].reason}: {failures[0].message}")
                heads[p.origin] = ChainHead(p.seq, env.hash)
                nodes += frontier.append(merkle.leaf_hash(leaf_bytes(entry["envelope"])))
                rows.append(LogRow(p.origin, p.seq, env.hash, p.record_id, p.version, p.kind, p.op, env.kid,
                                   env.to_bytes()))
                after += 1
            if progress is not None:
                progress(after, size)
        if frontier.root() != checkpoint.checkpoint.root_bytes:
            raise HandoverError(f"the log's root at size {size} is not the outgoing hub's checkpoint root")
        now = clock()
        await store.commit(rows, [], now, size=0, nodes=nodes, checkpoint=CheckpointRow(
            size, checkpoint.checkpoint.root, now, checkpoint.to_bytes()) if size else None, received=received)
        for reg in chain:
            await store.save_registry(reg.registry.version, reg.hash, reg.to_bytes(), now)
        (hub_dir / "registry.json").write_bytes(latest.to_bytes() + b"\n")
        return size
    finally:
        await store.close()
