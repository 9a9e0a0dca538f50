"""Every row lock the ledger takes, in one place (the way Saleor keeps lock_objects.py).

Lock order is always position → intent → order (ARCHITECTURE.md, I2). An intent or order never
changes position, so its position id may be read without a lock before the position is locked.
"""

from django.db.models import QuerySet

from .models import Order, OrderIntent, Position


def position_qs_for_update() -> QuerySet[Position]:
    return Position.objects.select_for_update(of=("self",))


def intent_qs_for_update() -> QuerySet[OrderIntent]:
    return OrderIntent.objects.select_for_update(of=("self",))


def order_qs_for_update() -> QuerySet[Order]:
    return Order.objects.select_for_update(of=("self",))

