"""KRX trading days, late opens and the exit engine's cadence, as pure logic."""

import datetime as dt

import pytest

from core.clock import SEOUL
from market import calendar as market_calendar
from market.calendar import (
    CSAT_DAYS,
    DEFAULT_WINDOWS,
    Window,
    cadence_at,
    is_trading_day,
    session,
    trading_days_between,
)

D = dt.date


@pytest.mark.parametrize(
    "day",
    [
        D(2026, 1, 1),
        D(2026, 2, 16),
        D(2026, 2, 17),
        D(2026, 2, 18),
        D(2026, 3, 2),
        D(2026, 5, 1),
        D(2026, 5, 5),
        D(2026, 5, 25),
        D(2026, 6, 3),
        D(2026, 8, 17),
        D(2026, 9, 24),
        D(2026, 9, 25),
        D(2026, 10, 5),
        D(2026, 10, 9),
        D(2026, 12, 25),
        D(2026, 12, 31),
        D(2027, 1, 1),
        D(2027, 2, 8),
        D(2027, 2, 9),
        D(2027, 3, 1),
        D(2027, 5, 5),
        D(2027, 5, 13),
        D(2027, 8, 16),
        D(2027, 9, 14),
        D(2027, 9, 15),
        D(2027, 9, 16),
        D(2027, 10, 4),
        D(2027, 10, 11),
        D(2027, 12, 31),
    ],
)
def test_krx_is_closed_on_its_2026_and_2027_holidays(day):
    assert not is_trading_day(day) and session(day) is None


@pytest.mark.parametrize("day", [D(2026, 11, 21), D(2026, 11, 22), D(2027, 1, 2)])
def test_krx_is_closed_at_weekends(day):
    assert not is_trading_day(day)


@pytest.mark.parametrize("day", [D(2026, 11, 23), D(2026, 4, 6), D(2027, 6, 4), D(2026, 12, 30)])
def test_ordinary_days_open_at_nine_and_close_at_half_past_three(day):
    s = session(day)
    assert (s.open.time(), s.close.time(), s.late_open) == (dt.time(9), dt.time(15, 30), False)
    assert s.open.tzinfo == SEOUL


@pytest.mark.parametrize("day", [D(2026, 1, 2), D(2027, 1, 4)])
def test_the_first_trading_day_of_the_year_opens_at_ten(day):
    s = session(day)
    assert (s.open.time(), s.close.time(), s.late_open) == (dt.time(10), dt.time(15, 30), True)


@pytest.mark.parametrize("day", sorted(CSAT_DAYS))
def test_csat_day_opens_and_closes_an_hour_late(day):
    assert day.weekday() == 3  # a Thursday
    s = session(day)
    assert (s.open.time(), s.close.time()) == (dt.time(10), dt.time(16, 30))


def test_trading_days_between_skips_weekends_and_holidays():
    assert trading_days_between(D(2026, 9, 22), D(2026, 9, 29)) == 3  # Chuseok week
    assert trading_days_between(D(2026, 11, 20), D(2026, 11, 23)) == 1
    assert trading_days_between(D(2026, 11, 23), D(2026, 11, 23)) == 0


def at(day, hh, mm, ss=0, us=0):
    return dt.datetime(day.year, day.month, day.day, hh, mm, ss, us, tzinfo=SEOUL)


MONDAY = D(2026, 11, 23)


@pytest.mark.parametrize(
    "moment, interval",
    [
        (at(MONDAY, 7, 59, 59), None),
        (at(MONDAY, 8, 0), 2000),  # Nextrade's pre-market: profiles with Nextrade exits
        (at(MONDAY, 8, 49, 59), 2000),
        (at(MONDAY, 8, 50), None),
        (at(MONDAY, 8, 54, 59), None),
        (at(MONDAY, 8, 55), 200),
        (at(MONDAY, 9, 0), 200),
        (at(MONDAY, 9, 9, 59, 999_999), 200),
        (at(MONDAY, 9, 10), 2000),
        (at(MONDAY, 12, 0), 2000),
        (at(MONDAY, 15, 14, 59), 2000),
        (at(MONDAY, 15, 15), 500),
        (at(MONDAY, 15, 29, 59), 500),
        (at(MONDAY, 15, 30), None),
        (at(MONDAY, 15, 39, 59), None),
        (at(MONDAY, 15, 40), 2000),  # Nextrade's after-market
        (at(MONDAY, 19, 59, 59), 2000),
        (at(MONDAY, 20, 0), None),
        (at(D(2026, 11, 22), 9, 0), None),  # Sunday
        (at(D(2026, 12, 25), 9, 0), None),  # Christmas
    ],
)
def test_the_cadence_of_an_ordinary_day(moment, interval):
    assert cadence_at(moment) == interval


