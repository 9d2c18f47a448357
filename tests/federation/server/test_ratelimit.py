import pytest

from federation.server.ratelimit import RateLimiter


def test_burst_then_refused_with_wait_until_next_token() -> None:
    lim = RateLimiter(rate=2.0, burst=3)
    assert [lim.take("p", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = lim.take("p", 100.0)
    assert wait == pytest.approx(0.5)
    assert RateLimiter.retry_after(wait) == "1"
    assert lim.take("p", 100.5) == 0.0  # one token back after 1/rate seconds


def test_keys_are_independent_so_one_flooding_caller_cannot_starve_another() -> None:
    lim = RateLimiter(rate=1.0, burst=1)
    assert lim.take("flooder", 0.0) == 0.0
    assert lim.take("flooder", 0.0) > 0
    assert lim.take("quiet", 0.0) == 0.0


def test_idle_buckets_are_forgotten_bounding_memory() -> None:
    lim = RateLimiter(rate=10.0, burst=10)
    for i in range(1000):
        lim.take(f"addr-{i}", 0.0)
    lim.take("late", 5.0)
    assert set(lim._buckets) == {"late"}


def test_bucket_never_exceeds_burst_after_long_idle() -> None:
    lim = RateLimiter(rate=1.0, burst=2)
    lim.take("p", 0.0)
    assert [lim.take("p", 1e6) for _ in range(3)][:2] == [0.0, 0.0]
    assert lim.take("p", 1e6) > 0


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate=0, burst=1)


def test_callers_made_up_faster_than_the_sweep_are_bounded_by_max_keys() -> None:
    """Keys an attacker invents (addresses, account names) within one refill period: the least recently used go."""
    lim = RateLimiter(rate=0.01, burst=5, max_keys=100)
    for i in range(10_000):
        lim.take(f"name-{i}", float(i) / 1000)
    assert len(lim._buckets) == 100 and "name-9999" in lim._buckets


def test_wait_tells_without_taking() -> None:
    lim = RateLimiter(rate=1.0, burst=1)
    assert lim.wait("p", 0.0) == 0.0 and lim.wait("p", 0.0) == 0.0
    lim.take("p", 0.0)
    assert lim.wait("p", 0.25) == pytest.approx(0.75)
    assert lim.wait("p", 1.0) == 0.0
