"""The day's minute bars (market/bars.py): each stored trade counts into its symbol's open bar,
which is written once a later minute's trade arrives; late trades change nothing."""

import datetime as dt

import pytest

from market import bars
from market.models import PriceBar
from market.prices import best_price_write

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 12, 7, 0, 1, 0, tzinfo=dt.UTC)  # 09:01 in Seoul


def at(minute: int, second: int = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute, seconds=second)


def test_a_bar_is_written_when_the_next_minute_trades(new_symbol):
    symbol = new_symbol()
    for second, price in ((1, 100), (20, 130), (30, 90), (59, 110)):
        best_price_write(symbol=symbol, price=price, at=at(0, second), source="WS")
    assert not PriceBar.objects.filter(symbol=symbol).exists()  # the minute is still open
    best_price_write(symbol=symbol, price=120, at=at(2, 5), source="WS")  # a minute skipped
    [bar] = PriceBar.objects.filter(symbol=symbol)
    assert (bar.minute, bar.open, bar.high, bar.low, bar.close) == (at(0), 100, 130, 90, 110)
    assert bars.bars_flush() >= 1
    assert list(
        PriceBar.objects.filter(symbol=symbol).order_by("minute").values_list("minute", "close")
    ) == [(at(0), 110), (at(2), 120)]


def test_a_late_trade_reaches_no_bar(new_symbol):
    symbol = new_symbol()
    best_price_write(symbol=symbol, price=100, at=at(5), source="WS")
    assert best_price_write(symbol=symbol, price=999, at=at(4), source="REST") is None
    bars.bars_flush()
    assert list(PriceBar.objects.filter(symbol=symbol).values_list("high", "low")) == [(100, 100)]


def test_bars_of_two_writers_merge():
    rows = [("000777", at(0), 100, 120, 95, 110), ("000777", at(0), 105, 130, 99, 101)]
    for row in rows:
        bars.bar_write(row)
    bar = PriceBar.objects.get(symbol="000777")
    assert (bar.open, bar.high, bar.low, bar.close) == (100, 130, 95, 101)


def test_bars_older_than_a_week_are_pruned():
    bars.bar_write(("000778", at(0) - dt.timedelta(days=8), 1, 1, 1, 1))
    bars.bar_write(("000778", at(0) - dt.timedelta(days=6), 1, 1, 1, 1))
    assert bars.bars_prune(at(0)) == 1
    assert PriceBar.objects.filter(symbol="000778").count() == 1
