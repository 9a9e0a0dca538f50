"""Helpers every ledger service shares. Callers hold a transaction."""

import logging

from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef

from core import clock
from market.models import Symbol

from ..exceptions import IntentNotFound, OrderNotFound, PositionNotFound
from ..locks import intent_qs_for_update, order_qs_for_update, position_qs_for_update
from ..models import Order, OrderIntent, Position

logger = logging.getLogger("aegis.ledger")


# The ids below are whatever the caller was given (object): the lookup itself validates one, and
# django-stubs cannot type a lookup that takes any value and raises on a malformed one.


def lock_position(position_id: object) -> Position:
    try:
        return position_qs_for_update().get(pk=position_id)  # type: ignore[misc]  # any id
    except (Position.DoesNotExist, ValueError, TypeError, ValidationError):
        raise PositionNotFound(position_id) from None


def _position_id_of(model, pk: object, not_found: type[Exception]) -> int:
    try:
        position_id = model.objects.filter(pk=pk).values_list("position_id", flat=True).first()
    except (ValueError, TypeError, ValidationError):
        position_id = None
    if position_id is None:
        raise not_found(pk)
    return position_id


def position_id_of_intent(intent_id: object) -> int:
    return _position_id_of(OrderIntent, intent_id, IntentNotFound)


def position_id_of_order(order_id: object) -> int:
    return _position_id_of(Order, order_id, OrderNotFound)


def lock_intent(intent_id: object) -> OrderIntent:
    # Found by position_id_of_intent first, by the callers.
    return intent_qs_for_update().get(pk=intent_id)  # type: ignore[misc]  # any id


def lock_order(
    order_id: object, *, with_intent: bool = False, with_instrument: bool = False
) -> Order:
    """The order locked; `with_intent`: its intent read along (not locked), in the same query;
    `with_instrument`: whether its symbol is an ETF or ETN, as `order.etp` (its costs)."""
    # Found by position_id_of_order first, by the callers.
    qs = order_qs_for_update()
    if with_intent:
        qs = qs.select_related("intent")
    if with_instrument:
        etp = Symbol.objects.filter(code=OuterRef("symbol"), group__in=Symbol.ETP_GROUPS)
        qs = qs.annotate(etp=Exists(etp))
    return qs.get(pk=order_id)  # type: ignore[misc]  # any id


def release(position: Position, qty: int) -> None:
    """Give reserved shares back to the position's available qty."""
    position.reserved_qty -= qty


def close_if_flat(position: Position) -> None:
    """Close a position that holds nothing and has nothing on the way in or out."""
    if position.qty != 0 or position.reserved_qty != 0 or position.status != Position.Status.OPEN:
        return
    busy = (
        OrderIntent.objects.filter(position=position, status=OrderIntent.Status.NEW).exists()
        or Order.objects.filter(position=position, status__in=Order.OPEN_STATUSES).exists()
    )
    if busy:
        return
    position.status = Position.Status.CLOSED
    position.closed_at = clock.now()
    logger.info(
        "ledger.position_closed position_id=%s symbol=%s realized_pnl=%s",
        position.pk,
        position.symbol,
        position.realized_pnl,
        extra={"position_id": position.pk, "symbol": position.symbol},
    )


def save_position(position: Position) -> None:
    position.save(
        update_fields=[
            "qty",
            "reserved_qty",
            "avg_price",
            "realized_pnl",
            "costs",
            "status",
            "closed_at",
            "updated_at",
        ]
    )
