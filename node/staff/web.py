"""The node's authoring pages for member staff, under ``/author/``: sign in, list, write, publish, import.

Handlers only: they authenticate (the one sign-in flow of every operator page, federation/server/ui/signin.py: a
signed session cookie, the CSRF token of every POST, a lock after repeated failures), read the form, call
:class:`~node.staff.service.StaffService` and render a template (node/staff/templates/author/, jinja2 autoescape;
English and Arabic, right to left for Arabic). Pages are server-rendered and work without JavaScript;
node/staff/static/author/author.js only adds language tabs, "add another" in place and a time-zone filter. Every
response under ``/author/`` carries the strict page headers (``secure_headers``: no inline script or style, no
framing). Errors are RFC 9457 problems, except what staff can fix in a form (validation), which is shown on the form
itself; a browser asking for a page (``Accept: text/html``) gets the problem as a page in the reader's language (the
reason's sentence, its slug, the technical text behind a disclosure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import jinja2
from aiohttp import BodyPartReader, web
from multidict import MultiDict, MultiDictProxy

from federation.protocol.errors import IpdnError, UnknownSchemaError
from federation.server.ui.csrf import check_csrf
from federation.server.ui.i18n import Catalog, choose_language, direction, remember_language
from federation.server.ui.sessions import Session, SessionCodec, load_secret
from federation.server.ui.signin import PasswordAccounts, SignIn, SignInForm
from federation.server.ui.templates import secure_headers, template_env
from federation.server.web import Problem
from node.appkeys import CONFIG, SERVICE
from node.errors import (
    DraftNotFoundError,
    EditConflictError,
    InvalidRecordError,
    NotOwnRecordError,
    RecordDeletedError,
    RecordNotFoundError,
)
from node.records.service import REASON_CHARS
from node.staff import bulk, licences
from node.staff.forms import TIMEZONE_FIELD, Names, flatten, is_langmap, label, split
from node.staff.service import ALL_OR_NOTHING, DRY_RUN, VALID_ONLY, ImportReport, StaffService
from node.store.records import StoredRecord
from node.store.staff import Draft, StaffUser

log = logging.getLogger("ipdn.node.author")
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates" / "author"
STATIC = HERE / "static" / "author"
CATALOG = HERE / "locale"  # staff.po per language (federation/server/ui/i18n.py)
DOMAIN = "staff"
SECRET_FILE = "author-session.key"  # noqa: S105  (a file name, not a secret)
COOKIE = "ipdn_author"
FORM_COOKIE = "ipdn_author_signin"  # the sign-in form's CSRF token (double submit)
UI_LANGUAGES = ("en", "ar")
PREFIX = "/author"
MAX_UPLOAD = 20 * 1024 * 1024  # an import file: thousands of records
MAX_JOBS = 50
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}
# Languages offered when adding one to a record (any BCP 47 tag can be typed).
SUGGESTED_LANGUAGES = ("ar", "en", "ko", "tr", "es", "pt", "pt-BR", "hu", "fr", "de", "ru", "zh", "ja", "id", "ms",
                       "fa", "ur", "he", "it", "nl", "pl", "uk", "az", "kk", "uz", "sw", "hi", "bn", "th", "vi")
KINDS = ("cultural-event", "capacity-programme")
LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
STATES = ("draft", "published", "cancelled", "deleted")
# What the service refuses for a reason staff cannot fix in a form, as the problem it is answered with.
PROBLEM_STATUS: dict[type[IpdnError], int] = {
    NotOwnRecordError: 403, RecordNotFoundError: 404, DraftNotFoundError: 404, RecordDeletedError: 409,
    EditConflictError: 409,
}
T = TypeVar("T")


@dataclass
class ImportJob:
    id: str
    owner: str
    mode: str
    total: int = 0
    done: int = 0
    phase: str = "checked"
    report: ImportReport | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass
class Pages:
    staff: StaffService
    signin: SignIn[StaffUser]
    env: jinja2.Environment
    catalog: Catalog
    jobs: dict[str, ImportJob] = field(default_factory=dict)


PAGES = web.AppKey("author_pages", Pages)


# -- plumbing ------------------------------------------------------------------------------------------


def _lang(request: web.Request) -> str:
    return choose_language(request, UI_LANGUAGES)


def _render(request: web.Request, template: str, status: int = 200, user: StaffUser | None = None,
            session: Session | None = None, **context: Any) -> web.Response:
    pages = request.app[PAGES]
    lang = _lang(request)
    names = pages.staff.names(lang)
    html = pages.env.get_template(template).render(
        lang=lang, dir=direction(lang), names=names, user=user,
        csrf=session.csrf if session else "", here=request.path, query=request.query, **context)
    resp = web.Response(text=html, content_type="text/html", status=status)
    remember_language(resp, request, UI_LANGUAGES)
    return resp


async def _signed_in(request: web.Request) -> tuple[StaffUser, Session]:
    """The staff member of the session; a page without one is sent to sign in, anything else refused."""
    return await request.app[PAGES].signin.require(request)


async def _post(request: web.Request) -> tuple[StaffUser, Session, MultiDictProxy[str]]:
    """A signed-in POST with its form, its CSRF token checked."""
    user, session, form = await request.app[PAGES].signin.require_form(request)
    fields = MultiDict((k, v) for k, v in form.items() if isinstance(v, str))
    return user, session, MultiDictProxy(fields)


async def _answered(call: Awaitable[T]) -> T:
    """What the service answers; a refusal of PROBLEM_STATUS as its RFC 9457 problem."""
    try:
        return await call
    except tuple(PROBLEM_STATUS) as e:
        raise Problem(PROBLEM_STATUS[type(e)], e.reason, e.message) from e


def _record_path(record_id: str, suffix: str = "") -> str:
    return f"{PREFIX}/records/{quote(record_id, safe=':')}{suffix}"


# -- sign in ---------------------------------------------------------------------------------------------


def _signin_form(request: web.Request, status: int, form: SignInForm) -> web.Response:
    return _render(request, "signin.html", status=status, signin=form)


async def _active_user(request: web.Request, username: str) -> StaffUser | None:
    return await request.app[PAGES].staff.active_user(username)


async def _use_totp_step(request: web.Request, user: StaffUser, step: int) -> bool:
    return await request.app[PAGES].staff.use_totp_step(user.username, step)


# -- the list ------------------------------------------------------------------------------------------


async def list_page(request: web.Request) -> web.Response:
    user, session = await _signed_in(request)
    staff, q = request.app[PAGES].staff, request.query
    state = q.get("state", "") if q.get("state", "") in STATES else ""
    kind = q.get("kind", "") if q.get("kind", "") in KINDS else ""
    whose = "received" if q.get("whose") == "received" else "own"
    text = q.get("q", "").strip()[:200] or None
    drafts: list[Draft] = []
    if whose == "own" and state in ("", "draft"):
        drafts = [d for d in await staff.drafts() if not kind or d.kind == kind]
        if text:
            drafts = [d for d in drafts if text.lower() in " ".join(_titles(d.body)).lower()]
    records: list[Any] = []
    next_cursor = None
    if state != "draft":
        origin = staff.node.member if whose == "own" else None
        status = state if state in ("cancelled", "deleted") else None
        try:
            page, next_cursor = await staff.node.list_records(
                kind=kind or None, origin=origin, status=status, q=text, cursor=q.get("cursor") or None, limit=50)
        except IpdnError as e:
            raise Problem(400, e.reason, e.message) from e
        records = [r for r in page if (whose == "own" or r.origin != staff.node.member)
                   and (state != "published" or r.status not in ("cancelled", "deleted"))]
    # A deleted record has no body: it is titled by its last version's title.
    last = await staff.last_bodies([r.record_id for r in records if r.body is None])
    return _render(request, "list.html", user=user, session=session, drafts=drafts, records=records,
                   next_cursor=next_cursor, state=state, kind=kind, whose=whose, text=text or "", kinds=KINDS,
                   states=STATES, member=staff.node.member, title_of=title_of, last=last)


def _titles(body: dict[str, Any] | None) -> list[str]:
    title = (body or {}).get("title")
    return [v for v in title.values() if isinstance(v, str)] if isinstance(title, dict) else []


def title_of(body: dict[str, Any] | None, lang: str) -> tuple[str, str] | None:
    """(language, text) of a body's title, the UI language first, then English, then any."""
    title = (body or {}).get("title")
    if not isinstance(title, dict) or not title:
        return None
    for tag in (lang, "en", *title):
        if isinstance(title.get(tag), str):
            return tag, title[tag]
    return None


