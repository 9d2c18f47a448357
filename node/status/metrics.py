"""The node's Prometheus metrics at ``GET /metrics``: HTTP by route and status (federation/server/metrics.py), sync
loop errors by loop and reason, and gauges set at each scrape from the same document as ``/api/v1/status``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from aiohttp import web
from prometheus_client import Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from federation.server.metrics import Metrics
from node.appkeys import ENGINE
from node.status.document import StatusDocument

# Alarm reasons that mean the hub's log cannot be trusted as this node saw it (node/sync/logtrust.py).
LOG_EVIDENCE = ("log-inconsistent", "checkpoint-rollback", "split-view", "inclusion-failed", "consistency-failed")


class _SyncErrors(Collector):
    """``ipdn_node_sync_errors_total{loop, reason}``, read from the sync engine's running tally."""

    def __init__(self) -> None:
        self.errors: dict[tuple[str, str], int] = {}

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("ipdn_node_sync_errors", "Failed steps of the sync loops, by loop and reason",
                                     labels=["loop", "reason"])
        for (loop, reason), n in sorted(self.errors.items()):
            family.add_metric([loop, reason], n)
        yield family


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


class NodeMetrics:
    def __init__(self) -> None:
        self.base = Metrics("ipdn_node")
        r = self.base.registry
        self.sync_errors = _SyncErrors()
        r.register(self.sync_errors)
        self.reachable = Gauge("ipdn_node_hub_reachable", "1 when the last exchange with the hub worked", registry=r)
        self.outbox = Gauge("ipdn_node_outbox", "Own envelopes in the outbox, by state", ["state"], registry=r)
        self.cursor = Gauge("ipdn_node_cursor", "The last log position applied", registry=r)
        self.hub_log_size = Gauge("ipdn_node_hub_log_size", "The hub's log size at the last pull", registry=r)
        self.lag = Gauge("ipdn_node_lag_envelopes", "Hub log entries not yet applied", registry=r)
        self.last_push = Gauge("ipdn_node_last_push_timestamp_seconds", "Last successful push (Unix time)",
                               registry=r)
        self.last_pull = Gauge("ipdn_node_last_pull_timestamp_seconds", "Last successful pull (Unix time)",
                               registry=r)
        self.quarantine = Gauge("ipdn_node_quarantine_size", "Envelopes from the hub's log quarantined", registry=r)
        self.halted = Gauge("ipdn_node_log_halted", "1 when evidence against the hub's log halted applying",
                            registry=r)
        self.alarms = Gauge("ipdn_node_alarms", "Alarms on the status page, by reason", ["reason"], registry=r)
        self.key_expiry = Gauge("ipdn_node_key_expiry_timestamp_seconds",
                                "When the current own key ends (Unix time; absent: no end)", ["kid"], registry=r)

    async def refresh(self, app: web.Application, status_document: StatusDocument) -> None:
        doc = await status_document(app)
        self.sync_errors.errors = dict(app[ENGINE].state.errors)
        hub = doc["hub"]
        self.reachable.set(1 if hub["reachable"] else 0)
        for state, n in doc["outbox"].items():
            self.outbox.labels(state).set(n)
        self.cursor.set(doc["cursor"])
        if hub["log_size"] is not None:
            self.hub_log_size.set(hub["log_size"])
            self.lag.set(max(0, hub["log_size"] - doc["cursor"]))
        for gauge, value in ((self.last_push, _ts(hub["last_push_at"])), (self.last_pull, _ts(hub["last_pull_at"]))):
            if value is not None:
                gauge.set(value)
        self.quarantine.set(doc["quarantine"])
        self.halted.set(1 if doc["log"]["halted"] else 0)
        self.alarms.clear()
        for alarm in doc["alarms"]:
            self.alarms.labels(alarm["reason"]).inc()
        current = next((k for k in doc["keys"] if k["current"]), None)
        self.key_expiry.clear()
        if current and current["not_after"]:
            self.key_expiry.labels(current["kid"]).set(_ts(str(current["not_after"])) or 0)

    def register(self, app: web.Application, status_document: StatusDocument) -> None:
        async def refresh() -> None:
            await self.refresh(app, status_document)

        self.base.refresh = refresh
        self.base.register(app)
