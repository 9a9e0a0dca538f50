"""The breakers' shared state on real Redis: a success after failures clears the count of failures
in a row, a success with none to clear writes nothing, the state read survives a lost key, and a
state read ahead (prefetch) serves one call. And the rate limiter's slot reserved ahead."""

import secrets
import time

import pytest
import redis
from django.conf import settings

from kis.breaker import Breakers
from kis.errors import KisCircuitOpen, KisUnavailable
from kis.ratelimit import SharedRateLimiter

FAIL_MAX = 3


@pytest.fixture
def breakers():
    fingerprint = secrets.token_hex(6)
    made = Breakers(
        fingerprints={"query": fingerprint, "order": fingerprint},
        fail_max=FAIL_MAX,
        reset_s=60,
        redis_url=settings.REDIS_URL,
    )
    yield made
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(*client.keys(f"aegis:kis:*:{fingerprint}*") or ["-"])
    client.close()


def _fail():
    raise KisUnavailable("KIS did not answer")


def _failures(breakers: Breakers, times: int) -> None:
    for _ in range(times):
        with pytest.raises(KisUnavailable):
            breakers.call("order", _fail)


def _sets() -> int:
    stats = redis.Redis.from_url(settings.REDIS_URL).info("commandstats")
    return stats.get("cmdstat_set", {}).get("calls", 0)


def test_a_success_clears_the_failures_in_a_row(breakers):
    _failures(breakers, FAIL_MAX - 1)
    assert breakers.call("order", lambda: "ok") == "ok"
    _failures(breakers, FAIL_MAX - 1)  # a new row: still closed
    assert breakers.state("order") == "closed"
    _failures(breakers, 1)
    assert breakers.state("order") == "open"
    with pytest.raises(KisCircuitOpen):
        breakers.call("order", lambda: "not called")


def test_a_success_with_no_failures_to_clear_writes_nothing(breakers):
    breakers.call("order", lambda: "ok")  # the first read of this thread
    before = _sets()
    for _ in range(5):
        assert breakers.call("order", lambda: "ok") == "ok"
    assert _sets() == before


def test_a_failure_counted_elsewhere_is_cleared_by_the_next_success(breakers):
    breakers.call("order", lambda: "ok")
    other = Breakers(
        fingerprints=breakers.fingerprints,
        fail_max=FAIL_MAX,
        reset_s=60,
        redis_url=settings.REDIS_URL,
    )  # another process's view of the same key
    _failures(other, FAIL_MAX - 1)
    breakers.call("order", lambda: "ok")  # reads the count with the state, so clears it
    _failures(other, FAIL_MAX - 1)
    assert breakers.state("order") == "closed"


def test_a_lost_state_key_reads_as_closed_and_is_written_again(breakers):
    client = redis.Redis.from_url(settings.REDIS_URL)
    state_key = f"{Breakers.namespace('order', breakers.fingerprints['order'])}:pybreaker:state"
    assert client.delete(state_key) == 1
    assert breakers.call("order", lambda: "ok") == "ok"
    assert client.get(state_key) == b"closed"


def _mgets() -> int:
    stats = redis.Redis.from_url(settings.REDIS_URL).info("commandstats")
    return stats.get("cmdstat_mget", {}).get("calls", 0)


def _prefetch(breakers: Breakers) -> None:
    """The order breaker's state read ahead, as KisClient._ahead reads it (here without a rate
    slot)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    breakers.prefetched("order", client.mget(*breakers.shared_keys("order")))
    client.close()


def test_a_prefetched_state_serves_this_threads_next_call_once(breakers):
    _prefetch(breakers)
    before = _mgets()
    assert breakers.call("order", lambda: "sent") == "sent"  # the prefetched read
    assert _mgets() == before
    assert breakers.call("order", lambda: "sent") == "sent"  # reads for itself again
    assert _mgets() == before + 1


def test_a_prefetched_open_state_keeps_the_call_from_kis(breakers):
    _failures(breakers, FAIL_MAX)
    _prefetch(breakers)
    with pytest.raises(KisCircuitOpen):
        breakers.call("order", lambda: pytest.fail("called while open"))


def test_a_reserved_rate_slot_serves_the_next_acquire_of_its_key_while_fresh():
    limiter = SharedRateLimiter(per_second=100, guard_ms=50)
    key = secrets.token_hex(6)
    slots = redis.Redis.from_url(settings.REDIS_URL)
    try:
        limiter.reserve_reading(key, [f"aegis:test:{key}"])
        limiter.acquire(key)  # the reserved slot
        assert slots.zcard(f"aegis:kis:rate:{key}") == 1
        limiter.acquire(key)  # a slot of its own
        assert slots.zcard(f"aegis:kis:rate:{key}") == 2
        limiter.reserve_reading(key, [f"aegis:test:{key}"])
        time.sleep(limiter.guard_s)  # held longer than half the guard: let go
        limiter.acquire(key)
        assert slots.zcard(f"aegis:kis:rate:{key}") == 4
    finally:
        slots.delete(f"aegis:kis:rate:{key}")
        slots.close()


def _evalshas() -> int:
    stats = redis.Redis.from_url(settings.REDIS_URL).info("commandstats")
    return stats.get("cmdstat_evalsha", {}).get("calls", 0)


def test_the_rate_slot_and_the_breakers_state_in_one_round_trip(breakers):
    """The limiter's script reads the breaker's keys with the slot it takes; the next call then
    reads neither the state (no MGET) nor a slot (no second script)."""
    limiter = SharedRateLimiter(per_second=100, guard_ms=50)
    key = secrets.token_hex(6)
    try:
        breakers.call("order", lambda: "ok")  # made, its state written
        before = (_mgets(), _evalshas())
        values = limiter.reserve_reading(key, breakers.shared_keys("order"))
        assert values[0] == b"closed" and limiter.holds(key)
        breakers.prefetched("order", values)
        assert breakers.call("order", lambda: limiter.acquire(key) or "sent") == "sent"
        assert (_mgets(), _evalshas()) == (before[0], before[1] + 1)
        _failures(breakers, FAIL_MAX)  # open
        breakers.prefetched("order", limiter.reserve_reading(key, breakers.shared_keys("order")))
        with pytest.raises(KisCircuitOpen):
            breakers.call("order", lambda: pytest.fail("called while open"))
    finally:
        redis.Redis.from_url(settings.REDIS_URL).delete(f"aegis:kis:rate:{key}")


def test_a_full_window_still_answers_the_reads_and_holds_no_slot(breakers):
    limiter = SharedRateLimiter(per_second=1, guard_ms=50)
    key = secrets.token_hex(6)
    try:
        limiter.acquire(key)  # the window's one slot
        values = limiter.reserve_reading(key, breakers.shared_keys("order"))
        assert values is not None and len(values) == 2 and not limiter.holds(key)
    finally:
        redis.Redis.from_url(settings.REDIS_URL).delete(f"aegis:kis:rate:{key}")
