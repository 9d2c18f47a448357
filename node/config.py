"""The node's configuration: one frozen dataclass, read from ``{dir}/node.toml`` and the environment.

Every field can be overridden by an environment variable ``IPDN_NODE_<FIELD>`` (upper case), e.g.
``IPDN_NODE_DB_URL`` or ``IPDN_NODE_PORT``; the environment wins over the file. Relative paths are
relative to the node directory. The operator token itself lives only in ``operator.token`` (mode
0600); the configuration holds its SHA-256, so reading the configuration never reveals it.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yarl import URL

from federation.protocol.errors import ConfigError
from federation.server import tls
from federation.server.access import OperatorAccess
from federation.server.db import engine as db
from federation.server.settings import load_settings
from federation.server.web import TrustedProxies
from node.staff.licences import BY_KEY as LICENCES
from node.webhooks.events import parse_schedule

CONFIG_FILE = "node.toml"
TOKEN_FILE = "operator.token"  # noqa: S105  (a file name, not a secret)
REGISTRY_FILE = "registry.json"
WEBHOOK_KEY_FILE = "webhook.key.pem"
ENV_PREFIX = "IPDN_NODE_"


def default_verify_workers(cores: int) -> int:
    """The cores but the writer's, at least two and at most 4; none on a single core. A server of two cores runs
    two: the writer leaves part of its core idle while it waits for its database thread and the hub, and a second
    worker fills it (catch-up 17 % faster than with one, docs/BENCHMARKS.md)."""
    return 0 if cores < 2 else min(max(cores - 1, 2), 4)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    member: str
    dir: Path
    key_path: Path
    registry_path: Path
    operator_token_hash: str = field(repr=False)  # SHA-256 hex of the token; not secret, still not shown
    db_url: str = ""  # default: SQLite in the node directory (filled in by __post_init__)
    host: str = "127.0.0.1"
    port: int = 8441

    # -- the public address (docs/THREAT-MODEL.md: Host header injection) -----------------------------------
    # The base URL partners reach this node at, e.g. "https://ipdn.katara.example" behind a reverse proxy: every
    # absolute link in event pages, feeds (ICS, JSON Feed, Atom) and OAI-PMH is built from it, never from the
    # request's Host header, so a forged Host cannot poison a shared cache. Empty: http://host:port (https when
    # tls_cert is set; 127.0.0.1 when host is a wildcard such as 0.0.0.0), see ``public_base``.
    public_url: str = ""
    # Reverse proxies whose X-Forwarded-Proto is believed (Secure cookies, the CSRF origin check), and whose
    # X-Forwarded-For names the client the sign-in limits count (docs/adr/0018): comma-separated
    # addresses and CIDR blocks, e.g. "127.0.0.1, ::1" or "10.0.0.0/8". Empty: no one's.
    trusted_proxies: str = ""
    # Who may read the metrics and the full status without a token (docs/adr/0023): comma-separated addresses and
    # CIDR blocks, judged as the client's address (behind trusted_proxies: its X-Forwarded-For). Empty: token only.
    operator_networks: str = "127.0.0.1, ::1"
    metrics_token_hash: str = field(default="", repr=False)  # SHA-256 of a token for /metrics only (Prometheus)

    # -- limits of the HTTP API ------------------------------------------------------------------------
    max_request_bytes: int = 1024 * 1024  # a record body is a few KB; the envelope limit is 256 KiB
    body_timeout: float = 60.0  # seconds a client has to send a request body (408 after; docs/adr/0012)
    idle_timeout: float = 15.0  # seconds a connection may idle, or take to send its request line and headers
    page_size: int = 50  # records per page when the partner does not ask
    max_page_size: int = 500

    # -- record schemas (docs/adr/0031) -----------------------------------------------------------------------
    # On: a cancellation's or postponement's reason is published in status_reason (cultural-event/v2, pinned only
    # by records that carry one). Off: this node writes cultural-event/v1 only and keeps reasons in its staff
    # history, as nodes of the previous release do; it accepts v2 records from others either way. Turn it on
    # once the hub and every member run a release that holds cultural-event/v2 (an older one quarantines them).
    status_reasons: bool = False

    # -- partners (node/partners/access.py) ------------------------------------------------------------------
    public_read: bool = True  # off: records, feeds, OAI-PMH and event pages need a partner key with `read`
    partner_rate_per_minute: int = 600  # per partner key, unless the key has its own rate
    anonymous_rate_per_minute: int = 300  # per client address, for reading without a key
    # The record stream (GET /api/v1/records/stream, node/api/stream.py): open streams per partner key (per client
    # address without a key) and in all; seconds between comments on an idle stream (proxies close silent
    # connections); the reconnection delay clients are told (retry); how long a write may wait on a slow client
    # before the stream is dropped (it resumes with Last-Event-ID).
    stream_max_per_client: int = 4
    stream_max_total: int = 200
    stream_heartbeat: float = 15.0
    stream_retry: float = 2.0
    stream_write_timeout: float = 30.0

    # -- the public portal (node/partners/portal.py, docs/adr/0025) -----------------------------------------
    portal: bool = True  # off: /, /events, /members, /sitemap.xml answer 404 (record pages /events/{id} stay)
    portal_name: str = ""  # the portal's name in its top bar (empty: the catalogue's, "IPDN Exchange")
    portal_logo_url: str = ""  # an https (or same-site /...) image shown beside the name; empty: none
    portal_colour: str = "#0b5d4b"  # the brand colour (top bar, links): #rgb or #rrggbb
    portal_accent: str = "#8a5a00"  # the second colour (badges, the current page): #rgb or #rrggbb
    portal_page_size: int = 20  # records per list page
    portal_upcoming: int = 8  # events and programmes each on the home page
    portal_view_records: int = 1000  # records read at most for one month of the calendar or one agenda page
    portal_agenda_days: int = 31  # days one agenda page covers
    portal_agenda_max: int = 200  # occurrences on one agenda page (whole days: the rest on the next page)
    # The operator's own page, /about, linked from every portal page's footer (node/partners/about.py): a Markdown
    # (.md) or HTML (.html) file; beside it, the same name with .ar, .en ... before the suffix for that language.
    # Its first heading is its title. Sanitised before it is shown (docs/adr/0025). Empty: no such page.
    portal_page: str = ""

    # -- the authoring pages (node/staff/, docs/adr/0029) ------------------------------------------------------
    # The licence a new record's rights statement starts with on the form (staff may choose another): cc0, by,
    # by-sa, by-nc, by-nd, by-nc-sa, by-nc-nd (Creative Commons 4.0) or all-rights-reserved; empty: none chosen.
    default_licence: str = "by"

    # -- sync with the hub -----------------------------------------------------------------------------
    push_batch: int = 100  # envelopes per push (also capped by the registry's max_batch)
    pull_limit: int = 500  # log entries asked for per pull
    # Processes verifying pulled pages while this one applies the page before (node/sync/verifier.py, ADR 32);
    # started at the first large page. 0: verify in-process.
    verify_workers: int = field(default_factory=lambda: default_verify_workers(os.cpu_count() or 1))
    pull_ahead: int = 3  # pages fetched and verified ahead while catching up (with verify workers)
    long_poll_wait: int = 25  # seconds the hub may hold a pull (the hub allows at most 30)
    min_poll_interval: float = 1.0  # seconds between empty pulls, should the hub not hold them
    registry_refresh: float = 60.0  # seconds between registry fetches
    backoff_base: float = 0.5  # seconds; full jitter, doubled per failure ...
    backoff_cap: float = 30.0  # ... up to this
    connect_timeout: float = 10.0
    request_timeout: float = 30.0  # per request, on top of the long-poll wait
    max_response_bytes: int = 256 * 1024 * 1024  # a full log page of envelopes at their size limit
    outbox_poll: float = 5.0  # seconds between outbox checks for envelopes another process wrote (node import)

    # -- witnessing: other nodes whose accepted checkpoint this node compares with its own -----------------
    peers: str = ""  # comma-separated base URLs, e.g. "https://ipdn.kr.example, https://ipdn.tr.example"
    peer_interval: float = 60.0  # seconds between comparisons
    # Seconds between acceptances of a checkpoint (a consistency proof and a write; every page's root is checked as it
    # comes) and between asking a hub for it that does not send it in the page, while entries keep arriving.
    checkpoint_interval: float = 1.0
    witness_interval: float = 1.0  # seconds between co-signatures (each co-signs the latest checkpoint)
    # One log line per pulled page with the wall-clock times it arrived and was applied (the latency benchmark
    # reads them, tests/bench/bench_latency.py); off by default: it costs a line per page.
    sync_trace: bool = False

    # -- own keys ------------------------------------------------------------------------------------------
    key_warn_days: float = 30.0  # status alarm key-expiring when the current key ends sooner, with no successor

    # -- webhooks to partners (node/webhooks/delivery.py, docs/PROTOCOL.md §13) ---------------------------------------
    # Seconds before each attempt of a delivery: the first at once, then backing off over a day; after the
    # last attempt fails, the delivery has failed. Each wait is scaled by a random factor in [1 - jitter, 1].
    webhook_schedule: str = "0,5,300,1800,7200,18000,36000,36000"
    webhook_jitter: float = 0.5  # 1 is full jitter (a 10-hour step may then shrink to seconds)
    webhook_timeout: float = 15.0  # seconds per attempt, connecting and answering (the spec suggests 15-30)
    webhook_concurrency: int = 8  # subscriptions served at once (one request in flight per subscription)
    webhook_disable_after_days: float = 5.0  # a subscription failing this long without a success is disabled
    webhook_poll_interval: float = 2.0  # seconds between looks at the queue when nothing woke the worker
    webhook_retention_days: float = 30.0  # delivered and failed deliveries are kept this long, then pruned
    webhook_max_subscriptions: int = 20  # per partner, through the partner API
    webhook_allow_loopback: bool = False  # let subscriptions target loopback (http allowed there): tests only
    # -- TLS (paths relative to the node directory; empty: off) ------------------------------------------
    tls_cert: str = ""  # serve HTTPS with this PEM certificate chain ...
    tls_key: str = ""  # ... and this key (default: in tls_cert)
    tls_client_ca: str = ""  # check client certificates against this CA bundle (mutual TLS)
    tls_require_client_cert: bool = False  # refuse the handshake without one
    hub_ca: str = ""  # CA bundle that verifies the hub (and peers) in place of the system's trust store
    hub_client_cert: str = ""  # client certificate presented to the hub when it requires mutual TLS ...
    hub_client_key: str = ""  # ... and its key (default: in hub_client_cert)

    def __post_init__(self) -> None:
        if not self.db_url:
            object.__setattr__(self, "db_url", db.sqlite_url(self.dir / "node.db"))
        for url in self.peer_urls:
            if not url.startswith(("https://", "http://")):
                raise ConfigError(f"peers: {url!r} is not an http(s) base URL")
        try:
            parse_schedule(self.webhook_schedule)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        if not 0 <= self.webhook_jitter <= 1 or self.webhook_concurrency < 1 or self.webhook_timeout <= 0:
            raise ConfigError("webhook_jitter is 0 to 1, webhook_concurrency at least 1, webhook_timeout positive")
        if self.public_url:
            public = URL(self.public_url)
            if (public.scheme not in ("http", "https") or not public.host or public.query_string or public.fragment
                    or public.user):
                raise ConfigError(f"public_url: {self.public_url!r} is not an http(s) base URL "
                                  "(e.g. https://ipdn.katara.example)")
        TrustedProxies.parse(self.trusted_proxies)  # ConfigError when an entry is no address or CIDR block
        TrustedProxies.parse(self.operator_networks)
        for name in ("portal_colour", "portal_accent"):
            if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}){1,2}", getattr(self, name)):
                raise ConfigError(f"{name}: {getattr(self, name)!r} is not a colour such as #0b5d4b")
        if self.portal_logo_url and not re.fullmatch(r"(?:https://[^\s\"'()<>\\]+|/[^/\s\"'()<>\\][^\s\"'()<>\\]*)",
                                                     self.portal_logo_url):
            raise ConfigError(f"portal_logo_url: {self.portal_logo_url!r} is not an https URL or a path on this site")
        if not 1 <= self.portal_page_size <= self.max_page_size or not 1 <= self.portal_upcoming <= 100:
            raise ConfigError("portal_page_size is 1 to max_page_size, portal_upcoming 1 to 100")
        if not (1 <= self.portal_view_records <= 100_000 and 1 <= self.portal_agenda_days <= 366
                and 1 <= self.portal_agenda_max <= 10_000):
            raise ConfigError("portal_view_records is 1 to 100000, portal_agenda_days 1 to 366, portal_agenda_max 1 to "
                              "10000")
        if self.portal_page and Path(self.portal_page).suffix.lower() not in (".md", ".html"):
            raise ConfigError(f"portal_page: {self.portal_page!r} is a Markdown (.md) or HTML (.html) file")
        if self.default_licence and self.default_licence not in LICENCES:
            raise ConfigError(f"default_licence: {self.default_licence!r} is none of {', '.join(LICENCES)} (or empty)")
        if self.partner_rate_per_minute < 1 or self.anonymous_rate_per_minute < 1:
            raise ConfigError("partner_rate_per_minute and anonymous_rate_per_minute are at least 1")
        if self.stream_max_per_client < 1 or self.stream_max_total < 1:
            raise ConfigError("stream_max_per_client and stream_max_total are at least 1")
        if min(self.stream_heartbeat, self.stream_retry, self.stream_write_timeout) <= 0:
            raise ConfigError("stream_heartbeat, stream_retry and stream_write_timeout are positive")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The service's TLS context (:func:`federation.server.tls.served_context`), or None for plain HTTP."""
        return tls.served_context(self.dir, self.tls_cert, self.tls_key, self.tls_client_ca,
                                  self.tls_require_client_cert)

    def hub_ssl_context(self) -> ssl.SSLContext:
        """The client TLS context for the hub and peers: ``hub_ca`` (else the system's store), and the
        client certificate when configured.

        Raises:
            ConfigError: see :func:`federation.server.tls.client_context`.
        """
        cert = tls.resolve(self.dir, self.hub_client_cert)
        return tls.client_context(ca=tls.resolve(self.dir, self.hub_ca), cert=cert,
                                  key=tls.resolve(self.dir, self.hub_client_key) or cert)

    @property
    def public_base(self) -> str:
        """The node's public base URL without a trailing slash: ``public_url``, else derived from where it listens
        (never from a request)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host  # noqa: S104 (compared, not bound)
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls_cert else 'http'}://{host}:{self.port}"

    @property
    def proxies(self) -> TrustedProxies:
        return TrustedProxies.parse(self.trusted_proxies)

    @property
    def operator_access(self) -> OperatorAccess:
        """Who reads /metrics and the full /api/v1/status (federation/server/access.py)."""
        return OperatorAccess(self.operator_token_hash, self.metrics_token_hash,
                              TrustedProxies.parse(self.operator_networks))

    @property
    def webhook_retry_schedule(self) -> tuple[float, ...]:
        return parse_schedule(self.webhook_schedule)

    @property
    def webhook_key_path(self) -> Path:
        """The node's webhook signing key (not the member's key: it signs deliveries, not records)."""
        return self.dir / WEBHOOK_KEY_FILE

    @property
    def peer_urls(self) -> tuple[str, ...]:
        """The peer nodes' base URLs (``peers`` split at commas, blanks dropped)."""
        return tuple(u.strip().rstrip("/") for u in self.peers.split(",") if u.strip())


_PATHS = ("key_path", "registry_path")


def load_config(node_dir: Path, env: Mapping[str, str] | None = None, **overrides: Any) -> NodeConfig:
    """Read ``node_dir/node.toml``, apply ``IPDN_NODE_*`` variables, then ``overrides`` (CLI flags).

    Raises:
        ConfigError: the file is missing or malformed, a key is unknown, or a value has the wrong type.
    """
    try:
        typed = load_settings(NodeConfig, node_dir / CONFIG_FILE, env_prefix=ENV_PREFIX, env=env,
                              overrides={"dir": str(node_dir), **overrides},
                              required=("member", "key_path", "registry_path", "operator_token_hash"))
    except ConfigError as e:
        raise ConfigError(f"{e.message} (a node directory is made by `ipdn node init`)") from e
    base = Path(typed["dir"])
    typed["dir"] = base
    for name in _PATHS:
        typed[name] = base / typed[name]
    return NodeConfig(**typed)
