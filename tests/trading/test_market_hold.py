"""KIS's word over the calendar's: an exit refused as out of market hours (the calendar missed a
closure) is not decided again pass after pass. One refusal, one alert, then nothing until the
market next moves into another phase where exits trade. Real PostgreSQL and the KIS simulator."""

import datetime as dt
from decimal import Decimal

import pytest

from core import clock
from execution.models import Alert, Order, OrderIntent, Position, TradingState
from execution.services.submission import Outcome, intent_submit
from market.models import BestPrice
from tests.support.ledger import open_position
from trading.models import ExitProfile, PositionExitState
from trading.services import exit_pass, market_hold

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DAY = dt.date(2026, 11, 24)  # a Tuesday the calendar says KRX trades


def at(hh, mm, ss=0):
    return dt.datetime(DAY.year, DAY.month, DAY.day, hh, mm, ss, tzinfo=clock.SEOUL)


def quote(symbol, price, when):
    BestPrice.objects.update_or_create(
        symbol=symbol,
        defaults={
            "price": price,
            "prev_close": 71_000,
            "lower_limit": 49_700,
            "upper_limit": 92_300,
            "source": "WS",
            "event_at": when,
        },
    )


def test_a_refusal_for_market_hours_holds_the_engine_until_the_next_phase(
    kis_sim, kis_client, settings
):
    settings.EXECUTION_AUTO_SUBMIT = False
    profile = ExitProfile.objects.create(name="sl", stop_loss_pct=Decimal(3), gap_down_pct=None)
    position = open_position("005930", 10, 71_000)
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=10)
    kis_sim.control("/_sim/session", {"open": False})  # a closure the calendar does not know

    with clock.installed(clock.FixedClock(at(10, 30))):
        quote(position.symbol, 60_000, at(10, 30))
        assert exit_pass().exits == 1
        [intent] = OrderIntent.objects.filter(position=position, side="SELL")
        assert intent_submit(intent_id=intent.pk, broker=kis_client) is Outcome.REJECTED
        assert "APBK0918" in Order.objects.get(intent=intent).reject_reason
        assert TradingState.objects.get().market_closed_at == at(10, 30)
        assert Position.objects.get(pk=position.pk).reserved_qty == 0  # released
        market_hold.forget()  # as another process would read it, a second later
        for _ in range(3):
            assert exit_pass().exits == 0
            assert exit_pass(symbols=[position.symbol]).exits == 0
    with clock.installed(clock.FixedClock(at(15, 19, 59))):
        assert exit_pass().exits == 0
    assert OrderIntent.objects.filter(position=position, side="SELL").count() == 1
    [alert] = Alert.objects.filter(key__startswith="market-closed:")
    assert alert.severity == "WARNING" and "10:30:00 KST" in alert.message

    # The closing auction is the next phase where exits trade: decided again, on the price then.
    with clock.installed(clock.FixedClock(at(15, 20, 1))):
        quote(position.symbol, 60_500, at(15, 20, 1))
        assert exit_pass().exits == 1
    latest = OrderIntent.objects.filter(position=position, side="SELL").latest("created_at")
    assert "60,500" in latest.reason