def test_the_morning_rush_follows_a_late_open():
    csat = D(2026, 11, 19)
    assert cadence_at(at(csat, 8, 58)) is None
    assert cadence_at(at(csat, 9, 55)) == 200 and cadence_at(at(csat, 10, 9)) == 200
    assert cadence_at(at(csat, 10, 10)) == 2000
    assert cadence_at(at(csat, 16, 15)) == 500 and cadence_at(at(csat, 16, 30)) is None
    new_year = D(2027, 1, 4)
    assert cadence_at(at(new_year, 8, 59)) is None and cadence_at(at(new_year, 9, 56)) == 200
    assert cadence_at(at(new_year, 9, 0)) == 2000  # Nextrade's pre-market, an hour before


def test_windows_are_data():
    custom = (Window("open", -60, 60, 100),)
    assert cadence_at(at(MONDAY, 8, 59), custom) == 100
    assert cadence_at(at(MONDAY, 8, 58), custom) is None
    assert cadence_at(at(MONDAY, 9, 1), custom, default_ms=1000) == 1000
    assert DEFAULT_WINDOWS[0].interval_ms == 200
    with pytest.raises(ValueError):
        Window("noon", 0, 10, 200)
    with pytest.raises(ValueError):
        Window("open", 10, 10, 200)
    with pytest.raises(ValueError):
        Window("open", 0, 10, 10)


@pytest.mark.parametrize(
    ("day", "moment", "due"),
    [
        (D(2026, 12, 1), "08:58:30", False),  # before the open: nothing trades yet
        (D(2026, 12, 1), "09:00:05", False),  # the open has not run for the timeout yet
        (D(2026, 12, 1), "09:00:10", True),
        (D(2026, 12, 1), "15:19:59", True),
        (D(2026, 12, 1), "15:20:00", False),  # the closing auction: orders wait for 15:30
        (D(2026, 12, 1), "16:00:00", False),
        (D(2026, 12, 5), "11:00:00", False),  # a Saturday
        (D(2027, 1, 4), "09:30:00", False),  # the year's first day opens at 10:00
        (D(2027, 1, 4), "10:00:10", True),
    ],
)
def test_the_engine_reprices_its_exits_only_in_continuous_trading(day, moment, due):
    from trading.services import limit_orders_due

    now = dt.datetime.combine(day, dt.time.fromisoformat(moment), SEOUL)
    assert limit_orders_due(now, dt.timedelta(seconds=10)) is due


# --- The KRX day's phases ---------------------------------------------------------------------


def utc(day, hh, mm, ss=0):
    """A Seoul wall time handed in as a UTC server would see it."""
    return dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=SEOUL).astimezone(dt.UTC)


P = market_calendar.Phase


@pytest.mark.parametrize(
    "hh, mm, phase, limit_accepted",
    [
        (8, 29, P.CLOSED, False),
        (8, 30, P.OPENING_AUCTION, True),
        (8, 59, P.OPENING_AUCTION, True),
        (9, 0, P.CONTINUOUS, True),
        (15, 19, P.CONTINUOUS, True),
        (15, 20, P.CLOSING_AUCTION, True),
        (15, 30, P.AFTER_CLOSE_PRICE, False),  # after-hours orders taken, nothing trades
        (15, 39, P.AFTER_CLOSE_PRICE, False),
        (15, 45, P.AFTER_CLOSE_PRICE, False),
        (16, 30, P.AFTER_SINGLE_PRICE, False),
        (18, 0, P.CLOSED, False),
        (23, 0, P.CLOSED, False),
    ],
)
def test_the_phases_of_an_ordinary_day(hh, mm, phase, limit_accepted):
    at = market_calendar.moment(utc(MONDAY, hh, mm))
    assert at.phase is phase
    assert at.accepts(market_calendar.ORD_LIMIT) is limit_accepted


def test_after_hours_phases_accept_their_own_order_types_only():
    assert (
        market_calendar.moment(utc(MONDAY, 15, 35)).slot.matching is market_calendar.Matching.NONE
    )
    after_close = market_calendar.moment(utc(MONDAY, 15, 50))
    assert after_close.accepts(market_calendar.ORD_AFTER_CLOSE_PRICE)
    assert not after_close.accepts(market_calendar.ORD_AFTER_SINGLE_PRICE)
    single = market_calendar.moment(utc(MONDAY, 17, 0))
    assert single.accepts(market_calendar.ORD_AFTER_SINGLE_PRICE)
    assert single.slot.matching is market_calendar.Matching.AUCTION
    assert market_calendar.moment(utc(MONDAY, 8, 35)).accepts(market_calendar.ORD_PRE_CLOSE_PRICE)
    assert not market_calendar.moment(utc(MONDAY, 8, 45)).accepts(
        market_calendar.ORD_PRE_CLOSE_PRICE
    )


