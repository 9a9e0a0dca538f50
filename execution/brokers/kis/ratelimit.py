"""A per-app-key request rate shared by every process (the `limits` library, moving window).

KIS counts requests per app key across everything that uses the key, so the window lives in Redis
when REDIS_URL is set (in memory on the embedded default, where there is one process).
"""

import time

from django.conf import settings
from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from .errors import KisRateLimited


class SharedRateLimiter:
    def __init__(self, *, per_second: int, storage_uri: str | None = None) -> None:
        if per_second < 1:
            raise ValueError("per_second must be at least 1")
        uri = storage_uri or settings.REDIS_URL or "memory://"
        self.strategy = MovingWindowRateLimiter(storage_from_string(uri))
        self.item = RateLimitItemPerSecond(per_second, 1)
        self.per_second = per_second

    def acquire(self, key: str, *, timeout_s: float = 30.0) -> None:
        """Block until one more request for `key` fits in the last second's window."""
        deadline = time.monotonic() + timeout_s
        while not self.strategy.hit(self.item, "kis", key):
            reset_at = self.strategy.get_window_stats(self.item, "kis", key).reset_time
            wait = min(max(reset_at - time.time(), 0.001), 0.1)
            if time.monotonic() + wait > deadline:
                raise KisRateLimited(f"waited {timeout_s} s for a request slot for app {key}")
            time.sleep(wait)
