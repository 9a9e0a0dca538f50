"""Cache calls that survive a Redis outage, for the hot data of market/prices.py (best prices) and
trading/hot.py (the book, the profiles), through Django's cache framework. PostgreSQL stays the
truth: whatever is cached has a TTL and only screens.

A Redis outage slows its users, never stops them: a failed read is a miss (the database
answers), a failed write or delete is logged. Every call is bounded by the cache's socket
timeouts (settings: AEGIS_CACHE_TIMEOUT_S), and after a failure this process reads from the
database only, writing nothing through, for RETRY_AFTER_S: a Redis that hangs costs one timeout
per interval, not one per tick. Invalidations are always attempted (cache_delete_many, and the
generations of trading/hot.py, which report their failures through cache_unavailable): a
skipped one could leave a stale copy to be read once Redis answers again.
"""

import logging
import time
from collections.abc import Callable

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger("aegis.cache")

_WARN_EVERY_S = 10.0
_warned_at = 0.0
RETRY_AFTER_S = 5.0
_down_until = 0.0  # monotonic: until then, reads are misses and write-throughs are skipped


def cache_unavailable(op: str, exc: Exception) -> None:
    """A cache call failed: reads are misses and write-throughs skipped for RETRY_AFTER_S
    (logged at most once every _WARN_EVERY_S)."""
    global _warned_at, _down_until
    _down_until = time.monotonic() + RETRY_AFTER_S
    if time.monotonic() - _warned_at >= _WARN_EVERY_S:
        _warned_at = time.monotonic()
        logger.warning(
            "cache.unavailable op=%s: %s (the database answers instead; "
            "Redis is asked again in %.0f s)",
            op,
            exc,
            RETRY_AFTER_S,
        )


def _skipping() -> bool:
    return time.monotonic() < _down_until


def cache_get(key: str):
    if _skipping():
        return None
    try:
        return cache.get(key)
    except Exception as exc:  # noqa: BLE001 - any cache failure is a miss
        cache_unavailable("get", exc)
        return None


def cache_get_many(keys: list[str]) -> dict:
    """The keys found, by key, in one round trip; nothing while Redis fails."""
    if _skipping():
        return {}
    try:
        return cache.get_many(keys)
    except Exception as exc:  # noqa: BLE001
        cache_unavailable("get_many", exc)
        return {}


def cache_set(key: str, value, ttl: float) -> None:
    if _skipping():
        return
    try:
        cache.set(key, value, timeout=ttl)
    except Exception as exc:  # noqa: BLE001
        cache_unavailable("set", exc)


def cache_delete_many(keys: list[str]) -> None:
    """An invalidation: attempted even while Redis fails."""
    try:
        cache.delete_many(keys)
    except Exception as exc:  # noqa: BLE001
        cache_unavailable("delete", exc)


def after_commit(fn: Callable[[], object]) -> None:
    """Run `fn` once the surrounding transaction commits (at once outside one)."""
    transaction.on_commit(fn, robust=True)
