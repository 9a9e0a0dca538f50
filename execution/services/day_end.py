"""The end of a trading day in the ledger: orders are day orders, and none outlives its day on
its venue (KRX's close; Nextrade's after-market end at 20:00, which an order routed by SOR may
reach too).

After a day's close (the trading app says when: trading/tasks.py, on the market calendar):
1. the day's open orders are brought in line with KIS's daily orders inquiry first (orders_sync),
   so every fill up to the close is applied;
2. what is still open is ended in the ledger, CANCELLED with the reason recorded and its
   remainder released, whatever a later inquiry shows: KRX does not carry a regular-session
   order past its day, and KIS's inquiry is not documented to say so;
3. the ended orders are checked against a second inquiry: a fill KIS shows beyond the ledger's
   is quarantined and alerted (services/quarantine.py), never applied on a guess;
4. orders recorded before the close that never went out are withdrawn, so nothing recorded in
   the day is sent overnight or at the next open on the day's prices;
5. once a day, the startup gate closes (trading_state.reconciliation_require): nothing goes out
   until a reconciliation with KIS's holdings taken after the day's end succeeds.

Orders whose send is still in flight are left to the settle (services/submission.py); once
adopted they carry their trading date and a later run ends them. Cancels are never sent for an
earlier day's order (services/expiry.py): KIS numbers orders from 1 each day, and its cancel
names no date.
"""

import datetime as dt
import logging
from collections.abc import Collection

from django.db import transaction

from core import clock
from kis.client import DailyOrder

from ..locks import alone_qs_for_update
from ..models import Order, TradingState
from .orders import order_mark_cancelled, order_withdraw_unsent
from .quarantine import order_quarantine
from .sync import orders_sync
from .trading_state import reconciliation_require

logger = logging.getLogger("aegis.execution")

OPEN = (Order.Status.SUBMITTED, Order.Status.PARTIAL_FILLED)


def day_end(
    *,
    broker,
    through: dt.date,
    closed_at: dt.datetime,
    venues: Collection[str] | None = None,
) -> dict[str, int]:
    """End the trading days up to `through` of the orders to `venues` (None: every venue),
    whose close (`closed_at`, that of `through`) has passed. Safe to run again: a second run
    finds nothing left to end."""
    counts = {"synced": 0, "ended": 0, "withdrawn": 0, "quarantined": 0, "gate_closed": 0}
    on_venues = {} if venues is None else {"venue__in": list(venues)}
    open_orders = Order.objects.filter(
        status__in=OPEN, trade_date__lte=through, quarantined_at__isnull=True, **on_venues
    )
    ids = list(open_orders.values_list("pk", flat=True))
    if ids:
        counts["synced"] = orders_sync(broker=broker, order_ids=ids)["orders"]
    left = list(open_orders.filter(pk__in=ids).order_by("trade_date", "pk"))
    for order in left:
        order_mark_cancelled(
            order_id=order.pk,
            reason=f"day order ended at the close of {order.trade_date:%Y-%m-%d}: "
            f"{order.venue} does not carry it over",
        )
        counts["ended"] += 1
    if left:
        counts["quarantined"] = _check(broker, left)
    # created_at is the recording process's clock, the one the calendar's close is read on.
    for order in Order.objects.filter(
        status=Order.Status.NEW,
        broker_order_no__isnull=True,
        send_started_at__isnull=True,
        created_at__lt=closed_at,
        quarantined_at__isnull=True,
        **on_venues,
    ):
        if order_withdraw_unsent(
            order_id=order.pk,
            claim=None,
            reason=f"not sent by the close of {through:%Y-%m-%d}: "
            "withdrawn, never sent on an earlier day's prices",
        ):
            counts["withdrawn"] += 1
    counts["gate_closed"] = int(_day_ended(through))
    if any(counts[k] for k in ("ended", "withdrawn", "quarantined", "gate_closed")):
        logger.info(
            "execution.day_end through=%s venues=%s %s",
            through,
            ",".join(venues) if venues is not None else "all",
            counts,
            extra=counts,
        )
    return counts


def _check(broker, ended: list[Order]) -> int:
    """The ended orders against KIS's daily orders once more: a fill beyond the ledger's (it
    came between the sync and the end) is quarantined for a person."""
    quarantined = 0
    # Each has its date (day_end picks them by trade_date__lte).
    for trade_date in sorted({o.trade_date for o in ended if o.trade_date is not None}):
        rows = {
            r.odno: r
            for r in broker.daily_orders(start=trade_date, end=trade_date, keep_bad=True)
            if isinstance(r, DailyOrder)
        }
        for order in (o for o in ended if o.trade_date == trade_date):
            odno = order.broker_order_no
            row = rows.get(odno) if odno is not None else None
            filled = Order.objects.values_list("filled_qty", flat=True).get(pk=order.pk)
            if row is not None and row.tot_ccld_qty > filled:
                quarantined += order_quarantine(
                    order_id=order.pk,
                    reason=f"KIS shows {row.tot_ccld_qty} filled after the ledger ended the day "
                    f"order at {filled}: apply the fill by hand",
                )
    return quarantined


def _day_ended(through: dt.date) -> bool:
    """Mark the day ended; close the startup gate the first time a day ends after another (a
    fresh system only notes the day: its startup reconciliation is the gate). True when this
    call closed it."""
    with transaction.atomic():
        state, _ = alone_qs_for_update(TradingState).get_or_create(pk=TradingState.SINGLETON_PK)
        if state.day_ended_for is not None and state.day_ended_for >= through:
            return False
        first = state.day_ended_for is None
        TradingState.objects.filter(pk=state.pk).update(day_ended_for=through)
        if first:
            return False
        reconciliation_require()
    logger.warning(
        "execution.day_ended through=%s at=%s: the startup gate is closed until a "
        "reconciliation with KIS succeeds",
        through,
        clock.now().isoformat(),
    )
    return True
