"""TLS contexts for the services and their clients, built from the operator's PEM files.

The hub and the node can terminate TLS themselves (``tls_cert``/``tls_key``), optionally checking
client certificates against a CA bundle (``tls_client_ca``; mutual TLS for node-to-hub traffic). A
reverse proxy in front (deploy/) is the other way; both are documented in the operators' guides.
Certificates come from the operator or from ACME; this module only loads them.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from federation.protocol.errors import ConfigError


def resolve(base: Path, value: str) -> Path | None:
    """A configured path (relative to the service directory), or None when the setting is empty."""
    return base / value if value else None


def server_context(cert: Path, key: Path, *, client_ca: Path | None = None,
                   require_client_cert: bool = False) -> ssl.SSLContext:
    """A server-side context (TLS 1.2 or later).

    With ``client_ca`` a client certificate, when presented, must chain to it; with
    ``require_client_cert`` as well the handshake fails for a client without one.

    Raises:
        ConfigError: a file is missing or not a usable certificate, key or CA bundle, or a client
            certificate is required without a CA to check it against.
    """
    if require_client_cert and client_ca is None:
        raise ConfigError("tls_require_client_cert needs tls_client_ca (the CA that issues client certificates)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert, key)
    if client_ca is not None:
        _load_ca(ctx, client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def served_context(base: Path, cert: str, key: str, client_ca: str, require_client_cert: bool) -> ssl.SSLContext | None:
    """A service's TLS context from its settings (paths relative to its directory), or None to serve plain
    HTTP (behind a TLS-terminating proxy): what the hub's and the node's ``tls_*`` settings mean.

    Raises:
        ConfigError: see :func:`server_context`.
    """
    cert_path = resolve(base, cert)
    if cert_path is None:
        return None
    return server_context(cert_path, resolve(base, key) or cert_path, client_ca=resolve(base, client_ca),
                          require_client_cert=require_client_cert)


def client_context(*, ca: Path | None = None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client-side context verifying the server (the system's trust store, or ``ca`` in its place) and,
    with ``cert``, presenting a client certificate.

    Raises:
        ConfigError: a file is missing or unusable, or ``key`` is given without ``cert``.
    """
    if key is not None and cert is None:
        raise ConfigError("a client key without a client certificate")
    if ca is None:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:  # a private CA replaces the system's store: no public CA can then vouch for "the hub"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load_ca(ctx, ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        _load_chain(ctx, cert, key)
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as e:
        raise ConfigError(f"cannot read {e.filename or cert}: {e.strerror}") from e
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"{cert}{f' / {key}' if key else ''}: not a certificate and matching key ({e})") from e


def _load_ca(ctx: ssl.SSLContext, ca: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=ca)
    except FileNotFoundError as e:
        raise ConfigError(f"cannot read {ca}: {e.strerror}") from e
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"{ca}: not a PEM CA bundle ({e})") from e
