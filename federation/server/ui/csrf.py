"""The one defence against cross-site request forgery, for every form of the operator and staff pages.

A state-changing request must come from this site's own page: a present ``Origin`` must be this site, and the
request must carry the expected token (``csrf_token`` form field or ``X-CSRF-Token`` header), compared in
constant time. Once signed in the token is the session's (sessions.py); the sign-in form itself, before any
session exists, carries a fresh random token that is also set in a short-lived cookie (double submit): another
site's page can neither read the cookie nor set it, so it cannot post a sign-in (login CSRF).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from federation.server.ui.sessions import Session, is_tls, set_cookie
from federation.server.web import Problem

FORM_TOKEN_TTL = 3600  # seconds a sign-in form stays usable


def check_origin(request: web.Request) -> None:
    """Refuse a request whose ``Origin`` is another site (a browser sends it with every cross-site POST)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}" and not (
            is_tls(request) and origin == f"https://{request.host}"):
        raise Problem(403, "csrf", "the request came from another site's page")


def check_token(request: web.Request, expected: str | None, form: Mapping[str, Any] | None = None) -> None:
    """Refuse a request from another site's page, or without the ``expected`` token (None: nothing expected
    can match, e.g. a sign-in post without the form's cookie)."""
    check_origin(request)
    token = request.headers.get("X-CSRF-Token") or (form or {}).get("csrf_token") or ""
    if not expected or not isinstance(token, str) or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Problem(403, "csrf", "the form is missing its anti-forgery token or it is stale; reload the page")


def check_csrf(request: web.Request, session: Session, form: Mapping[str, Any] | None = None) -> None:
    """Refuse a state-changing request without this session's token, or from another site's page."""
    check_token(request, session.csrf, form)


def issue_form_token(response: web.StreamResponse, request: web.Request, cookie: str, token: str) -> None:
    """Set the sign-in form's token (also in the form's ``csrf_token`` field) as its cookie."""
    set_cookie(response, request, cookie, token, max_age=FORM_TOKEN_TTL)


def new_form_token() -> str:
    return secrets.token_urlsafe(24)


def check_form_token(request: web.Request, cookie: str, form: Mapping[str, Any]) -> None:
    """Refuse a sign-in post from another site's page, or whose token is not its cookie's."""
    check_token(request, request.cookies.get(cookie), form)
