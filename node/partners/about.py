"""The operator's own portal page (``/about``, linked from every portal page's footer): a Markdown or HTML file
named by ``portal_page`` in node.toml, one per language beside it (``about.md``; ``about.ar.md`` for Arabic
readers), its first heading its title.

The file is the operator's, but it is still sanitised before it is shown (nh3, the Ammonia sanitiser: no script,
style, form, frame or event handler; links only http, https and mailto, with ``rel="noopener noreferrer"``): it
may be pasted from elsewhere or edited by someone with less trust than the server's root, and the portal's
Content-Security-Policy is the second wall, not the only one (docs/adr/0025). Markdown is CommonMark
(markdown-it-py) with tables; raw HTML in it is sanitised like an HTML file.

Rendered once per file version (path, size and modification time) and kept.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nh3
from markdown_it import MarkdownIt

from node.config import NodeConfig

PATH = "/about"
MAX_BYTES = 512 * 1024  # an operator's page, not a site
TAGS = {"a", "abbr", "b", "bdi", "bdo", "blockquote", "br", "caption", "cite", "code", "dd", "del", "details", "dl",
        "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li",
        "mark", "ol", "p", "pre", "q", "s", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody",
        "td", "tfoot", "th", "thead", "time", "tr", "u", "ul"}
ATTRIBUTES = {"*": {"lang", "dir", "title"}, "a": {"href", "hreflang"}, "img": {"src", "alt", "width", "height"},
              "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan", "scope"}, "time": {"datetime"},
              "ol": {"start"}}
SCHEMES = {"http", "https", "mailto"}
_H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.S)
_markdown = MarkdownIt("commonmark", {"html": True}).enable("table")


@dataclass(frozen=True, slots=True)
class OperatorPage:
    title: str | None  # its first h1's text (None: it has none)
    html: str  # sanitised
    lang: str | None  # the language of its file (None: the file for every language)
    revision: str


def sanitise(html: str) -> str:
    return nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=SCHEMES, link_rel="noopener noreferrer")


def render(text: str, suffix: str) -> str:
    """The file's text as sanitised HTML."""
    return sanitise(_markdown.render(text) if suffix.lower() == ".md" else text)


def _file(config: NodeConfig, ui: str) -> tuple[Path, str | None] | None:
    """The page's file for ``ui``: its language's beside the configured one, else the configured one."""
    if not config.portal_page:
        return None
    base = Path(config.portal_page)
    base = base if base.is_absolute() else config.dir / base
    own = base.with_name(f"{base.stem}.{ui}{base.suffix}")
    if own.is_file():
        return own, ui
    return (base, None) if base.is_file() else None


@lru_cache(maxsize=32)
def _load(path: Path, lang: str | None, size: int, mtime_ns: int) -> OperatorPage:
    data = path.read_bytes()[:MAX_BYTES]
    html = render(data.decode("utf-8", errors="replace"), path.suffix)
    heading = _H1.search(html)
    title = nh3.clean(heading.group(1), tags=set()).strip() if heading else None
    revision = hashlib.sha256(f"{path}\0{size}\0{mtime_ns}".encode()).hexdigest()[:16]
    return OperatorPage(title or None, html, lang, revision)


def load(config: NodeConfig, ui: str) -> OperatorPage | None:
    """The operator's page in ``ui`` (None: none configured, or its file is missing)."""
    found = _file(config, ui)
    if found is None:
        return None
    path, lang = found
    try:
        stat = path.stat()
    except OSError:
        return None
    return _load(path, lang, stat.st_size, stat.st_mtime_ns)


def revision(config: NodeConfig, languages: tuple[str, ...]) -> str:
    """What every portal page's ETag holds of the operator's page (its footer link): each language's file version."""
    if not config.portal_page:
        return ""
    return ",".join(p.revision if (p := load(config, ui)) else "-" for ui in languages)
