"""The one clock (ARCHITECTURE.md, I7). Every read of "now" in Aegis goes through `now()`, so tests
and the demo can run at any moment of any day by installing another clock.
"""

import contextlib
import datetime as dt
import os
import threading
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

SEOUL = ZoneInfo("Asia/Seoul")


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(tz=dt.UTC)


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


class ShiftedClock:
    """The wall clock moved to another moment and optionally run faster: `start` at the Unix time
    `origin`, then `speed` seconds per real second. Processes given the same three values read
    the same now, so a worker, pricesync and the simulator can all live in one simulated day."""

    def __init__(
        self, start: dt.datetime, *, origin: float | None = None, speed: float = 1.0
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("ShiftedClock needs a timezone-aware start.")
        if not speed > 0:
            raise ValueError("ShiftedClock's speed must be positive.")
        self._base = (start, time.time() if origin is None else origin)
        self.speed = speed

    def now(self) -> dt.datetime:
        start, origin = self._base
        return start + dt.timedelta(seconds=(time.time() - origin) * self.speed)

    @property
    def start(self) -> dt.datetime:
        return self._base[0]

    @property
    def origin(self) -> float:
        return self._base[1]

    def rebase(self, start: dt.datetime, *, origin: float | None = None) -> None:
        """Jump: from now on (or from the Unix time `origin`) the clock reads `start`, at the
        same speed. The demo skips a quiet stretch of its day this way."""
        if start.tzinfo is None:
            raise ValueError("ShiftedClock needs a timezone-aware start.")
        self._base = (start, time.time() if origin is None else origin)  # one atomic swap

    def environ(self) -> dict[str, str]:
        """The variables that give another process this clock."""
        return {
            "AEGIS_CLOCK_START": self.start.isoformat(),
            "AEGIS_CLOCK_ORIGIN": repr(self.origin),
            "AEGIS_CLOCK_SPEED": repr(self.speed),
        }


Clock = SystemClock | FixedClock | ShiftedClock


def from_environ(environ=os.environ) -> Clock:
    """The system clock, or a ShiftedClock when AEGIS_CLOCK_START is set (ISO 8601 with an
    offset; AEGIS_CLOCK_ORIGIN, Unix seconds, defaults to now; AEGIS_CLOCK_SPEED to 1)."""
    start = environ.get("AEGIS_CLOCK_START", "").strip()
    if not start:
        return SystemClock()
    try:
        at = dt.datetime.fromisoformat(start)
        origin = environ.get("AEGIS_CLOCK_ORIGIN", "").strip()
        return ShiftedClock(
            at,
            origin=float(origin) if origin else None,
            speed=float(environ.get("AEGIS_CLOCK_SPEED", "").strip() or 1),
        )
    except ValueError as exc:
        raise ValueError(f"AEGIS_CLOCK_START/ORIGIN/SPEED: {exc}") from None


_clock: Clock = from_environ()


def now() -> dt.datetime:
    """The current moment, timezone-aware."""
    return _clock.now()


def now_seoul() -> dt.datetime:
    return _clock.now().astimezone(SEOUL)


def speed() -> float:
    """Simulated seconds per real second of the clock in force (1 but on a sped-up day): a
    wait worked out on the clock is slept for this many times less."""
    return getattr(_clock, "speed", 1.0)


@contextlib.contextmanager
def installed(clock: Clock) -> Iterator[Clock]:
    """Use `clock` for every read of now() inside the block."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield clock
    finally:
        _clock = previous