# -- writing -------------------------------------------------------------------------------------------


def _form_context(request: web.Request, draft: Draft, *, show_errors: bool) -> dict[str, Any]:
    staff = request.app[PAGES].staff
    names = staff.names(_lang(request))
    issues = staff.check(draft.kind, draft.body) if show_errors else []
    form = staff.forms.build(draft.kind, draft.body, issues, list(draft.langs), names)
    preview = _preview(staff, draft.kind, draft.body, names)
    return {"draft": draft, "form": form, "preview": preview, "suggested": SUGGESTED_LANGUAGES, "saved": False,
            "focus_errors": show_errors}


def _preview(staff: StaffService, kind: str, body: dict[str, Any], names: Names) -> list[dict[str, Any]]:
    """The body as partners' pages show it, in the page's language: each field's label and its values in words
    (choices, countries and languages by name, times in the event's zone named, dates in words, the licence and
    the recurrence in words; ``machine`` keeps a time's RFC 3339 value for ``<time datetime>``), texts of another
    language with their lang and dir."""
    forms = staff.forms
    root = forms.resolver.root(kind)
    zone = body.get(TIMEZONE_FIELD) if isinstance(body.get(TIMEZONE_FIELD), str) else None
    out: list[dict[str, Any]] = []
    for key, value in body.items():
        item: dict[str, Any] = {"label": label(key, names, forms.resolver, root), "texts": [], "values": []}
        node = forms.resolver.child(root, key)
        if isinstance(value, dict) and node is not None and is_langmap(node):
            item["texts"] = [{"lang": k, "dir": direction(k), "text": v, "language": names.language(k)}
                             for k, v in value.items() if isinstance(v, str)]
        else:
            for p, v in flatten(value).items():
                path = f"{key}.{p}" if p else key
                parts = split(path)
                parent = forms.resolver.at(root, parts[:-1]) if len(parts) > 1 else None
                leaf = forms.resolver.at(root, parts)
                shown: dict[str, Any] = {"label": label(path, names, forms.resolver, root),
                                         "text": forms.words(root, path, v, names, zone, "full")}
                if parent is not None and is_langmap(parent):  # a venue's name in Arabic: written that way
                    shown.update(lang=parts[-1], dir=direction(parts[-1]))
                if leaf is not None and leaf.schema.get("format") == "date-time":
                    shown["machine"] = v
                item["values"].append(shown)
        out.append(item)
    return out


