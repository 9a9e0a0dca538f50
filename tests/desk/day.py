"""A trading day on the ledger for the desk's tests, built through the services: one position
held below its cost, one bought and sold at a profit, minute bars from best prices."""

import datetime as dt
from decimal import Decimal

from core import clock
from execution import services
from execution.models import Fill
from market.bars import bars_flush
from market.prices import best_price_write
from tests.support.ledger import fill, key, open_position, submit


def desk_day(new_symbol) -> dict:
    held = open_position(new_symbol(), 100, 70_000)
    traded = open_position(new_symbol(), 10, 70_000)
    sell = submit(
        services.exit_intent_open(
            position_id=traded.pk,
            qty=10,
            limit_price=72_000,
            intent_type="EXIT_TAKE_PROFIT",
            idempotency_key=key(),
        )
    )
    fill(sell, 10, 72_000)
    start = clock.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=20)
    path = [70_000, 69_500, 69_000, 68_200, 67_500, 67_000, 66_700]
    for i, price in enumerate(path):
        for symbol in (held.symbol, traded.symbol):
            best_price_write(
                symbol=symbol, price=price, at=start + dt.timedelta(minutes=i), source="WS"
            )
    bars_flush()
    fills = list(Fill.objects.filter(order__position__in=[held, traded]))
    fee = Decimal(sum(f.fee for f in fills))
    tax = Decimal(sum(f.tax for f in fills))
    return {
        "held": held,
        "traded": traded,
        "unrealized": (66_700 - 70_000) * 100,
        "realized_net": Decimal(20_000) - fee - tax,
        "costs": fee + tax,
    }
