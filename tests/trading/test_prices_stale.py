"""A held symbol without a fresh price while the market trades is alerted (PRICES), once per
episode, from the open at the earliest, never after the close. Real PostgreSQL."""

import datetime as dt

import pytest

from core import clock
from execution.models import Alert
from market.models import BestPrice
from tests.support.ledger import open_position
from trading.services import prices_stale_alert

pytestmark = pytest.mark.django_db(transaction=True)

DAY = dt.date(2026, 11, 24)


def at(hh, mm, ss=0):
    return dt.datetime(DAY.year, DAY.month, DAY.day, hh, mm, ss, tzinfo=clock.SEOUL).astimezone(
        dt.UTC
    )


def priced(symbol, when):
    BestPrice.objects.update_or_create(
        symbol=symbol, defaults={"price": 70_000, "source": "WS", "event_at": when}
    )


def alerts():
    return list(Alert.objects.filter(kind=Alert.Kind.PRICES).order_by("created_at"))


def test_a_held_symbol_without_a_fresh_price_is_alerted_once_per_episode(new_symbol):
    a, b = new_symbol(), new_symbol()
    open_position(a, 10)
    open_position(b, 10)
    # The first half minute of the session: counted from the open, not from yesterday's price.
    priced(a, at(9, 0, 10))
    assert prices_stale_alert(stale_s=60, now=at(9, 0, 30)) == []
    priced(a, at(10, 29, 50))
    priced(b, at(10, 28, 0))
    assert prices_stale_alert(stale_s=60, now=at(10, 30)) == [b]
    assert prices_stale_alert(stale_s=60, now=at(10, 30, 5)) == [b]
    [first] = alerts()
    assert b in first.message and first.severity == "CRITICAL"
    priced(a, at(10, 30, 30))  # the feed is back
    priced(b, at(10, 30, 30))
    assert prices_stale_alert(stale_s=60, now=at(10, 31)) == []
    assert prices_stale_alert(stale_s=60, now=at(10, 32)) == [a, b]  # and gone again
    assert len(alerts()) == 2
    # After the close nothing prints: nothing is stale.
    assert prices_stale_alert(stale_s=60, now=at(15, 45)) == []
    assert len(alerts()) == 2
