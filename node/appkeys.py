"""The node application's shared state, one typed aiohttp AppKey each: route modules import them from here at
the top, and node/app.py sets them (``CONFIG`` when the app is made, the others in its cleanup context).

Still declared beside their types, which live in the modules that read them (so this module, importing those
types, would close a cycle): ``ACCESS`` (node/partners/access.py), ``SETTINGS`` (node/partners/oaipmh.py),
``RENDER_CACHE`` (node/partners/feeds.py) and ``PAGES`` (node/staff/web.py). They move here once their types
have a home of their own.
"""

from __future__ import annotations

from aiohttp import web

from node.config import NodeConfig
from node.records.service import NodeService
from node.sync.engine import SyncEngine
from node.webhooks.delivery import WebhookWorker

CONFIG = web.AppKey("config", NodeConfig)
SERVICE = web.AppKey("service", NodeService)
ENGINE = web.AppKey("engine", SyncEngine)
WEBHOOKS = web.AppKey("webhooks", WebhookWorker)
