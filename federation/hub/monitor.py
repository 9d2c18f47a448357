"""What the hub knows about each member's sync: the one home of the figures that the status API, the dashboard,
its live updates and the Prometheus metrics show (docs/adr/0008-member-sync-figures.md).

- **Last push**: the later of the last push request this process authenticated (refused ones count: the
  member is alive) and the last envelope of the member the log appended (survives restarts).
- **Last pull and cursor**: nodes sign their pulls like their pushes (RFC 9421, no body); the hub keeps, per
  member, the time of its latest signed pull and the position it asked to read after, which the node has
  applied (it holds everything up to its cursor). Kept in memory and written to ``member_pulls`` at most
  every ``flush_interval`` seconds, so a busy log costs no write per pull.
- **Lag**: ``log size - cursor`` envelopes, and the age of the oldest entry the member has not read
  (0 when caught up). A member that never signed a pull (an older node) is measured by its latest
  co-signed checkpoint instead, which proves it verified the log that far (``cursor_source``).
- **Silent**: an active member neither pushed nor pulled within ``silent_after`` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from federation.hub.ingest.service import HubService, Outcome
from federation.hub.store.log import QuarantineBounds
from federation.server.metrics import Metrics
from federation.server.times import as_utc, utc_text

log = logging.getLogger("ipdn.hub.monitor")


@dataclass
class Monitor:
    service: HubService
    silent_after: float = 900.0
    flush_interval: float = 10.0
    pulls: dict[str, tuple[datetime, int]] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _flusher: asyncio.Task[None] | None = None
    _cached: tuple[float, dict[str, Any]] | None = None

    async def start(self) -> None:
        self.pulls = {m: (as_utc(t), c) for m, (t, c) in (await self.service.store.pulls()).items()}
        self._flusher = asyncio.create_task(self._flush_loop(), name="hub-monitor-flush")

    async def stop(self) -> None:
        if self._flusher:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        try:
            await self.flush()
        except Exception:  # shutting down: the last few seconds of pulls are lost, nothing else
            log.exception("saving member pulls at shutdown failed")

    def note_pull(self, member: str, after: int) -> None:
        """A member's authenticated pull asking for entries after ``after``."""
        self.pulls[member] = (self.service.clock(), after)
        self._dirty.add(member)

    async def flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        store = self.service.store
        try:
            await store.save_pulls({m: self.pulls[m] for m in dirty})
        except Exception:
            self._dirty |= dirty  # tried again at the next flush
            raise
        if store.shared:  # other hub workers served other pulls: take the newest of each member's
            for member, (at, cursor) in (await store.pulls()).items():
                mine = self.pulls.get(member)
                if mine is None or as_utc(mine[0]) < as_utc(at):
                    self.pulls[member] = (as_utc(at), cursor)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except Exception:  # the figures are kept in memory meanwhile
                log.exception("saving member pulls failed")

    async def snapshot(self, max_age: float = 0.0) -> dict[str, Any]:
        """The hub's status: log, checkpoint and one entry per member (the JSON of ``GET /api/v1/status``).

        ``max_age`` > 0 accepts one computed that many seconds ago at most: the dashboard's live streams share
        one computation per interval however many operators watch.
        """
        loop = asyncio.get_running_loop()
        if max_age > 0 and self._cached is not None and loop.time() - self._cached[0] <= max_age:
            return self._cached[1]
        snap = await self._compute()
        self._cached = (loop.time(), snap)
        return snap

    async def _compute(self) -> dict[str, Any]:
        service, store = self.service, self.service.store
        reg = service.registry.registry
        now = as_utc(service.clock())
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        # A chain is gap-free from seq 1 (the hub refuses gaps), so its head's seq is how many entries the log
        # holds of it: counting the log per origin cost 146-449 ms a request at 1,000,000 entries.
        held = {origin: head.seq for origin, head in service.heads.items()}
        refused = await store.quarantine_counts()
        usage = await store.quarantine_usage()
        cosigned = await store.latest_cosigned()
        received = await store.last_received([m.code for m in reg.members])
        accepted_today, refused_today = await store.accepted_since(today), await store.refused_since(today)
        size = service.size
        cursors: dict[str, tuple[int, str]] = {}
        for m in reg.members:
            if m.code in self.pulls:
                cursors[m.code] = (min(self.pulls[m.code][1], size), "pull")
            elif m.code in cosigned:
                cursors[m.code] = (min(cosigned[m.code], size), "cosignature")
        oldest_unread = await store.received_at(sorted({c + 1 for c, _ in cursors.values() if c < size}))
        members = []
        for m in reg.members:
            act = service.activity.get(m.code)
            pushed = max((t for t in (as_utc(act.last_push_at) if act else None, as_utc(received.get(m.code)))
                          if t), default=None)
            pulled = as_utc(self.pulls[m.code][0]) if m.code in self.pulls else None
            seen = max((t for t in (pushed, pulled) if t), default=None)
            head = service.heads.get(m.code)
            valid = [k for k in (e.public(m.code) for e in m.keys) if k.valid_at(now)]
            ends = [k.not_after for k in valid if k.not_after is not None]
            cursor, source = cursors.get(m.code, (None, None))
            lag_seconds: float | None = None
            if cursor is not None:
                first = as_utc(oldest_unread.get(cursor + 1))
                lag_seconds = 0.0 if cursor >= size else max(0.0, (now - first).total_seconds()) if first else None
            members.append({
                "code": m.code, "names": m.names, "role": m.role, "status": m.status,
                "envelopes": held.get(m.code, 0), "head_seq": head.seq if head else 0,
                "refused": sum(n for (mm, _), n in refused.items() if mm == m.code),
                "quarantine_bytes": int(usage.get(m.code, {}).get("kept_bytes", 0)),
                "accepted_today": accepted_today.get(m.code, 0), "refused_today": refused_today.get(m.code, 0),
                "last_push_at": utc_text(pushed), "last_pull_at": utc_text(pulled),
                "cursor": cursor, "cursor_source": source,
                "lag_envelopes": None if cursor is None else size - cursor, "lag_seconds": lag_seconds,
                "valid_keys": len(valid),
                "key_expires_at": utc_text(min(ends)) if ends and len(ends) == len(valid) else None,
                "last_cosigned_size": cosigned.get(m.code),
                "silent": m.status == "active" and (seen is None or (now - seen).total_seconds() > self.silent_after),
            })
        cp = service.checkpoint.checkpoint if service.checkpoint else None
        return {"role": "hub", "hub_url": reg.hub_url, "registry_version": reg.version,
                "registry_expires_at": reg.expires_at, "log_size": size,
                "quarantine": sum(refused.values()), "time": utc_text(now), "silent_after": self.silent_after,
                "quarantine_store": quarantine_store(usage, service.quarantine_bounds),
                "alarms": quarantine_alarms(usage, service.quarantine_bounds, now),
                "checkpoint": {"size": cp.size, "root": cp.root, "issued_at": cp.issued_at} if cp else None,
                "members": members}

    async def throughput(self, hours: float = 1.0, buckets: int = 60) -> dict[str, Any]:
        """Envelopes accepted and refused per interval over the last ``hours`` (for the chart)."""
        now = as_utc(self.service.clock())
        start = now - timedelta(hours=hours)
        width = (now - start) / buckets
        accepted, refused = await self.service.store.arrival_times(start)

        def count(times: list[datetime]) -> list[int]:
            out = [0] * buckets
            for t in times:
                i = int((as_utc(t) - start) / width)
                out[min(max(i, 0), buckets - 1)] += 1
            return out

        return {"start": utc_text(start), "end": utc_text(now), "seconds_per_bucket": width.total_seconds(),
                "accepted": count(accepted), "refused": count(refused)}


