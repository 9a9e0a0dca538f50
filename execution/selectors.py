"""Reads of the ledger that take more than one line."""

from dataclasses import dataclass

from django.db.models import F, Sum
from django.db.models.functions import Coalesce

from .models import Order, OrderIntent, Position, Side


@dataclass(frozen=True)
class LedgerBreakdown:
    position_id: int
    qty: int
    reserved_qty: int
    locked_by_orders: int
    locked_by_intents: int

    @property
    def locked_from_rows(self) -> int:
        return self.locked_by_orders + self.locked_by_intents

    @property
    def available_qty(self) -> int:
        return self.qty - self.reserved_qty

    @property
    def consistent(self) -> bool:
        """I1 holds and the reservation counter matches the rows it summarises."""
        return (
            self.reserved_qty == self.locked_from_rows
            and 0 <= self.reserved_qty <= self.qty
        )


def position_ledger_breakdown(*, position: Position) -> LedgerBreakdown:
    """The position's locked qty recomputed from its open SELL orders and NEW SELL intents."""
    by_orders = Order.objects.filter(
        position=position, side=Side.SELL, status__in=Order.OPEN_STATUSES
    ).aggregate(v=Coalesce(Sum(F("qty") - F("filled_qty")), 0))["v"]
    by_intents = OrderIntent.objects.filter(
        position=position, side=Side.SELL, status=OrderIntent.Status.NEW
    ).aggregate(v=Coalesce(Sum("qty"), 0))["v"]
    return LedgerBreakdown(
        position_id=position.pk,
        qty=position.qty,
        reserved_qty=position.reserved_qty,
        locked_by_orders=by_orders,
        locked_by_intents=by_intents,
    )
