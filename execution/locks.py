"""Every row lock the ledger takes, in one place (the way Saleor keeps lock_objects.py).

Lock order is always position → intent → order (ARCHITECTURE.md, I2). An intent or order never
changes position, so its position id may be read without a lock before the position is locked.
"""

from django.db import connection
from django.db.models import QuerySet

from .models import Order, OrderIntent, Position


def position_qs_for_update() -> QuerySet[Position]:
    return Position.objects.select_for_update(of=("self",))


def intent_qs_for_update() -> QuerySet[OrderIntent]:
    return OrderIntent.objects.select_for_update(of=("self",))


def order_qs_for_update() -> QuerySet[Order]:
    return Order.objects.select_for_update(of=("self",))


def position_columns(alias: str = "") -> str:
    """Every Position column, in field order, for a statement written as SQL (`alias.` first)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + f.column for f in Position._meta.concrete_fields)


def position_from_row(row) -> Position:
    """The Position whose columns (position_columns) lead `row`."""
    fields = Position._meta.concrete_fields
    return Position.from_db(connection.alias, [f.attname for f in fields], row[:len(fields)])