async def new_page(request: web.Request) -> web.Response:
    user, session = await _signed_in(request)
    kind = request.match_info["kind"]
    if kind not in request.app[PAGES].staff.node.schemas.latest:
        raise Problem(404, "unknown-kind", f"no record kind {kind}")
    lang = _lang(request)
    now = request.app[PAGES].staff.node.clock()
    draft = Draft("", kind, {}, tuple(dict.fromkeys([lang, "en"])), user.username, user.username, now, now)
    return _render(request, "form.html", user=user, session=session, **_form_context(request, draft, show_errors=False))


def _langs(form: MultiDictProxy[str]) -> list[str]:
    return [t for t in dict.fromkeys(form.getall("_lang", [])) if _valid_tag(t)]


def _valid_tag(tag: str) -> bool:
    return bool(LANGUAGE_TAG.fullmatch(tag)) and len(tag) <= 35


async def create_draft(request: web.Request) -> web.StreamResponse:
    user, session, form = await _post(request)
    staff = request.app[PAGES].staff
    kind = form.get("_kind", "")
    try:
        draft = await staff.new_draft(kind, user.username, _langs(form) or ["en"])
    except UnknownSchemaError as e:
        raise Problem(422, "unknown-kind", e.message) from e
    return await _apply_form(request, user, session, draft, form)


