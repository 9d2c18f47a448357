"""Recovery of the hub's log from the members (docs/adr/0021-hub-recovers-its-log-from-the-members.md,
PROTOCOL.md §9 and §11.1).

Every node holds the log it pulled and the latest checkpoint it verified and co-signed: together they are the
hub's backup. A hub restored from an older backup (``ipdn hub restore`` marks its directory), or rebuilt after
losing its disk, starts read-only (503 ``hub-recovering`` on pushes, pulls, proofs and governance), asks each
member for the checkpoint it holds and its copy of the log beyond the hub's size, and appends a suffix only when
it verifies: every envelope as at ingest, and the Merkle root over the hub's log plus the suffix equal to the
root of the largest checkpoint that a hub key signed and a member co-signed. Entries a member holds beyond that
checkpoint are then taken as pushes would be (same checks, same order, same positions). The hub resumes once
every member it can ask has answered and none holds a larger checkpoint, or when an operator says so (force).

Receipt times (PROTOCOL.md §8.3) are outside the tree: the members serve the ones the hub's log gave them, and the
appended entries keep them (:func:`choose_receipts`), since nodes judge key windows at them (ADR 0019).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from federation.hub.ingest.batch_checks import check_batch
from federation.hub.ingest.service import HubService
from federation.hub.store.log import LogRow
from federation.protocol import merkle, strictjson
from federation.protocol.checkpoint import SignedCheckpoint, parse_checkpoint
from federation.protocol.envelope import Envelope, leaf_bytes, parse_time
from federation.protocol.errors import ConfigError, IpdnError
from federation.protocol.verify import RECEIPT_REASON

log = logging.getLogger("ipdn.hub.recovery")

MARKER = "recovering"  # in the hub directory: start read-only and recover from the members first
PAGE = 1000  # entries per page asked of a member
_LIMITS = strictjson.JsonLimits(max_bytes=64 * 1024 * 1024, max_depth=8)

Fetch = Callable[[str], Awaitable[bytes]]  # GET a URL, the body of a 200 answer (RecoveryFetchError otherwise)
Entry = tuple[int, Any, datetime | None]  # a member's log entry: position, envelope, the receipt time it got (or None)


class RecoveryFetchError(IpdnError):
    reason = "member-unreachable"


class NothingHeld(RecoveryFetchError):
    """The member answered 404: it has accepted no checkpoint, so it holds nothing a recovery could take."""


@dataclass(slots=True)
class MemberAnswer:
    """What one member answered: the checkpoint it holds (hub-signed; who co-signed it) and its log's size."""

    member: str
    url: str
    checkpoint_size: int | None = None
    root: str | None = None
    cosigners: list[str] = field(default_factory=list)
    log_size: int | None = None
    error: str | None = None


@dataclass(slots=True)
class RecoveryReport:
    """One round: members asked, the checkpoint recovered to, what was fetched and appended, and the outcome
    (``recovered``, ``up-to-date``, ``waiting`` for members, ``refused``, ``dry-run``)."""

    outcome: str
    detail: str
    size_before: int
    size_after: int
    members: list[MemberAnswer] = field(default_factory=list)
    target: int | None = None  # the size of the largest co-signed checkpoint a member holds
    source: str | None = None  # the member whose log was read
    appended: int = 0  # entries covered by the checkpoint, appended
    taken: int = 0  # entries beyond it, taken as pushes
    receipts_disputed: int = 0  # appended entries whose receipt time the members did not all agree on
    receipts_unknown: int = 0  # appended entries no member gave a usable receipt time for (bounded by a later one)
    recovering: bool = True  # still read-only after this round

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_endpoints(text: str) -> dict[str, str]:
    """``"QA=https://a, KR=https://b"`` as {code: URL}.

    Raises:
        ConfigError: an item is not CODE=URL.
    """
    out: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        code, sep, url = item.partition("=")
        if not sep or not code.strip() or not url.strip().startswith(("http://", "https://")):
            raise ConfigError(f"member_endpoints: {item!r} is not CODE=http(s)://URL")
        out[code.strip()] = url.strip().rstrip("/")
    return out


