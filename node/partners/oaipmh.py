"""OAI-PMH 2.0 for libraries and archives: the records a node holds, as a harvestable repository.

``GET /oai`` and ``POST /oai`` (``application/x-www-form-urlencoded``) answer the six verbs of the Open
Archives Initiative Protocol for Metadata Harvesting 2.0 (http://www.openarchives.org/OAI/openarchivesprotocol.html).
Reading needs no token, like the rest of the node's reading API; it goes through
:meth:`NodeService.list_records` and :meth:`NodeService.get` only.

- **Items** are the records this node holds (its own and those pulled from the hub), one per ``record_id``,
  at their current version. The **datestamp** is when the record last changed *on this node* (the
  store's ``updated_at``, floored to the second), so ``from``/``until`` select what changed here since a
  harvest. Granularity ``YYYY-MM-DDThh:mm:ssZ``; day-granularity arguments are accepted too.
- **Identifiers** are ``oai:<repository identifier>:<record_id>``, e.g. ``oai:ipdn.network:QA:ga6-2020``
  (the OAI identifier scheme, guidelines-oai-identifier). The repository identifier defaults to
  ``ipdn.network``: a ``record_id`` is already unique in the whole network and names the same record on
  every node, so every node gives an item the same identifier and a harvester that harvests several
  nodes sees one item, not one per node. A deployment may set its own (:class:`OaiSettings`).
- **Formats**: ``oai_dc`` (unqualified Dublin Core: :func:`dublin_core`) and ``ipdn``, the native format:
  the record body (RFC 8785 JSON) and its signed envelope, as JSON text in a small XML wrapper
  (:func:`ipdn_record`; schema ``schemas/oai-ipdn/v1.xsd``, published as :data:`IPDN_SCHEMA`). JSON is kept as
  text rather than mapped to XML so that the envelope's bytes stay exactly as signed and verifiable.
- **Sets**: ``kind`` with ``kind:<kind>`` below it (``kind:cultural-event``), and ``origin`` with
  ``origin:<member code>`` below it (``origin:QA``): the kinds this node has schemas for and the members of
  its registry. A parent set holds every record.
- **Deleted records** are ``persistent``: a tombstone is kept forever (docs/PROTOCOL.md §3.4) and listed with
  ``status="deleted"`` and no metadata; a later update restores the record.
- **Resumption tokens** never expire: a token is the base64url of a small JSON document holding the query
  (verb, metadataPrefix, set, from, until) and the list cursor of :meth:`NodeService.list_records` (the key
  of the last item sent), plus how many items were sent before (the ``cursor`` attribute). The server keeps
  no state, so a token works after a restart and after records were added (a record changed meanwhile moves
  to the end of the list and is sent again, as OAI-PMH allows). ``completeListSize`` is not given.
- **Errors** are OAI-PMH ``<error>`` elements in a 200 response, as the protocol says; with ``badVerb`` or
  ``badArgument`` the ``request`` element carries no attributes. ``noSetHierarchy`` never applies (this
  repository has sets) and ``noMetadataFormats`` does not arise (every record can be disseminated in both
  formats; a tombstone in neither, by its header).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.helpers import ETag
from lxml import etree
from multidict import MultiDict, MultiMapping

from federation.protocol.canonical import canonical_bytes
from federation.protocol.envelope import RECORD_ID_RE, Envelope
from federation.protocol.keys import b64u_decode, b64u_encode
from node.appkeys import CONFIG, SERVICE
from node.config import NodeConfig
from node.errors import BadQueryError, RecordNotFoundError
from node.partners.feeds import CACHE_CONTROL, page_url, record_url
from node.records.service import REASON_FIELD, NodeService
from node.store.records import StoredRecord

# -- names -----------------------------------------------------------------------------------------------

OAI_NS = "http://www.openarchives.org/OAI/2.0/"
OAI_SCHEMA = "http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd"
OAI_DC_NS = "http://www.openarchives.org/OAI/2.0/oai_dc/"
OAI_DC_SCHEMA = "http://www.openarchives.org/OAI/2.0/oai_dc.xsd"
DC_NS = "http://purl.org/dc/elements/1.1/"
OAI_ID_NS = "http://www.openarchives.org/OAI/2.0/oai-identifier"
OAI_ID_SCHEMA = "http://www.openarchives.org/OAI/2.0/oai-identifier.xsd"
IPDN_NS = "https://schemas.ipdn.network/oai-ipdn/v1"
IPDN_SCHEMA = "https://schemas.ipdn.network/oai-ipdn/v1.xsd"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

PATH = "/oai"
CONTENT_TYPE = "text/xml; charset=utf-8"
DEFAULT_REPOSITORY_IDENTIFIER = "ipdn.network"
DEFAULT_ADMIN_EMAIL = "secretariat@ipdn.network"  # when neither the settings nor the registry name one
GRANULARITY = "YYYY-MM-DDThh:mm:ssZ"
DCMI_EVENT = "Event"  # DCMI Type Vocabulary: both v1 kinds describe something that happens at a time
# Statuses that change what a reader should do: their statement comes before the record's own descriptions, where a
# harvester that keeps one description (or shows the first) keeps it (PROTOCOL §9.1).
NOTICE_STATUSES = frozenset({"cancelled", "postponed", "rescheduled", "moved-online"})

FORMATS: dict[str, tuple[str, str]] = {  # metadataPrefix -> (schema, namespace)
    "oai_dc": (OAI_DC_SCHEMA, OAI_DC_NS),
    "ipdn": (IPDN_SCHEMA, IPDN_NS),
}
KIND_SET, ORIGIN_SET = "kind", "origin"

# -- errors ----------------------------------------------------------------------------------------------

BAD_ARGUMENT = "badArgument"
BAD_RESUMPTION_TOKEN = "badResumptionToken"  # noqa: S105  (an OAI-PMH error code, not a secret)
BAD_VERB = "badVerb"
CANNOT_DISSEMINATE_FORMAT = "cannotDisseminateFormat"
ID_DOES_NOT_EXIST = "idDoesNotExist"
NO_RECORDS_MATCH = "noRecordsMatch"
NO_METADATA_FORMATS = "noMetadataFormats"


class OaiError(Exception):
    """One or more OAI-PMH error conditions: ``(code, message)`` pairs, answered as ``<error>`` elements."""

    def __init__(self, code: str, message: str, *more: tuple[str, str]) -> None:
        super().__init__(f"{code}: {message}")
        self.errors: list[tuple[str, str]] = [(code, message), *more]

    @property
    def codes(self) -> list[str]:
        return [c for c, _ in self.errors]


# -- settings --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OaiSettings:
    """What a deployment may change; the defaults suit a node as ``ipdn node init`` makes it.

    ``public_url`` is the node's public base URL (e.g. ``https://ipdn.katara.example``): the OAI base URL
    is ``public_url + "/oai"`` and ``dc:identifier`` links to ``public_url + "/events/<id>"`` (then the API item).
    Unset: the node's ``public_url`` setting, else the member's ``endpoint`` in the registry, else the node's
    default base URL (``NodeConfig.public_base``); never the request's Host.
    ``admin_email`` unset: the member's registry contact e-mail, else :data:`DEFAULT_ADMIN_EMAIL`.
    ``page_size`` unset: the node's ``page_size`` (records per ListRecords/ListIdentifiers response).
    """

    repository_identifier: str = DEFAULT_REPOSITORY_IDENTIFIER
    public_url: str | None = None
    admin_email: str | None = None
    page_size: int | None = None

    def __post_init__(self) -> None:
        if not _REPOSITORY_ID.fullmatch(self.repository_identifier):
            raise ValueError(f"repository identifier {self.repository_identifier!r} is not a domain name")
        if self.page_size is not None and self.page_size < 1:
            raise ValueError("page_size is at least 1")


SETTINGS = web.AppKey("oai_settings", OaiSettings)


def register_routes(app: web.Application, settings: OaiSettings | None = None) -> None:
    """Add ``GET /oai`` and ``POST /oai`` to the node's application (call before it starts)."""
    app[SETTINGS] = settings or OaiSettings()
    app.router.add_get(PATH, handle)
    app.router.add_post(PATH, handle)