async def draft_page(request: web.Request) -> web.Response:
    user, session = await _signed_in(request)
    draft = await _draft(request)
    context = _form_context(request, draft, show_errors=bool(draft.body))
    # The summary takes the focus after the staff member acted (saved, previewed), not on a plain visit.
    context["saved"] = context["focus_errors"] = bool(request.query.get("saved"))
    return _render(request, "form.html", user=user, session=session, **context)


async def _draft(request: web.Request) -> Draft:
    return await _answered(request.app[PAGES].staff.draft(request.match_info["draft_id"]))


async def save_draft(request: web.Request) -> web.StreamResponse:
    user, session, form = await _post(request)
    return await _apply_form(request, user, session, await _draft(request), form)


async def _apply_form(request: web.Request, user: StaffUser, session: Session, draft: Draft,
                      form: MultiDictProxy[str]) -> web.StreamResponse:
    """Save what the form says, then do what its button asked: save, add or remove a language, preview,
    publish (to the confirmation when valid; back to the form with every problem when not) or discard."""
    staff = request.app[PAGES].staff
    action = form.get("_action", "save")
    langs = _langs(form) or list(draft.langs)
    body = staff.forms.parse(draft.kind, list(form.items()))
    if action == "add-lang":
        tag = form.get("_new_lang", "").strip()
        if _valid_tag(tag):
            langs.append(tag)
    elif action.startswith("remove-lang:"):
        tag = action.partition(":")[2]
        langs = [t for t in langs if t != tag]
        body = _without_language(body, tag)
    elif action == "discard":
        await staff.discard(draft.id)
        raise web.HTTPSeeOther(f"{PREFIX}/")
    draft = await staff.save(draft, body, langs, user.username)
    here = f"{PREFIX}/drafts/{draft.id}"
    if action == "publish":
        if staff.check(draft.kind, draft.body):
            return _render(request, "form.html", status=422, user=user, session=session,
                           **_form_context(request, draft, show_errors=True))
        raise web.HTTPSeeOther(here + "/publish")
    # A preview of a body with errors shows the errors, at the top and focused, not an invalid preview.
    previewed = action == "preview" and not staff.check(draft.kind, draft.body)
    raise web.HTTPSeeOther(here + ("?saved=1#preview" if previewed else "?saved=1"))


def _without_language(value: Any, tag: str) -> Any:
    if isinstance(value, dict):
        return {k: _without_language(v, tag) for k, v in value.items() if not (k == tag and isinstance(v, str))}
    if isinstance(value, list):
        return [_without_language(v, tag) for v in value]
    return value


async def publish_page(request: web.Request) -> web.Response:
    user, session = await _signed_in(request)
    draft = await _draft(request)
    staff = request.app[PAGES].staff
    version = 1
    if draft.record_id is not None:
        version = (await staff.record(draft.record_id)).version + 1
    names = staff.names(_lang(request))
    return _render(request, "confirm.html", user=user, session=session, what="publish", draft=draft,
                   record_id=draft.record_id, version=version, preview=_preview(staff, draft.kind, draft.body, names),
                   action=f"{PREFIX}/drafts/{draft.id}/publish", back=f"{PREFIX}/drafts/{draft.id}")


async def publish(request: web.Request) -> web.StreamResponse:
    user, session, _form = await _post(request)
    draft = await _draft(request)
    staff = request.app[PAGES].staff
    try:
        env = await _answered(staff.publish(draft.id, user.username))
    except InvalidRecordError:
        return _render(request, "form.html", status=422, user=user, session=session,
                       **_form_context(request, draft, show_errors=True))
    p = env.payload
    raise web.HTTPSeeOther(_record_path(p.record_id, f"?done=published&version={p.version}"))


# -- one record ----------------------------------------------------------------------------------------


