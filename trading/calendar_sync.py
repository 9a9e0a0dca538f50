"""The calendar's special days, from the database to every process (market_calendar.overrides_set),
and the daily check of the calendar against KIS's holiday inquiry.

Each process reads the special days at most once a minute (`overrides_refresh`, called from the
exit pass, beat and the day's end), and at once after a change it made itself (trading/signals.py).
"""

import datetime as dt
import logging
import time

from core import clock
from market import calendar as market_calendar

from .models import SpecialDay

logger = logging.getLogger("aegis.trading")

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
        logger.info("trading.calendar_overrides %d special day(s)", len(overrides))


# How far ahead the calendar is compared with KIS's.
CHECK_DAYS = 14


def calendar_check(*, broker, today: dt.date | None = None) -> list[str]:
    """Compare the next CHECK_DAYS days of the calendar with KIS's holiday inquiry (opnd_yn:
    whether the market opens); alert each disagreement once (RECONCILIATION, subject
    "calendar"). Returns the disagreements."""
    from execution.alerts import alert_raise
    from execution.models import Alert

    overrides_refresh(force=True)
    today = today or clock.now_seoul().date()
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
    for line in differ:
        alert_raise(
            kind=Alert.Kind.RECONCILIATION,
            severity=Alert.Severity.CRITICAL,
            subject="calendar",
            key=f"calendar:{line}",
            message=f"The market calendar disagrees with KIS's holiday inquiry: {line}. "
            "Correct it in the admin (special days); until then the engine "
            "trades on the calendar. / 시장 달력이 KIS 휴장일 조회와 다릅니다.",
        )
    return differ