# -- identifiers, datestamps, sets -----------------------------------------------------------------------

_REPOSITORY_ID = re.compile(r"[a-zA-Z][a-zA-Z0-9\-]*(\.[a-zA-Z][a-zA-Z0-9\-]*)+")
_PREFIX = re.compile(r"[A-Za-z0-9\-_.!~*'()]+")
_SET_SPEC = re.compile(r"[A-Za-z0-9\-_.!~*'()]+(:[A-Za-z0-9\-_.!~*'()]+)*")
# The datestamps from/until take: their shape, how to read them, and whether they name a day (or a second).
_DATESTAMPS = ((re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"), "%Y-%m-%d", True),
               (re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"), "%Y-%m-%dT%H:%M:%SZ", False))
_LANG = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")  # xs:language, what xml:lang takes
_RESPONSE_DATE = re.compile(rb"<responseDate>[^<]*</responseDate>")
# Characters XML 1.0 cannot carry (§2.2 Char); lxml refuses them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def oai_identifier(repository: str, record_id: str) -> str:
    return f"oai:{repository}:{record_id}"


def record_id_of(repository: str, identifier: str) -> str | None:
    """The record id an identifier of this repository names, or None (not one of ours)."""
    prefix = f"oai:{repository}:"
    if not identifier.startswith(prefix):
        return None
    rid = identifier[len(prefix):]
    return rid if RECORD_ID_RE.fullmatch(rid) else None


def datestamp(when: datetime) -> str:
    """A UTC datestamp at second granularity (floored: a record changed at 12:00:00.7 has 12:00:00Z)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(value: str) -> tuple[datetime, bool]:
    """``YYYY-MM-DD`` or ``YYYY-MM-DDThh:mm:ssZ`` as a UTC instant, and whether it was a day.

    Raises:
        ValueError: anything else (an offset, fractions, a date that does not exist).
    """
    for pattern, form, day in _DATESTAMPS:
        if pattern.fullmatch(value):
            try:
                return datetime.strptime(value, form).replace(tzinfo=UTC), day
            except ValueError:
                break  # 2026-02-30 has the shape of a date
    raise ValueError(f"{value!r} is not a UTC date, YYYY-MM-DD or {GRANULARITY}")


@dataclass(frozen=True, slots=True)
class Window:
    """The update times ``from``/``until`` select: ``since`` <= updated_at < ``before`` (None: open)."""

    since: datetime | None = None
    before: datetime | None = None

    def admits(self, when: datetime) -> bool:
        return (self.since is None or when >= self.since) and (self.before is None or when < self.before)


def window(from_: str | None, until: str | None) -> Window:
    """The selection of the ``from`` and ``until`` arguments; both bounds are inclusive at their
    granularity (``until=2026-03-01`` takes the whole day, ``until=...T08:00:00Z`` that whole second).

    Raises:
        OaiError: badArgument for a malformed date, two granularities, or ``from`` after ``until``.
    """
    try:
        lower = parse_utc(from_) if from_ is not None else None
        upper = parse_utc(until) if until is not None else None
    except ValueError as e:
        raise OaiError(BAD_ARGUMENT, f"from and until: {e}") from None
    if upper is None:
        return Window(lower[0] if lower else None)
    last, day = upper
    if lower is not None:
        if lower[1] != day:
            raise OaiError(BAD_ARGUMENT, "from and until must have the same granularity")
        if lower[0] > last:
            raise OaiError(BAD_ARGUMENT, f"from ({from_}) is later than until ({until})")
    try:
        before: datetime | None = last + (timedelta(days=1) if day else timedelta(seconds=1))
    except OverflowError:  # until the end of time: no upper bound
        before = None
    return Window(lower[0] if lower else None, before)


def record_sets(rec: StoredRecord) -> list[str]:
    """The sets a record belongs to, most specific only (``kind:...`` is inside ``kind``)."""
    return [f"{KIND_SET}:{rec.kind}", f"{ORIGIN_SET}:{rec.origin}"]


def set_filter(spec: str | None) -> tuple[str | None, str | None] | None:
    """(kind, origin) to list for a set, or None when no record can be in it (an unknown set)."""
    if spec is None or spec in (KIND_SET, ORIGIN_SET):
        return None, None
    top, _, rest = spec.partition(":")
    if not rest or ":" in rest:
        return None
    if top == KIND_SET:
        return rest, None
    if top == ORIGIN_SET:
        return None, rest
    return None


# -- resumption tokens -----------------------------------------------------------------------------------

_TOKEN_VERBS = {"ListRecords": "LR", "ListIdentifiers": "LI"}
_TOKEN_KEYS = {"v", "m", "s", "f", "u", "c", "n"}
MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A ListRecords/ListIdentifiers query and where its list stands: what a resumption token holds."""

    verb: str
    prefix: str
    set_spec: str | None = None
    from_: str | None = None
    until: str | None = None
    cursor: str | None = None  # NodeService.list_records' cursor (key of the last item sent); None: start
    sent: int = 0  # items sent before this page (the resumptionToken's cursor attribute)

    def token(self) -> str:
        doc: dict[str, Any] = {"v": _TOKEN_VERBS[self.verb], "m": self.prefix, "c": self.cursor, "n": self.sent}
        for key, value in (("s", self.set_spec), ("f", self.from_), ("u", self.until)):
            if value is not None:
                doc[key] = value
        return b64u_encode(json.dumps(doc, separators=(",", ":"), sort_keys=True).encode())

    @classmethod
    def from_token(cls, verb: str, token: str) -> ListQuery:
        """Raises OaiError (badResumptionToken) for anything :meth:`token` did not make for ``verb``."""
        bad = OaiError(BAD_RESUMPTION_TOKEN, "the resumptionToken is not one this repository issued for " + verb)
        try:
            if len(token) > MAX_TOKEN_CHARS:
                raise ValueError("too long")
            doc = json.loads(b64u_decode(token))
        except ValueError:  # UnicodeDecodeError, JSONDecodeError and binascii.Error are ValueErrors
            raise bad from None
        if (not isinstance(doc, dict) or not {"v", "m", "c", "n"} <= set(doc) <= _TOKEN_KEYS
                or doc["v"] != _TOKEN_VERBS.get(verb) or doc["m"] not in FORMATS
                or not isinstance(doc["c"], str) or not doc["c"] or type(doc["n"]) is not int or doc["n"] < 0
                or not all(isinstance(doc.get(k), str) for k in ("s", "f", "u") if k in doc)
                or ("s" in doc and not _SET_SPEC.fullmatch(doc["s"]))):
            raise bad
        try:
            window(doc.get("f"), doc.get("u"))
        except OaiError:
            raise bad from None
        return cls(verb, doc["m"], doc.get("s"), doc.get("f"), doc.get("u"), doc["c"], doc["n"])


# -- metadata --------------------------------------------------------------------------------------------


def xml_text(value: str) -> str:
    """Text XML 1.0 can carry: characters it cannot are replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", value)


def json_text(value: Any) -> str:
    """RFC 8785 JSON of ``value`` as XML-safe text: the only characters XML cannot carry that JSON writes
    raw are U+FFFE and U+FFFF (control characters are escaped already), and those can only occur in JSON
    strings, where ``\\uXXXX`` means the same."""
    text = canonical_bytes(value).decode("utf-8")
    return text.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")


def _texts(value: Any) -> list[tuple[str | None, str]]:
    """(language, text) pairs of a language map (or a plain string, language unknown)."""
    if isinstance(value, dict):
        return [(lang if isinstance(lang, str) else None, text) for lang, text in value.items()
                if isinstance(text, str)]
    return [(None, value)] if isinstance(value, str) else []


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _institutions(value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    return [i for i in items if isinstance(i, dict)]


def status_statement(body: Mapping[str, Any]) -> str | None:
    """The record's status as a sentence Dublin Core keeps (a ``dc:description``): ``Status: cancelled.``, with the
    start announced before for a rescheduled or postponed event."""
    status = body.get("status")
    if not isinstance(status, str):
        return None
    before = body.get("previous_start") if status in ("rescheduled", "postponed") else None
    return f"Status: {status}" + (f" (previously announced to start {before})." if isinstance(before, str) else ".")


def dublin_core(rec: StoredRecord, *, page_url: str, record_url: str,
                publisher: Mapping[str, str] | None = None) -> Any:
    """The ``oai_dc:dc`` element of a record (not a tombstone).

    The mapping, by body field (both v1 kinds; other kinds get what their bodies share):
    ``title`` and ``description`` (one element per language, with ``xml:lang``); ``creator``: the
    organizers (events) or the provider (programmes); ``contributor``: the partners; ``publisher``: the
    origin member, by its registry names; ``date``: ``start``/``start_date`` and ``end``/``end_date``
    (W3CDTF as in the record); ``type``: DCMI ``Event``, the kind, the event or programme type;
    ``subject``: topics and tags; ``coverage``: the venue (name and city per language) and its country code;
    ``language``: the languages; ``relation``: the links; ``rights``: the rights statement URI;
    ``identifier``: the record's page on the portal (``page_url``, text/html), then its item in the JSON API
    (``record_url``). The status is a ``description`` (``Status: cancelled.``, English): before the record's own
    descriptions when it changes what a reader should do (cancelled, postponed, rescheduled, moved online), else
    after them.
    """
    body = rec.body or {}
    dc = etree.Element(f"{{{OAI_DC_NS}}}dc", nsmap={"oai_dc": OAI_DC_NS, "dc": DC_NS, "xsi": XSI_NS})
    dc.set(f"{{{XSI_NS}}}schemaLocation", f"{OAI_DC_NS} {OAI_DC_SCHEMA}")

    def add(name: str, text: str, lang: str | None = None) -> None:
        el = etree.SubElement(dc, f"{{{DC_NS}}}{name}")
        el.text = xml_text(text)
        if lang and _LANG.fullmatch(lang):
            el.set(XML_LANG, lang)

    for lang, text in _texts(body.get("title")):
        add("title", text, lang)
    statement = status_statement(body)
    notice = body.get("status") in NOTICE_STATUSES
    if statement and notice:
        add("description", statement, "en")
        for lang, text in _texts(body.get(REASON_FIELD)):  # why (cultural-event/v2), each in its language
            add("description", text, lang)
    for lang, text in _texts(body.get("description")):
        add("description", text, lang)
    if statement and not notice:
        add("description", statement, "en")
    for who in _institutions(body.get("organizers", body.get("provider", []))):
        for lang, text in _texts(who.get("name")):
            add("creator", text, lang)
    for who in _institutions(body.get("partners", [])):
        for lang, text in _texts(who.get("name")):
            add("contributor", text, lang)
    for lang, text in (publisher or {}).items():
        add("publisher", text, lang)
    for key in ("start", "start_date", "end", "end_date"):
        if isinstance(body.get(key), str):
            add("date", body[key])
    if any(k in body for k in ("start", "start_date")):
        add("type", DCMI_EVENT)
    add("type", rec.kind)
    for key in ("event_type", "programme_type"):
        if isinstance(body.get(key), str):
            add("type", body[key])
    for subject in _strings(body.get("topics")) + _strings(body.get("tags")):
        add("subject", subject)
    venue = body.get("venue")
    if isinstance(venue, dict):
        cities = dict(_texts(venue.get("city")))
        for lang, name in _texts(venue.get("name")):
            city = cities.get(lang) or next(iter(cities.values()), None)
            add("coverage", f"{name}, {city}" if city and city not in name else name, lang)
        if isinstance(venue.get("country"), str):
            add("coverage", venue["country"])
    for language in _strings(body.get("languages")):
        add("language", language)
    for link in _institutions(body.get("links", [])):
        if isinstance(link.get("url"), str):
            add("relation", link["url"])
    if isinstance(body.get("rights"), str):
        add("rights", body["rights"])
    add("identifier", page_url)
    add("identifier", record_url)
    return dc


def ipdn_record(rec: StoredRecord) -> Any:
    """The ``ipdn:record`` element of a record (not a tombstone): body and envelope as JSON text."""
    env = Envelope.from_bytes(rec.envelope)  # verified when it was stored; parsed for its schema $id
    el = etree.Element(f"{{{IPDN_NS}}}record", nsmap={"ipdn": IPDN_NS, "xsi": XSI_NS})
    el.set(f"{{{XSI_NS}}}schemaLocation", f"{IPDN_NS} {IPDN_SCHEMA}")
    for name, value in (("recordId", rec.record_id), ("origin", rec.origin), ("kind", rec.kind),
                        ("schema", env.payload.schema), ("version", str(rec.version)), ("seq", str(rec.seq)),
                        ("hash", rec.hash), ("issuedAt", rec.issued_at), ("status", rec.status)):
        el.set(name, xml_text(value))
    etree.SubElement(el, f"{{{IPDN_NS}}}body").text = json_text(rec.body)
    etree.SubElement(el, f"{{{IPDN_NS}}}envelope").text = rec.envelope.decode("ascii")
    return el


# -- the protocol ----------------------------------------------------------------------------------------

# verb -> (required arguments, optional arguments); resumptionToken is exclusive where allowed.
VERBS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "Identify": (frozenset(), frozenset()),
    "ListMetadataFormats": (frozenset(), frozenset({"identifier"})),
    "ListSets": (frozenset(), frozenset({"resumptionToken"})),
    "GetRecord": (frozenset({"identifier", "metadataPrefix"}), frozenset()),
    "ListIdentifiers": (frozenset({"metadataPrefix"}), frozenset({"from", "until", "set", "resumptionToken"})),
    "ListRecords": (frozenset({"metadataPrefix"}), frozenset({"from", "until", "set", "resumptionToken"})),
}


def parse_arguments(args: MultiMapping[str]) -> tuple[str, dict[str, str]]:
    """The verb and its arguments, checked against what the verb takes.

    Raises:
        OaiError: badVerb (verb missing, repeated or unknown) or badArgument (an argument unknown to the
            verb, repeated, missing, malformed, or beside an exclusive resumptionToken).
    """
    verbs = args.getall("verb", [])
    if len(verbs) != 1 or verbs[0] not in VERBS:
        what = "missing" if not verbs else "repeated" if len(verbs) > 1 else f"not an OAI-PMH verb: {verbs[0]!r}"
        raise OaiError(BAD_VERB, f"the verb argument is {what}")
    verb = verbs[0]
    required, optional = VERBS[verb]
    problems: list[str] = []
    params: dict[str, str] = {}
    for key in dict.fromkeys(args):
        if key == "verb":
            continue
        values = args.getall(key)
        if key not in required | optional:
            problems.append(f"{verb} takes no argument {key!r}")
        elif len(values) > 1:
            problems.append(f"{key} is repeated")
        elif not values[0] or _NOT_XML.search(values[0]):
            problems.append(f"{key} is empty or holds characters XML cannot carry")
        else:
            params[key] = values[0]
    if "resumptionToken" in params:
        if set(params) != {"resumptionToken"}:
            problems.append("resumptionToken is exclusive: no other argument may accompany it")
    else:
        problems += [f"{verb} needs the argument {key}" for key in sorted(required - set(args))]
    if "metadataPrefix" in params and not _PREFIX.fullmatch(params["metadataPrefix"]):
        problems.append("metadataPrefix has characters a prefix cannot have")
    if "set" in params and not _SET_SPEC.fullmatch(params["set"]):
        problems.append("set is not a setSpec (e.g. kind:cultural-event or origin:QA)")
    if not problems and ("from" in params or "until" in params):
        window(params.get("from"), params.get("until"))  # raises badArgument
    if problems:
        raise OaiError(BAD_ARGUMENT, problems[0], *((BAD_ARGUMENT, p) for p in problems[1:]))
    return verb, params


@dataclass(slots=True)
class Context:
    """One request: the node's service, the repository's settings and URLs, the response time."""

    service: NodeService
    settings: OaiSettings
    public_url: str  # the node's base URL, no trailing slash
    page_size: int
    now: datetime
    registry_members: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.public_url + PATH

    @property
    def repository(self) -> str:
        return self.settings.repository_identifier

    def identifier(self, rec: StoredRecord) -> str:
        return oai_identifier(self.repository, rec.record_id)

    def record_url(self, record_id: str) -> str:
        return record_url(self.public_url, record_id)

    def page_url(self, record_id: str) -> str:
        return page_url(self.public_url, record_id)

    def publisher(self, origin: str) -> dict[str, str]:
        member = self.registry_members.get(origin)
        return dict(member.names) if member is not None and member.names else {"": origin}


def _oai(tag: str) -> str:
    return f"{{{OAI_NS}}}{tag}"


def _sub(parent: Any, tag: str, text: str | None = None, **attrs: str) -> Any:
    el = etree.SubElement(parent, _oai(tag), {k: v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def _header(ctx: Context, parent: Any, rec: StoredRecord) -> None:
    header = _sub(parent, "header", **({"status": "deleted"} if rec.op == "delete" else {}))
    _sub(header, "identifier", ctx.identifier(rec))
    _sub(header, "datestamp", datestamp(rec.updated_at))
    for spec in record_sets(rec):
        _sub(header, "setSpec", spec)


def _record(ctx: Context, parent: Any, rec: StoredRecord, prefix: str) -> None:
    record = _sub(parent, "record")
    _header(ctx, record, rec)
    if rec.op == "delete":  # a deleted record has a header only
        return
    metadata = _sub(record, "metadata")
    if prefix == "oai_dc":
        metadata.append(dublin_core(rec, page_url=ctx.page_url(rec.record_id), record_url=ctx.record_url(rec.record_id),
                                    publisher=ctx.publisher(rec.origin)))
    else:
        metadata.append(ipdn_record(rec))


def _format_or_error(prefix: str) -> None:
    if prefix not in FORMATS:
        raise OaiError(CANNOT_DISSEMINATE_FORMAT,
                       f"metadataPrefix {prefix!r} is not supported here (try {', '.join(FORMATS)})")


async def _lookup(ctx: Context, identifier: str) -> StoredRecord:
    rid = record_id_of(ctx.repository, identifier)
    if rid is not None:
        try:
            return await ctx.service.get(rid)
        except RecordNotFoundError:
            pass
    raise OaiError(ID_DOES_NOT_EXIST,
                   f"no item {identifier!r} here (identifiers are oai:{ctx.repository}:<record id>)")


async def identify(ctx: Context, params: dict[str, str]) -> Any:
    first, _ = await ctx.service.list_records(limit=1)
    earliest = first[0].updated_at if first else ctx.now
    el = etree.Element(_oai("Identify"))
    member = ctx.registry_members.get(ctx.service.member)
    names = ctx.publisher(ctx.service.member)
    name = names.get("en") or next(iter(names.values()))
    _sub(el, "repositoryName", f"IPDN Exchange: records held by the node of {name} ({ctx.service.member})")
    _sub(el, "baseURL", ctx.base_url)
    _sub(el, "protocolVersion", "2.0")
    contact = (member.contact or {}) if member is not None else {}
    _sub(el, "adminEmail", ctx.settings.admin_email or contact.get("email") or DEFAULT_ADMIN_EMAIL)
    _sub(el, "earliestDatestamp", datestamp(earliest))
    _sub(el, "deletedRecord", "persistent")
    _sub(el, "granularity", GRANULARITY)
    for coding in ("gzip", "deflate"):
        _sub(el, "compression", coding)
    description = _sub(el, "description")
    oai_id = etree.SubElement(description, f"{{{OAI_ID_NS}}}oai-identifier",
                              nsmap={None: OAI_ID_NS, "xsi": XSI_NS})
    oai_id.set(f"{{{XSI_NS}}}schemaLocation", f"{OAI_ID_NS} {OAI_ID_SCHEMA}")
    sample = first[0].record_id if first else f"{ctx.service.member}:example-record"
    for tag, text in (("scheme", "oai"), ("repositoryIdentifier", ctx.repository), ("delimiter", ":"),
                      ("sampleIdentifier", oai_identifier(ctx.repository, sample))):
        etree.SubElement(oai_id, f"{{{OAI_ID_NS}}}{tag}").text = text
    return el


async def list_metadata_formats(ctx: Context, params: dict[str, str]) -> Any:
    if "identifier" in params:
        await _lookup(ctx, params["identifier"])  # every record has both formats (a tombstone: its header)
    el = etree.Element(_oai("ListMetadataFormats"))
    for prefix, (schema, namespace) in FORMATS.items():
        fmt = _sub(el, "metadataFormat")
        _sub(fmt, "metadataPrefix", prefix)
        _sub(fmt, "schema", schema)
        _sub(fmt, "metadataNamespace", namespace)
    return el


async def list_sets(ctx: Context, params: dict[str, str]) -> Any:
    if "resumptionToken" in params:
        raise OaiError(BAD_RESUMPTION_TOKEN, "ListSets answers in one response; it issues no resumptionToken")
    el = etree.Element(_oai("ListSets"))

    def add(spec: str, name: str, titles: Iterable[tuple[str, str]] = ()) -> None:
        s = _sub(el, "set")
        _sub(s, "setSpec", spec)
        _sub(s, "setName", name)
        titles = list(titles)
        if titles:
            dc = etree.SubElement(_sub(s, "setDescription"), f"{{{OAI_DC_NS}}}dc",
                                  nsmap={"oai_dc": OAI_DC_NS, "dc": DC_NS, "xsi": XSI_NS})
            dc.set(f"{{{XSI_NS}}}schemaLocation", f"{OAI_DC_NS} {OAI_DC_SCHEMA}")
            for lang, text in titles:
                t = etree.SubElement(dc, f"{{{DC_NS}}}title")
                t.text = xml_text(text)
                t.set(XML_LANG, lang)

    schemas = ctx.service.schemas
    add(KIND_SET, "Records by kind")
    for kind in sorted(schemas.latest):
        title = str(schemas.documents[schemas.latest[kind]].get("title", kind))
        add(f"{KIND_SET}:{kind}", re.sub(r", version [0-9]+$", "", title) + f" ({kind})")
    add(ORIGIN_SET, "Records by origin: the member that published them")
    for code, member in sorted(ctx.registry_members.items()):
        names = {k: v for k, v in member.names.items() if isinstance(v, str)}
        name = names.get("en") or next(iter(names.values()), code)
        add(f"{ORIGIN_SET}:{code}", f"Published by {name} ({code})",
            [(lang, text) for lang, text in names.items() if _LANG.fullmatch(lang)])
    return el


async def get_record(ctx: Context, params: dict[str, str]) -> Any:
    errors: list[tuple[str, str]] = []
    rec = None
    try:
        rec = await _lookup(ctx, params["identifier"])
    except OaiError as e:
        errors += e.errors
    try:
        _format_or_error(params["metadataPrefix"])
    except OaiError as e:
        errors += e.errors
    if errors or rec is None:
        raise OaiError(*errors[0], *errors[1:])
    el = etree.Element(_oai("GetRecord"))
    _record(ctx, el, rec, params["metadataPrefix"])
    return el


async def _list(ctx: Context, params: dict[str, str], verb: str) -> Any:
    if "resumptionToken" in params:
        query = ListQuery.from_token(verb, params["resumptionToken"])
    else:
        query = ListQuery(verb, params["metadataPrefix"], params.get("set"), params.get("from"), params.get("until"))
        _format_or_error(query.prefix)
    selection = set_filter(query.set_spec)
    if selection is None:
        raise OaiError(NO_RECORDS_MATCH, f"no records are in the set {query.set_spec!r}")
    kind, origin = selection
    span = window(query.from_, query.until)
    try:
        items, after = await ctx.service.list_records(kind=kind, origin=origin, updated_since=span.since,
                                                       cursor=query.cursor, limit=ctx.page_size)
        if span.before is not None:  # the list is in update order: everything past until comes last
            kept = [r for r in items if span.admits(r.updated_at)]
            if len(kept) < len(items):
                after = None
            elif after is not None:  # is the next page empty (all past until)? then this one is the last
                peek, _ = await ctx.service.list_records(kind=kind, origin=origin, updated_since=span.since,
                                                         cursor=after, limit=1)
                after = after if peek and span.admits(peek[0].updated_at) else None
            items = kept
    except BadQueryError:
        raise OaiError(BAD_RESUMPTION_TOKEN, "the resumptionToken's list position cannot be read") from None
    if not items:
        raise OaiError(NO_RECORDS_MATCH, "no records match the metadataPrefix, set, from and until given")
    el = etree.Element(_oai(verb))
    for rec in items:
        if verb == "ListRecords":
            _record(ctx, el, rec, query.prefix)
        else:
            _header(ctx, el, rec)
    if after is not None or query.cursor is not None:  # part of an incomplete list: say where it stands
        token = replace(query, cursor=after, sent=query.sent + len(items)).token() if after is not None else None
        _sub(el, "resumptionToken", token, cursor=str(query.sent))
    return el


async def list_identifiers(ctx: Context, params: dict[str, str]) -> Any:
    return await _list(ctx, params, "ListIdentifiers")


async def list_records(ctx: Context, params: dict[str, str]) -> Any:
    return await _list(ctx, params, "ListRecords")


HANDLERS: dict[str, Callable[[Context, dict[str, str]], Awaitable[Any]]] = {
    "Identify": identify, "ListMetadataFormats": list_metadata_formats, "ListSets": list_sets,
    "GetRecord": get_record, "ListIdentifiers": list_identifiers, "ListRecords": list_records,
}


# -- HTTP ------------------------------------------------------------------------------------------------


def _public_url(config: NodeConfig, settings: OaiSettings, endpoint: str | None) -> str:
    """The OAI settings' public URL, else the node's ``public_url``, else the member's registry endpoint, else the
    node's default base URL: never the request's Host (docs/THREAT-MODEL.md, Host header injection)."""
    configured = settings.public_url or config.public_url or endpoint
    if configured:
        return configured.rstrip("/")
    return config.public_base


def response_document(ctx: Context, request_attrs: Mapping[str, str], content: Any | None,
                      errors: list[tuple[str, str]]) -> bytes:
    """The OAI-PMH document: responseDate, request (base URL and, unless the arguments were bad, the
    arguments), then the verb's element or the errors."""
    root = etree.Element(_oai("OAI-PMH"), nsmap={None: OAI_NS, "xsi": XSI_NS})
    root.set(f"{{{XSI_NS}}}schemaLocation", f"{OAI_NS} {OAI_SCHEMA}")
    _sub(root, "responseDate", datestamp(ctx.now))
    _sub(root, "request", ctx.base_url, **dict(request_attrs))
    if errors:
        for code, message in errors:
            _sub(root, "error", xml_text(message), code=code)
    else:
        root.append(content)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


async def handle(request: web.Request) -> web.Response:
    """One OAI-PMH request, GET (query string) or POST (form-encoded body)."""
    service, config, settings = request.app[SERVICE], request.app[CONFIG], request.app[SETTINGS]
    # ``key`` is a partner's credential (node/partners/access.py), not an OAI-PMH argument.
    args: MultiMapping[str] = MultiDict((k, v) for k, v in request.query.items() if k != "key")
    if request.method == "POST":  # a file part of a multipart body is no argument value: read as empty
        args = MultiDict((k, v if isinstance(v, str) else "") for k, v in (await request.post()).items())
    members = {m.code: m for m in service.registry.registry.members}
    own = members.get(service.member)
    ctx = Context(service=service, settings=settings,
                  public_url=_public_url(config, settings, own.endpoint if own else None),
                  page_size=settings.page_size or config.page_size, now=service.clock(), registry_members=members)
    attrs: dict[str, str] = {}
    try:
        verb, params = parse_arguments(args)
        attrs = {"verb": verb, **params}
        body = response_document(ctx, attrs, await HANDLERS[verb](ctx, params), [])
    except OaiError as e:
        if {BAD_VERB, BAD_ARGUMENT} & set(e.codes):
            attrs = {}  # the protocol: no attributes when the request itself was not understood
        body = response_document(ctx, attrs, None, e.errors)
    # Cacheable like the other partner formats (PROTOCOL.md §9): the validator covers everything but responseDate
    # (the time of the answer), so it is weak, and an If-None-Match naming it is answered 304 without a body.
    etag = ETag(hashlib.sha256(_RESPONSE_DATE.sub(b"", body)).hexdigest()[:40], is_weak=True)
    headers = {"Cache-Control": CACHE_CONTROL}
    if any(t.value in (etag.value, "*") for t in request.if_none_match or ()):
        resp = web.Response(status=304, headers=headers)
    else:
        resp = web.Response(body=body, headers={**headers, "Content-Type": CONTENT_TYPE})
        resp.enable_compression()
    resp.etag = etag
    return resp
