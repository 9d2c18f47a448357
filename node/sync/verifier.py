"""Verifying pulled log pages in worker processes, while the node applies the page before (docs/adr/0032).

What an envelope's verdict needs besides the envelope is the registry and a reference time: never the node's
database. So everything but the chain is judged here, by :func:`check_entries`, a plain function of picklable
values that runs in a worker process or, for small pages and for the reference path, in the node's own:

- intake: the JWS container, strict JSON, the RFC 8785 form of header and payload (``Envelope.from_dict``);
- key (known, of the origin, valid at ``issued_at``), time, Ed25519 signature, schema: ``verify_envelope``,
  exactly as the applier calls it, without the chain;
- the Merkle leaf hash of the entry, and the record's derived search columns (``search_values``: the searched
  text folded, the last day of a recurring event's series), which cost as much as the verification.

The chain (against the heads the database holds), the key's window at the hub's receipt time (with the registry
follower's knowledge of when each key's end was published), versions and the write stay with
:class:`~node.records.apply.LogApplier`, in order, in the node's process. A verdict holds for the registry it was
made under: the applier checks it again in-process when the registry moved meanwhile.

A worker sends back plain tuples, never :class:`~federation.protocol.envelope.Envelope` objects: a slotted
dataclass pickles at several hundred microseconds an envelope, more than parsing it again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import multiprocessing
import os
import pickle
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from federation.protocol import merkle, strictjson
from federation.protocol.envelope import Envelope, Payload, leaf_bytes
from federation.protocol.errors import IpdnError
from federation.protocol.jws import HEADER_LIMITS, SignedDocument
from federation.protocol.keys import b64u_decode
from federation.protocol.registry import SignedRegistry, parse_registry
from federation.protocol.schemas import SchemaSet
from federation.protocol.verify import Failure, verify_envelope
from node.store.records import search_values
from node.sync.logtrust import JWS_MEMBERS

log = logging.getLogger("ipdn.node.sync")


class Checked(NamedTuple):
    """One log entry judged by :func:`check_entries` (everything but the chain and the receipt-time window)."""

    failures: tuple[Failure, ...]  # intake (alone) or key, time, signature, schema; never chain
    leaf: bytes | None  # the Merkle leaf hash; None: the entry is no JWS (the applier raises log-entry-malformed)
    # The payload's fields but its body (None: the entry did not parse), which rebuild the envelope in the node's
    # process with the entry's own members: its bytes travel once, to the worker. The body is parsed again there
    # (strictjson.loads_accepted): a fifth of the time a pickled body takes to travel back and be unpickled.
    fields: tuple[Any, ...] | None = None
    derived: dict[str, Any] | None = None  # the record's search columns (node.store.records.search_values)


@dataclasses.dataclass(slots=True)
class CheckedPage:
    """A page's verdicts, one per entry in order, and what they were made under."""

    registry: str  # the registry's hash
    now: datetime  # the reference time of the time check
    made: list[Checked] | None = None
    # As the workers pickled them: read when the page is applied, not while the page before is being written (the
    # database thread then waits for no other thread of this process to let go of the interpreter).
    blobs: list[bytes] = dataclasses.field(default_factory=list)

    @property
    def items(self) -> list[Checked]:
        if self.made is None:
            # Pickled by this node's own worker process (as every executor call and result is).
            self.made, self.blobs = [c for blob in self.blobs for c in pickle.loads(blob)], []  # noqa: S301
        return self.made


# Every field of a Payload but its body, ``issued`` (derived by its constructor) included: what a worker sends back.
_PAYLOAD_FIELDS = tuple(f.name for f in dataclasses.fields(Payload) if f.name != "body")


def _leaf(obj: Any) -> bytes | None:
    if isinstance(obj, dict) and all(isinstance(obj.get(k), str) and obj[k].isascii() for k in JWS_MEMBERS):
        return merkle.leaf_hash(leaf_bytes(obj))
    return None


def check_entries(registry: SignedRegistry, schemas: SchemaSet, objs: Sequence[Any], now: datetime) -> list[Checked]:
    """Judge log entries (envelope JWS objects as the log serves them) as :meth:`LogApplier.apply_log` does,
    without the chain and the receipt-time window."""
    reg = registry.registry
    keys = reg.member_keys().get
    skew = timedelta(seconds=reg.policies.clock_skew_seconds)
    out = []
    for obj in objs:
        leaf = _leaf(obj)
        try:
            env = Envelope.from_dict(obj)
        except IpdnError as e:
            out.append(Checked((Failure("intake", e.reason, e.message),), leaf))
            continue
        result = verify_envelope(env, keys=keys, schemas=schemas, now=now, max_future_skew=skew)
        p = env.payload
        fields = tuple(getattr(p, f) for f in _PAYLOAD_FIELDS)
        out.append(Checked(tuple(result.failures), leaf, fields, search_values(p.body)))
    return out


