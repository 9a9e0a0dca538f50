"""The exchanges' own day, as the simulator keeps it on its clock: KRX's opening call auction,
continuous trading, the closing call auction, then closed, with day orders ended at the close;
and Nextrade's pre-market, main market and after-market, its orders ended at 20:00.

It is deliberately not Aegis's model of the day (market/calendar.py): the simulator
stands for KRX, so a calendar of Aegis's that is wrong meets an exchange that disagrees, as it
would in production. Regular orders only (the after-hours sessions take other order types,
which the simulator does not trade). Times of a regular day; a late open or close, and closed
dates, are given through /_sim/day.
"""

import datetime as dt
from dataclasses import dataclass, field

HOLIDAY, CLOSED, AUCTION, CONTINUOUS = "holiday", "closed", "auction", "continuous"
OPENING_AUCTION = dt.timedelta(minutes=30)  # orders from 08:30 for the 09:00 match
CLOSING_AUCTION = dt.timedelta(minutes=10)  # 15:20-15:30, matched at the close
# Nextrade: 08:00-08:50, 09:00:30-15:20 and 15:40-20:00 on a regular day, continuous trading.
NXT_PRE = (dt.timedelta(minutes=-60), dt.timedelta(minutes=-10))  # from KRX's open
NXT_MAIN_FROM_OPEN = dt.timedelta(seconds=30)
NXT_AFTER_FROM_CLOSE = dt.timedelta(minutes=10)
NXT_END = dt.time(20, 0)


@dataclass
class KrxDay:
    open: dt.time = dt.time(9, 0)
    close: dt.time = dt.time(15, 30)
    closed_dates: frozenset[dt.date] = field(default_factory=frozenset)

    def phase(self, at: dt.datetime) -> str:
        """What the regular order book does at `at` (Seoul wall time)."""
        day = at.date()
        if day.weekday() >= 5 or day in self.closed_dates:
            return HOLIDAY
        opens = dt.datetime.combine(day, self.open, at.tzinfo)
        closes = dt.datetime.combine(day, self.close, at.tzinfo)
        if opens - OPENING_AUCTION <= at < opens:
            return AUCTION
        if opens <= at < closes - CLOSING_AUCTION:
            return CONTINUOUS
        if closes - CLOSING_AUCTION <= at < closes:
            return AUCTION
        return CLOSED

    def nxt_phase(self, at: dt.datetime) -> str:
        """What Nextrade's order book does at `at`: continuous trading or closed."""
        day = at.date()
        if day.weekday() >= 5 or day in self.closed_dates:
            return HOLIDAY
        opens = dt.datetime.combine(day, self.open, at.tzinfo)
        closes = dt.datetime.combine(day, self.close, at.tzinfo)
        ends = dt.datetime.combine(day, NXT_END, at.tzinfo)
        spans = (
            (opens + NXT_PRE[0], opens + NXT_PRE[1]),
            (opens + NXT_MAIN_FROM_OPEN, closes - CLOSING_AUCTION),
            (closes + NXT_AFTER_FROM_CLOSE, ends),
        )
        return CONTINUOUS if any(a <= at < b for a, b in spans) else CLOSED

    def nxt_ended(self, at: dt.datetime) -> bool:
        """Whether `at` is after Nextrade's day (its orders have ended)."""
        return at >= dt.datetime.combine(at.date(), NXT_END, at.tzinfo)

    def closed_since_open(self, at: dt.datetime) -> bool:
        """Whether `at` is after this day's close (the day orders have ended)."""
        return at >= dt.datetime.combine(at.date(), self.close, at.tzinfo)
