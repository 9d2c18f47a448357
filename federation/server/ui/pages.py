"""What every server-rendered page of the hub and the nodes shares: sign-in, sessions, CSRF, the language and
its direction, security headers, templates.

- **Passwords** are hashed with scrypt (memory-hard, in the standard library through OpenSSL); the encoded
  hash carries its parameters, so they can be raised later without invalidating old hashes.
- **Sessions** are stateless cookies: ``base64url(claims).base64url(HMAC-SHA256)``, keyed by a per-service
  secret. The claims hold the subject, an expiry and the session's CSRF token; the service still checks on
  every request that the subject exists and is enabled, so disabling an account ends its sessions.
  The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Secure`` when the request came over TLS.
- **CSRF**: every state-changing form carries the session's token (``csrf_token`` field or
  ``X-CSRF-Token`` header), compared in constant time, and a present ``Origin`` must be this site.
- **Sign-in throttling**: after ``max_failures`` failures for one account within ``window`` seconds it is
  locked for ``lock_for`` seconds (in memory: a restart forgets, which only shortens a lock).
- **Language**: ``?lang=`` (remembered in a cookie), else the browser's ``Accept-Language``; ``direction``
  says whether a language tag is written right to left.
- **Templates**: jinja2 with autoescaping always on and undefined names as errors; message catalogs are
  JSON files ``{"key": {"en": "...", "ar": "..."}}`` beside the templates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import jinja2
from aiohttp import web

from federation.server.web import Problem

# -- passwords ---------------------------------------------------------------------------------------------

# scrypt N=2^15, r=8: 32 MiB and ~0.1 s per hash on this project's small servers.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=32)


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` for storing; the password itself is never stored."""
    salt = secrets.token_bytes(16)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(_scrypt(password, salt, n, r, p))}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, _unb64(digest))


# -- sessions ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Session:
    subject: str
    csrf: str
    expires: float


