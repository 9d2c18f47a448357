"""TLS contexts from the operator's files: what is checked, and the one-line reasons for bad settings."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from federation.hub.config import HubConfig
from federation.protocol.errors import ConfigError
from federation.server import tls
from tests.support.tlscerts import TestCA


class TestServerContext:
    def test_client_certificate_required_when_asked(self, tmp_path: Path) -> None:
        """With a client CA and the require flag, the context demands a certificate; without the flag it
        checks one when presented."""
        ca = TestCA(tmp_path)
        server = ca.issue("server", server=True)
        required = tls.server_context(server.cert, server.key, client_ca=ca.cert, require_client_cert=True)
        optional = tls.server_context(server.cert, server.key, client_ca=ca.cert)
        plain = tls.server_context(server.cert, server.key)
        assert (required.verify_mode, optional.verify_mode, plain.verify_mode) == (
            ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL, ssl.CERT_NONE)
        assert required.minimum_version >= ssl.TLSVersion.TLSv1_2

    def test_require_without_ca_is_a_config_error(self, tmp_path: Path) -> None:
        """Requiring client certificates with nothing to check them against is refused, not ignored."""
        server = TestCA(tmp_path).issue("server", server=True)
        with pytest.raises(ConfigError, match="tls_client_ca"):
            tls.server_context(server.cert, server.key, require_client_cert=True)

    def test_missing_or_mismatched_files_name_the_file(self, tmp_path: Path) -> None:
        """A missing file and a key that does not match the certificate fail with the path in the message."""
        ca = TestCA(tmp_path)
        a, b = ca.issue("a", server=True), ca.issue("b", server=True)
        with pytest.raises(ConfigError, match=r"nope\.pem"):
            tls.server_context(tmp_path / "nope.pem", a.key)
        with pytest.raises(ConfigError, match="not a certificate and matching key"):
            tls.server_context(a.cert, b.key)


class TestClientContext:
    def test_private_ca_replaces_system_store(self, tmp_path: Path) -> None:
        """With ``ca`` only that CA is trusted (no public CA can vouch for the hub); hostnames are checked."""
        ca = TestCA(tmp_path)
        ctx = tls.client_context(ca=ca.cert)
        assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
        assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "IPDN test CA"),),)]

    def test_key_without_certificate_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError):
            tls.client_context(key=tmp_path / "k.pem")


class TestHubConfig:
    def test_tls_settings_from_environment(self, tmp_path: Path) -> None:
        """Plain HTTP by default; IPDN_HUB_TLS_* turn TLS on, paths relative to the hub directory."""
        assert HubConfig.load(tmp_path, env={}).ssl_context() is None
        ca = TestCA(tmp_path / "pki")
        server = ca.issue("server", server=True)
        cfg = HubConfig.load(tmp_path, env={"IPDN_HUB_TLS_CERT": "pki/server.crt.pem",
                                            "IPDN_HUB_TLS_KEY": str(server.key),
                                            "IPDN_HUB_TLS_CLIENT_CA": str(ca.cert),
                                            "IPDN_HUB_TLS_REQUIRE_CLIENT_CERT": "true"})
        ctx = cfg.ssl_context()
        assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED
