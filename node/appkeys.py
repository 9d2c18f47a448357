"""The node application's shared state, one typed aiohttp AppKey each: route modules import them from here at
the top, and node/app.py sets them (``CONFIG`` when the app is made, the others in its cleanup context).

A key that only its own module reads stays beside it, with its type (declaring it here would close an import
cycle, since this module imports the types it names): ``ACCESS`` in node/partners/access.py (node/app.py sets
it), ``SETTINGS`` in node/partners/oaipmh.py, ``RENDER_CACHE`` in node/partners/feeds.py, ``PAGES`` in
node/staff/web.py.
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
