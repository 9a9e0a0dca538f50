"""Every row lock the ledger takes, in one place (the way Saleor keeps lock_objects.py).

Lock order is always position → exit state → intent → order (ARCHITECTURE.md, I2), and
several rows of one table in id order. The raw SQL statements follow it too: PostgreSQL locks a
statement's rows in its FOR UPDATE OF order, so a statement names its position before its exit
state (trading/services.py's _DECIDE_LOCK and _AT_ONCE_GO) and takes several rows through an
ORDER BY id ... FOR UPDATE (_MARKS_RAISE). An intent or order never changes position, so its
position id may be read without a lock before the position is locked.
"""

from django.db.models import QuerySet

from .models import Order, OrderIntent, Position


def position_qs_for_update() -> QuerySet[Position]:
    return Position.objects.select_for_update(of=("self",))


def positions_qs_for_update() -> QuerySet[Position]:
    """Several positions at once: locked in id order."""
    return position_qs_for_update().order_by("pk")


def intent_qs_for_update() -> QuerySet[OrderIntent]:
    return OrderIntent.objects.select_for_update(of=("self",))


def order_qs_for_update() -> QuerySet[Order]:
    return Order.objects.select_for_update(of=("self",))