def http_fetch(session: aiohttp.ClientSession, max_bytes: int = _LIMITS.max_bytes) -> Fetch:
    """A :data:`Fetch` over ``session`` (its timeouts), reading at most ``max_bytes``."""
    async def fetch(url: str) -> bytes:
        try:
            async with session.get(url) as resp:
                body = await resp.content.read(max_bytes + 1)
                if resp.status == 404:
                    raise NothingHeld(f"GET {url}: 404 {body[:200].decode('utf-8', 'replace')}")
                if resp.status != 200:
                    raise RecoveryFetchError(f"GET {url}: {resp.status} {body[:200].decode('utf-8', 'replace')}")
                if len(body) > max_bytes:
                    raise RecoveryFetchError(f"GET {url}: the answer is larger than {max_bytes} bytes")
                return body
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise RecoveryFetchError(f"GET {url}: {type(e).__name__}: {e}") from e
    return fetch


class Recovery:
    """The hub's recovery state (read-only while ``active``) and its rounds, one at a time."""

    def __init__(self, service: HubService, fetch: Fetch, *, endpoints: Mapping[str, str] | None = None,
                 marker: Path | None = None) -> None:
        self.service, self.fetch = service, fetch
        self.extra_endpoints = dict(endpoints or {})
        self.marker = marker
        # strict: restored or rebuilt (the marker), so every member asked must answer before pushes are taken.
        self.strict = self.active = marker is not None and marker.exists()
        self.last: RecoveryReport | None = None
        self._lock = asyncio.Lock()
        self._done = asyncio.Event()  # set while not recovering
        if not self.active:
            self._done.set()

    async def finished(self) -> None:
        """Return once the hub is not recovering (at once if it is not)."""
        await self._done.wait()

    def begin(self, why: str) -> None:
        """Go read-only until recovered (kept across restarts by the marker file)."""
        if self.marker is not None and not self.marker.exists():
            self.marker.write_text(why + "\n")
        self.strict = self.active = True
        self._done.clear()

    def probe(self) -> bool:
        """At every start with members to ask: read-only until one round has shown that no member holds a larger
        checkpoint (a hub restored by hand is caught here); True if there is anyone to ask."""
        if not self.active and self.endpoints():
            self.active = True
            self._done.clear()
        return self.active

    def _finish(self) -> None:
        if self.marker is not None:
            self.marker.unlink(missing_ok=True)
        self.strict = self.active = False
        self._done.set()
        log.warning("recovery done: the log has %d entries; pushes are taken again", self.service.size)

    def endpoints(self, only: Collection[str] = (), given: Mapping[str, str] | None = None) -> dict[str, str]:
        """The members to ask: every active member with an endpoint (``given``, configured, or the registry's)."""
        out = {}
        for m in self.service.registry.registry.members:
            url = (given or {}).get(m.code) or self.extra_endpoints.get(m.code) or (m.endpoint or "").rstrip("/")
            if m.status == "active" and url and (not only or m.code in only):
                out[m.code] = url
        return out

    async def _ask(self, member: str, url: str, after: int) -> tuple[MemberAnswer, SignedCheckpoint | None]:
        answer = MemberAnswer(member, url)
        reg = self.service.registry.registry
        try:
            signed = parse_checkpoint(strictjson.loads(await self.fetch(url + "/api/v1/log/checkpoint"), _LIMITS))
            answer.cosigners = signed.verify(reg.hub_public_keys(), reg.member_keys())
            if signed.checkpoint.network != reg.network:
                raise RecoveryFetchError(f"its checkpoint is for network {signed.checkpoint.network!r}")
            answer.checkpoint_size, answer.root = signed.checkpoint.size, signed.checkpoint.root
            page = strictjson.loads(await self.fetch(f"{url}/api/v1/log?after={after}&limit=1"), _LIMITS)
            answer.log_size = page.get("size") if isinstance(page, dict) and type(page.get("size")) is int else None
            return answer, signed
        except NothingHeld:  # an answer, not an error: a node that never accepted a checkpoint holds nothing
            return answer, None
        except (IpdnError, AttributeError) as e:
            answer.error = f"{getattr(e, 'reason', 'error')}: {getattr(e, 'message', e)}"
            return answer, None

    async def _pages(self, url: str, after: int, upto: int) -> AsyncIterator[list[Entry]]:
        """The member's log entries after+1..upto (fewer if it holds fewer), page by page, checked to follow
        without a gap.

        Raises:
            RecoveryFetchError: unreachable, or not a log page (a receipt time that is not a §1 time included).
        """
        start = after
        while start < upto:
            doc = strictjson.loads(await self.fetch(f"{url}/api/v1/log?after={start}&limit={min(PAGE, upto - start)}"),
                                   _LIMITS)
            try:
                page = [(e["position"], e["envelope"],
                         parse_time(e["received_at"]) if e.get("received_at") is not None else None)
                        for e in doc["entries"]]
            except (KeyError, TypeError, IpdnError) as e:
                raise RecoveryFetchError(f"{url}: not a log page: {e}") from e
            if not page:
                return
            if [p for p, _, _ in page] != list(range(start + 1, start + 1 + len(page))):
                raise RecoveryFetchError(f"{url}: the log entries after {start} do not follow without a gap")
            page = page[:upto - start]
            start += len(page)
            yield page

    async def _suffix(self, url: str, after: int, upto: int) -> list[Entry]:
        """:meth:`_pages`, all of them."""
        return [e async for page in self._pages(url, after, upto) for e in page]

    def _verified(self, entries: list[Entry], signed: SignedCheckpoint) -> tuple[list[LogRow], list[bytes]]:
        """The entries as log rows, each envelope verified as at ingest and the tree they make with the hub's log
        equal to ``signed``'s.

        Raises:
            RecoveryFetchError: ``recovery-suffix-invalid``.
        """
        service = self.service
        checked = check_batch(service.registry.to_bytes(), "", [obj for _, obj, _ in entries], service.clock())
        rows, leaves = [], []
        for (position, _, _), c in zip(entries, checked, strict=True):
            # A member serves every origin's envelopes; the hub judged each key at receipt when it took the entry, and
            # a key that ended since (a rotation) does not make its signed log any less its own.
            failures = [f for f in c.failures if f.check != "origin" and f.reason != RECEIPT_REASON]
            if failures or c.origin is None or c.seq is None or c.hash is None:
                first = failures[0] if failures else None
                raise RecoveryFetchError(f"position {position}: {first.reason if first else 'malformed'}: "
                                         f"{first.message if first else ''}", reason="recovery-suffix-invalid")
            rows.append(LogRow(c.origin, c.seq, c.hash, c.record_id, c.version, c.kind, c.op, c.kid, c.wire))
            leaves.append(c.leaf_hash)
        frontier = merkle.Frontier.from_list(service.frontier.to_list())
        for leaf in leaves:
            frontier.append(leaf)
        cp = signed.checkpoint
        if frontier.size != cp.size or frontier.root() != cp.root_bytes:
            raise RecoveryFetchError(f"the hub's {service.size} entries and the {len(entries)} served make root "
                                     f"{frontier.root().hex()} at size {frontier.size}, not checkpoint {cp.size}'s "
                                     f"{cp.root}", reason="recovery-suffix-invalid")
        return rows, leaves

    async def _own_root(self, size: int) -> bytes:
        """The root of the hub's own log at ``size`` (<= its size), from its stored Merkle nodes."""
        keys = merkle.node_reads(lambda get: merkle.root_from_nodes(size, get))
        nodes = await self.service.store.nodes(keys)
        return merkle.root_from_nodes(size, lambda lv, ix: nodes[(lv, ix)])

    async def run(self, *, only: Collection[str] = (), endpoints: Mapping[str, str] | None = None,
                  dry_run: bool = False, force: bool = False) -> RecoveryReport:
        """One round of recovery (see the module's doc): ask ``only`` these members (default all), at ``endpoints``
        (default the configured ones); ``force`` resumes with whatever the members that answered hold,
        ``dry_run`` only asks and checks."""
        async with self._lock:
            report = await self._round(self.endpoints(only, endpoints), dry_run)
            if report.outcome == "recovered":
                self.begin("recovered entries from the members")  # a rollback: now every member must answer
            complete = report.outcome in ("recovered", "up-to-date") and not any(a.error for a in report.members)
            # A start-up probe without a marker: no member that answered holds more, so nothing was lost.
            complete = complete or (not self.strict and report.outcome in ("up-to-date", "waiting"))
            # The operator's override: resume with what the members that answered hold (never a refused log).
            if self.active and not dry_run and (complete or (force and report.outcome != "refused")):
                self._finish()
            report.recovering = self.active
            self.last = report
            return report

    async def _round(self, endpoints: Mapping[str, str], dry_run: bool) -> RecoveryReport:
        service = self.service
        before = service.size
        asked = await asyncio.gather(*(self._ask(m, u, before) for m, u in sorted(endpoints.items())))
        report = RecoveryReport("waiting", "", before, before, [a for a, _ in asked])
        if not endpoints:
            report.detail = "no member to ask: give their URLs (member_endpoints, or --member CODE=URL)"
            return report
        # The largest checkpoint signed by a hub key that a member co-signed; each member holding it, best first.
        held = sorted(((s, a) for a, s in asked if s is not None and a.cosigners),
                      key=lambda x: (x[0].checkpoint.size, x[1].log_size or 0), reverse=True)
        if not held:
            if not any(a.error for a in report.members):  # every member answered, none holds anything beyond
                report.outcome = "up-to-date"
                report.detail = "no member holds a co-signed checkpoint of this hub's log: nothing to recover"
                return report
            report.detail = "no member answered with a co-signed checkpoint of this hub's log"
            return report
        target = held[0][0]
        report.target = size = target.checkpoint.size
        if size <= before:
            if await self._own_root(size) != target.checkpoint.root_bytes:
                report.outcome = "refused"
                report.detail = (f"the hub's log has another root at size {size} than the checkpoint members "
                                 "co-signed: it diverged (entries taken after a rewind?); see the runbook")
                return report
            report.outcome, report.detail = "up-to-date", f"the log already holds checkpoint {size}"
            return await self._take_tail(report, held, dry_run)
        errors = []
        for signed, answer in (h for h in held if h[0].checkpoint.size == size):
            try:
                entries = await self._suffix(answer.url, before, max(size, answer.log_size or 0))
                covered = entries[:size - before]
                if len(covered) < size - before:
                    raise RecoveryFetchError(f"{answer.member} served {len(covered)} entries, not {size - before}")
                rows, leaves = self._verified(covered, signed)
            except IpdnError as e:
                errors.append(f"{answer.member}: {e.reason}: {e.message}")
                log.warning("recovery from %s refused: %s: %s", answer.member, e.reason, e.message)
                continue
            report.source, report.appended = answer.member, len(rows)
            received = await self._receipts(report, covered, leaves, held, answer, signed)
            if dry_run:
                report.outcome = "dry-run"
                report.detail = f"would append {len(rows)} entries from {answer.member} (checkpoint {size} verified)"
                return report
            # Kept as the hub first signed it; the members' co-signatures go with it.
            await service.append_recovered(rows, leaves, SignedCheckpoint(signed.checkpoint, signed.payload,
                                                                          signed.signatures[:1]), received)
            await self._keep_cosignatures(signed)
            report.outcome = "recovered"
            report.detail = f"appended {len(rows)} entries from {answer.member}, verified against checkpoint {size}"
            log.warning("recovery: %s", report.detail)
            return await self._take_tail(report, held, dry_run, tail=entries[size - before:], source=answer)
        report.outcome = "refused"
        report.detail = "no member served a log that makes the co-signed checkpoint: " + "; ".join(errors)
        return report

    async def _receipts(self, report: RecoveryReport, covered: list[Entry], leaves: list[bytes],
                        held: list[tuple[SignedCheckpoint, MemberAnswer]], source: MemberAnswer,
                        signed: SignedCheckpoint) -> list[datetime]:
        """The receipt time of each verified entry: what the members that hold that very entry (the same leaf) say
        the hub's log gave them, chosen by :func:`choose_receipts`; a member that cannot be read casts no vote."""
        before = self.service.size
        votes: list[Counter[datetime]] = [Counter() if at is None else Counter([at]) for _, _, at in covered]
        for _, answer in held:
            if answer is source or (answer.log_size or 0) <= before:
                continue
            try:
                async for page in self._pages(answer.url, before, before + len(covered)):
                    for position, obj, at in page:
                        i = position - before - 1
                        if at is not None and merkle.leaf_hash(leaf_bytes(obj)) == leaves[i]:
                            votes[i][at] += 1
            except (IpdnError, TypeError, ValueError) as e:  # TypeError/ValueError: an envelope that is no JWS
                log.warning("recovery: no receipt times from %s: %s", answer.member, e)
        last = (await self.service.store.received_at([before])).get(before) if before else None
        skew = timedelta(seconds=self.service.registry.registry.policies.clock_skew_seconds)
        times, disputed, unknown = choose_receipts(votes, last=last, upto=parse_time(signed.checkpoint.issued_at),
                                                   now=self.service.clock(), skew=skew)
        report.receipts_disputed, report.receipts_unknown = disputed, unknown
        if disputed or unknown:
            log.warning("recovery: receipt times of %d entries disputed, of %d unknown (see choose_receipts)",
                        disputed, unknown)
        return times

    async def _keep_cosignatures(self, signed: SignedCheckpoint) -> None:
        reg = self.service.registry.registry
        members = reg.member_keys()
        for entry in signed.signatures[1:]:
            one = SignedCheckpoint(signed.checkpoint, signed.payload, (signed.signatures[0], entry))
            cosigners = one.verify(reg.hub_public_keys(), members)
            if cosigners:
                await self.service.store.add_cosignature(signed.checkpoint.size, one.signers()[-1], cosigners[0],
                                                         entry, self.service.clock())

    async def _take_tail(self, report: RecoveryReport, held: list[tuple[SignedCheckpoint, MemberAnswer]],
                         dry_run: bool, *, tail: list[Entry] | None = None,
                         source: MemberAnswer | None = None) -> RecoveryReport:
        """Entries a member pulled beyond the checkpoint: taken in order as their origins' pushes would be."""
        service = self.service
        if tail is None:
            source = max((a for _, a in held), key=lambda a: a.log_size or 0)
            if (source.log_size or 0) <= service.size:
                report.size_after = service.size
                return report
            try:
                tail = await self._suffix(source.url, service.size, source.log_size or 0)
            except IpdnError as e:
                report.detail += f"; the entries beyond it could not be read from {source.member}: {e.message}"
                return report
        if dry_run:
            report.taken = len(tail)
            return report
        # New receipts, at the hub's clock now: the hub signed nothing for them, and what a member says it got is
        # no proof (an envelope of a key that ended since is refused like any late push, ADR 0019 point 3).
        for position, obj, _ in tail:
            origin = _origin(obj)
            outcome = (await service.ingest(origin, [obj]))[0] if origin else None
            if outcome is None or outcome.status == "rejected" or outcome.position != position:
                report.detail += (f"; stopped at position {position} beyond the checkpoint "
                                  f"({outcome.reason if outcome else 'malformed'}): its origin pushes it again")
                break
            report.taken += 1
        if report.taken:
            report.detail += f"; took {report.taken} entries beyond it from {source.member if source else '?'}"
        report.size_after = service.size
        return report


