"""Envelope verification: each check, named after the attack or fault it stops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from federation.protocol.errors import VerificationError
from federation.protocol.keys import PublicKey, SigningKey
from federation.protocol.schemas import default_schemas
from federation.protocol.verify import ChainHead, keys_resolver, verify_envelope
from tests.support.factories import Member, example_bodies

NOW = datetime.now(UTC)  # key windows and issue times; verification itself runs at the real now


@pytest.fixture
def qa() -> Member:
    return Member("QA")


@pytest.fixture
def body() -> dict:
    return example_bodies("cultural-event")[0]


def verify(env, keys, **kw):  # type: ignore[no-untyped-def]
    return verify_envelope(env.to_bytes(), keys=keys_resolver({k.kid: k for k in keys}),
                           schemas=default_schemas(), now=kw.pop("now", datetime.now(UTC)), **kw)


def reasons(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.reason for f in result.failures]


class TestKeysBoundToMembers:
    def test_key_bound_to_no_member_vouches_for_no_origin(self, qa: Member, body: dict) -> None:
        """A key without a member (a plain JWK, a hub key) verifying an envelope would let its holder speak for
        any origin: key-not-origin, even for the envelope it really signed."""
        env = qa.publish(body)
        unbound = PublicKey(qa.public.key, qa.public.kid)
        result = verify_envelope(env.to_bytes(), keys={unbound.kid: unbound}.get, schemas=default_schemas(),
                                 now=datetime.now(UTC))
        assert reasons(result) == ["key-not-origin"]

    def test_unbound_key_through_the_resolver_refused(self, qa: Member, body: dict) -> None:
        """The same through keys_resolver: the key is found (not dropped: no key-unknown) and refused."""
        result = verify(qa.publish(body), [PublicKey(qa.public.key, qa.public.kid)])
        assert reasons(result) == ["key-not-origin"]


class TestVerifyEnvelope:
    def test_valid_envelope_verifies(self, qa: Member, body: dict) -> None:
        """A member's envelope verifies with its key, and the raising wrapper returns it."""
        result = verify(qa.publish(body), [qa.public], check_chain_head=True)
        assert result.ok and result.raise_for_failures().payload.origin == "QA"

    def test_every_valid_example_verifies(self, qa: Member) -> None:
        """Every valid example of every kind signs and verifies."""
        for kind in ("cultural-event", "capacity-programme"):
            for b in example_bodies(kind):
                assert verify(qa.publish(b, kind=kind), [qa.public]).ok

    def test_envelope_from_non_member_refused(self, qa: Member, body: dict) -> None:
        """A key outside the trust anchor cannot publish, whatever origin it claims."""
        intruder = SigningKey.generate()
        result = verify(qa.publish(body, key=intruder), [qa.public])
        assert reasons(result) == ["key-unknown"]
        with pytest.raises(VerificationError) as e:
            result.raise_for_failures()
        assert e.value.reason == "key-unknown"

    def test_member_impersonating_another_origin_refused(self, qa: Member, body: dict) -> None:
        """Korea's key cannot sign envelopes claiming origin QA."""
        kr = Member("KR")
        result = verify(qa.publish(body, key=kr.key), [qa.public, kr.public])
        assert reasons(result) == ["key-not-origin"]

    def test_signature_by_expired_key_refused(self, qa: Member, body: dict) -> None:
        """A key retired before issued_at (e.g. after rotation or compromise) no longer signs."""
        retired = PublicKey(qa.key.public.key, qa.key.kid, member="QA", not_after=NOW - timedelta(days=1))
        assert reasons(verify(qa.publish(body), [retired])) == ["key-not-valid"]

    def test_backdated_envelope_before_key_validity_refused(self, qa: Member, body: dict) -> None:
        """Backdating issued_at to before a key's window is refused."""
        fresh = PublicKey(qa.key.public.key, qa.key.kid, member="QA", not_before=NOW)
        env = qa.publish(body, issued=NOW - timedelta(days=30))
        assert reasons(verify(env, [fresh])) == ["key-not-valid"]

    def test_backdated_envelope_signed_by_rotated_out_key_refused(self, qa: Member, body: dict) -> None:
        """A key ended an hour ago signs an envelope dated inside its window: refused when the receipt time is
        known (key-not-valid-at-receipt), since issued_at is the signer's claim; without one it would pass."""
        ended = PublicKey(qa.key.public.key, qa.key.kid, member="QA", not_after=NOW - timedelta(hours=1))
        env = qa.publish(body, issued=NOW - timedelta(hours=2))
        assert verify(env, [ended]).ok  # issued_at alone: inside the window
        assert reasons(verify(env, [ended], received_at=NOW)) == ["key-not-valid-at-receipt"]

    def test_backdated_envelope_signed_by_revoked_key_refused(self, qa: Member, body: dict) -> None:
        """Revocation ends the window the same way: a receipt after the end (beyond the skew) is refused."""
        revoked = PublicKey(qa.key.public.key, qa.key.kid, member="QA", not_before=NOW - timedelta(days=9),
                            not_after=NOW - timedelta(days=1))
        env = qa.publish(body, issued=NOW - timedelta(days=2))
        assert reasons(verify(env, [revoked], received_at=NOW)) == ["key-not-valid-at-receipt"]

    def test_receipt_within_the_skew_of_the_keys_end_accepted(self, qa: Member, body: dict) -> None:
        """An envelope signed just before its key ended and received within the skew after: accepted (transit and
        clocks); the skew bounds both ends of the window, and equality at the end is outside."""
        end = NOW.replace(microsecond=0) - timedelta(minutes=10)  # issued_at carries milliseconds
        ended = PublicKey(qa.key.public.key, qa.key.kid, member="QA", not_after=end)
        env = qa.publish(body, issued=end - timedelta(seconds=1))
        skew = timedelta(minutes=5)
        assert verify(env, [ended], received_at=end + skew - timedelta(milliseconds=1), max_future_skew=skew).ok
        assert reasons(verify(env, [ended], received_at=end + skew, max_future_skew=skew)) == [
            "key-not-valid-at-receipt"]
        young = PublicKey(qa.key.public.key, qa.key.kid, member="QA", not_before=end)
        env = qa.publish(body, issued=end)
        assert verify(env, [young], received_at=end - skew, max_future_skew=skew).ok
        assert reasons(verify(env, [young], received_at=end - skew - timedelta(milliseconds=1),
                              max_future_skew=skew)) == ["key-not-valid-at-receipt"]

    def test_issued_at_outside_the_window_reported_before_the_receipt(self, qa: Member, body: dict) -> None:
        """One key reason at most: key-not-valid (issued_at) wins over key-not-valid-at-receipt."""
        ended = PublicKey(qa.key.public.key, qa.key.kid, member="QA", not_after=NOW - timedelta(days=1))
        assert reasons(verify(qa.publish(body), [ended], received_at=NOW)) == ["key-not-valid"]

    def test_future_dated_envelope_refused(self, qa: Member, body: dict) -> None:
        """issued_at far in the future is refused (clock skew allowance is 5 minutes)."""
        env = qa.publish(body, issued=NOW + timedelta(hours=1))
        assert reasons(verify(env, [qa.public])) == ["issued-in-future"]

    def test_invalid_body_refused_even_when_signed(self, qa: Member, body: dict) -> None:
        """A correctly signed envelope whose body breaks its schema is refused, with pointers."""
        bad = {**body, "status": "imaginary"}
        result = verify(qa.publish(bad), [qa.public])
        assert reasons(result) == ["schema-invalid"]
        assert result.failures[0].issues[0].pointer == "/status"

    def test_unknown_schema_version_refused(self, qa: Member, body: dict) -> None:
        """An envelope pinned to a schema the receiver does not hold is refused, not guessed."""
        env = qa.publish(body, schema="https://schemas.ipdn.network/cultural-event/v99")
        assert reasons(verify(env, [qa.public])) == ["unknown-schema"]

    def test_body_under_other_kinds_schema_refused(self, qa: Member) -> None:
        """The kind and the pinned schema must agree."""
        prog = example_bodies("capacity-programme")[0]
        env = qa.publish(prog, kind="cultural-event", schema=default_schemas().schema_id("capacity-programme"))
        assert "kind-mismatch" in reasons(verify(env, [qa.public]))

    def test_all_failures_named_at_once(self, qa: Member, body: dict) -> None:
        """A bad signature and a bad body are both reported."""
        env = qa.publish({**body, "status": "x"}, key=SigningKey.generate())
        other = PublicKey(qa.key.public.key, env.kid, member="QA")  # right kid, wrong key
        assert reasons(verify(env, [other])) == ["bad-signature", "schema-invalid"]

    def test_tombstone_verifies(self, qa: Member, body: dict) -> None:
        """A signed delete carries no body and verifies."""
        qa.publish(body, record_id="QA:a")
        assert verify(qa.publish(None, record_id="QA:a", version=2), [qa.public]).ok


