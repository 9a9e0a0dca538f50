"""The exit pass on PostgreSQL: rules fire through the ledger once, the exit state advances under
its lock, and a second pass over the same prices opens nothing more."""

import datetime as dt
from decimal import Decimal

import pytest

from aegis import clock
from execution.models import OrderIntent, Position
from tests.ledger_helpers import open_position
from trading.models import BestPrice, ExitProfile, PositionExitState, TakeProfitTier
from trading.services import exit_pass

pytestmark = pytest.mark.django_db(transaction=True)  # commits invalidate the cache

D = Decimal
NOW = dt.datetime(2026, 11, 24, 10, 30, tzinfo=clock.SEOUL)  # a Tuesday, mid-session


@pytest.fixture(autouse=True)
def fixed_clock():
    with clock.installed(clock.FixedClock(NOW)):
        yield


def managed(symbol, qty, profile, price=70_000):
    position = open_position(symbol, qty, price)
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=qty)
    return position


def quote(symbol, price, at=NOW):
    BestPrice.objects.update_or_create(symbol=symbol, defaults={
        "price": price, "prev_close": 70_000, "lower_limit": 49_000, "upper_limit": 91_000,
        "source": "WS", "event_at": at})


def exits(position):
    return list(OrderIntent.objects.filter(position=position, side="SELL").order_by("created_at"))


def test_a_stop_loss_opens_one_exit_however_often_it_is_evaluated(new_symbol):
    profile = ExitProfile.objects.create(name="sl", stop_loss_pct=D(3), gap_down_pct=None)
    position = managed(new_symbol(), 10, profile)
    quote(position.symbol, 68_000)
    assert exit_pass().exits == 0  # 68,000 > 67,900
    quote(position.symbol, 67_900)
    assert exit_pass().exits == 1
    assert exit_pass().exits == 0  # everything is reserved already
    [intent] = exits(position)
    assert (intent.intent_type, intent.qty, intent.limit_price) == ("EXIT_STOP_LOSS", 10, 67_700)
    assert intent.event_at == NOW and "67,900" in intent.reason
    position.refresh_from_db()
    assert position.reserved_qty == 10


def test_tiers_advance_once_and_the_high_water_mark_follows(new_symbol):
    profile = ExitProfile.objects.create(name="tp", gap_down_pct=None,
                                         trailing_activation_pct=D(5), trailing_pct=D(3))
    TakeProfitTier.objects.create(profile=profile, gain_pct=D(5), sell_pct=D(30))
    TakeProfitTier.objects.create(profile=profile, gain_pct=D(10), sell_pct=D(30))
    position = managed(new_symbol(), 100, profile)
    quote(position.symbol, 72_000)
    assert exit_pass().exits == 0
    assert PositionExitState.objects.get(pk=position.pk).high_water_mark == 72_000
    quote(position.symbol, 74_000)  # +5.7 %: the first tier
    assert exit_pass().exits == 1 and exit_pass().exits == 0
    state = PositionExitState.objects.get(pk=position.pk)
    assert (state.tiers_done, state.high_water_mark) == (1, 74_000)
    quote(position.symbol, 71_700)  # 3 % under the high of 74,000: the trailing stop
    assert exit_pass().exits == 1
    assert [(i.intent_type, i.qty) for i in exits(position)] == \
        [("EXIT_TAKE_PROFIT", 30), ("EXIT_TRAILING", 70)]


def test_positions_without_a_price_or_a_profile_are_left_alone(new_symbol):
    profile = ExitProfile.objects.create(name="p", stop_loss_pct=D(3))
    priced = managed(new_symbol(), 5, profile)
    managed(new_symbol(), 5, profile)  # no price yet
    unmanaged = open_position(new_symbol(), 5, 70_000)
    quote(priced.symbol, 60_000)
    quote(unmanaged.symbol, 60_000)
    result = exit_pass()
    assert (result.evaluated, result.exits, result.skipped_no_price) == (1, 1, 1)
    assert exits(unmanaged) == []


def test_gap_down_fires_on_the_opening_trade_only(new_symbol):
    profile = ExitProfile.objects.create(name="gap")  # gap_down_pct defaults to 5 %
    position = managed(new_symbol(), 10, profile)
    opening = dt.datetime(2026, 11, 24, 9, 0, 0, 300_000, tzinfo=clock.SEOUL)
    with clock.installed(clock.FixedClock(opening)):
        quote(position.symbol, 66_500, at=opening)  # ≤ 70,000 × 0.95
        assert exit_pass().exits == 1
    assert exits(position)[0].intent_type == "GAP_DOWN"
    other = managed(new_symbol(), 10, profile)
    quote(other.symbol, 66_500)  # 10:30: not the opening trade, and no stop loss set
    assert exit_pass(symbols=[other.symbol]).exits == 0
    assert Position.objects.get(pk=other.pk).reserved_qty == 0


def test_time_rules_wait_for_the_regular_session(new_symbol):
    """Held too long, but before the open nothing is sold; the first pass in the session
    sells it (an order placed at 08:58 would only wait for the opening trade)."""
    profile = ExitProfile.objects.create(name="hold", gap_down_pct=None, max_holding_days=3)
    position = managed(new_symbol(), 10, profile)
    Position.objects.filter(pk=position.pk).update(opened_at=NOW - dt.timedelta(days=14))
    before_open = NOW.replace(hour=8, minute=58, second=30)
    quote(position.symbol, 70_000, at=before_open)
    with clock.installed(clock.FixedClock(before_open)):
        assert exit_pass().exits == 0
    with clock.installed(clock.FixedClock(NOW.replace(hour=9, minute=0, second=1))):
        assert exit_pass().exits == 1
    [intent] = exits(position)
    assert intent.intent_type == "EXIT_MAX_HOLD"
