"""The hub operators' dashboard: a live page of every member's sync, and the pages behind its rows.

Routes (all under ``/dashboard``, all but sign-in behind an operator session):

- ``GET /dashboard``: one row per member (federation/hub/monitor.py), updated live by
  ``GET /dashboard/events`` (server-sent events: the status JSON whenever it changes; the page's script
  writes it into the table with ``textContent`` only);
- ``GET /dashboard/members/{code}``: a member's figures, recent envelopes and refusals with their reasons;
- ``GET /dashboard/quarantine`` (filters: member, reason, since, until), ``/dashboard/quarantine/{id}``
  (one refusal in full) and ``/dashboard/quarantine/{id}/raw`` (its bytes exactly as they arrived);
- ``GET /dashboard/checkpoint``: the latest checkpoint and who co-signed it; ``/dashboard/registry``: the
  registry versions, the governance trail and the operators' own trail; ``/dashboard/throughput``:
  envelopes per minute over the last hour, a chart drawn on the server as SVG;
- ``GET|POST /dashboard/sign-in``, ``POST /dashboard/sign-out``; ``GET /dashboard/static/{name}``.

Operators are accounts in the hub's database (``ipdn hub operator add``), passwords scrypt-hashed; a
sign-in, the session cookie, CSRF and the sign-in lock are the one flow of every operator page
(federation/server/ui/signin.py); the session is checked against the account on every request, so disabling
an account ends its sessions. Sign-ins, failed and locked sign-ins and sign-outs go to the operators' trail
(``operator_events``) and to the structured log, never with the password. Every value from members and
records is escaped by jinja2 and isolated with ``<bdi>``; pages are served with a strict CSP.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from federation.hub.appkeys import CONFIG, GOVERNANCE, MONITOR, SERVICE
from federation.protocol.envelope import Envelope
from federation.protocol.errors import IpdnError
from federation.server.aio import wait_event
from federation.server.times import utc_text
from federation.server.ui.formats import format_number, time_element
from federation.server.ui.i18n import Catalog, choose_language, direction, pick, remember_language
from federation.server.ui.sessions import Session, SessionCodec, load_secret
from federation.server.ui.signin import PasswordAccounts, SignIn, SignInForm
from federation.server.ui.templates import SHARED_STATIC, StaticFiles, secure_headers, template_env
from federation.server.web import Problem

log = logging.getLogger("ipdn.hub.dashboard")

HERE = Path(__file__).resolve().parent
PREFIX = "/dashboard"
SESSION_COOKIE = "ipdn_hub_session"
PRE_COOKIE = "ipdn_hub_signin"  # the sign-in form's CSRF token (double submit)
LANGUAGES = ("en", "ar")
STATIC = (SHARED_STATIC / "ipdn.css", HERE / "static" / "dashboard.js")


@dataclass
class DashboardState:
    signin: SignIn[dict[str, Any]]
    env: jinja2.Environment
    catalog: Catalog
    static: StaticFiles
    closing: asyncio.Event = field(default_factory=asyncio.Event)


STATE = web.AppKey("dashboard", DashboardState)
SESSION = web.RequestKey("ipdn_session", Session)


# -- rendering -----------------------------------------------------------------------------------------------


def pick_name(names: dict[str, str], lang: str) -> tuple[str, str]:
    """A name or title in the page's language, else English, else any: (language tag, text)."""
    return pick(names, lang) or ("und", "")


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    state = request.app[STATE]
    lang = choose_language(request, LANGUAGES)
    session = request.get(SESSION)
    query = {k: v for k, v in request.query.items() if k != "lang"}
    html = state.env.get_template(template).render(
        lang=lang, dir=direction(lang), session=session,
        operator=session.subject if session else None, csrf=session.csrf if session else "",
        path=request.path, here=lambda **q: request.path + "?" + urlencode({**query, **q}),
        pick_name=lambda names: pick_name(names, lang),
        fmt_time=lambda v: time_element(v, lang), fmt_num=lambda v: format_number(v, lang), **context)
    resp = web.Response(text=html, content_type="text/html", status=status)
    remember_language(resp, request, LANGUAGES)
    secure_headers(resp)
    return resp


# -- sessions ------------------------------------------------------------------------------------------------


async def require_session(request: web.Request) -> Session:
    """The operator's session (the one sign-in flow: a page without one is sent to sign in, the event stream
    answered 401), kept on the request for :func:`render`."""
    _operator, session = await request.app[STATE].signin.require(request)
    request[SESSION] = session
    return session


async def _operator(request: web.Request, name: str) -> dict[str, Any] | None:
    """The enabled operator account of that name."""
    account = await request.app[SERVICE].store.operator(name)
    return None if account is None or account["disabled"] else account


async def _use_totp_step(request: web.Request, account: dict[str, Any], step: int) -> bool:
    return await request.app[SERVICE].store.use_operator_totp_step(str(account["name"]), step)


