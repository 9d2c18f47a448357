"""Errors of the node service, grouped by whose fault they are (as federation/protocol/errors.py).

The HTTP layer maps them to RFC 9457 problems: input errors 4xx, hub errors only ever reach the
status page (the node keeps working while the hub is away).
"""

from __future__ import annotations

from typing import TypeVar

from federation.protocol.errors import ConfigError, InputError, IpdnError, SchemaError, TrustError
from federation.protocol.schemas import Issue

# -- bad input from the operator -----------------------------------------------------------------------


class InvalidRecordError(SchemaError):
    """A record body fails its schema or its kind's rules; nothing was stored."""

    def __init__(self, message: str, issues: list[Issue]) -> None:
        super().__init__(message)
        self.issues = issues


class BadQueryError(InputError):
    """A query parameter (cursor, limit, date) cannot be read."""

    reason = "bad-query"


class OperatorAuthError(IpdnError):
    """No operator token, or not this node's."""

    reason = "unauthorized"


class RecordNotFoundError(IpdnError):
    reason = "record-not-found"


class NotOwnRecordError(IpdnError):
    """Only the origin may publish a new version of a record (its record_id prefix names it)."""

    reason = "not-own-record"


class RecordDeletedError(IpdnError):
    """The record is a tombstone: it can be restored by an update, not cancelled."""

    reason = "record-deleted"


class KeyNotValidError(IpdnError):
    """None of the node's own keys is valid now by its registry: signing would only make envelopes
    the hub and every member refuse, so the node authors nothing until one is (see node/own_keys.py)."""

    reason = "key-not-valid"


class RotationError(IpdnError):
    """A key rotation cannot start (one is pending) or the hub refused it."""

    reason = "rotation-refused"


class AccountError(InputError):
    """A staff account cannot be added or changed as asked (a bad or taken name, a short password)."""

    reason = "bad-account"


class DraftNotFoundError(IpdnError):
    reason = "draft-not-found"


class EditConflictError(IpdnError):
    """A draft edits a version of a record that is no longer the current one."""

    reason = "edit-conflict"


T = TypeVar("T")


def found(value: T | None, missing: IpdnError) -> T:
    """What a lookup found; ``missing`` (its not-found error) is raised when it found nothing."""
    if value is None:
        raise missing
    return value


__all__ = ["ConfigError"]  # the node's configuration errors are the shared kind (federation.server.settings)


# -- the hub, over the network ------------------------------------------------------------------------


class HubError(IpdnError):
    """Talking to the hub failed; the sync loops back off and retry."""

    reason = "hub-error"


class HubUnavailableError(HubError):
    """Connection refused or reset, timeout, or a 5xx/429 answer: worth retrying as is (after
    ``retry_after`` seconds when the hub said so)."""

    reason = "hub-unavailable"

    def __init__(self, message: str, *, reason: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class HubProtocolError(HubError):
    """The hub answered something the protocol does not allow (or refused our request with a 4xx)."""

    reason = "hub-protocol"


# -- the hub's log contradicts the math (docs/ARCHITECTURE.md, trust model) --------------------------------------------


class LogMisbehaviourError(TrustError):
    """The hub's log, its checkpoints or its proofs contradict each other or what this node saw.

    ``reason`` is the alarm's name (see node/sync/logtrust.py); ``offending`` is the document that shows it,
    as received (a checkpoint, a log entry), kept as evidence with the last checkpoint the node accepted.
    """

    reason = "log-inconsistent"

    def __init__(self, message: str, *, reason: str, offending: bytes | None = None) -> None:
        super().__init__(message, reason=reason)
        self.offending = offending


class LogHaltedError(IpdnError):
    """Applying from the hub is halted: the node holds evidence of log misbehaviour (see its status)."""

    reason = "log-halted"
