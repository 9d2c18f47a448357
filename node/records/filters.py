"""The record filters partners use, one vocabulary for the record API's query and webhook subscriptions.

``kind``, ``origin``, ``country`` (a participating, venue or eligible country), ``lang`` (a language of the
title), ``status``, ``tag`` (case-insensitive), ``type`` (the event_type or programme_type) and ``audience`` (one
of the audience or target_audience), combined with AND. The record API turns them into SQL
(:meth:`node.store.records.NodeStore.list_records`); a webhook subscription tests each applied record with
:meth:`RecordFilter.matches` against the same derived values the store keeps (``|``-joined countries, tags,
languages and audiences, node/store/records.py ``search_values``), so both answer the same question the same way.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from node.errors import BadQueryError

COUNTRY_RE = re.compile(r"[A-Za-z]{2}")
LANG_RE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
MAX_VALUE = 200
NAMES = ("kind", "origin", "country", "lang", "status", "tag", "type", "audience")


def _matching(name: str, value: str | None, pattern: re.Pattern[str], what: str) -> str | None:
    if not value:
        return None
    if not pattern.fullmatch(value):
        raise BadQueryError(f"{name} is {what}")
    return value


@dataclass(frozen=True, slots=True)
class RecordFilter:
    kind: str | None = None
    origin: str | None = None
    country: str | None = None
    lang: str | None = None
    status: str | None = None
    tag: str | None = None
    type: str | None = None
    audience: str | None = None

    @classmethod
    def parse(cls, values: Mapping[str, Any], *, kinds: Collection[str] | None = None) -> RecordFilter:
        """The filters among ``values`` (a query string or a JSON object; blank means no filter).

        ``kinds`` (the known record kinds) makes the parse strict, as a subscription needs it: a kind must
        be known and an origin a country code (a typo would otherwise match nothing, silently, forever).
        The record API passes none and keeps answering an empty page for those.

        Raises:
            BadQueryError: a value of the wrong type or form.
        """
        got: dict[str, str | None] = {}
        for name in NAMES:
            value = values.get(name)
            if value is not None and not isinstance(value, str):
                raise BadQueryError(f"{name} is a string")
            if value and ("\x00" in value or len(value) > MAX_VALUE):
                raise BadQueryError(f"{name} is at most {MAX_VALUE} characters, without NUL")
            got[name] = value or None
        if kinds is not None:
            if got["kind"] is not None and got["kind"] not in kinds:
                raise BadQueryError(f"kind is one of {', '.join(sorted(kinds))}")
            origin = _matching("origin", got["origin"], COUNTRY_RE, "a two-letter country code")
            got["origin"] = origin.upper() if origin else None
        return cls(kind=got["kind"], origin=got["origin"],
                   country=_matching("country", got["country"], COUNTRY_RE, "a two-letter country code"),
                   lang=_matching("lang", got["lang"], LANG_RE, "a BCP 47 language tag"),
                   status=got["status"], tag=got["tag"], type=got["type"], audience=got["audience"])

    def to_dict(self) -> dict[str, str]:
        """The filters set (for storing and showing)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def matches(self, values: Mapping[str, Any]) -> bool:
        """Whether a record with these stored values (``kind``, ``origin``, ``status`` and the derived
        ``countries``, ``tags``, ``langs``, ``type``, ``audiences`` of node/store/records.py) passes: the test
        list_records makes in SQL."""
        if self.kind is not None and values.get("kind") != self.kind:
            return False
        if self.origin is not None and values.get("origin") != self.origin:
            return False
        if self.status is not None and values.get("status") != self.status:
            return False
        if self.type is not None and values.get("type") != self.type:
            return False
        if self.audience is not None and f"|{self.audience}|" not in (values.get("audiences") or ""):
            return False
        if self.country is not None and f"|{self.country.upper()}|" not in (values.get("countries") or ""):
            return False
        if self.tag is not None and f"|{self.tag.lower()}|" not in (values.get("tags") or ""):
            return False
        return self.lang is None or f"|{self.lang.lower()}|" in (values.get("langs") or "")
