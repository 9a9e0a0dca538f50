"""The calendar's special days, from the database to every process (market_calendar.overrides_set),
and the calendar compared with KIS's holiday inquiry.

Each process reads the special days at most once a minute (`overrides_refresh`, called from the
exit pass, beat and the day's end), and at once after a change it made itself (market/signals.py).
The daily check that alerts each disagreement is trading's (trading/calendar_sync.py): an alert is
the ledger's, which the market does not import.
"""

import datetime as dt
import logging
import time

from . import calendar as market_calendar
from .models import SpecialDay

logger = logging.getLogger("aegis.market")

REFRESH_S = 60.0
_read_at = -REFRESH_S


def overrides_refresh(*, force: bool = False) -> None:
    """Install the special days from the database, unless read less than a minute ago."""
    global _read_at
    mono = time.monotonic()
    if not force and mono - _read_at < REFRESH_S:
        return
    _read_at = mono
    overrides = {
        d.day: market_calendar.Override(
            closed=d.closed, open=d.open_at, close=d.close_at, note=d.note
        )
        for d in SpecialDay.objects.all()
    }
    if market_calendar.overrides_set(overrides):
        logger.info("market.calendar_overrides %d special day(s)", len(overrides))


# How far ahead the calendar is compared with KIS's.
CHECK_DAYS = 14


def calendar_differences(*, broker, today: dt.date) -> list[str]:
    """The next CHECK_DAYS days from `today` on which the calendar and KIS's holiday inquiry
    (opnd_yn: whether the market opens) disagree, each as a line a person can read."""
    horizon = today + dt.timedelta(days=CHECK_DAYS)
    differ = []
    for row in broker.market_days(start=today):
        if not today <= row.day < horizon:
            continue
        ours = market_calendar.is_trading_day(row.day)
        if ours != row.open:
            differ.append(
                f"{row.day:%Y-%m-%d}: KIS says {'open' if row.open else 'closed'}, "
                f"the calendar {'open' if ours else 'closed'}"
            )
    return differ
