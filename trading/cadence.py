"""When the next exit pass is sent: the market cadence as a small state machine.

Time and sending are handed in, so the same code runs in celery beat (trading/beat.py) and in
tests on a simulated clock. A pass is sent with an expiry of one interval: a pass that a busy
worker could not start in time is dropped by Celery, never run late. When the driver itself
falls behind (beat stalled), it skips to the next slot instead of catching up.
"""

import datetime as dt
import time
from collections.abc import Callable

from market import calendar as market_calendar
from market.calendar import DEFAULT_INTERVAL_MS, Window, cadence_at

# How often, outside trading hours, the driver looks again.
IDLE_RECHECK_S = 1.0
# How long windows read from the database are used before they are read again.
WINDOWS_REFRESH_S = 5.0


class CadenceDriver:
    def __init__(
        self,
        *,
        send: Callable[[float], None],
        windows: Callable[[], tuple[Window, ...]],
        default_ms: int = DEFAULT_INTERVAL_MS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send = send  # called with the pass's expiry in seconds
        self._windows = windows
        self.default_ms = default_ms
        self._monotonic = monotonic
        self._cached: tuple[Window, ...] | None = None
        self._cached_at = 0.0
        self._next: dt.datetime | None = None

    def windows(self) -> tuple[Window, ...]:
        mono = self._monotonic()
        if self._cached is None or mono - self._cached_at >= WINDOWS_REFRESH_S:
            self._cached, self._cached_at = tuple(self._windows()), mono
        return self._cached

    def tick(self, now: dt.datetime) -> float:
        """Send a pass if one is due at `now`; return the seconds until the next call."""
        interval_ms = cadence_at(now, self.windows(), self.default_ms)
        if interval_ms is None:
            self._next = None
            return IDLE_RECHECK_S
        step = dt.timedelta(milliseconds=interval_ms)
        if self._next is None or self._next - now > step:
            self._next = now  # a new window, or a shorter interval than the last one
        if now >= self._next:
            self.send(interval_ms / 1000)
            behind = now - self._next
            self._next = self._next + step if behind < step else now + step
        return max(0.0, (self._next - now).total_seconds())


class PrequeueDriver:
    """Sends the GAP_DOWN pre-queue once per trading day, `lead` before the open (08:59:50 on a
    regular day, 09:59:50 on a late open). A beat started later, but before the opening minute
    is over, still sends it: the thresholds are worth having late rather than never."""

    def __init__(
        self,
        *,
        send: Callable[[], None],
        lead: dt.timedelta = dt.timedelta(seconds=10),
        span: dt.timedelta = dt.timedelta(seconds=60),
    ) -> None:
        self.send, self.lead, self.span = send, lead, span
        self.sent_for: dt.date | None = None

    def tick(self, now: dt.datetime) -> float:
        """Send it if due at `now`; return the seconds until it is worth calling again."""
        # The trading day is Seoul's: beat hands in the server's UTC time, still the day before
        # at 08:59:50 KST.
        day = now.astimezone(market_calendar.SEOUL).date()
        session = market_calendar.session(day)
        if session is None or self.sent_for == day:
            return IDLE_RECHECK_S
        at = session.open - self.lead
        if now < at:
            return min(IDLE_RECHECK_S, (at - now).total_seconds())
        if now < session.open + self.span:
            self.send()
        self.sent_for = day
        return IDLE_RECHECK_S
