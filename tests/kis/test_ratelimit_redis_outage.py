"""The KIS rate limiter and circuit breakers when Redis stalls (accepts connections, never
answers) or is gone: neither blocks a KIS call past Redis's timeout, the limiter keeps each
process to its conservative share of the rate, the breakers count failures in the process and
still open, and each outage is logged once, not once per call."""

import logging
import socket
import threading
import time

import pytest
from django.conf import settings

from core import redis_clients
from kis.breaker import Breakers
from kis.errors import KisCircuitOpen, KisUnavailable
from kis.ratelimit import SharedRateLimiter


@pytest.fixture
def silent_redis():
    """A TCP server on loopback that takes connections and never answers: a Redis that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    server.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def gone_redis():
    """A port nobody listens on: Redis down."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"redis://127.0.0.1:{port}/0"


def _in_thread(fn, timeout_s: float):
    """fn() on a thread; its result, or a failure when it has not returned within timeout_s (a
    client without timeouts would hang on the silent server for good)."""
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert out, f"still blocked after {timeout_s} s"
    return out[0]


def _outage_logs(caplog, what: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith(f"redis.outage {what}")
    ]


def test_a_silent_redis_costs_one_timeout_then_the_local_share_of_the_rate(silent_redis, caplog):
    caplog.set_level(logging.INFO, logger="aegis.kis")
    limiter = SharedRateLimiter(per_second=8, redis_url=silent_redis)
    share = settings.KIS["RATE_FALLBACK_SHARE"]
    assert limiter.fallback_per_second == max(1, int(8 * share)) == 2

    def six() -> list[float]:
        stamps = []
        for _ in range(6):
            limiter.acquire("app", timeout_s=30)
            stamps.append(time.monotonic())
        return stamps

    started = time.monotonic()
    stamps = _in_thread(six, timeout_s=60)
    # Two a second within the window of 1.05 s: the 3rd waits for the 1st to leave it, the
    # 5th for the 3rd; never unthrottled.
    assert stamps[2] - stamps[0] >= 1.0 and stamps[4] - stamps[2] >= 1.0
    # The first call paid Redis's timeout, the others did not wait on it.
    assert stamps[0] - started < settings.REDIS_TIMEOUT_S + settings.REDIS_CONNECT_TIMEOUT_S + 5
    assert len(_outage_logs(caplog, "kis.rate_limit")) == 1
    # reserve_reading does not wait on the silent Redis while it is taken as down.
    limiter.outage.failed(TimeoutError("still silent"))
    assert _in_thread(lambda: limiter.reserve_reading("app", ["k"]), timeout_s=1) is None
    assert len(_outage_logs(caplog, "kis.rate_limit")) == 1


def test_without_redis_at_all_the_process_has_the_whole_rate(settings):
    limiter = SharedRateLimiter(per_second=5, redis_url="")
    stamps = []
    for _ in range(5):
        limiter.acquire("app", timeout_s=5)
        stamps.append(time.monotonic())
    assert stamps[-1] - stamps[0] < 1.0


@pytest.mark.parametrize("which", ["silent_redis", "gone_redis"])
def test_breakers_keep_local_state_while_redis_is_down_and_still_open(which, request, caplog):
    caplog.set_level(logging.INFO, logger="aegis.kis")
    url = request.getfixturevalue(which)
    breakers = _in_thread(
        lambda: Breakers(
            fingerprints={"query": "f", "order": "f"}, fail_max=3, reset_s=60, redis_url=url
        ),
        timeout_s=10,
    )

    def fail():
        raise KisUnavailable("KIS did not answer")

    def three_failures_then_a_call() -> str:
        for _ in range(3):
            with pytest.raises(KisUnavailable):
                breakers.call("order", fail)
        with pytest.raises(KisCircuitOpen):
            breakers.call("order", lambda: "not called")
        return breakers.state("order")

    assert _in_thread(three_failures_then_a_call, timeout_s=20) == "open"
    assert breakers.call("query", lambda: "ok") == "ok"  # the other use: still closed
    assert len(_outage_logs(caplog, "kis.breaker")) == 1


def test_the_breaker_goes_back_to_the_shared_state_when_redis_answers(caplog):
    import secrets

    import redis

    caplog.set_level(logging.INFO, logger="aegis.kis")
    fingerprint = secrets.token_hex(6)
    breakers = Breakers(
        fingerprints={"query": fingerprint, "order": fingerprint},
        fail_max=3,
        reset_s=60,
        redis_url=settings.REDIS_URL,
    )
    try:
        breakers.outage.failed(ConnectionError("a blip"))  # taken as down for REDIS_RETRY_S
        breakers.outage._retry_at = 0.0  # and asked again now
        assert breakers.call("order", lambda: "ok") == "ok"
        assert not breakers.outage.down
        assert any(r.getMessage().startswith("redis.recovered kis.breaker") for r in caplog.records)
    finally:
        client = redis.Redis.from_url(settings.REDIS_URL)
        client.delete(*client.keys(f"aegis:kis:*:{fingerprint}*") or ["-"])
        client.close()


def test_every_client_made_here_has_bounded_connects_and_reads():
    client = redis_clients.client(settings.REDIS_URL)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == settings.REDIS_TIMEOUT_S
    assert kwargs["socket_connect_timeout"] == settings.REDIS_CONNECT_TIMEOUT_S
    blocking = redis_clients.client(settings.REDIS_URL, blocking_s=1)
    assert (
        blocking.connection_pool.connection_kwargs["socket_timeout"] == settings.REDIS_TIMEOUT_S + 1
    )


def test_tokens_are_issued_and_kept_in_the_process_while_the_cache_stalls(silent_redis, caplog):
    from aegis.cache import KeptClientRedisCache
    from kis.config import AppCredentials
    from kis.tokens import Credential, CredentialStore

    caplog.set_level(logging.INFO, logger="aegis.kis")
    stalled = KeptClientRedisCache(
        silent_redis, {"OPTIONS": {"socket_timeout": 0.3, "socket_connect_timeout": 0.3}}
    )
    store = CredentialStore(kind="token", renew_before_s=60, cache=stalled)
    apps = [AppCredentials(appkey=f"app-{n}", appsecret="s") for n in range(3)]
    issued = []

    def issue():
        issued.append(1)
        return Credential(value=f"tok-{len(issued)}", expires_at=time.time() + 3600)

    def all_three() -> list[str]:
        started = time.monotonic()
        values = [store.get(app, issue) for app in apps]
        return values, time.monotonic() - started

    values, took = _in_thread(all_three, timeout_s=20)
    assert values == ["tok-1", "tok-2", "tok-3"]
    # One timeout (the first read); the rest did not wait on the stalled cache.
    assert took < 0.3 * 3
    assert len(_outage_logs(caplog, "kis.token_cache")) == 1
    assert store.get(apps[0], issue) == "tok-1" and len(issued) == 3  # from the memo