async def _record(request: web.Request) -> StoredRecord:
    return await _answered(request.app[PAGES].staff.record(request.match_info["record_id"]))


async def record_page(request: web.Request) -> web.Response:
    user, session = await _signed_in(request)
    rec = await _record(request)
    staff = request.app[PAGES].staff
    names = staff.names(_lang(request))
    done = request.query.get("done")
    version = request.query.get("version", "")
    message = None
    if done in ("published", "cancelled", "deleted") and version.isdigit():
        message = names.gettext(f"done.{done}", version=int(version))
    open_draft = await staff.open_draft(rec.record_id) if rec.origin == staff.node.member else None
    return _render(request, "record.html", user=user, session=session, rec=rec, message=message,
                   own=rec.origin == staff.node.member, open_draft=open_draft,
                   preview=_preview(staff, rec.kind, rec.body, names) if rec.body else [],
                   title=title_of(rec.body if rec.body is not None else
                                  (await staff.last_bodies([rec.record_id])).get(rec.record_id), _lang(request)),
                   record_path=_record_path)


async def edit_record(request: web.Request) -> web.StreamResponse:
    user, _s, _form = await _post(request)
    draft = await _answered(request.app[PAGES].staff.edit(request.match_info["record_id"], user.username))
    raise web.HTTPSeeOther(f"{PREFIX}/drafts/{draft.id}")


async def confirm_page(request: web.Request) -> web.Response:
    user, session = await _signed_in(request)
    rec = await _record(request)
    what = request.match_info["what"]
    staff = request.app[PAGES].staff
    if rec.origin != staff.node.member:
        raise Problem(403, "not-own-record", f"{rec.record_id} is a record of another member: read only here")
    names = staff.names(_lang(request))
    return _render(request, "confirm.html", user=user, session=session, what=what, draft=None,
                   record_id=rec.record_id, version=rec.version + 1, public_reason=staff.public_reason(rec.kind),
                   reason_chars=REASON_CHARS, reason_dir=direction(_lang(request)),
                   preview=_preview(staff, rec.kind, rec.body, names) if rec.body else [],
                   action=_record_path(rec.record_id, f"/{what}"), back=_record_path(rec.record_id))


async def change_record(request: web.Request) -> web.StreamResponse:
    user, _s, form = await _post(request)
    staff = request.app[PAGES].staff
    record_id, what = request.match_info["record_id"], request.match_info["what"]
    if what == "cancel":
        # The reason is in the language the confirm page was shown in (it says so), posted with it.
        lang = form.get("reason_lang", "")
        env = await _answered(staff.cancel(record_id, form.get("reason", "").strip()[:2000], user.username,
                                           lang if lang in UI_LANGUAGES else _lang(request)))
        done = "cancelled"
    else:
        env = await _answered(staff.delete(record_id, user.username))
        done = "deleted"
    raise web.HTTPSeeOther(_record_path(record_id, f"?done={done}&version={env.payload.version}"))


MAX_SHOWN = 200  # characters of a changed value shown in the history (a description runs to 20,000)


async def history_page(request: web.Request) -> web.Response:
    """Every version, newest first: when (localized, ``<time>``), who (the person's name) and what changed,
    field by field in plain labels, old and new values in words; headed by the record's title."""
    user, session = await _signed_in(request)
    staff = request.app[PAGES].staff
    record_id = request.match_info["record_id"]
    entries = await _answered(staff.history(record_id))
    names = staff.names(_lang(request))
    kind = (await staff.record(record_id)).kind
    root = staff.forms.resolver.root(kind)
    changes: dict[int, list[tuple[str, str | None, str | None]]] = {}
    for e in entries:
        zone = (e.body or {}).get(TIMEZONE_FIELD)
        zone = zone if isinstance(zone, str) else None
        changes[e.version] = [
            (label(c.path, names, staff.forms.resolver, root),
             None if c.old is None else staff.forms.words(root, c.path, c.old, names, zone, cut=MAX_SHOWN),
             None if c.new is None else staff.forms.words(root, c.path, c.new, names, zone, cut=MAX_SHOWN))
            for c in e.changes]
    last_body = next((e.body for e in entries if e.body is not None), None)
    return _render(request, "history.html", user=user, session=session, record_id=record_id, entries=entries,
                   changes=changes, title=title_of(last_body, names.lang), member=staff.node.member,
                   record_path=_record_path)


