"""The one clock (ARCHITECTURE.md, I7). Every read of "now" in Aegis goes through `now()`, so tests
and the demo can run at any moment of any day by installing another clock.
"""

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from zoneinfo import ZoneInfo

SEOUL = ZoneInfo("Asia/Seoul")


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(tz=dt.timezone.utc)


class FixedClock:
    """A clock that stands still until told to move."""

    def __init__(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime.")
        self._at = at
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._at

    def advance(self, delta: dt.timedelta) -> None:
        with self._lock:
            self._at += delta

    def set(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime.")
        with self._lock:
            self._at = at


_clock: SystemClock | FixedClock = SystemClock()


def now() -> dt.datetime:
    """The current moment, timezone-aware."""
    return _clock.now()


def now_seoul() -> dt.datetime:
    return _clock.now().astimezone(SEOUL)


@contextlib.contextmanager
def installed(clock: SystemClock | FixedClock) -> Iterator[SystemClock | FixedClock]:
    """Use `clock` for every read of now() inside the block."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield clock
    finally:
        _clock = previous