NEAR_BOUND = 0.9  # share of a quarantine bound past which the operator is warned
DROP_ALARM = timedelta(days=1)  # a bound that cut refused bytes raises an alarm for this long


def quarantine_store(usage: dict[str, dict[str, Any]], bounds: QuarantineBounds) -> dict[str, Any]:
    """What the quarantine holds against its bounds, and what the bounds cut, in all (PROTOCOL.md §8.4)."""
    def total(name: str) -> int:
        return sum(int(u[name]) for u in usage.values())

    return {"kept_bytes": total("kept_bytes"), "items": total("items"), "truncated_items": total("truncated_items"),
            "dropped_items": total("dropped_items"), "dropped_bytes": total("dropped_bytes"),
            "bounds": {"item_bytes": bounds.item, "member_bytes": bounds.member, "total_bytes": bounds.total,
                       "member_items": bounds.items}}


def quarantine_alarms(usage: dict[str, dict[str, Any]], bounds: QuarantineBounds,
                      now: datetime) -> list[dict[str, str]]:
    """``quarantine-bound-reached``: a member's or the hub's bound cut refused bytes (or refusals) within the last
    day, so evidence is being lost: look at who sends them. ``quarantine-near-bound``: kept bytes past 90 % of a
    bound. (Refusals nobody authenticated are the member ``-``.)"""
    out: list[dict[str, str]] = []
    for code, u in sorted(usage.items()):
        who = code or "-"
        last = as_utc(u.get("last_dropped_at"))
        if last is not None and now - last <= DROP_ALARM:
            out.append({"reason": "quarantine-bound-reached",
                        "detail": f"member {who}: {int(u['kept_bytes'])} bytes of refused input kept (bounds: "
                                  f"{bounds.member} per member, {bounds.total} in all); {int(u['dropped_bytes'])} "
                                  f"bytes and {int(u['dropped_items'])} refusals not kept, the last at "
                                  f"{utc_text(last)}"})
        elif int(u["kept_bytes"]) >= NEAR_BOUND * bounds.member:
            out.append({"reason": "quarantine-near-bound",
                        "detail": f"member {who}: {int(u['kept_bytes'])} bytes of refused input kept, bound "
                                  f"{bounds.member} (quarantine_member_bytes)"})
    kept = sum(int(u["kept_bytes"]) for u in usage.values())
    if kept >= NEAR_BOUND * bounds.total:
        out.append({"reason": "quarantine-near-bound",
                    "detail": f"{kept} bytes of refused input kept in all, bound {bounds.total} "
                              "(quarantine_total_bytes)"})
    return out