# -- import ----------------------------------------------------------------------------------------------


async def import_page(request: web.Request) -> web.Response:
    user, session = await _signed_in(request)
    return _render(request, "import.html", user=user, session=session, job=None, error=None)


async def _read_upload(request: web.Request) -> tuple[dict[str, str], str, bytes]:
    """The fields and the one file of a multipart upload, up to MAX_UPLOAD bytes."""
    if not request.content_type.startswith("multipart/"):
        raise Problem(415, "unsupported-media-type", "upload the file as multipart/form-data")
    fields: dict[str, str] = {}
    name, data = "", b""
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise Problem(400, "malformed-request", "nested multipart is not accepted")
        chunks, size = [], 0
        while chunk := await part.read_chunk(64 * 1024):
            size += len(chunk)
            if size > MAX_UPLOAD:
                raise Problem(413, "too-large", f"the file is over {MAX_UPLOAD // (1024 * 1024)} MiB: split it")
            chunks.append(chunk)
        if part.filename is not None:
            name, data = part.filename, b"".join(chunks)
        elif part.name:
            fields[part.name] = b"".join(chunks).decode("utf-8", "replace")
    return fields, name, data


async def start_import(request: web.Request) -> web.StreamResponse:
    user, session = await _signed_in(request)
    fields, name, data = await _read_upload(request)
    check_csrf(request, session, fields)
    pages = request.app[PAGES]
    mode = fields.get("mode", DRY_RUN)
    if mode not in (DRY_RUN, ALL_OR_NOTHING, VALID_ONLY):
        raise Problem(400, "malformed-request", "mode is dry-run, all or valid")
    try:
        rows = pages.staff.read(data, bulk.detect_format(name, data))
    except bulk.FileFormatError as e:
        error = pages.staff.row_error(bulk.RowError("", e.key, e.values), pages.staff.names(_lang(request)))
        return _render(request, "import.html", status=422, user=user, session=session, job=None, error=error,
                       error_detail=e.detail)
    job = ImportJob(uuid.uuid4().hex, user.username, mode, total=len(rows))

    def progress(phase: str, done: int, total: int) -> None:
        job.phase, job.done, job.total = phase, done, total

    async def run() -> None:
        try:
            job.report = await pages.staff.run_import(rows, mode, user.username, progress)
        except Exception as e:  # shown on the job's page; the rows published so far stay published
            log.exception("import %s failed", job.id)
            job.error = f"{type(e).__name__}: {e}"

    job.task = asyncio.create_task(run())
    for old in [j for j in pages.jobs.values() if j.task is not None and j.task.done()][:-MAX_JOBS]:
        del pages.jobs[old.id]  # finished reports are kept for the last MAX_JOBS imports only
    pages.jobs[job.id] = job
    await asyncio.sleep(0)
    raise web.HTTPSeeOther(f"{PREFIX}/import/{job.id}")


async def import_job_page(request: web.Request) -> web.Response:
    user, session = await _signed_in(request)
    job = request.app[PAGES].jobs.get(request.match_info["job_id"])
    if job is None or job.owner != user.username:
        raise Problem(404, "import-not-found", "no such import (imports are kept until the node restarts)")
    # A job that failed says so in the reader's language; the exception's text is the technical detail.
    failed = request.app[PAGES].staff.names(_lang(request)).message("import.err.failed") if job.error else None
    return _render(request, "import.html", user=user, session=session, job=job, error=failed,
                   error_detail=job.error or "", row_error=request.app[PAGES].staff.row_error)


