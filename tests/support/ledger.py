"""Build ledger states through the services, the way real trading reaches them."""

import itertools
import uuid

from execution import services
from execution.models import Position

_fill_seq = itertools.count(1)


def key(prefix: str = "k") -> str:
    return f"{prefix}:{uuid.uuid4()}"


def submit(intent) -> "services.orders.Order":
    order = services.order_open(intent_id=intent.pk)
    return services.order_mark_submitted(
        order_id=order.pk, broker_order_no=f"{next(_fill_seq):010d}"
    )


def fill(order, qty: int, price: int):
    return services.fill_apply(order_id=order.pk, broker_fill_key=key("fill"), qty=qty, price=price)


def open_position(symbol: str, qty: int, price: int = 10_000) -> Position:
    """A position holding `qty` shares bought at `price`, through entry → order → fill."""
    intent = services.entry_intent_open(
        symbol=symbol, qty=qty, idempotency_key=key("entry"), limit_price=price
    )
    order = submit(intent)
    fill(order, qty, price)
    return Position.objects.get(pk=intent.position_id)


def claimed(order_id, *, window_s: float = 13.0):
    """Take the right to send the order now, as a sender does right before its broker write
    (execution/services/claim.py); the order as it then stands."""
    from execution.models import Order
    from execution.services.claim import order_claim

    assert order_claim(order_id=order_id, window_s=window_s) is not None
    return Order.objects.get(pk=order_id)


def past_its_deadline(order_id) -> None:
    """The order's send deadline moved a second into the past on the database's clock, as if
    its window had gone by: a settle may now act on an inquiry."""
    from django.db.models.functions import Now

    from execution.models import Order

    Order.objects.filter(pk=order_id).update(send_deadline=Now())