@functools.lru_cache(maxsize=1024)
def header_of(protected: str) -> dict[str, Any] | None:
    """A JWS protected header (base64url) parsed, or None: a node sees a handful (one per key), each thousands of
    times."""
    try:
        header = strictjson.loads(b64u_decode(protected), HEADER_LIMITS)
    except (ValueError, TypeError, IpdnError):
        return None
    return header if isinstance(header, dict) else None


def envelope_of(obj: dict[str, str], fields: tuple[Any, ...]) -> Envelope:
    """The envelope :func:`check_entries` parsed from ``obj`` (a JWS it accepted), rebuilt from the entry and the
    payload's fields as that :class:`Payload`'s constructor left them: its rules were checked there, by this node's
    own worker, so they are not checked again here (a fifth of this process's time when catching up). The body
    is parsed again from the payload's bytes, which that worker accepted as strict JSON."""
    header = header_of(obj["protected"])
    if header is None:
        raise ValueError("the entry's header does not parse: it was not checked")
    data = b64u_decode(obj["payload"])
    doc = SignedDocument(obj["protected"], obj["payload"], b64u_decode(obj["signature"]), header, data)
    payload = object.__new__(Payload)
    for name, value in zip(_PAYLOAD_FIELDS, fields, strict=True):
        object.__setattr__(payload, name, value)
    object.__setattr__(payload, "body", strictjson.loads_accepted(data).get("body"))
    return Envelope(doc, payload)


# -- in a worker process -------------------------------------------------------------------------------------

_worker: dict[str, Any] = {}


def _init_worker(documents: dict[str, dict[str, Any]]) -> None:
    _worker["schemas"] = SchemaSet(documents)
    _worker["registries"] = {}


def _check_in_worker(registry: bytes, digest: str, objs: list[Any], now: datetime) -> bytes:
    registries: dict[str, SignedRegistry] = _worker["registries"]
    reg = registries.get(digest)
    if reg is None:
        registries.clear()
        reg = registries[digest] = parse_registry(registry)  # the node checked it already; parsed once per worker
    return pickle.dumps(check_entries(reg, _worker["schemas"], objs, now), protocol=pickle.HIGHEST_PROTOCOL)


class PageVerifier:
    """Judges pages by :func:`check_entries`: in ``workers`` processes (a page split between them), or in this
    process when there are none, while they start, or for a page smaller than ``parallel_min`` (a round trip to a
    worker costs more than a few envelopes: a live record's page stays in-process). The workers are started at the
    first page that would use them: a node that never catches up on a long log never starts them."""

    def __init__(self, schemas: SchemaSet, workers: int = 0, parallel_min: int = 64) -> None:
        self.schemas, self.workers, self.parallel_min = schemas, workers, parallel_min
        self._pool: ProcessPoolExecutor | None = None  # set once every worker has started
        self._starting: asyncio.Task[None] | None = None
        self._bytes: tuple[str, bytes] | None = None  # the registry's hash and bytes last sent

    async def start(self) -> None:
        """Start the worker processes (spawned: this process runs an event loop and database threads) and wait
        until each has imported everything and compiled the schemas."""
        if self.workers <= 0 or self._pool is not None:
            return
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self.schemas.documents,))
        loop = asyncio.get_running_loop()
        try:
            await asyncio.gather(*(loop.run_in_executor(pool, os.getpid) for _ in range(self.workers)))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        self._pool = pool

    async def stop(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
            self._starting = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def worker_pids(self) -> list[int]:
        """The worker processes' ids."""
        return list((self._pool._processes or {}).keys()) if self._pool is not None else []

    async def check(self, registry: SignedRegistry, objs: Sequence[Any], now: datetime) -> CheckedPage:
        """The verdicts of ``objs`` under ``registry`` at ``now``."""
        wanted = self.workers > 0 and len(objs) >= self.parallel_min
        if wanted and self._pool is None:
            if self._starting is None:
                self._starting = asyncio.create_task(self.start(), name="ipdn-node-verify-workers")
            elif self._starting.done() and (error := self._starting.exception()) is not None:
                log.error("the verify workers could not start (%s: %s): pages are verified in-process",
                          type(error).__name__, error)
                self.workers, self._starting = 0, None
        if not wanted or self._pool is None:
            return CheckedPage(registry.hash, now, check_entries(registry, self.schemas, objs, now))
        digest = registry.hash
        if self._bytes is None or self._bytes[0] != digest:
            self._bytes = (digest, registry.to_bytes())
        data = self._bytes[1]
        step = -(-len(objs) // self.workers)
        loop = asyncio.get_running_loop()
        try:
            parts = await asyncio.gather(*(
                loop.run_in_executor(self._pool, _check_in_worker, data, digest, list(objs[i:i + step]), now)
                for i in range(0, len(objs), step)))
        except BrokenProcessPool as e:  # a worker died (killed, out of memory): this page here, new workers later
            log.warning("a verify worker died (%s): the page is verified in-process, the workers restarted", e)
            pool, self._pool, self._starting = self._pool, None, None
            pool.shutdown(wait=False, cancel_futures=True)
            return CheckedPage(digest, now, check_entries(registry, self.schemas, objs, now))
        return CheckedPage(digest, now, blobs=parts)
