"""Applying broker fills: once per broker fill key, under the position lock.

Two ways in, one core. `fill_apply` records one reported trade. `order_catch_up` brings an order
to the broker's cumulative filled qty and amount (KIS's daily orders inquiry), computing the
difference under the lock, so overlapping syncs never count a share twice; its fill key names the
cumulative qty it reaches, so a repeat of the same figures is a no-op.
"""

import datetime as dt
import logging
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import transaction
from django.db.models import Sum

from core import clock

from ..costs import cost_rates, fill_costs
from ..exceptions import FillExceedsOrder, InvalidInput, InvalidOrderState
from ..models import Fill, Order, Position, Side
from ..notify import FILL, fill_record, wants
from ..validation import check_key, check_price, check_qty
from . import _ledger

logger = logging.getLogger("aegis.ledger")

_AVG_QUANTUM = Decimal("0.0001")


def _apply_locked(
    *,
    position: Position,
    order: Order,
    broker_fill_key: str,
    qty: int,
    amount: int,
    filled_at: dt.datetime,
    now: dt.datetime,
) -> Fill:
    """Move order and position by one fill. Callers hold the position and order locks."""
    if order.status not in Order.OPEN_STATUSES:
        raise InvalidOrderState(order.pk, order.status, "apply a fill to")
    if qty > order.remaining_qty:
        raise FillExceedsOrder(order_id=order.pk, fill_qty=qty, remaining=order.remaining_qty)

    order.filled_qty += qty
    order.status = (
        Order.Status.FILLED if order.filled_qty == order.qty else (Order.Status.PARTIAL_FILLED)
    )
    order.save(update_fields=["filled_qty", "status", "updated_at"])

    fee, tax = fill_costs(order.side, amount, cost_rates(), etp=getattr(order, "etp", False))
    position.costs += fee + tax
    realized = None
    if order.side == Side.BUY:
        held = position.qty + qty
        position.avg_price = (
            (position.avg_price * position.qty + Decimal(amount)) / held
        ).quantize(_AVG_QUANTUM, rounding=ROUND_HALF_EVEN)
        position.qty = held
    else:
        position.qty -= qty
        _ledger.release(position, qty)
        realized = Decimal(amount) - position.avg_price * qty
        position.realized_pnl += realized
    _ledger.close_if_flat(position)
    _ledger.save_position(position)
    fill = Fill.objects.create(
        order=order,
        broker_fill_key=broker_fill_key,
        qty=qty,
        price=max(1, amount // qty),
        amount=amount,
        realized_pnl=realized,
        fee=fee,
        tax=tax,
        filled_at=filled_at,
        recorded_at=now,
    )
    fill_record(order=order, fill=fill, position=position)
    return fill


def _seen(broker_fill_key: str, order: Order) -> Fill | None:
    seen = Fill.objects.filter(broker_fill_key=broker_fill_key).first()
    if seen is not None and seen.order_id != order.pk:
        raise InvalidInput(
            "broker_fill_key", f"{broker_fill_key!r} was already applied to order {seen.order_id}."
        )
    return seen


def fill_apply(
    *,
    order_id: object,
    broker_fill_key: str,
    qty: int,
    price: int,
    filled_at: dt.datetime | None = None,
) -> Fill:
    """Record one trade and move the order and position with it. A fill key seen before changes
    nothing and returns the fill already recorded.
    """
    check_key(broker_fill_key, "broker_fill_key")
    check_qty(qty)
    check_price(price, "price", optional=False)
    position_id = _ledger.position_id_of_order(order_id)
    now = clock.now()
    with transaction.atomic():
        position = _ledger.lock_position(position_id)
        order = _ledger.lock_order(order_id, with_intent=bool(wants(FILL)), with_instrument=True)
        seen = _seen(broker_fill_key, order)
        if seen is not None:
            return seen
        return _apply_locked(
            position=position,
            order=order,
            broker_fill_key=broker_fill_key,
            qty=qty,
            amount=qty * price,
            filled_at=filled_at or now,
            now=now,
        )


def order_catch_up(
    *, order_id: object, filled_qty: int, filled_amount: int, filled_at: dt.datetime | None = None
) -> Fill | None:
    """Bring the order to the broker's cumulative `filled_qty` and `filled_amount` (KRW).

    Returns the fill that closed the gap, or None when the order was already there.
    """
    if type(filled_qty) is not int or filled_qty < 0:
        raise InvalidInput("filled_qty", "must be a whole number ≥ 0.")
    if type(filled_amount) is not int or filled_amount < 0:
        raise InvalidInput("filled_amount", "must be a whole number of KRW ≥ 0.")
    position_id = _ledger.position_id_of_order(order_id)
    now = clock.now()
    with transaction.atomic():
        position = _ledger.lock_position(position_id)
        order = _ledger.lock_order(order_id, with_intent=bool(wants(FILL)), with_instrument=True)
        delta_qty = filled_qty - order.filled_qty
        if delta_qty <= 0:
            return None
        applied = order.fills.aggregate(s=Sum("amount"))["s"] or 0
        delta_amount = filled_amount - applied
        if delta_amount <= 0:
            raise InvalidInput(
                "filled_amount",
                f"{filled_amount} KRW for {filled_qty} shares is "
                f"not more than the {applied} KRW already applied; reconcile.",
            )
        day = order.trade_date or now.astimezone(clock.SEOUL).date()
        key = f"kis:{day:%Y%m%d}:{order.broker_order_no}:{filled_qty}"
        seen = _seen(key, order)
        if seen is not None:
            return seen
        return _apply_locked(
            position=position,
            order=order,
            broker_fill_key=key,
            qty=delta_qty,
            amount=delta_amount,
            filled_at=filled_at or now,
            now=now,
        )
