"""The node's status page for its member's IT staff: ``GET /status``.

It shows what ``GET /api/v1/status`` holds, for people: whether the hub is reachable, the outbox, the last push
and pull, the cursor and the lag behind the hub's log, own envelopes the hub refused with its reasons (and a
form to push them again once fixed), own keys and when they end, and the alarms (a checkpoint inconsistency,
a refused registry, a key about to end).

Staff sign in with the node's operator token (``operator.token``) through the one sign-in flow of every
operator page (federation/server/ui/signin.py): a signed session cookie (HttpOnly, SameSite=Strict, Secure
behind TLS), the CSRF token on every form, failed sign-ins throttled and logged (never with the token).
In English and Arabic, like the hub's dashboard, whose stylesheet it shares.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from federation.protocol.envelope import Envelope
from federation.server.ui.i18n import Catalog, choose_language, direction, pick, remember_language
from federation.server.ui.sessions import SessionCodec, load_secret
from federation.server.ui.signin import SignIn, SignInForm, TokenAccount
from federation.server.ui.templates import SHARED_STATIC, StaticFiles, secure_headers, template_env
from federation.server.web import json_response
from node.appkeys import CONFIG, SERVICE
from node.status.document import NO_STORE, StatusDocument
from node.store.outbox import OutboxRow

log = logging.getLogger("ipdn.node.status")

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/status"
SESSION_COOKIE = "ipdn_node_status"
PRE_COOKIE = "ipdn_node_status_signin"
SUBJECT = "operator"  # the token is the node operator's; staff accounts are the authoring pages' (issue 7)
LANGUAGES = ("en", "ar")
SECRET_FILE = "status-session.secret"  # noqa: S105 (a file name, not a secret)


class StatusPage:
    def __init__(self, node_dir: Path, token_hash: str, status_document: StatusDocument) -> None:
        self.signin: SignIn[str] = SignIn(
            TokenAccount(SUBJECT, token_hash), SessionCodec(load_secret(node_dir / SECRET_FILE)), self.sign_in_form,
            sign_in_url=f"{PREFIX}/sign-in", sign_out_url=f"{PREFIX}/sign-out", home=PREFIX, cookie=SESSION_COOKIE,
            form_cookie=PRE_COOKIE, log=log, event_prefix="status")
        self.status_document = status_document
        self.catalog = Catalog(Path(__file__).resolve().parent / "locale", "status")
        self.env = template_env(TEMPLATES, self.catalog)
        self.static = StaticFiles([SHARED_STATIC / "ipdn.css", STATIC / "status.js"])

    # -- helpers -----------------------------------------------------------------------------------------

    def render(self, request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
        lang = choose_language(request, LANGUAGES)
        query = {k: v for k, v in request.query.items() if k != "lang"}
        html = self.env.get_template(template).render(
            lang=lang, dir=direction(lang),
            here=lambda **q: request.path + "?" + urlencode({**query, **q}), **context)
        resp = web.Response(text=html, content_type="text/html", status=status)
        remember_language(resp, request, LANGUAGES)
        secure_headers(resp)
        return resp

    def sign_in_form(self, request: web.Request, status: int, form: SignInForm) -> web.Response:
        return self.render(request, "status_sign_in.html", status=status, signin=form)

    # -- handlers ----------------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        _operator, session = await self.signin.require(request)
        doc = await self.status_document(request.app)
        service = request.app[SERVICE]
        refused = [_refusal(row) for row in await service.store.outbox.entries("rejected", 50)]
        accepted = await service.trust.accepted_checkpoint()
        size, cursor = doc["hub"]["log_size"], doc["cursor"]
        return self.render(request, "status.html", doc=doc, refused=refused, csrf=session.csrf,
                           lag=None if size is None else max(0, size - cursor),
                           accepted_size=accepted.size if accepted else None)

    async def document(self, request: web.Request) -> web.Response:
        """The full status document for the page's live figures (status.js), to the signed-in operator wherever
        they are: ``GET /api/v1/status`` shows it only to the operator's token or networks."""
        await self.signin.require(request)
        return json_response(await self.status_document(request.app), headers=NO_STORE)

    async def retry(self, request: web.Request) -> web.Response:
        """Push the refused own envelopes again (after the cause is fixed), as ``POST /api/v1/outbox/retry``."""
        await self.signin.require_form(request)
        n = await request.app[SERVICE].retry_rejected()
        log.info("outbox retry from the status page", extra={"fields": {"event": "outbox-retry", "requeued": n}})
        raise web.HTTPSeeOther(PREFIX)


def _refusal(row: OutboxRow) -> dict[str, Any]:
    """An own envelope the hub refused, with its record id and title (shown escaped and isolated)."""
    payload = Envelope.from_bytes(row.envelope).payload  # our own, as signed: it parses
    body = payload.body if isinstance(payload.body, dict) else {}
    title = body.get("title") if isinstance(body.get("title"), dict) else {}
    return {"seq": row.seq, "record_id": payload.record_id, "reason": row.reason or "rejected",
            "detail": row.detail or "", "title": pick(title, None)}


def register(app: web.Application, status_document: StatusDocument) -> None:
    config = app[CONFIG]
    page = StatusPage(config.dir, config.operator_token_hash, status_document)
    r = app.router
    r.add_get(PREFIX, page.page)
    page.signin.add_routes(r)
    r.add_get(f"{PREFIX}/document", page.document)
    r.add_post(f"{PREFIX}/retry", page.retry)
    r.add_get(f"{PREFIX}/static/{{name}}", page.static.handler)