@dataclass(frozen=True)
class SessionCodec:
    secret: bytes = field(repr=False)
    ttl: float = 8 * 3600  # a working day

    def issue(self, subject: str, now: float) -> tuple[str, Session]:
        session = Session(subject, secrets.token_urlsafe(24), now + self.ttl)
        claims = _b64(json.dumps({"sub": subject, "csrf": session.csrf, "exp": session.expires}).encode())
        return f"{claims}.{self._mac(claims)}", session

    def open(self, value: str | None, now: float) -> Session | None:
        """The session in a cookie value, or None when absent, forged, malformed or expired."""
        if not value or value.count(".") != 1:
            return None
        claims, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(claims)):
            return None
        try:
            data = json.loads(_unb64(claims))
            session = Session(str(data["sub"]), str(data["csrf"]), float(data["exp"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > now else None

    def _mac(self, claims: str) -> str:
        return _b64(hmac.new(self.secret, claims.encode(), hashlib.sha256).digest())


def load_secret(path: Path) -> bytes:
    """The service's session secret, created (owner-only) on first use; rotating it signs everyone out."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_bytes(secrets.token_bytes(32))
    return path.read_bytes()


def is_tls(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str,
               max_age: float | None = None) -> None:
    response.set_cookie(name, value, max_age=None if max_age is None else int(max_age), path="/",
                        httponly=True, samesite="Strict", secure=is_tls(request))


def check_csrf(request: web.Request, session: Session, form: Mapping[str, Any] | None = None) -> None:
    """Refuse a state-changing request without this session's token, or from another site's page."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}" and not (
            is_tls(request) and origin == f"https://{request.host}"):
        raise Problem(403, "csrf", "the request came from another site's page")
    token = request.headers.get("X-CSRF-Token") or (form or {}).get("csrf_token") or ""
    if not isinstance(token, str) or not hmac.compare_digest(token.encode(), session.csrf.encode()):
        raise Problem(403, "csrf", "the form is missing its anti-forgery token or it is stale; reload the page")


@dataclass
class SignInThrottle:
    max_failures: int = 5
    window: float = 15 * 60
    lock_for: float = 15 * 60
    _failures: dict[str, list[float]] = field(default_factory=dict, repr=False)
    _locked: dict[str, float] = field(default_factory=dict, repr=False)

    def locked_until(self, account: str, now: float) -> float | None:
        until = self._locked.get(account)
        return until if until is not None and until > now else None

    def failed(self, account: str, now: float) -> None:
        recent = [t for t in self._failures.get(account, []) if now - t < self.window] + [now]
        self._failures[account] = recent
        if len(recent) >= self.max_failures:
            self._locked[account] = now + self.lock_for
            self._failures.pop(account)

    def succeeded(self, account: str) -> None:
        self._failures.pop(account, None)
        self._locked.pop(account, None)


# -- language and direction ----------------------------------------------------------------------------------

# Primary language subtags written right to left (a script subtag, when present, decides instead).
RTL_LANGUAGES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ku", "ps", "sd", "ug", "ur", "yi"})
RTL_SCRIPTS = frozenset({"arab", "hebr", "syrc", "thaa", "nkoo", "adlm", "rohg", "samr", "mand"})
_SCRIPT_RE = re.compile(r"[A-Za-z]{4}")
LANG_COOKIE = "lang"


def direction(tag: str) -> str:
    """``rtl`` or ``ltr`` for a BCP 47 language tag."""
    subtags = tag.lower().replace("_", "-").split("-")
    script = next((s for s in subtags[1:] if _SCRIPT_RE.fullmatch(s)), None)
    if script is not None:
        return "rtl" if script in RTL_SCRIPTS else "ltr"
    return "rtl" if subtags[0] in RTL_LANGUAGES else "ltr"


def choose_language(request: web.Request, supported: Iterable[str]) -> str:
    """``?lang=``, else the ``lang`` cookie, else the best of ``Accept-Language``, else the first supported."""
    options = list(supported)
    for asked in (request.query.get("lang"), request.cookies.get(LANG_COOKIE)):
        if asked in options:
            return asked
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(request.headers.get("Accept-Language", "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in options and q > 0:
            ranked.append((-q, i, primary))
    return sorted(ranked)[0][2] if ranked else options[0]


def pick(texts: Mapping[str, str] | None, lang: str | None) -> tuple[str, str] | None:
    """(language tag, text) from a language map: ``lang``, then English, then the map's first entry.

    Tags compare case-insensitively; a tag also matches its primary language (``zh`` finds ``zh-Hant``,
    ``pt-BR`` finds ``pt``), the bare primary tag first.
    """
    if not texts:
        return None
    for want in ([lang] if lang else []) + ["en"]:
        ranked = [(rank, i, tag) for i, tag in enumerate(texts) if (rank := _match(tag, want)) is not None]
        if ranked:
            tag = min(ranked)[2]
            return tag, texts[tag]
    tag = next(iter(texts))
    return tag, texts[tag]


def _match(tag: str, want: str) -> int | None:
    """How well ``tag`` serves a reader of ``want``: 0 the same tag, 1 its primary language, 2 a sibling."""
    t, w = tag.lower(), want.lower()
    primary = w.split("-")[0]
    if t == w:
        return 0
    if t == primary:
        return 1
    return 2 if t.split("-")[0] == primary else None


# -- responses -----------------------------------------------------------------------------------------------

# Scripts and styles only from this site's own files; nothing inline, nothing from elsewhere.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def secure_headers(response: web.StreamResponse, csp: str = PAGE_CSP) -> web.StreamResponse:
    response.headers.update({
        "Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    })
    response.headers.setdefault("Cache-Control", "no-store")
    return response


class Catalog:
    """UI messages per language; a key missing in one language falls back to English."""

    def __init__(self, path: Path) -> None:
        self.messages: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))

    def languages(self) -> set[str]:
        return {lang for texts in self.messages.values() for lang in texts}

    def gettext(self, lang: str) -> Any:
        def _(key: str, **values: Any) -> str:
            texts = self.messages.get(key)
            if texts is None:
                raise KeyError(f"no UI message {key!r}")
            text = texts.get(lang) or texts["en"]
            return text.format(**values) if values else text
        return _


def template_env(directory: Path) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(directory), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["direction"] = direction
    return env


SHARED_STATIC = Path(__file__).resolve().parent / "static"  # ipdn.css: the stylesheet of every operator page


class StaticFiles:
    """A fixed set of files (a page's stylesheet and script) served by name: only the files given, read
    once, with a strong ETag; anything else is a 404 problem."""

    TYPES: ClassVar[dict[str, str]] = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml",
                                       ".png": "image/png"}

    def __init__(self, files: Iterable[Path]) -> None:
        self.files = {p.name: p.read_bytes() for p in files}
        self.etags = {n: '"' + hashlib.sha256(b).hexdigest()[:32] + '"' for n, b in self.files.items()}

    async def handler(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in self.files:
            raise Problem(404, "not-found", f"no static file {name!r}")
        headers = {"ETag": self.etags[name], "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if self.etags[name] in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        charset = "utf-8" if name.endswith((".css", ".js", ".svg")) else None
        return web.Response(body=self.files[name], headers=headers, content_type=self.TYPES[Path(name).suffix],
                            charset=charset)