class _QuarantineCounters:
    """What the quarantine's bounds cut, per member, as Prometheus counters (persisted in ``quarantine_usage``,
    so they survive restarts and agree across hub workers): set from the snapshot at each scrape."""

    def __init__(self) -> None:
        self.usage: dict[str, dict[str, Any]] = {}

    def collect(self) -> Iterator[Metric]:
        families = [
            (CounterMetricFamily, "ipdn_hub_quarantine_dropped_bytes",
             "Bytes of refused inputs received and not kept (past the quarantine's bounds)", "dropped_bytes"),
            (CounterMetricFamily, "ipdn_hub_quarantine_dropped_items",
             "Refusals not kept at all (past quarantine_member_items)", "dropped_items"),
            (CounterMetricFamily, "ipdn_hub_quarantine_truncated_items",
             "Refusals kept with a prefix of their bytes or none", "truncated_items"),
            (GaugeMetricFamily, "ipdn_hub_quarantine_kept_bytes", "Bytes of refused inputs kept", "kept_bytes"),
        ]
        for family, name, doc, field_ in families:
            metric = family(name, doc + ", by member ('-': requests nobody authenticated)", labels=["member"])
            for code, u in sorted(self.usage.items()):
                metric.add_metric([code or "-"], int(u[field_]))
            yield metric


