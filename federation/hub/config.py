"""The hub's configuration: ``hub.toml`` in its directory, each key overridable by ``IPDN_HUB_<KEY>``."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from federation.server import tls
from federation.server.access import OperatorAccess
from federation.server.db import engine as db
from federation.server.settings import load_settings
from federation.server.web import TrustedProxies


@dataclass(frozen=True, slots=True)
class HubConfig:
    dir: Path
    db_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8440
    max_batch_bytes: int = 64 * 1024 * 1024  # one push request
    page_limit: int = 1000  # entries per log page, at most
    max_wait: float = 30.0  # long-poll seconds, at most
    writer_batch: int = 5000  # envelopes per group commit, at most
    replay_window: int = 300  # seconds an HTTP signature's created may differ from now
    operator_token_sha256: str = ""  # the plaintext is in operator.token, never in this file or a log
    verify_workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # 0: verify in the event loop
    workers: int = 1  # hub processes sharing one PostgreSQL log behind one address (federation/hub/ingest/service.py)
    shared_poll: float = 2.0  # seconds: a worker re-checks the shared log at least this often, NOTIFY or not
    silent_after: float = 900.0  # seconds without a push or pull after which the dashboard flags a member
    pull_flush_interval: float = 10.0  # seconds between writes of members' last pulls
    live_interval: float = 2.0  # seconds between the dashboard's live updates, at most one per change
    session_ttl: float = 8 * 3600  # dashboard sign-in lifetime
    # -- abuse (docs/adr/0012-faults-and-abuse.md) --------------------------------------------------------
    push_rate: float = 20.0  # signed requests (pushes, co-signatures) per second per member, sustained ...
    push_burst: float = 200.0  # ... and at once after a quiet spell; past it 429 with Retry-After
    refusal_rate: float = 2.0  # refused unsigned requests kept in quarantine per second per client address ...
    refusal_burst: float = 100.0  # ... past it only answered, not kept (no write amplification)
    # -- the quarantine's bounds (docs/operating-hub.md "Quarantine"): every refusal keeps its reason, length and
    # SHA-256; its bytes only within these. Defaults: at most ~1 GiB of refused bytes on disk, 64 MiB per member.
    quarantine_max_bytes: int = 256 * 1024  # of one refused input (a request's body, an envelope); then a prefix
    quarantine_member_bytes: int = 64 * 1024 * 1024  # bytes kept per member (the unauthenticated count as one)
    quarantine_total_bytes: int = 1024 * 1024 * 1024  # bytes kept in all; past either, refusals kept without bytes
    quarantine_member_items: int = 100_000  # refusals kept per member; past it only counted
    governance_rate: float = 0.5  # governance submissions per second per client address, sustained ...
    governance_burst: float = 30.0  # ... and at once; past it 429 with Retry-After (before the body is read)
    governance_key_rate: float = 0.1  # governance documents per second per signing key (an applicant's, a voter's) ...
    governance_key_burst: float = 10.0  # ... and at once; past it 429 with Retry-After
    max_pending_applications: int = 100  # undecided applications held; past it 503 too-many-pending-applications
    body_timeout: float = 60.0  # seconds a client has to send a request body (408 after)
    idle_timeout: float = 15.0  # seconds a connection may idle, or take to send its request line and headers
    # Reverse proxies whose X-Forwarded-Proto is believed (the dashboard's Secure cookies and CSRF origin check):
    # comma-separated addresses and CIDR blocks, e.g. "127.0.0.1, ::1". Empty: no one's (docs/THREAT-MODEL.md).
    trusted_proxies: str = ""
    # Who may read the metrics and the full status without a token (docs/adr/0023): comma-separated addresses and
    # CIDR blocks, judged as the client's address (behind trusted_proxies: its X-Forwarded-For). Empty: token only.
    operator_networks: str = "127.0.0.1, ::1"
    metrics_token_sha256: str = ""  # SHA-256 of a token that opens /metrics and nothing else (Prometheus)
    # -- the registry's lifetime (docs/PROTOCOL.md §7): each version lapses this many seconds after it is issued;
    # the hub renews it once less than half is left, checking every registry_check_interval seconds.
    registry_lifetime: float = 7 * 86400.0
    registry_check_interval: float = 3600.0
    # -- recovery of the log from the members (docs/adr/0021-hub-recovers-its-log-from-the-members.md) --------
    # Where to ask each member for its copy of the log, "QA=https://node.qa.example, KR=..." (default: the
    # endpoint the registry gives each member); a member with neither is not asked.
    member_endpoints: str = ""
    recovery_interval: float = 5.0  # seconds between rounds while the hub recovers (read-only)


    def __post_init__(self) -> None:
        TrustedProxies.parse(self.trusted_proxies)  # ConfigError when an entry is no address or CIDR block
        TrustedProxies.parse(self.operator_networks)

    @property
    def proxies(self) -> TrustedProxies:
        return TrustedProxies.parse(self.trusted_proxies)

    @property
    def operator_access(self) -> OperatorAccess:
        """Who reads /metrics and the full /api/v1/status (federation/server/access.py)."""
        return OperatorAccess(self.operator_token_sha256, self.metrics_token_sha256,
                              TrustedProxies.parse(self.operator_networks), reason="operator-token-required")

    @property
    def session_secret_path(self) -> Path:
        return self.dir / "session.secret"
    # -- TLS served by the hub itself (paths relative to the hub directory; empty: plain HTTP) ------------
    tls_cert: str = ""  # PEM certificate chain
    tls_key: str = ""  # PEM private key (default: in tls_cert)
    tls_client_ca: str = ""  # CA bundle that issues members' client certificates (mutual TLS)
    tls_require_client_cert: bool = False  # refuse the handshake without one (else checked when presented)

    @property
    def key_path(self) -> Path:
        return self.dir / "hub.key.pem"

    @property
    def registry_path(self) -> Path:
        return self.dir / "registry.json"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The service's TLS context (:func:`federation.server.tls.served_context`), or None for plain HTTP."""
        return tls.served_context(self.dir, self.tls_cert, self.tls_key, self.tls_client_ca,
                                  self.tls_require_client_cert)

    @classmethod
    def load(cls, directory: Path, env: Mapping[str, str] | None = None, **overrides: Any) -> HubConfig:
        """Defaults, then ``hub.toml``, then ``IPDN_HUB_*`` variables, then explicit overrides (flags).

        Raises:
            ConfigError: see :func:`federation.server.settings.load_settings`.
        """
        directory = directory.resolve()
        values = load_settings(cls, directory / "hub.toml", env_prefix="IPDN_HUB_", env=env,
                               overrides={**overrides, "dir": str(directory)}, missing_ok=True)
        values["dir"] = directory
        cfg = cls(**values)
        if not cfg.db_url:
            cfg = replace(cfg, db_url=db.sqlite_url(directory / "hub.db"))
        return cfg
