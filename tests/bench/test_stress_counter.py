"""The concurrency stress counts oversells from the rows: it must see one when there is one."""

import pytest

from bench.stress import oversells
from core import clock
from execution import services
from execution.models import Fill, Order
from tests.support.ledger import fill, key, open_position

pytestmark = pytest.mark.django_db


def test_a_consistent_ledger_counts_no_oversell_and_a_forced_one_is_counted():
    position = open_position("005930", 10)
    intent = services.exit_intent_open(
        position_id=position.pk, qty=4, intent_type="EXIT_STOP_LOSS", idempotency_key=key()
    )
    fill(services.order_open(intent_id=intent.pk), 4, 10_000)
    assert oversells([position.pk]) == 0
    # Written around the ledger: a fill of 20 more shares sold by a position that bought 10.
    order = Order.objects.filter(position=position, side="SELL").get()
    Fill.objects.create(
        order=order,
        broker_fill_key=key(),
        qty=20,
        price=10_000,
        amount=200_000,
        filled_at=clock.now(),
        recorded_at=clock.now(),
    )
    assert oversells([position.pk]) == 1  # 24 sold against 10 bought