def choose_receipts(votes: Sequence[Mapping[datetime, int]], *, last: datetime | None, upto: datetime,
                    now: datetime, skew: timedelta) -> tuple[list[datetime], int, int]:
    """The receipt time of each recovered entry from the members' ``votes`` (time -> how many members hold it),
    with how many were disputed (members disagreed) and unknown.

    A receipt time is outside the Merkle tree, so it is checked, as a node checks it (PROTOCOL.md §10): not
    before the latest one chosen (or the hub's own ``last``) by more than ``skew``, and not after the co-signed
    checkpoint's signing time (``upto``: the hub signed it after logging them) nor the hub's ``now``, each + skew.
    Of the times that pass, the one the most members hold wins, and on a tie the earliest: a member that lies
    (alone) cannot date another member's honest entries after its key's end, which would have nodes quarantine
    them. An entry with no such time gets the next chosen time after it (the log's order proves it was received
    no later), or ``upto``: never earlier than the log proves, so no time is invented that would let an envelope
    of an ended key through.
    """
    limit = min(upto, now) + skew
    chosen: list[datetime | None] = []
    latest, disputed = last, 0
    for counter in votes:
        ok = [(n, t) for t, n in counter.items() if t <= limit and (latest is None or t >= latest - skew)]
        disputed += len(counter) > 1
        if not ok:
            chosen.append(None)
            continue
        at = max(ok, key=lambda c: (c[0], -c[1].timestamp()))[1]
        chosen.append(at)
        latest = at if latest is None else max(latest, at)
    times, fill, unknown = [], upto, 0
    for one in reversed(chosen):
        if one is None:
            unknown += 1
        else:
            fill = one
        times.append(fill)
    return times[::-1], disputed, unknown