# -- static files -----------------------------------------------------------------------------------------


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        raise Problem(404, "not-found", f"no file {name}")
    return web.Response(body=path.read_bytes(), content_type=STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=300"})


def _for_people(request: web.Request) -> bool:
    """A page under /author/ that a browser navigated to (it asks for HTML); scripts keep the JSON problem."""
    under = request.path.startswith(PREFIX + "/") and not request.path.startswith(PREFIX + "/static/")
    return under and "text/html" in request.headers.get("Accept", "")


@web.middleware
async def _problem_pages(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """A refusal of an authoring page (a record of another member, one deleted, a draft gone, an edit that
    crossed a colleague's) as a page in the reader's language, not raw JSON: the reason's sentence from the
    common catalogue with its slug, the problem's English detail behind "Technical details"."""
    try:
        return await handler(request)
    except Problem as p:
        if not _for_people(request):
            raise
        resp = _render(request, "problem.html", status=p.status, reason=p.reason, detail=p.detail)
        resp.headers.update(p.headers)
        return resp
    except web.HTTPNotFound:
        if not _for_people(request):
            raise
        return _render(request, "problem.html", status=404, reason="not-found", detail=request.path)


async def _page_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Strict page headers on every response under /author/ (pages, static files and problems alike)."""
    if request.path.startswith(PREFIX + "/") or request.path == PREFIX:
        secure_headers(response)


# -- the application ------------------------------------------------------------------------------------------


def register_routes(app: web.Application, config_dir: Path) -> None:
    """Add ``/author/...`` to the node's app; its cleanup context starts after the one that sets
    ``app[SERVICE]`` (the node service), so register after that one."""

    signin: SignIn[StaffUser] = SignIn(
        PasswordAccounts(_active_user, lambda user: user.password_hash, name_field="username", fold_case=True,
                         totp=lambda user: user.totp_secret, use_step=_use_totp_step),
        SessionCodec(load_secret(config_dir / SECRET_FILE)), _signin_form, sign_in_url=PREFIX + "/signin",
        sign_out_url=PREFIX + "/signout", home=PREFIX + "/", cookie=COOKIE, form_cookie=FORM_COOKIE, log=log,
        event_prefix="author", signed_out_url=PREFIX + "/signin?out=1", remember_next=True)

    async def pages(app: web.Application) -> AsyncIterator[None]:
        node = app[SERVICE]
        signin.clock = lambda: node.clock().timestamp()  # the node's clock: one-time codes and locks follow it
        catalog = Catalog(CATALOG, DOMAIN)
        staff = StaffService(app[SERVICE], catalog, licences.preset_uri(app[CONFIG].default_licence))
        env = template_env(TEMPLATES, catalog)
        app[PAGES] = Pages(staff, signin, env, catalog)
        yield
        for job in app[PAGES].jobs.values():
            if job.task is not None and not job.task.done():
                job.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job.task

    app.cleanup_ctx.append(pages)
    app.on_response_prepare.append(_page_headers)
    app.middlewares.append(_problem_pages)  # innermost: it sees the handlers' problems before problems_middleware
    r = app.router
    r.add_get(PREFIX + "/", list_page)
    signin.add_routes(r)
    r.add_get(PREFIX + "/new/{kind}", new_page)
    r.add_post(PREFIX + "/drafts", create_draft)
    r.add_get(PREFIX + "/drafts/{draft_id}", draft_page)
    r.add_post(PREFIX + "/drafts/{draft_id}", save_draft)
    r.add_get(PREFIX + "/drafts/{draft_id}/publish", publish_page)
    r.add_post(PREFIX + "/drafts/{draft_id}/publish", publish)
    r.add_get(PREFIX + "/records/{record_id}", record_page)
    r.add_post(PREFIX + "/records/{record_id}/edit", edit_record)
    r.add_get(PREFIX + "/records/{record_id}/history", history_page)
    r.add_get(PREFIX + "/records/{record_id}/{what:cancel|delete}", confirm_page)
    r.add_post(PREFIX + "/records/{record_id}/{what:cancel|delete}", change_record)
    r.add_get(PREFIX + "/import", import_page)
    r.add_post(PREFIX + "/import", start_import)
    r.add_get(PREFIX + "/import/{job_id}", import_job_page)
    r.add_get(PREFIX + "/static/{name}", static_file)
