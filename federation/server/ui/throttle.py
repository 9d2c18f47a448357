"""The brute-force limits of the one sign-in flow (signin.py), kept per client address and per account apart, so
that guessing is slowed wherever it comes from and yet no one can lock a person out (docs/adr/0018).

- Per client address (an IPv6 address by its /64, what one host is given): ``address_failures`` failed sign-ins
  per ``window``, whatever the account names; then that address is refused (429, ``Retry-After``) until its
  budget refills. This is what stops a password spray, which tries a new name each time.
- Per account and address: ``max_failures`` failures within ``window`` lock that account *from that address*
  for ``lock_for``. The person signing in from elsewhere is not locked out.
- Per account from everywhere: past ``account_failures`` failures per ``window`` (many addresses guessing one
  account), each attempt on it waits ``slow_by`` seconds first. It slows a distributed guesser and never
  refuses, so it cannot be turned into a lock-out either.
- At once per address: at most ``max_pending`` of an address's sign-ins are being checked together; more are
  refused at once (429, ``Retry-After: 1``). Otherwise one client with many connections would hold every place
  of the bounded password pool (passwords.py) and everyone else would be told the server is busy.

Failures are counted, not attempts: a person who signs in at the first try is never throttled. Every table is
bounded (``max_keys``, least recently used first out), since an attacker chooses the names and addresses; all in
memory, so a restart forgets, which only shortens a lock.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

from federation.server.ratelimit import RateLimiter


def address_key(address: str) -> str:
    """The key of a client address: itself, or an IPv6 address's /64 (a host gets a whole /64 to pick from)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the throttle says of a sign-in attempt before the secret is checked."""

    refuse_for: float = 0.0  # > 0: refused, for this many seconds
    why: str = ""  # "address" (too many failures from there) or "account" (this account, from there)
    slow_by: float = 0.0  # > 0: wait this long, then check (the account is being guessed from many addresses)


@dataclass
class SignInThrottle:
    max_failures: int = 5  # failures for one account from one address within `window` ...
    window: float = 15 * 60
    lock_for: float = 15 * 60  # ... lock that account from that address this long
    address_failures: int = 20  # failures from one address per `window`, any accounts
    account_failures: int = 50  # failures for one account per `window`, any addresses, before each attempt waits
    slow_by: float = 2.0
    max_pending: int = 2  # sign-ins from one address being checked at once
    max_keys: int = 10_000  # per table
    _addresses: RateLimiter = field(init=False, repr=False)
    _accounts: RateLimiter = field(init=False, repr=False)
    _failures: dict[tuple[str, str], list[float]] = field(default_factory=dict, init=False, repr=False)
    _locked: dict[tuple[str, str], float] = field(default_factory=dict, init=False, repr=False)
    _pending: dict[str, int] = field(default_factory=dict, init=False, repr=False)  # bounded by the pool's size

    def __post_init__(self) -> None:
        self._addresses = RateLimiter(self.address_failures / self.window, self.address_failures, self.max_keys)
        self._accounts = RateLimiter(self.account_failures / self.window, self.account_failures, self.max_keys)

    def address_wait(self, address: str, now: float) -> float:
        """Seconds before ``address`` may try again (0: now), whatever the account: its failures are spent, or
        ``max_pending`` of its sign-ins are being checked. It needs no form, so the sign-in flow asks it before
        reading the request's body."""
        where = address_key(address)
        if (wait := self._addresses.wait(where, now)) > 0:
            return wait
        pending = self._pending.get(where, 0)
        # Each check in flight may fail and spend a failure: counted as spent already, so concurrent attempts
        # cannot overshoot the address's budget.
        busy = pending >= self.max_pending or self._addresses.wait(where, now, cost=1 + pending) > 0
        return 1.0 if busy else 0.0

    def check(self, account: str, address: str, now: float) -> Verdict:
        """Whether an attempt on ``account`` from ``address`` may go on to the secret's check."""
        if (wait := self.address_wait(address, now)) > 0:
            return Verdict(wait, "address")
        where = address_key(address)
        until = self._locked.get((account, where))
        if until is not None and until > now:
            return Verdict(until - now, "account")
        return Verdict(slow_by=self.slow_by if self._accounts.wait(account, now) > 0 else 0.0)

    @contextlib.contextmanager
    def checking(self, address: str) -> Iterator[None]:
        """Around the check of a sign-in's secret: counts towards ``max_pending``."""
        where = address_key(address)
        self._pending[where] = self._pending.get(where, 0) + 1
        try:
            yield
        finally:
            if (left := self._pending.pop(where) - 1) > 0:
                self._pending[where] = left

    def failed(self, account: str, address: str, now: float) -> None:
        where = address_key(address)
        self._addresses.take(where, now)
        self._accounts.take(account, now)
        key = (account, where)
        recent = [t for t in self._failures.pop(key, []) if now - t < self.window] + [now]
        if len(recent) >= self.max_failures:
            self._locked.pop(key, None)
            self._locked[key] = now + self.lock_for
            if len(self._locked) > self.max_keys:
                self._locked = {k: u for k, u in self._locked.items() if u > now}
        else:
            self._failures[key] = recent  # last: the dict's order is least recently failed first
        for table in (self._failures, self._locked):
            while len(table) > self.max_keys:
                del table[next(iter(table))]

    def succeeded(self, account: str, address: str) -> None:
        """A sign-in: that account's failures and lock from that address are forgotten (not the address's own
        count, nor the account's from elsewhere: one good password must not reset a spray's budget)."""
        key = (account, address_key(address))
        self._failures.pop(key, None)
        self._locked.pop(key, None)
