"""Which of KIS's daily orders an order of the ledger in flight could be (pure logic).

KIS stamps each order with its own clock (ord_dt, ord_tmd, Seoul time); the ledger's send was
stamped by the sending host's clock (send_started_at) and bounded by the database's
(send_deadline). The window allows for those clocks to differ by EXECUTION_CLOCK_SKEW_S.
A revision or a cancellation (orgn_odno set) is never a new order's record, nor is a row of
another venue than the one the order was sent to (KIS's answer names it; a routed order, SOR,
may show either).
"""

import datetime as dt

from core import clock
from kis.client import DailyOrder
from kis.protocol import EXCG_SOR


def kis_time(row: DailyOrder) -> dt.datetime | None:
    """When KIS took the order, by KIS's clock (Seoul); None when the row does not say."""
    try:
        return dt.datetime.strptime(row.ord_dt + row.ord_tmd, "%Y%m%d%H%M%S").replace(
            tzinfo=clock.SEOUL
        )
    except (TypeError, ValueError):
        return None


def could_be(row: DailyOrder, *, order, since: dt.datetime, until: dt.datetime) -> bool:
    """Whether KIS's `row` could be the record of `order` (side, symbol, qty, price as sent)
    taken between `since` and `until`. A row without a readable time could be any: it counts
    (settling then alerts instead of guessing, or adopts the only one)."""
    if row.orgn_odno or row.side != order.side or row.symbol != order.symbol:
        return False
    if row.venue and order.venue != EXCG_SOR and row.venue not in (order.venue, EXCG_SOR):
        return False
    if row.ord_qty != order.qty:
        return False
    if order.limit_price is not None and row.ord_unpr != order.limit_price:
        return False
    at = kis_time(row)
    return at is None or since <= at <= until