class HubMetrics:
    """The hub's Prometheus metrics: HTTP (federation/server/metrics.py), ingest, and per-member gauges set from
    :meth:`Monitor.snapshot` at each scrape."""

    def __init__(self, monitor: Monitor | None = None) -> None:
        self.monitor = monitor
        self.base = Metrics("ipdn_hub")
        r = self.base.registry
        self.envelopes = Counter("ipdn_hub_envelopes", "Envelopes pushed, by member, outcome and refusal reason",
                                 ["member", "status", "reason"], registry=r)
        self.ingest_seconds = Histogram("ipdn_hub_ingest_seconds", "Time from a push's arrival to its durable answer",
                                        registry=r, buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.log_size = Gauge("ipdn_hub_log_size", "Envelopes in the log", registry=r)
        self.quarantine = Gauge("ipdn_hub_quarantine_size", "Refused inputs kept", registry=r)
        self.lag_envelopes = Gauge("ipdn_hub_member_lag_envelopes", "Log entries a member has not read yet",
                                   ["member"], registry=r)
        self.lag_seconds = Gauge("ipdn_hub_member_lag_seconds", "Age of the oldest entry a member has not read",
                                 ["member"], registry=r)
        self.last_seen = Gauge("ipdn_hub_member_last_seen_timestamp_seconds",
                               "When a member last pushed or pulled (Unix time)", ["member"], registry=r)
        self.silent = Gauge("ipdn_hub_member_silent", "1 when an active member is silent past silent_after",
                            ["member"], registry=r)
        self.key_expiry = Gauge("ipdn_hub_member_key_expiry_timestamp_seconds",
                                "When a member's last valid key ends (Unix time; absent: no end)", ["member"],
                                registry=r)
        self.cosigned = Gauge("ipdn_hub_member_cosigned_size", "The largest checkpoint a member co-signed",
                              ["member"], registry=r)
        self.alarms = Gauge("ipdn_hub_alarms", "Alarms on the dashboard, by reason", ["reason"], registry=r)
        self.quarantine_counters = _QuarantineCounters()
        r.register(self.quarantine_counters)
        self.base.refresh = self.refresh

    async def refresh(self) -> None:
        if self.monitor is None:  # not started yet
            return
        snap = await self.monitor.snapshot()
        self.log_size.set(snap["log_size"])
        self.quarantine.set(snap["quarantine"])
        self.quarantine_counters.usage = await self.monitor.service.store.quarantine_usage()
        self.alarms.clear()
        for alarm in snap["alarms"]:
            self.alarms.labels(alarm["reason"]).inc()
        for gauge in (self.lag_envelopes, self.lag_seconds, self.last_seen, self.key_expiry, self.cosigned):
            gauge.clear()  # a member removed from the registry disappears from the series
        for m in snap["members"]:
            code = m["code"]
            self.silent.labels(code).set(1 if m["silent"] else 0)
            if m["lag_envelopes"] is not None:
                self.lag_envelopes.labels(code).set(m["lag_envelopes"])
            if m["lag_seconds"] is not None:
                self.lag_seconds.labels(code).set(m["lag_seconds"])
            seen = [datetime.fromisoformat(t) for t in (m["last_push_at"], m["last_pull_at"]) if t]
            if seen:
                self.last_seen.labels(code).set(max(seen).timestamp())
            if m["key_expires_at"]:
                self.key_expiry.labels(code).set(datetime.fromisoformat(m["key_expires_at"]).timestamp())
            if m["last_cosigned_size"] is not None:
                self.cosigned.labels(code).set(m["last_cosigned_size"])

    def count_push(self, member: str, outcomes: list[Outcome], seconds: float) -> None:
        self.ingest_seconds.observe(seconds)
        for (status, reason), n in collections.Counter((o.status, o.reason or "") for o in outcomes).items():
            self.envelopes.labels(member, status, reason).inc(n)  # once per kind of outcome, not per envelope
