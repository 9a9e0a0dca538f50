"""The general limit-order timeout counts in continuous trading only (EXECUTION_ORDERS_DUE): an
order KIS took at 08:58 waits for the open, and its timeout runs from there; the closing
auction's orders wait for the 15:30 match; nothing is cancelled on a day without a session."""

import datetime as dt

import pytest

from core import clock
from execution import services
from execution.models import Order
from execution.tasks import orders_expire_task
from kis.errors import KisUnavailable
from tests.support.ledger import key

pytestmark = pytest.mark.django_db

SEOUL = clock.SEOUL
TAKEN = dt.datetime(2026, 12, 1, 8, 58, tzinfo=SEOUL)  # a Tuesday, before the open


@pytest.fixture
def taken_before_the_open(settings):
    """A BUY limit order KIS took at 08:58, unfilled; the broker's address leads nowhere (port
    9): a task that got past the guard with nothing stale never calls it."""
    settings.EXECUTION_AUTO_SUBMIT = False
    settings.EXECUTION_LIMIT_ORDER_TIMEOUT_S = 60
    settings.KIS = settings.KIS | {
        "ENV": "simulator",
        "BASE_URL": "http://127.0.0.1:9",
        "WS_URL": "ws://127.0.0.1:9",
        "ACCOUNT": "12345678-01",
        "QUERY_APP_KEY": "k",
        "QUERY_APP_SECRET": "s",
    }
    intent = services.entry_intent_open(
        symbol="005930", qty=10, limit_price=71_000, idempotency_key=key()
    )
    order = services.order_open(intent_id=intent.pk)
    return services.order_mark_submitted(
        order_id=order.pk, broker_order_no="0000000001", submitted_at=TAKEN
    )


@pytest.mark.parametrize(
    "now",
    [
        dt.datetime(
            2026, 12, 1, 8, 59, 30, tzinfo=SEOUL
        ),  # 90 s after KIS took it, before the open
        dt.datetime(2026, 12, 1, 9, 0, 59, tzinfo=SEOUL),  # the open has not run for 60 s yet
        dt.datetime(2026, 12, 1, 15, 25, tzinfo=SEOUL),  # the closing auction
        dt.datetime(2026, 12, 5, 10, 0, tzinfo=SEOUL),  # a Saturday
    ],
)
def test_outside_continuous_trading_nothing_is_cancelled(taken_before_the_open, now):
    with clock.installed(clock.FixedClock(now)):
        assert orders_expire_task() == {"skipped": "outside continuous trading"}
    order = Order.objects.get(pk=taken_before_the_open.pk)
    assert (order.status, order.broker_order_no) == ("SUBMITTED", "0000000001")


def test_in_continuous_trading_the_timeout_applies(taken_before_the_open, settings):
    """At 10:00 the task gets past the guard: an order KIS took a minute ago is stale, one it
    took 30 s ago is not (and nothing stale, nothing is asked of the broker)."""
    Order.objects.filter(pk=taken_before_the_open.pk).update(
        submitted_at=dt.datetime(2026, 12, 1, 9, 59, 30, tzinfo=SEOUL)
    )
    with clock.installed(clock.FixedClock(dt.datetime(2026, 12, 1, 10, 0, tzinfo=SEOUL))):
        assert orders_expire_task() == {"expired": 0, "closed": 0}


def test_without_a_guard_only_the_timeout_counts(taken_before_the_open, settings):
    """AEGIS_ORDERS_DUE empty: at 08:59:30 the order KIS took at 08:58 is stale, so the task
    asks the broker to cancel it and to confirm (which cannot be reached here: the task fails
    and the order stays SUBMITTED)."""
    settings.EXECUTION_ORDERS_DUE = ""
    with clock.installed(clock.FixedClock(dt.datetime(2026, 12, 1, 8, 59, 30, tzinfo=SEOUL))):
        with pytest.raises(KisUnavailable):
            orders_expire_task()
    assert Order.objects.get(pk=taken_before_the_open.pk).status == "SUBMITTED"