def test_a_late_open_and_a_late_close_move_the_phases_anchored_to_them():
    csat = dt.date(2026, 11, 19)  # opens 10:00, closes 16:30
    assert market_calendar.moment(utc(csat, 9, 15)).phase is P.CLOSED
    assert market_calendar.moment(utc(csat, 9, 30)).phase is P.OPENING_AUCTION
    assert market_calendar.moment(utc(csat, 15, 30)).phase is P.CONTINUOUS
    assert market_calendar.moment(utc(csat, 16, 25)).phase is P.CLOSING_AUCTION
    assert market_calendar.moment(utc(csat, 16, 45)).phase is P.AFTER_CLOSE_PRICE
    assert market_calendar.moment(utc(csat, 17, 30)).phase is P.AFTER_SINGLE_PRICE
    assert market_calendar.moment(utc(csat, 18, 0)).phase is P.CLOSED  # 18:00 on a late day too


def test_no_phase_on_a_closed_day():
    christmas = dt.date(2026, 12, 25)
    at = market_calendar.moment(utc(christmas, 10, 0))
    assert (at.phase, at.session) == (P.CLOSED, None)


def test_the_next_start_of_a_phase_skips_the_night_the_weekend_and_holidays():
    friday = dt.date(2026, 11, 27)
    regular = frozenset({P.CONTINUOUS, P.CLOSING_AUCTION})
    nxt = market_calendar.next_start(utc(friday, 15, 31), regular)
    assert nxt == utc(MONDAY + dt.timedelta(days=7), 9, 0)
    # Under way: now.
    assert market_calendar.next_start(utc(friday, 10, 0), regular) == utc(friday, 10, 0)
    # 2026-12-24 (Thursday) evening: Christmas is closed, the next open is Monday the 28th.
    assert market_calendar.next_start(utc(dt.date(2026, 12, 24), 20, 0), regular) == utc(
        dt.date(2026, 12, 28), 9, 0
    )


def test_the_phases_are_data():
    day_model = (
        market_calendar.Slot(
            P.CONTINUOUS,
            market_calendar.Edge("open", dt.timedelta(hours=-1)),
            market_calendar.Edge("close", dt.timedelta(hours=2)),
            market_calendar.REGULAR_ORDERS,
            market_calendar.Matching.CONTINUOUS,
        ),
    )
    assert market_calendar.moment(utc(MONDAY, 8, 10), day_model).phase is P.CONTINUOUS
    assert market_calendar.moment(utc(MONDAY, 17, 10), day_model).phase is P.CONTINUOUS
    assert market_calendar.moment(utc(MONDAY, 17, 40), day_model).phase is P.CLOSED


V = market_calendar.Venue


@pytest.mark.parametrize(
    "hh, mm, ss, phase, limit_accepted",
    [
        (7, 59, 59, P.CLOSED, False),
        (8, 0, 0, P.PRE_MARKET, True),
        (8, 49, 59, P.PRE_MARKET, True),
        (8, 50, 0, P.CLOSED, False),  # KRX's opening auction: Nextrade pauses
        (9, 0, 29, P.CLOSED, False),
        (9, 0, 30, P.CONTINUOUS, True),
        (15, 19, 59, P.CONTINUOUS, True),
        (15, 20, 0, P.CLOSED, False),  # KRX's closing auction
        (15, 39, 59, P.CLOSED, False),
        (15, 40, 0, P.AFTER_MARKET, True),
        (19, 59, 59, P.AFTER_MARKET, True),
        (20, 0, 0, P.CLOSED, False),
    ],
)
def test_the_phases_of_nextrades_day(hh, mm, ss, phase, limit_accepted):
    at = market_calendar.venue_moment(utc(MONDAY, hh, mm, ss), V.NXT)
    assert at.phase is phase
    assert at.accepts(market_calendar.ORD_LIMIT) is limit_accepted


def test_nextrade_takes_no_plain_market_order():
    at = market_calendar.venue_moment(utc(MONDAY, 10, 0), V.NXT)
    assert at.accepts(market_calendar.ORD_LIMIT)
    assert not at.accepts(market_calendar.ORD_MARKET)


@pytest.mark.parametrize(
    "hh, mm, phase",
    [
        (8, 10, P.PRE_MARKET),  # Nextrade's
        (8, 55, P.OPENING_AUCTION),  # KRX's
        (10, 0, P.CONTINUOUS),
        (15, 25, P.CLOSING_AUCTION),
        (17, 0, P.AFTER_MARKET),  # KRX takes no limit order now: Nextrade's
        (20, 30, P.CLOSED),
    ],
)
def test_a_routed_order_trades_where_a_limit_order_is_taken(hh, mm, phase):
    assert market_calendar.venue_moment(utc(MONDAY, hh, mm), V.SOR).phase is phase


def test_nextrade_is_closed_when_krx_is():
    christmas = dt.date(2026, 12, 25)
    assert market_calendar.venue_moment(utc(christmas, 10, 0), V.NXT).phase is P.CLOSED
