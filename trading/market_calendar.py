"""KRX trading days and session times (Asia/Seoul), and the exit engine's cadence.

Trading days come from the `holidays` package's XKRX calendar (public holidays, election days,
the year-end closing day). Two kinds of day move the session:

- the first trading day of a year opens at 10:00 (KRX's opening ceremony);
- the national college entrance exam (CSAT) day opens at 10:00 and closes at 16:30. Its date
  is set each year by the Ministry of Education, so it is a table here.

The cadence windows are anchored to the day's real open and close, so they follow a late open.
"""

import datetime as dt
import functools
from dataclasses import dataclass

import holidays

from aegis.clock import SEOUL

REGULAR_OPEN = dt.time(9, 0)
REGULAR_CLOSE = dt.time(15, 30)
LATE_OPEN = dt.time(10, 0)
CSAT_CLOSE = dt.time(16, 30)

# CSAT days (a Thursday in mid-November), as the Ministry of Education announces them two
# years or more ahead: 2026-11-19 (the 2027 admissions' exam) and 2027-11-18 (2028's) are both
# announced. Add each year's date when it is.
CSAT_DAYS = frozenset({
    dt.date(2025, 11, 13),
    dt.date(2026, 11, 19),
    dt.date(2027, 11, 18),
})


@functools.cache
def _closed_days(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.financial_holidays("XKRX", years=year))


def is_trading_day(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in _closed_days(day.year)


@dataclass(frozen=True)
class Session:
    day: dt.date
    open: dt.datetime
    close: dt.datetime
    note: str = ""

    @property
    def late_open(self) -> bool:
        return self.open.timetz().replace(tzinfo=None) != REGULAR_OPEN


@functools.lru_cache(maxsize=64)
def session(day: dt.date) -> Session | None:
    """The day's regular session, or None when KRX is closed."""
    if not is_trading_day(day):
        return None
    open_, close, note = REGULAR_OPEN, REGULAR_CLOSE, ""
    first = dt.date(day.year, 1, 1)
    while not is_trading_day(first):
        first += dt.timedelta(days=1)
    if day == first:
        open_, note = LATE_OPEN, "first trading day of the year"
    if day in CSAT_DAYS:
        open_, close, note = LATE_OPEN, CSAT_CLOSE, "college entrance exam day"
    return Session(day=day, open=dt.datetime.combine(day, open_, SEOUL),
                   close=dt.datetime.combine(day, close, SEOUL), note=note)


@functools.lru_cache(maxsize=4096)
def trading_days_between(start: dt.date, end: dt.date) -> int:
    """Trading days after `start` up to and including `end` (0 when end ≤ start)."""
    days, day = 0, start
    while day < end:
        day += dt.timedelta(days=1)
        days += is_trading_day(day)
    return days


@dataclass(frozen=True)
class Window:
    """Evaluate every `interval_ms` from `start_s` to `end_s` seconds around the open or close."""

    anchor: str  # "open" or "close"
    start_s: int
    end_s: int
    interval_ms: int

    def __post_init__(self) -> None:
        if self.anchor not in ("open", "close"):
            raise ValueError("a window is anchored to the open or the close")
        if self.end_s <= self.start_s:
            raise ValueError("a window must end after it starts")
        if self.interval_ms < 50:
            raise ValueError("an interval below 50 ms cannot be kept")


# The review's morning rush: 08:55–09:10 every 200 ms, 15:15–15:30 every 500 ms, else 2 s.
DEFAULT_WINDOWS = (Window("open", -300, 600, 200), Window("close", -900, 0, 500))
DEFAULT_INTERVAL_MS = 2000


def cadence_at(now: dt.datetime, windows: tuple[Window, ...] = DEFAULT_WINDOWS,
               default_ms: int = DEFAULT_INTERVAL_MS) -> int | None:
    """Milliseconds between exit evaluations at `now`, or None when nothing should run: not a
    trading day, or outside the span from the earliest window's start to the close."""
    today = session(now.astimezone(SEOUL).date())
    if today is None:
        return None
    anchors = {"open": today.open, "close": today.close}
    begins = min([today.open] + [anchors[w.anchor] + dt.timedelta(seconds=w.start_s)
                                 for w in windows])
    if not begins <= now < today.close:
        return None
    for window in windows:
        anchor = anchors[window.anchor]
        if anchor + dt.timedelta(seconds=window.start_s) <= now < \
                anchor + dt.timedelta(seconds=window.end_s):
            return window.interval_ms
    return default_ms