class TestChain:
    def test_chain_extends(self, qa: Member, body: dict) -> None:
        """seq n+1 naming the hash of seq n is accepted."""
        first = qa.publish(body)
        second = qa.publish(body)
        assert verify(second, [qa.public], check_chain_head=True, chain_head=ChainHead(1, first.hash)).ok

    def test_gap_detected(self, qa: Member, body: dict) -> None:
        """Skipping a number (a withheld envelope) is detected."""
        first = qa.publish(body)
        qa.publish(body)
        third = qa.publish(body)
        result = verify(third, [qa.public], check_chain_head=True, chain_head=ChainHead(1, first.hash))
        assert reasons(result) == ["chain-gap"]

    def test_first_envelope_must_be_seq_one(self, qa: Member, body: dict) -> None:
        """With nothing held, only seq 1 extends the chain."""
        qa.publish(body)
        assert reasons(verify(qa.publish(body), [qa.public], check_chain_head=True)) == ["chain-gap"]

    def test_fork_detected(self, qa: Member, body: dict) -> None:
        """An origin that signs two histories: seq 2 built on another seq 1 than the one held."""
        held = qa.publish(body)
        twin = Member("QA", key=qa.key)
        twin.publish({**body, "status": "cancelled"})
        fork = twin.publish(body)
        result = verify(fork, [qa.public], check_chain_head=True, chain_head=ChainHead(1, held.hash))
        assert reasons(result) == ["chain-fork"]

    def test_reordered_envelope_is_stale(self, qa: Member, body: dict) -> None:
        """An envelope at or below the head (replay or reorder) is reported stale for the caller to classify."""
        first = qa.publish(body)
        second = qa.publish(body)
        result = verify(first, [qa.public], check_chain_head=True, chain_head=ChainHead(2, second.hash))
        assert reasons(result) == ["chain-stale"]
