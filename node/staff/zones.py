"""Time zones grouped by country for the authoring form's picker: the node's own country first, then every other
country by its name in the page's language (CLDR, Babel), each zone by its city's name; UTC last, on its own.

Which zone belongs to which country is the IANA database's own ``zone.tab`` (one country per zone, small
countries' aliases such as Asia/Kuwait included), read from the ``tzdata`` package the node already depends on
for the zones themselves, so the list and the zones come from the same release. Zones in no country (``Etc/*``,
old aliases such as ``US/Eastern``) are not offered; a record that holds one still shows it (the form keeps a value
it does not list).
"""

from __future__ import annotations

import unicodedata
import zoneinfo
from dataclasses import dataclass
from functools import cache
from importlib import resources

from babel import dates

from federation.server.ui.formats import locale

UNIVERSAL = "UTC"


@dataclass(frozen=True)
class ZoneGroup:
    country: str  # ISO 3166-1 alpha-2, "" for the zones of no country (UTC)
    name: str  # the country's name in the page's language
    zones: tuple[tuple[str, str], ...]  # (IANA name, the city's name in the page's language)


@cache
def zone_countries() -> dict[str, str]:
    """IANA zone -> its country's code, from tzdata's ``zone.tab`` (zones this Python cannot load left out)."""
    text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    known = zoneinfo.available_timezones()
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        code, _coords, zone, *_ = line.split("\t")
        if zone in known:
            out[zone] = code
    return out


@cache
def _groups(lang: str) -> tuple[ZoneGroup, ...]:
    loc = locale(lang)
    by_country: dict[str, list[tuple[str, str]]] = {}
    for zone, code in zone_countries().items():
        city = str(dates.get_timezone_location(zone, locale=loc, return_city=True))
        by_country.setdefault(code, []).append((zone, city))
    groups = [ZoneGroup(code, str(loc.territories.get(code, code)), tuple(sorted(zones, key=lambda z: _key(z[1]))))
              for code, zones in by_country.items()]
    return tuple(sorted(groups, key=lambda g: _key(g.name)))


def _key(name: str) -> str:
    """An alphabetical sort key without a collation library: marks taken off ("Åland" with the a's, "إ" with
    "ا"), case folded."""
    return "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c)).casefold()


def grouped(lang: str, first: str | None = None) -> list[ZoneGroup]:
    """Every country's zones, ``first`` (the node's country) at the top; the caller adds UTC (its label is a
    catalogue's word)."""
    groups = list(_groups(lang))
    return [g for g in groups if g.country == first] + [g for g in groups if g.country != first]


def all_zones() -> frozenset[str]:
    """The zones the picker offers: every country's, and UTC."""
    return frozenset(zone_countries()) | {UNIVERSAL}
