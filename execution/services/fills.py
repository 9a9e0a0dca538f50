"""Applying a broker fill: once per broker fill key, under the position lock."""

import datetime as dt
import logging
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import transaction

from aegis import clock

from ..exceptions import FillExceedsOrder, InvalidInput, InvalidOrderState
from ..models import Fill, Order, Side
from ..validation import check_key, check_price, check_qty
from . import _ledger

logger = logging.getLogger("aegis.ledger")

_AVG_QUANTUM = Decimal("0.0001")


def fill_apply(
    *,
    order_id: object,
    broker_fill_key: str,
    qty: int,
    price: int,
    filled_at: dt.datetime | None = None,
) -> Fill:
    """Record a fill and move the order and position with it. A fill key seen before changes
    nothing and returns the fill already recorded.
    """
    check_key(broker_fill_key, "broker_fill_key")
    check_qty(qty)
    check_price(price, "price", optional=False)
    position_id = _ledger.position_id_of_order(order_id)
    now = clock.now()

    with transaction.atomic():
        position = _ledger.lock_position(position_id)
        order = _ledger.lock_order(order_id)
        seen = Fill.objects.filter(broker_fill_key=broker_fill_key).first()
        if seen is not None:
            if seen.order_id != order.pk:
                raise InvalidInput(
                    "broker_fill_key",
                    f"{broker_fill_key!r} was already applied to order {seen.order_id}.",
                )
            return seen
        if order.status not in Order.OPEN_STATUSES:
            raise InvalidOrderState(order.pk, order.status, "apply a fill to")
        if qty > order.remaining_qty:
            raise FillExceedsOrder(order_id=order.pk, fill_qty=qty, remaining=order.remaining_qty)

        order.filled_qty += qty
        order.status = Order.Status.FILLED if order.filled_qty == order.qty else (
            Order.Status.PARTIAL_FILLED
        )
        order.save(update_fields=["filled_qty", "status", "updated_at"])

        if order.side == Side.BUY:
            held = position.qty + qty
            position.avg_price = (
                (position.avg_price * position.qty + Decimal(price) * qty) / held
            ).quantize(_AVG_QUANTUM, rounding=ROUND_HALF_EVEN)
            position.qty = held
        else:
            position.qty -= qty
            _ledger.release(position, qty)
            position.realized_pnl += (Decimal(price) - position.avg_price) * qty
        _ledger.close_if_flat(position)
        _ledger.save_position(position)
        fill = Fill.objects.create(
            order=order,
            broker_fill_key=broker_fill_key,
            qty=qty,
            price=price,
            filled_at=filled_at or now,
            recorded_at=now,
        )
    return fill