def _origin(obj: Any) -> str | None:
    """The origin an envelope names (for handing it to ingest as its origin's push); None if unreadable."""
    try:
        return Envelope.from_dict(obj, _LIMITS).payload.origin
    except IpdnError:
        return None


def report_text(report: RecoveryReport | dict[str, Any]) -> str:
    """The report as an operator reads it (``ipdn hub recover``)."""
    r = report.to_dict() if isinstance(report, RecoveryReport) else report
    lines = [f"log size before {r['size_before']}; members asked: {len(r['members'])}"]
    for a in r["members"]:
        if a["error"]:
            lines.append(f"  {a['member']:3} {a['url']}: {a['error']}")
        else:
            lines.append(f"  {a['member']:3} {a['url']}: checkpoint {a['checkpoint_size']} co-signed by "
                         f"{','.join(a['cosigners']) or 'nobody'}; holds {a['log_size']} entries")
    if r["target"] is not None:
        lines.append(f"largest co-signed checkpoint: {r['target']}")
    lines.append(f"{r['outcome']}: {r['detail']}")
    if r.get("receipts_disputed") or r.get("receipts_unknown"):
        lines.append(f"receipt times: {r.get('receipts_disputed', 0)} disputed among members, "
                     f"{r.get('receipts_unknown', 0)} unknown (dated by the next known one)")
    lines.append(f"log size now {r['size_after']}; " + ("still read-only (recovering)" if r["recovering"]
                                                         else "taking pushes"))
    return "\n".join(lines)


def read_report(data: bytes) -> dict[str, Any]:
    """A report as the hub's recovery endpoint serves it."""
    doc = json.loads(data)
    if not isinstance(doc, dict) or "outcome" not in doc:
        raise ValueError("not a recovery report")
    return doc
