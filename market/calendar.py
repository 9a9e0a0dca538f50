"""KRX trading days and session times (Asia/Seoul), and the exit engine's cadence.

Trading days come from the `holidays` package's XKRX calendar (public holidays, election days,
the year-end closing day). Two kinds of day move the session:

- the first trading day of a year opens at 10:00 (KRX's opening ceremony);
- the national college entrance exam (CSAT) day opens at 10:00 and closes at 16:30. Its date
  is set each year by the Ministry of Education, so it is a table here.

Beside them, special days a person enters in the admin (market.models.SpecialDay: an extra
closure, a late open or close KRX announces) override the library and the table for their date:
`overrides_set` installs them (market/calendar_sync.py reads them from the database), and a daily
check compares the calendar with KIS's own holiday inquiry (alerted when they disagree).

The cadence windows are anchored to the day's real open and close, so they follow a late open.
"""

import datetime as dt
import enum
import functools
from dataclasses import dataclass

import holidays

from core.clock import SEOUL

REGULAR_OPEN = dt.time(9, 0)
REGULAR_CLOSE = dt.time(15, 30)
LATE_OPEN = dt.time(10, 0)
CSAT_CLOSE = dt.time(16, 30)

# CSAT days (a Thursday in mid-November), as the Ministry of Education announces them two
# years or more ahead: 2026-11-19 (the 2027 admissions' exam) and 2027-11-18 (2028's) are both
# announced. Add each year's date when it is.
CSAT_DAYS = frozenset(
    {
        dt.date(2025, 11, 13),
        dt.date(2026, 11, 19),
        dt.date(2027, 11, 18),
    }
)


@dataclass(frozen=True)
class Override:
    """A special day: closed, or open with its own session times."""

    closed: bool
    open: dt.time | None = None
    close: dt.time | None = None
    note: str = ""


# The special days in force (overrides_set): date -> Override.
_overrides: dict[dt.date, Override] = {}


def overrides_set(overrides: dict[dt.date, Override]) -> bool:
    """Install the special days; True when they changed (the cached sessions are forgotten)."""
    global _overrides
    if overrides == _overrides:
        return False
    _overrides = dict(overrides)
    session.cache_clear()
    trading_days_between.cache_clear()
    return True


@functools.cache
def _closed_days(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.financial_holidays("XKRX", years=year))


def is_trading_day(day: dt.date) -> bool:
    special = _overrides.get(day)
    if special is not None:
        return not special.closed
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
    special = _overrides.get(day)
    if special is not None:
        open_, close = special.open or open_, special.close or close
        note = special.note or note
    return Session(
        day=day,
        open=dt.datetime.combine(day, open_, SEOUL),
        close=dt.datetime.combine(day, close, SEOUL),
        note=note,
    )


class Phase(enum.StrEnum):
    """What KRX's stock market is doing, as the regular order book sees it."""

    CLOSED = "CLOSED"  # nothing accepted
    OPENING_AUCTION = "OPENING_AUCTION"  # orders collected, matched at one price at the open
    CONTINUOUS = "CONTINUOUS"  # orders match as they come
    CLOSING_AUCTION = "CLOSING_AUCTION"  # orders collected, matched at one price at the close
    AFTER_CLOSE_PRICE = "AFTER_CLOSE_PRICE"  # after-hours, at the day's closing price
    AFTER_SINGLE_PRICE = "AFTER_SINGLE_PRICE"  # after-hours single-price auctions
    PRE_MARKET = "PRE_MARKET"  # Nextrade's, before KRX's opening auction: continuous
    AFTER_MARKET = "AFTER_MARKET"  # Nextrade's, after KRX's close: continuous


class Matching(enum.StrEnum):
    NONE = "none"
    AUCTION = "auction"  # one price for every order matched (call auction)
    CONTINUOUS = "continuous"
    CLOSE_PRICE = "close_price"  # at a fixed price: the previous or the day's close


# KIS's order types (ORD_DVSN) by the session they are for: the regular session's limit and
# market orders, the pre-open and after-hours closing-price sessions, after-hours single price.
ORD_LIMIT, ORD_MARKET = "00", "01"
ORD_PRE_CLOSE_PRICE, ORD_AFTER_CLOSE_PRICE, ORD_AFTER_SINGLE_PRICE = "05", "06", "07"
REGULAR_ORDERS = frozenset({ORD_LIMIT, ORD_MARKET})


@dataclass(frozen=True)
class Edge:
    """A moment of the trading day: `offset` after the session's open or close, so that a late
    open or close moves what is anchored to it, or after the day's midnight (a fixed time)."""

    anchor: str  # "open", "close" or "day"
    offset: dt.timedelta = dt.timedelta(0)

    def __post_init__(self) -> None:
        if self.anchor not in ("open", "close", "day"):
            raise ValueError("an edge is anchored to the open, the close or the day")

    def on(self, day: Session) -> dt.datetime:
        if self.anchor == "day":
            return dt.datetime.combine(day.day, dt.time(), SEOUL) + self.offset
        return (day.open if self.anchor == "open" else day.close) + self.offset


