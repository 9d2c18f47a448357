"""Errors of the protocol core, grouped by whose fault they are.

Every error carries a ``reason``: a short, stable kebab-case slug that travels in RFC 9457 problem
documents (as the last path segment of ``type``), in quarantine rows and in metrics labels. The human
text says what exactly was wrong with this input.
"""

from __future__ import annotations


class IpdnError(Exception):
    """Base class of every error this project raises on purpose."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


# -- bad input from a peer or a user --------------------------------------------------------------


class InputError(IpdnError):
    """The input is malformed or breaks a rule; re-sending the same bytes will fail the same way."""

    reason = "invalid-input"


class StrictJsonError(InputError):
    """The bytes are not strict JSON (RFC 8259 plus the I-JSON restrictions of RFC 7493)."""

    reason = "malformed-json"


class EnvelopeFormatError(InputError):
    """The envelope's JWS container or payload fields are not as docs/PROTOCOL.md specifies."""

    reason = "malformed-envelope"


class SchemaError(InputError):
    """A record body does not satisfy the schema it names, or a semantic rule of its kind."""

    reason = "schema-invalid"


class UnknownSchemaError(InputError):
    """The envelope pins a schema $id this party does not hold."""

    reason = "unknown-schema"


# -- a peer that misbehaves (or an attacker) --------------------------------------------------------


class TrustError(IpdnError):
    """The input is well formed but cannot be trusted: signature, key or chain checks failed."""

    reason = "untrusted"


class VerificationError(TrustError):
    """Raised by the raising wrapper of verification; ``result`` holds every failed check."""

    reason = "verification-failed"

    def __init__(self, message: str, *, failures: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message, reason=failures[0][0] if failures else None)
        self.failures = failures


# -- our own configuration or files ------------------------------------------------------------------


class ConfigError(IpdnError):
    """A service's configuration file, environment or flags are wrong."""

    reason = "bad-config"


class KeyFileError(IpdnError):
    """A key file cannot be read or holds something other than an Ed25519 key."""

    reason = "bad-key-file"
