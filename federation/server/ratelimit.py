"""Token-bucket rate limits keyed by caller (a partner, a member, a client address). Pure: the caller passes
the clock, so tests need no sleeping.

Each key has a bucket of ``burst`` tokens refilled at ``rate`` tokens per second; a request takes one. When
the bucket is empty, ``take`` answers how many seconds until a token is back: the ``Retry-After`` of a 429.
Idle buckets are forgotten (they would be full anyway), so memory is bounded by the callers active within
the last ``burst / rate`` seconds; ``max_keys`` bounds it outright (the least recently used bucket goes first),
for keys an attacker can make up (client addresses, account names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    rate: float  # tokens per second
    burst: float  # bucket size: requests allowed at once after a quiet spell
    max_keys: int | None = None  # at most this many buckets; None: bounded by the sweep only
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)  # key -> (tokens, at)
    _swept: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")

    def take(self, key: str, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens for ``key`` at ``now`` (seconds, monotonic). Answer 0.0 when allowed, else
        the seconds to wait (nothing is taken then)."""
        self._sweep(now)
        tokens = self._tokens(key, now)
        self._buckets.pop(key, None)  # re-inserted last: the dict's order is least recently used first
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, now)
            self._bound()
            return 0.0
        self._buckets[key] = (tokens, now)
        self._bound()
        return (cost - tokens) / self.rate

    def wait(self, key: str, now: float, cost: float = 1.0) -> float:
        """What :meth:`take` would answer, taking nothing: for limits charged only after the fact (a failure)."""
        tokens = self._tokens(key, now)
        return 0.0 if tokens >= cost else (cost - tokens) / self.rate

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - at) * self.rate)

    def _bound(self) -> None:
        while self.max_keys is not None and len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]

    @staticmethod
    def retry_after(wait: float) -> str:
        """The ``Retry-After`` header value (whole seconds, at least 1) for a wait from ``take``."""
        return str(max(1, math.ceil(wait)))

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate
        if now - self._swept < full_after:
            return
        self._swept = now
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