@dataclass(frozen=True)
class Slot:
    """A stretch of the trading day: its phase, the order types KIS accepts in it, how they
    match."""

    phase: Phase
    begins: Edge
    ends: Edge
    accepts: frozenset[str]
    matching: Matching

    def on(self, day: Session) -> tuple[dt.datetime, dt.datetime]:
        return self.begins.on(day), self.ends.on(day)


def _open(minutes: int = 0) -> Edge:
    return Edge("open", dt.timedelta(minutes=minutes))


def _close(minutes: int = 0) -> Edge:
    return Edge("close", dt.timedelta(minutes=minutes))


# KRX's stock market day (KOSPI, KOSDAQ); docs/market-day.md gives the sources. The times are
# a regular day's (open 09:00, close 15:30); a late open (10:00) or close (16:30) moves what is
# anchored to it, as KRX moves those sessions. A change of KRX's hours (the extended pre- and
# after-market it has announced) is a change of this table.
KRX_DAY: tuple[Slot, ...] = (
    # 08:30-08:40: the pre-open closing-price session (at the previous close) runs beside the
    # opening auction's book.
    Slot(
        Phase.OPENING_AUCTION,
        _open(-30),
        _open(-20),
        REGULAR_ORDERS | {ORD_PRE_CLOSE_PRICE},
        Matching.AUCTION,
    ),
    Slot(Phase.OPENING_AUCTION, _open(-20), _open(), REGULAR_ORDERS, Matching.AUCTION),
    Slot(Phase.CONTINUOUS, _open(), _close(-10), REGULAR_ORDERS, Matching.CONTINUOUS),
    Slot(Phase.CLOSING_AUCTION, _close(-10), _close(), REGULAR_ORDERS, Matching.AUCTION),
    # Regular orders end with the closing auction; after-hours orders are taken from the close
    # and trade from ten minutes after it, at the day's closing price.
    Slot(
        Phase.AFTER_CLOSE_PRICE,
        _close(),
        _close(10),
        frozenset({ORD_AFTER_CLOSE_PRICE}),
        Matching.NONE,
    ),
    Slot(
        Phase.AFTER_CLOSE_PRICE,
        _close(10),
        _close(30),
        frozenset({ORD_AFTER_CLOSE_PRICE}),
        Matching.CLOSE_PRICE,
    ),
    # Single-price auctions every ten minutes until 18:00, on a late close too.
    Slot(
        Phase.AFTER_SINGLE_PRICE,
        _close(30),
        Edge("day", dt.timedelta(hours=18)),
        frozenset({ORD_AFTER_SINGLE_PRICE}),
        Matching.AUCTION,
    ),
)


class Venue(enum.StrEnum):
    """Where an order is sent: KIS's exchange division (EXCG_ID_DVSN_CD)."""

    KRX = "KRX"
    NXT = "NXT"  # Nextrade, the alternative exchange trading KRX's stocks since March 2025
    SOR = "SOR"  # KIS's smart order routing: to KRX or NXT, whichever has the better book


# The order types Nextrade takes (KIS's order-cash guide, for EXCG_ID_DVSN_CD NXT): limit, best
# and priority limit, their IOC and FOK forms and the IOC/FOK market orders, mid-price and
# stop-limit. Not a plain market order (01). Which of them each of its sessions takes is
# UNCONFIRMED; Aegis sends limit orders there.
NXT_ORDERS = frozenset(
    {ORD_LIMIT, "03", "04", "11", "12", "13", "14", "15", "16", "21", "22", "23", "24"}
)

# Nextrade's day (docs/market-day.md gives the sources): a pre-market from an hour before KRX's
# open to ten minutes before it, the main market from 30 s after KRX's open until KRX's closing
# auction, an after-market from ten minutes after KRX's close to 20:00, all continuous, and
# nothing while KRX runs its auctions. Anchored to KRX's open and close as KRX's own sessions
# are; whether Nextrade moves with KRX on a late day is UNCONFIRMED.
NXT_DAY: tuple[Slot, ...] = (
    Slot(Phase.PRE_MARKET, _open(-60), _open(-10), NXT_ORDERS, Matching.CONTINUOUS),
    Slot(
        Phase.CONTINUOUS,
        Edge("open", dt.timedelta(seconds=30)),
        _close(-10),
        NXT_ORDERS,
        Matching.CONTINUOUS,
    ),
    Slot(
        Phase.AFTER_MARKET,
        _close(10),
        Edge("day", dt.timedelta(hours=20)),
        NXT_ORDERS,
        Matching.CONTINUOUS,
    ),
)

