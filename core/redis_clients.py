"""Redis clients whose every command is bounded, and the outage bookkeeping of their fallbacks.

redis-py waits forever by default: a Redis that accepts connections and never answers (a stall,
a full network buffer, a paused container) would hold every caller, the KIS rate limiter's
included, and then let them all go at once. Every client Aegis makes for itself comes from
`client()`: it connects within settings.REDIS_CONNECT_TIMEOUT_S and has each answer within
settings.REDIS_TIMEOUT_S (plus the wait of a blocking read), so a caller meets RedisError
instead, and falls back to what it can do alone (the rate limiter to a local share of the
rate, the breakers to local state: kis/). `Outage` keeps the fallback from
paying a timeout on every call while Redis does not answer, and logs the outage once.
"""

import logging
import threading
import time

import redis
from django.conf import settings


def client(url: str | None = None, *, blocking_s: float = 0.0, **options) -> redis.Redis:
    """A redis.Redis for `url` (settings.REDIS_URL by default) with bounded connects and
    reads. `blocking_s`: the longest wait of a blocking command this client sends (BRPOP's
    timeout), added to its read timeout."""
    options.setdefault("socket_connect_timeout", settings.REDIS_CONNECT_TIMEOUT_S)
    options.setdefault("socket_timeout", settings.REDIS_TIMEOUT_S + blocking_s)
    return redis.Redis.from_url(url if url is not None else settings.REDIS_URL, **options)


class Outage:
    """Whether Redis is taken as down for one user of it (`what`), shared by its threads.

    After a failure, Redis is not asked again for settings.REDIS_RETRY_S (active() is True:
    the caller uses its local fallback at once); the next call after that tries it again. The
    first failure of an outage is logged at WARNING, and the first success after it at INFO,
    with how long it lasted: once per outage, never once per call."""

    def __init__(self, what: str, logger: logging.Logger, *, retry_s: float | None = None) -> None:
        self.what, self.logger = what, logger
        self.retry_s = settings.REDIS_RETRY_S if retry_s is None else retry_s
        self._lock = threading.Lock()
        self._since: float | None = None  # monotonic, when this outage began
        self._retry_at = 0.0

    @property
    def down(self) -> bool:
        """Whether an outage is under way (its end not yet seen)."""
        return self._since is not None

    def active(self) -> bool:
        """True while Redis is not to be asked: use the local fallback."""
        return self._since is not None and time.monotonic() < self._retry_at

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            now = time.monotonic()
            self._retry_at = now + self.retry_s
            if self._since is not None:
                return
            self._since = now
        self.logger.warning(
            "redis.outage %s: %s: %s; local fallback, Redis asked again every %.1f s",
            self.what,
            type(exc).__name__,
            exc,
            self.retry_s,
            extra={"redis_user": self.what},
        )

    def answered(self) -> None:
        if self._since is None:
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            self.logger.info(
                "redis.recovered %s after %.1f s",
                self.what,
                time.monotonic() - since,
                extra={"redis_user": self.what},
            )
