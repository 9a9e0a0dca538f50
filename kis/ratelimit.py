"""A per-app-key request rate shared by every process: a sliding window kept in Redis.

KIS counts requests per app key across everything that uses the key. The window is one Lua script
run atomically by Redis, timed by Redis's own clock, so every process is measured on one clock.
(The `limits` library's moving window stamps entries with each caller's clock; with four processes
it let 12 requests into one second under a limit of 10, measured here, so it is not used.)

The window is a little longer than a second (`guard_ms`): a request takes its slot some
milliseconds before it reaches KIS, and that spread must not put two slots into one of KIS's
seconds. On the embedded default (no Redis) the window lives in the process.

When Redis does not answer within its timeout (core/redis_clients.py), the process neither
waits for it nor lets requests through unthrottled: it limits itself to a conservative share of
the rate (settings.KIS["RATE_FALLBACK_SHARE"], a quarter by default, at least one a second),
counted in the process, until Redis answers again. The share assumes up to that many processes
use one app key at once (compose runs the execution worker, the default worker, pricesync and
the fill stream): together they stay within KIS's limit while each one keeps going. Redis is
asked again every settings.REDIS_RETRY_S meanwhile; the outage is logged once.
"""

import collections
import logging
import threading
import time
import uuid

import redis
from django.conf import settings

from core import redis_clients

from .errors import KisRateLimited

logger = logging.getLogger("aegis.kis")

# Returns 0 when a slot was taken, else the microseconds until the oldest entry leaves the window.
# With more keys (KEYS[2], …), returns {that, the value of each of them}: what the caller reads
# before its request (the circuit breaker's state) comes back in the same round trip.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
local wait = 0
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
else
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    wait = math.max(1, tonumber(oldest[2]) + window - now)
end
if #KEYS == 1 then
    return wait
end
local out = {wait}
for i = 2, #KEYS do
    out[i] = redis.call('GET', KEYS[i])
end
return out
"""

# The slots free in the window right now (nothing taken).
_FREE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
"""


class SharedRateLimiter:
    def __init__(
        self, *, per_second: int, guard_ms: int = 50, redis_url: str | None = None
    ) -> None:
        if per_second < 1:
            raise ValueError("per_second must be at least 1")
        self.per_second = per_second
        self.window_us = (1000 + guard_ms) * 1000
        self.guard_s = guard_ms / 1000
        self._held = threading.local()
        url = settings.REDIS_URL if redis_url is None else redis_url
        self._redis = redis_clients.client(url) if url else None
        self._script = self._redis.register_script(_ACQUIRE) if self._redis else None
        self._free = self._redis.register_script(_FREE) if self._redis else None
        self._local: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        # Without Redis at all (the embedded default) this process is the only user: the
        # whole rate. While Redis is down: the share.
        share = settings.KIS.get("RATE_FALLBACK_SHARE", 0.25)
        if not 0 < share <= 1:
            raise ValueError("KIS RATE_FALLBACK_SHARE must be above 0 and at most 1")
        self.fallback_per_second = max(1, int(per_second * share))
        self.outage = redis_clients.Outage("kis.rate_limit", logger)

    def _try(self, key: str) -> float:
        """0 when a slot was taken, else seconds to wait."""
        if self._script is None:
            return self._try_local(key, self.per_second)
        if not self.outage.active():
            try:
                wait = int(self._run(key, [])) / 1e6
            except redis.RedisError as exc:
                self.outage.failed(exc)
            else:
                self.outage.answered()
                return wait
        return self._try_local(key, self.fallback_per_second)

    def _run(self, key: str, reads: list[str]):
        assert self._script is not None  # reached only with Redis configured
        return self._script(
            keys=[f"aegis:kis:rate:{key}", *reads],
            args=[self.per_second, self.window_us, uuid.uuid4().hex],
        )

    def free(self, key: str) -> int:
        """How many requests for `key` the window would take now (nothing is taken): what a
        caller that gives way to others (the picks router, to exits) looks at first. While
        Redis is down, this process's share."""
        if self._free is not None and not self.outage.active():
            try:
                free = int(
                    self._free(
                        keys=[f"aegis:kis:rate:{key}"], args=[self.per_second, self.window_us]
                    )
                )
            except redis.RedisError as exc:
                self.outage.failed(exc)
            else:
                self.outage.answered()
                return max(0, free)
        per_second = self.per_second if self._free is None else self.fallback_per_second
        with self._lock:
            now = time.monotonic()
            window = self._local[key]
            return max(0, per_second - sum(1 for at in window if at > now - self.window_us / 1e6))

    def _try_local(self, key: str, per_second: int) -> float:
        with self._lock:
            now = time.monotonic()
            window = self._local[key]
            while window and window[0] <= now - self.window_us / 1e6:
                window.popleft()
            if len(window) < per_second:
                window.append(now)
                return 0.0
            return window[0] + self.window_us / 1e6 - now

    def reserve_reading(self, key: str, reads: list[str]) -> list | None:
        """Take a slot for `key` now, for this thread's next acquire() of `key` (a request about
        to be sent), and read the Redis keys `reads` in the same round trip (the request's
        other reads before it leaves: the breaker's state); their values. A slot held longer
        than half the guard is let go and the request takes a fresh one: the guard covers the
        gap between slot and request. When no slot is free now, the values still come back and
        acquire() waits for one as usual. None, nothing taken, without Redis or when it cannot
        be reached: the request takes its own steps."""
        if self._script is None or not reads or self.outage.active():
            return None
        try:
            wait_us, *values = self._run(key, reads)
        except redis.RedisError as exc:
            self.outage.failed(exc)
            return None
        self.outage.answered()
        if int(wait_us) == 0:
            self._held.slot = (key, time.monotonic())
        return values

    def holds(self, key: str) -> bool:
        """Whether this thread holds a slot for `key` that its next acquire() will use."""
        held = getattr(self._held, "slot", None)
        return (
            held is not None and held[0] == key and time.monotonic() - held[1] <= self.guard_s / 2
        )

    def acquire(self, key: str, *, timeout_s: float = 30.0) -> None:
        """Block until one more request for `key` fits in the window."""
        held = self.holds(key)
        self._held.slot = None
        if held:
            return
        deadline = time.monotonic() + timeout_s
        while (wait := self._try(key)) > 0:
            if time.monotonic() + wait > deadline:
                raise KisRateLimited(f"waited {timeout_s} s for a request slot for app {key}")
            time.sleep(min(wait, 0.1))
