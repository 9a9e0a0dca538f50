"""Bringing open orders in line with KIS's daily orders inquiry: fills, and remainders that the
broker cancelled or refused. The periodic check behind the WebSocket fill notices, and the whole
mechanism when notices are lost.
"""

import logging
from itertools import groupby

from ..models import Order
from .fills import order_catch_up
from .orders import order_mark_cancelled, order_reject

logger = logging.getLogger("aegis.execution")


def orders_sync(*, broker, order_ids: list | None = None) -> dict[str, int]:
    """One inquiry per trading date for every open order with a broker number."""
    orders = Order.objects.filter(
        status__in=[Order.Status.SUBMITTED, Order.Status.PARTIAL_FILLED],
        broker_order_no__isnull=False, trade_date__isnull=False,
    ).order_by("trade_date")
    if order_ids is not None:
        orders = orders.filter(pk__in=order_ids)
    counts = {"orders": 0, "filled": 0, "closed": 0}
    for trade_date, group in groupby(orders, key=lambda o: o.trade_date):
        rows = {r.odno: r for r in broker.daily_orders(start=trade_date, end=trade_date)}
        for order in group:
            counts["orders"] += 1
            row = rows.get(order.broker_order_no)
            if row is None:
                continue
            # The unlocked row screens (most syncs find nothing new); the locked catch-up decides.
            if row.tot_ccld_qty > order.filled_qty and order_catch_up(
                    order_id=order.pk, filled_qty=row.tot_ccld_qty,
                    filled_amount=row.tot_ccld_amt):
                counts["filled"] += 1
            if row.rmn_qty == 0 and row.tot_ccld_qty < row.ord_qty:
                # Nothing left working at KIS: the rest was cancelled or refused there.
                if row.rjct_qty and row.tot_ccld_qty == 0:
                    order_reject(order_id=order.pk, reason=f"KIS refused {row.rjct_qty}")
                else:
                    order_mark_cancelled(order_id=order.pk, reason="remainder ended at KIS")
                counts["closed"] += 1
    if counts["filled"] or counts["closed"]:
        logger.info("execution.orders_sync %s", counts, extra=counts)
    return counts