def _sign_in_form(request: web.Request, status: int, form: SignInForm) -> web.Response:
    return render(request, "sign_in.html", status=status, signin=form)


async def _trail(request: web.Request, action: str, operator: str, now: float) -> None:
    """Sign-ins, failed and locked sign-ins and sign-outs in the operators' trail (the flow logs them too)."""
    store, when = request.app[SERVICE].store, datetime.fromtimestamp(now, UTC)
    if action == "sign-in":
        await store.set_operator(operator, last_sign_in_at=when)
    await store.add_operator_event(when, operator, action)


# -- pages ---------------------------------------------------------------------------------------------------


async def overview(request: web.Request) -> web.Response:
    await require_session(request)
    snap = await request.app[MONITOR].snapshot()
    return render(request, "dashboard.html", snap=snap)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``event: status`` with the status JSON, whenever it changed (at most every
    ``live_interval`` seconds), and a comment every 15 s so that proxies keep the stream open."""
    await require_session(request)
    monitor, state = request.app[MONITOR], request.app[STATE]
    interval = request.app[CONFIG].live_interval
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    secure_headers(resp)
    await resp.prepare(request)
    last, quiet = "", 0.0
    try:
        while not state.closing.is_set():
            snap = await monitor.snapshot(max_age=interval / 2)
            body = json.dumps({k: v for k, v in snap.items() if k != "time"}, ensure_ascii=False, sort_keys=True)
            if body != last:
                await resp.write(f"event: status\ndata: {json.dumps(snap, ensure_ascii=False)}\n\n".encode())
                last, quiet = body, 0.0
            elif quiet >= 15:
                await resp.write(b": keep-alive\n\n")
                quiet = 0.0
            if not await wait_event(state.closing, interval):
                quiet += interval
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return resp


async def member_page(request: web.Request) -> web.Response:
    await require_session(request)
    code = request.match_info["code"]
    snap = await request.app[MONITOR].snapshot()
    member = next((m for m in snap["members"] if m["code"] == code), None)
    if member is None:
        raise Problem(404, "no-such-member", f"no member {code!r} in the registry")
    store = request.app[SERVICE].store
    envelopes = [{**e, "title": record_title(e.pop("envelope"))} for e in await store.recent_log(code, 50)]
    return render(request, "member.html", member=member, snap=snap, envelopes=envelopes,
                  refusals=[_refusal(r) for r in await store.quarantine_page(member=code, limit=50)])


def record_title(wire: bytes | None) -> dict[str, str] | None:
    """The title language map of an envelope's record, if it has one (shown escaped, as any member data)."""
    try:
        body = Envelope.from_bytes(bytes(wire or b"")).payload.body
    except (IpdnError, ValueError, TypeError):
        return None
    title = body.get("title") if isinstance(body, dict) else None
    if not isinstance(title, dict):
        return None
    return {str(k): str(v) for k, v in title.items()}


def _refusal(row: dict[str, Any]) -> dict[str, Any]:
    try:
        detail = json.loads(row.get("detail") or "{}")
    except ValueError:
        detail = {"failures": [{"check": "", "reason": row["reason"], "message": row.get("detail")}]}
    return {**row, "detail": detail if isinstance(detail, dict) else {}, "received_at": utc_text(row["received_at"])}


def _when(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name, "").strip()
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise Problem(400, "bad-parameter", f"{name} is a date and time such as 2026-11-29T10:00") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


async def quarantine_page(request: web.Request) -> web.Response:
    await require_session(request)
    member = request.query.get("member", "").strip()[:2] or None
    reason = request.query.get("reason", "").strip()[:64] or None
    since, until = _when(request, "since"), _when(request, "until")
    service = request.app[SERVICE]
    rows = await service.store.quarantine_page(member=member, reason=reason, since=since, until=until, limit=200)
    reasons = sorted({r for (_, r) in await service.store.quarantine_counts()})
    return render(request, "quarantine.html", rows=[_refusal(r) for r in rows], reasons=reasons,
                  members=[m.code for m in service.registry.registry.members],
                  filters={"member": member or "", "reason": reason or "", "since": request.query.get("since", ""),
                           "until": request.query.get("until", "")})


async def _item(request: web.Request) -> dict[str, Any]:
    try:
        item_id = int(request.match_info["id"])
    except ValueError:
        raise Problem(404, "no-such-item", "quarantine items are numbered") from None
    row = await request.app[SERVICE].store.quarantine_item(item_id)
    if row is None:
        raise Problem(404, "no-such-item", f"no quarantine item {item_id}")
    return dict(row)


async def quarantine_item(request: web.Request) -> web.Response:
    await require_session(request)
    row = await _item(request)
    raw = bytes(row["envelope"] or b"")
    return render(request, "refusal.html", item=_refusal(row), size=len(raw), title=record_title(raw),
                  preview=raw[:4096].decode("utf-8", "replace"))