VENUE_DAYS: dict[Venue, tuple[Slot, ...]] = {Venue.KRX: KRX_DAY, Venue.NXT: NXT_DAY}


@dataclass(frozen=True)
class Moment:
    """Where `at` falls in the KRX day: its phase, its slot (None when closed) and the day's
    session (None on a day KRX is closed)."""

    at: dt.datetime
    phase: Phase
    slot: Slot | None
    session: Session | None

    def accepts(self, ord_dvsn: str = ORD_LIMIT) -> bool:
        return self.slot is not None and ord_dvsn in self.slot.accepts


def moment(at: dt.datetime, day_model: tuple[Slot, ...] = KRX_DAY) -> Moment:
    """The phase of the KRX day at `at` (any time zone; the day is Seoul's)."""
    day = session(at.astimezone(SEOUL).date())
    if day is not None:
        for slot in day_model:
            start, end = slot.on(day)
            if start <= at < end:
                return Moment(at, slot.phase, slot, day)
    return Moment(at, Phase.CLOSED, None, day)


def phase_began(
    day: Session, phase: Phase, day_model: tuple[Slot, ...] = KRX_DAY
) -> dt.datetime | None:
    """When `phase` first begins on the session's day (None when it has no slot)."""
    starts = [slot.on(day)[0] for slot in day_model if slot.phase is phase]
    return min(starts) if starts else None


def next_start(
    at: dt.datetime,
    phases: frozenset[Phase],
    day_model: tuple[Slot, ...] = KRX_DAY,
    *,
    horizon_days: int = 20,
) -> dt.datetime:
    """When one of `phases` next begins after `at` (at `at` itself if one is under way)."""
    day = at.astimezone(SEOUL).date()
    for offset in range(horizon_days):
        today = session(day + dt.timedelta(days=offset))
        if today is None:
            continue
        for slot in sorted(day_model, key=lambda s: s.on(today)[0]):
            start, end = slot.on(today)
            if slot.phase in phases and end > at:
                return max(start, at)
    raise ValueError(f"none of {sorted(phases)} within {horizon_days} days of {at}")


def next_phase_start(
    at: dt.datetime, phases: frozenset[Phase], day_model: tuple[Slot, ...] = KRX_DAY
) -> dt.datetime:
    """When the market next moves, after `at`, into one of `phases` from another phase: the
    first slot of one of them that begins after `at` in a phase other than `at`'s."""
    current = moment(at, day_model).phase
    return (
        next_start(at, frozenset(phases) - {current}, day_model)
        if current in phases
        else next_start(at, phases, day_model)
    )


def venue_moment(at: dt.datetime, venue: Venue) -> Moment:
    """Where `at` falls in the day of the venue an order to `venue` trades on: for SOR, KRX's
    while KRX takes a limit order, else Nextrade's (KIS routes it to whichever trades)."""
    if venue is Venue.SOR:
        krx = moment(at, KRX_DAY)
        return krx if krx.accepts() else moment(at, NXT_DAY)
    return moment(at, VENUE_DAYS[venue])


def venue_close(day: Session, venue: Venue) -> dt.datetime:
    """When the day's orders to `venue` have ended: KRX's regular orders at its close,
    Nextrade's at the end of its after-market. An order routed by SOR may be on Nextrade's
    book, so it counts as Nextrade's."""
    if venue is Venue.KRX:
        return day.close
    return max(slot.on(day)[1] for slot in NXT_DAY)


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


def cadence_at(
    now: dt.datetime,
    windows: tuple[Window, ...] = DEFAULT_WINDOWS,
    default_ms: int = DEFAULT_INTERVAL_MS,
) -> int | None:
    """Milliseconds between exit evaluations at `now`, or None when nothing should run: not a
    trading day, or outside the span from the earliest window's start to the close and outside
    Nextrade's own sessions (its pre- and after-market, where exits are evaluated every
    `default_ms` for the profiles that allow Nextrade exits)."""
    today = session(now.astimezone(SEOUL).date())
    if today is None:
        return None
    anchors = {"open": today.open, "close": today.close}
    begins = min(
        [today.open] + [anchors[w.anchor] + dt.timedelta(seconds=w.start_s) for w in windows]
    )
    if not begins <= now < today.close:
        nxt = moment(now, NXT_DAY).phase
        return default_ms if nxt in (Phase.PRE_MARKET, Phase.AFTER_MARKET) else None
    for window in windows:
        anchor = anchors[window.anchor]
        if (
            anchor + dt.timedelta(seconds=window.start_s)
            <= now
            < anchor + dt.timedelta(seconds=window.end_s)
        ):
            return window.interval_ms
    return default_ms
