"""The hub application's state, one typed key each: route modules and the dashboard import them from here.

Set by :func:`federation.hub.app.create_app` (config, metrics, replay cache, limiters) and by its lifecycle once
the store is open (service, governance, monitor). The dashboard's own state (``dashboard.pages.STATE``) stays
with the dashboard.
"""

from __future__ import annotations

from aiohttp import web

from federation.hub.config import HubConfig
from federation.hub.ingest.service import HubService
from federation.hub.monitor import HubMetrics, Monitor
from federation.hub.recovery import Recovery
from federation.hub.registrar import GovernanceService
from federation.protocol.httpsig import ReplayCache
from federation.server.ratelimit import RateLimiter

CONFIG = web.AppKey("config", HubConfig)
SERVICE = web.AppKey("service", HubService)
GOVERNANCE = web.AppKey("governance", GovernanceService)
REPLAYS = web.AppKey("replays", ReplayCache)
MONITOR = web.AppKey("monitor", Monitor)
RECOVERY = web.AppKey("recovery", Recovery)  # read-only while the log is recovered from the members
HUB_METRICS = web.AppKey("hub_metrics", HubMetrics)
MEMBER_LIMITS = web.AppKey("member_limits", RateLimiter)  # signed requests, per member
REFUSAL_LIMITS = web.AppKey("refusal_limits", RateLimiter)  # unauthenticated refusals kept, per client address
GOVERNANCE_ADDRESS_LIMITS = web.AppKey("governance_address_limits", RateLimiter)  # submissions, per client address
GOVERNANCE_KEY_LIMITS = web.AppKey("governance_key_limits", RateLimiter)  # governance documents, per signing key