async def quarantine_raw(request: web.Request) -> web.Response:
    """The refused input byte for byte, as a download (never rendered by the browser)."""
    await require_session(request)
    row = await _item(request)
    resp = web.Response(body=bytes(row["envelope"] or b""), content_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="quarantine-{row["id"]}.json"'})
    secure_headers(resp, "default-src 'none'; sandbox")
    return resp


async def checkpoint_page(request: web.Request) -> web.Response:
    await require_session(request)
    service = request.app[SERVICE]
    signed = service.checkpoint
    cosigners = await service.store.cosigners(signed.checkpoint.size) if signed else []
    snap = await request.app[MONITOR].snapshot()
    return render(request, "checkpoint.html", checkpoint=signed.checkpoint if signed else None,
                  hub_kid=signed.signers()[0] if signed else None, snap=snap,
                  cosigners=[{**c, "received_at": utc_text(c["received_at"])} for c in cosigners])


async def registry_page(request: web.Request) -> web.Response:
    await require_session(request)
    store = request.app[SERVICE].store
    governance = await request.app[GOVERNANCE].overview()
    return render(request, "registry.html", versions=await store.registry_versions(),
                  governance=governance, trail=list(reversed(governance["trail"]))[:100],
                  operator_events=await store.operator_events(100))


def chart(series: dict[str, Any], width: int = 720, height: int = 240) -> dict[str, Any]:
    """Bar geometry for the throughput SVG: accepted and refused per bucket, one scale."""
    accepted, refused = series["accepted"], series["refused"]
    n = len(accepted)
    top = max([a + r for a, r in zip(accepted, refused, strict=True)] + [1])
    pad_left, plot_h = 40, height - 32  # room for the scale beside, the time labels below
    bar_w = (width - pad_left) / n
    bars = []
    for i, (a, r) in enumerate(zip(accepted, refused, strict=True)):
        ha, hr = plot_h * a / top, plot_h * r / top
        x = pad_left + i * bar_w
        bars.append({"x": round(x, 2), "w": round(max(bar_w - 1, 1), 2), "accepted": a, "refused": r,
                     "ya": round(8 + plot_h - ha, 2), "ha": round(ha, 2),
                     "yr": round(8 + plot_h - ha - hr, 2), "hr": round(hr, 2)})
    return {"width": width, "height": height, "top": top, "bars": bars, "base": 8 + plot_h,
            "left": pad_left, "total_accepted": sum(accepted), "total_refused": sum(refused)}


async def throughput_page(request: web.Request) -> web.Response:
    await require_session(request)
    series = await request.app[MONITOR].throughput(hours=1.0, buckets=60)
    return render(request, "throughput.html", series=series, chart=chart(series))


# -- wiring --------------------------------------------------------------------------------------------------


async def _close_streams(app: web.Application) -> None:
    app[STATE].closing.set()


def register(app: web.Application) -> None:
    """Add the dashboard's routes and state to the hub's app (its config gives the session secret)."""
    config = app[CONFIG]
    catalog = Catalog(HERE / "locale", "hub")
    env = template_env(HERE / "templates", catalog)
    signin = SignIn(
        PasswordAccounts(_operator, lambda account: str(account["password_hash"]),
                         totp=lambda account: account["totp_secret"], use_step=_use_totp_step),
        SessionCodec(load_secret(config.session_secret_path), ttl=config.session_ttl), _sign_in_form,
        sign_in_url=f"{PREFIX}/sign-in", sign_out_url=f"{PREFIX}/sign-out", home=PREFIX, cookie=SESSION_COOKIE,
        form_cookie=PRE_COOKIE, log=log, event_prefix="operator", trail=_trail,
        clock=lambda: app[SERVICE].clock().timestamp())  # the hub's clock (set once it has started)
    app[STATE] = DashboardState(signin=signin, env=env, catalog=catalog,
                                static=StaticFiles(STATIC))
    app.on_shutdown.append(_close_streams)
    r = app.router
    r.add_get(PREFIX, overview)
    signin.add_routes(r)
    r.add_get(f"{PREFIX}/events", events, allow_head=False)  # a stream has no head to give
    r.add_get(f"{PREFIX}/members/{{code}}", member_page)
    r.add_get(f"{PREFIX}/quarantine", quarantine_page)
    r.add_get(f"{PREFIX}/quarantine/{{id}}", quarantine_item)
    r.add_get(f"{PREFIX}/quarantine/{{id}}/raw", quarantine_raw)
    r.add_get(f"{PREFIX}/checkpoint", checkpoint_page)
    r.add_get(f"{PREFIX}/registry", registry_page)
    r.add_get(f"{PREFIX}/throughput", throughput_page)
    r.add_get(f"{PREFIX}/static/{{name}}", app[STATE].static.handler)
