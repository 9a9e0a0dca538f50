"""Bringing open orders in line with KIS's daily orders inquiry: fills, and remainders that the
broker cancelled or refused. The periodic check behind the WebSocket fill notices, and the whole
mechanism when notices are lost.

One order's trouble never stops the others. A row KIS sent that cannot be read (a field missing
or not a number) leaves its order as it is for that round, alerted once: the order keeps its
shares reserved, nothing is released on a guess, and the next sync asks again, so a passing fault
at KIS heals by itself. Figures that can be read but that the ledger cannot take (a fill that
would break an invariant, KIS disagreeing with the order) quarantine that order
(services/quarantine.py): the syncs leave it as it is until a person looks.
"""

import logging
from itertools import groupby

from django.db import DataError, IntegrityError, transaction

from kis.client import BadDailyOrder, DailyOrder

from ..exceptions import LedgerError
from ..models import Order
from .fills import order_catch_up
from .orders import order_mark_cancelled, order_reject
from .quarantine import broker_record_unreadable, order_quarantine, order_row_unreadable

logger = logging.getLogger("aegis.execution")


def _set_aside(*, trade_date, bad: list[BadDailyOrder], counts: dict[str, int]) -> set[str]:
    """Alert each bad row, naming our order when it is one of ours (skipped this round, asked
    again by the next sync). Returns the order numbers of the bad rows."""
    odnos = {b.odno for b in bad if b.odno}
    ours = dict(
        Order.objects.filter(trade_date=trade_date, broker_order_no__in=odnos).values_list(
            "broker_order_no", "pk"
        )
    )
    for b in bad:
        if b.odno in ours:
            order_row_unreadable(order_id=ours[b.odno], odno=b.odno, reason=b.reason)
            counts["unreadable"] += 1
        else:
            broker_record_unreadable(trade_date=trade_date, odno=b.odno, reason=b.reason)
    return odnos


def _disagreement(order: Order, row: DailyOrder) -> str:
    if row.symbol != order.symbol or row.side != order.side:
        return (
            f"KIS's order {row.odno} is {row.side} {row.symbol}, the ledger's "
            f"{order.side} {order.symbol}"
        )
    if row.tot_ccld_qty > order.qty or row.tot_ccld_qty + row.rmn_qty > order.qty:
        return (
            f"KIS's order {row.odno} has {row.tot_ccld_qty} filled and {row.rmn_qty} "
            f"remaining, more than the ledger's {order.qty}"
        )
    return ""


def _sync_one(order: Order, row: DailyOrder, counts: dict[str, int]) -> None:
    # The unlocked row screens (most syncs find nothing new); the locked catch-up decides.
    if row.tot_ccld_qty > order.filled_qty and order_catch_up(
        order_id=order.pk, filled_qty=row.tot_ccld_qty, filled_amount=row.tot_ccld_amt
    ):
        counts["filled"] += 1
    if row.rmn_qty == 0 and row.tot_ccld_qty < row.ord_qty:
        # Nothing left working at KIS: the rest was cancelled or refused there.
        if row.rjct_qty and row.tot_ccld_qty == 0:
            order_reject(order_id=order.pk, reason=f"KIS refused {row.rjct_qty}")
        else:
            order_mark_cancelled(order_id=order.pk, reason="remainder ended at KIS")
        counts["closed"] += 1


# Up to this many orders of one date (a fill notice's, a cancel's) are each asked for by their
# number: one call apiece, where the day's whole list takes a call per page (15 rows a page on a
# paper key, whose 2 calls a second the notices of a burst would otherwise spend on paging).
BY_NUMBER_MAX = 3


def _daily_rows(broker, trade_date, group: list[Order], by_number: bool) -> list:
    if by_number and len(group) <= BY_NUMBER_MAX:
        rows: list = []
        for order in group:
            rows += broker.daily_orders(
                start=trade_date, end=trade_date, keep_bad=True, odno=order.broker_order_no
            )
        return rows
    return broker.daily_orders(start=trade_date, end=trade_date, keep_bad=True)


def orders_sync(*, broker, order_ids: list | None = None) -> dict[str, int]:
    """One inquiry per trading date for every open, unquarantined order with a broker number
    (with `order_ids`, a few orders are asked for by number instead)."""
    orders = Order.objects.filter(
        status__in=[Order.Status.SUBMITTED, Order.Status.PARTIAL_FILLED],
        broker_order_no__isnull=False,
        trade_date__isnull=False,
        quarantined_at__isnull=True,
    ).order_by("trade_date")
    if order_ids is not None:
        orders = orders.filter(pk__in=order_ids)
    counts = {"orders": 0, "filled": 0, "closed": 0, "quarantined": 0, "unreadable": 0}
    for trade_date, same_date in groupby(orders, key=lambda o: o.trade_date):
        group = list(same_date)
        answer = _daily_rows(broker, trade_date, group, by_number=order_ids is not None)
        bad_odnos = _set_aside(
            trade_date=trade_date,
            counts=counts,
            bad=[r for r in answer if isinstance(r, BadDailyOrder)],
        )
        rows = {r.odno: r for r in answer if isinstance(r, DailyOrder)}
        for order in group:
            counts["orders"] += 1
            odno = order.broker_order_no  # never None: the query takes numbered orders only
            row = rows.get(odno) if odno is not None else None
            if row is None or odno in bad_odnos:
                continue
            problem = _disagreement(order, row)
            if problem:
                counts["quarantined"] += order_quarantine(order_id=order.pk, reason=problem)
                continue
            try:
                with transaction.atomic():  # a savepoint: the other orders' work still commits
                    _sync_one(order, row, counts)
            except (LedgerError, IntegrityError, DataError) as exc:
                # A lost connection or a lock timeout is not the order's fault: it propagates.
                if not _still_open(order):
                    # Closed by another sync meanwhile: nothing to set aside.
                    logger.info("execution.sync_raced order_id=%s: %s", order.pk, exc)
                    continue
                counts["quarantined"] += order_quarantine(
                    order_id=order.pk,
                    reason=f"KIS's figures cannot be applied ({type(exc).__name__}): {exc}",
                )
    if counts["filled"] or counts["closed"] or counts["quarantined"] or counts["unreadable"]:
        logger.info("execution.orders_sync %s", counts, extra=counts)
    return counts


def _still_open(order: Order) -> bool:
    return Order.objects.filter(pk=order.pk, status__in=Order.OPEN_STATUSES).exists()
