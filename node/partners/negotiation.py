"""Content negotiation for the partner formats that share a URL: which of the media types a route offers the
request's ``Accept`` header prefers (RFC 9110 §12.5.1), or a ``format`` query parameter for clients that cannot
set headers (calendar subscriptions, harvesters configured with a URL).

aiohttp has no negotiation of its own; the rule is short: each offer gets the quality of the most specific range
that matches it (``type/subtype``, then ``type/*``, then ``*/*``; parameters other than ``q`` are ignored), the
highest quality wins, a tie goes to the offer listed first (the route's default). No ``Accept``, or one that
matches no offer, is the default (a browser's ``text/html, */*;q=0.8`` gets it too: answering something beats a
406 for a read that has a natural form).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiohttp import web

from node.errors import BadQueryError


def _ranges(accept: str) -> list[tuple[str, str, float]]:
    out = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if "/" not in media:
            continue
        q = 1.0
        for p in params:
            name, _, value = p.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        kind, _, sub = media.lower().partition("/")
        out.append((kind, sub, q))
    return out


def best(accept: str | None, offers: Sequence[str]) -> str:
    """The offer ``accept`` prefers; ``offers[0]`` when it names none of them."""
    ranges = _ranges(accept or "")
    scored: list[tuple[float, int, str]] = []
    for i, offer in enumerate(offers):
        kind, _, sub = offer.lower().partition("/")
        matches = [(2 if (k, s) == (kind, sub) else 1 if (k, s) == (kind, "*") else 0, q)
                   for k, s, q in ranges if (k, s) in ((kind, sub), (kind, "*"), ("*", "*"))]
        if matches:
            q = max(matches)[1]  # the most specific range decides (RFC 9110 §12.5.1)
            if q > 0:
                scored.append((-q, i, offer))
    return min(scored)[2] if scored else offers[0]


def choose(request: web.Request, offers: Mapping[str, str]) -> str:
    """The media type to answer with: ``?format=<name>`` (``offers`` maps names to media types, the first the
    default), else the ``Accept`` header.

    Raises:
        BadQueryError: a ``format`` the route does not offer (400 ``bad-query``).
    """
    name = request.query.get("format")
    if name:
        if name not in offers:
            raise BadQueryError(f"format is one of {', '.join(offers)}")
        return offers[name]
    return best(request.headers.get("Accept"), list(offers.values()))
