"""The node's status page for its member's IT staff: ``GET /status``.

It shows what ``GET /api/v1/status`` holds, for people: whether the hub is reachable, the outbox, the last push
and pull, the cursor and the lag behind the hub's log, own envelopes the hub refused with its reasons (and a
form to push them again once fixed), own keys and when they end, and the alarms (a checkpoint inconsistency,
a refused registry, a key about to end).

Staff sign in with the node's operator token (``operator.token``), through a form, into a signed session
cookie (federation/server/ui/pages.py: HttpOnly, SameSite=Strict, Secure behind TLS); every form carries the CSRF token.
Failed sign-ins are throttled and logged (never with the token). In English and Arabic, like the hub's
dashboard, whose stylesheet it shares.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from federation.protocol.envelope import Envelope
from federation.server.ui.pages import (
    LANG_COOKIE,
    SHARED_STATIC,
    Catalog,
    Session,
    SessionCodec,
    SignInThrottle,
    StaticFiles,
    check_csrf,
    choose_language,
    direction,
    load_secret,
    pick,
    secure_headers,
    set_cookie,
    template_env,
)
from node.store.records import OutboxRow

log = logging.getLogger("ipdn.node.status")

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/status"
SESSION_COOKIE = "ipdn_node_status"
PRE_COOKIE = "ipdn_node_status_signin"
SUBJECT = "operator"  # the token is the node operator's; staff accounts are the authoring pages' (issue 7)
LANGUAGES = ("en", "ar")
SECRET_FILE = "status-session.secret"  # noqa: S105 (a file name, not a secret)

StatusDocument = Callable[[web.Application], Awaitable[dict[str, Any]]]


class StatusPage:
    def __init__(self, node_dir: Path, token_hash: str, status_document: StatusDocument) -> None:
        self.codec = SessionCodec(load_secret(node_dir / SECRET_FILE))
        self.token_hash = token_hash
        self.status_document = status_document
        self.env = template_env(TEMPLATES)
        self.catalog = Catalog(TEMPLATES / "status_messages.json")
        self.static = StaticFiles([SHARED_STATIC / "ipdn.css", STATIC / "status.js"])
        self.throttle = SignInThrottle()

    # -- helpers -----------------------------------------------------------------------------------------

    def session(self, request: web.Request) -> Session | None:
        session = self.codec.open(request.cookies.get(SESSION_COOKIE), time.time())
        return session if session is not None and session.subject == SUBJECT else None

    def require(self, request: web.Request) -> Session:
        session = self.session(request)
        if session is None:
            raise web.HTTPSeeOther(f"{PREFIX}/sign-in")
        return session

    def render(self, request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
        lang = choose_language(request, LANGUAGES)
        query = {k: v for k, v in request.query.items() if k != "lang"}
        html = self.env.get_template(template).render(
            lang=lang, dir=direction(lang), _=self.catalog.gettext(lang),
            here=lambda **q: request.path + "?" + urlencode({**query, **q}), **context)
        resp = web.Response(text=html, content_type="text/html", status=status)
        if request.query.get("lang") in LANGUAGES:
            set_cookie(resp, request, LANG_COOKIE, request.query["lang"], max_age=365 * 86400)
        secure_headers(resp)
        return resp

    def sign_in_form(self, request: web.Request, status: int = 200, error: str | None = None) -> web.Response:
        token = secrets.token_urlsafe(24)
        resp = self.render(request, "status_sign_in.html", status=status, csrf=token, error=error)
        set_cookie(resp, request, PRE_COOKIE, token, max_age=3600)
        return resp

    # -- handlers ----------------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        from node.app import SERVICE  # the app module registers this one

        session = self.require(request)
        doc = await self.status_document(request.app)
        service = request.app[SERVICE]
        refused = [_refusal(row) for row in await service.store.outbox("rejected", 50)]
        accepted = await service.accepted_checkpoint()
        size, cursor = doc["hub"]["log_size"], doc["cursor"]
        return self.render(request, "status.html", doc=doc, refused=refused, csrf=session.csrf,
                           lag=None if size is None else max(0, size - cursor),
                           accepted_size=accepted.size if accepted else None)

    async def sign_in_page(self, request: web.Request) -> web.Response:
        if self.session(request):
            raise web.HTTPSeeOther(PREFIX)
        return self.sign_in_form(request)

    async def sign_in(self, request: web.Request) -> web.Response:
        form = await request.post()
        check_csrf(request, Session("", request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24), 0.0), form)
        now = time.time()
        if self.throttle.locked_until(SUBJECT, now):
            log.warning("status page sign-in while locked", extra={"fields": {"event": "status-sign-in-locked"}})
            return self.sign_in_form(request, 429, "sign_in_locked")
        given = hashlib.sha256(str(form.get("token", "")).strip().encode()).hexdigest()
        if not hmac.compare_digest(given, self.token_hash):
            self.throttle.failed(SUBJECT, now)
            log.warning("status page sign-in failed", extra={"fields": {
                "event": "status-sign-in-failed", "remote": request.remote or ""}})
            return self.sign_in_form(request, 401, "sign_in_failed")
        self.throttle.succeeded(SUBJECT)
        value, _ = self.codec.issue(SUBJECT, now)
        log.info("status page sign-in", extra={"fields": {"event": "status-sign-in", "remote": request.remote or ""}})
        resp = web.HTTPSeeOther(PREFIX)
        set_cookie(resp, request, SESSION_COOKIE, value, max_age=self.codec.ttl)
        resp.del_cookie(PRE_COOKIE, path="/")
        raise resp

    async def sign_out(self, request: web.Request) -> web.Response:
        session = self.require(request)
        check_csrf(request, session, await request.post())
        resp = web.HTTPSeeOther(f"{PREFIX}/sign-in")
        resp.del_cookie(SESSION_COOKIE, path="/")
        raise resp

    async def retry(self, request: web.Request) -> web.Response:
        """Push the refused own envelopes again (after the cause is fixed), as ``POST /api/v1/outbox/retry``."""
        from node.app import SERVICE

        session = self.require(request)
        check_csrf(request, session, await request.post())
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
    from node.app import CONFIG

    config = app[CONFIG]
    page = StatusPage(config.dir, config.operator_token_hash, status_document)
    r = app.router
    r.add_get(PREFIX, page.page)
    r.add_get(f"{PREFIX}/sign-in", page.sign_in_page)
    r.add_post(f"{PREFIX}/sign-in", page.sign_in)
    r.add_post(f"{PREFIX}/sign-out", page.sign_out)
    r.add_post(f"{PREFIX}/retry", page.retry)
    r.add_get(f"{PREFIX}/static/{{name}}", page.static.handler)
