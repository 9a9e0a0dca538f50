"""Unfilled limit orders are cancelled after a timeout, so their shares become available again.

The exit engine cancels its own exits sooner, through `intent_types`, and decides them again at
the price of then (trading.tasks.exit_orders_expire_task): that is how an exit is re-priced.

The cancel is confirmed the way fills are, through KIS's daily orders inquiry (orders_sync): what
filled before the cancel is applied, the rest is released. Nothing is released on the strength of
the cancel request alone.
"""

import datetime as dt
import logging
import uuid
from collections.abc import Iterable

from django.db.models import Q
from django.utils.translation import gettext_noop

from core import clock
from kis.errors import KisError
from market import vi as market_vi
from market.models import BestPrice

from ..exceptions import InvalidInput, InvalidOrderState
from ..models import Order, Side
from .sync import orders_sync

logger = logging.getLogger("aegis.execution")


def _not_waiting_on_the_market(orders: list[Order]) -> list[Order]:
    """Those of `orders` that wait for a better price, not on the market: not in a volatility
    interruption's call auction (market/vi.py), which matches them at one price when it ends,
    and not sells at their symbol's lower limit (a stop placed at the limit keeps its place in
    the queue: cancelled and priced again it would go in at the same price, last)."""
    interrupted = market_vi.vis_of(sorted({o.symbol for o in orders}))
    orders = [o for o in orders if o.symbol not in interrupted]
    if not orders:
        return orders
    lower = dict(
        BestPrice.objects.filter(
            symbol__in={o.symbol for o in orders}, lower_limit__isnull=False
        ).values_list("symbol", "lower_limit")
    )
    return [o for o in orders if not _at_lower_limit(o, lower.get(o.symbol))]


def _at_lower_limit(order: Order, lower: int | None) -> bool:
    return (
        order.side == Side.SELL
        and lower is not None
        and order.limit_price is not None
        and order.limit_price <= lower
    )


def orders_expire(
    *, broker, timeout: dt.timedelta, intent_types: Iterable[str] | None = None
) -> dict[str, int]:
    """Cancel today's limit orders still unfilled `timeout` after KIS took them (only the orders
    of `intent_types`' intents, when given); confirm through the daily orders inquiry.

    Only today's (Seoul): KIS numbers orders from 1 each day and its cancel names no date, so a
    cancel of an earlier day's order could hit today's order of that number. An earlier day's
    order still open is ended by the day's end (services/day_end.py), never cancelled."""
    only = Q() if intent_types is None else Q(intent__intent_type__in=list(intent_types))
    stale = list(
        Order.objects.filter(
            only,
            trade_date=clock.now_seoul().date(),
            status__in=[Order.Status.SUBMITTED, Order.Status.PARTIAL_FILLED],
            limit_price__isnull=False,
            broker_order_no__isnull=False,
            quarantined_at__isnull=True,
            submitted_at__lt=clock.now() - timeout,
        )
    )
    if stale:
        stale = _not_waiting_on_the_market(stale)
    counts = {"expired": len(stale), "closed": _cancel_at_kis(broker, stale)}
    if stale:
        logger.info("execution.orders_expire %s", counts, extra=counts)
    return counts


def _cancel_at_kis(broker, orders: list[Order]) -> int:
    """KIS's cancel for each of `orders`, then its daily orders inquiry, which releases what
    KIS says ended; how many closed."""
    for order in orders:
        try:
            broker.order_cancel(org_no=order.broker_org_no, odno=order.broker_order_no)
        except KisError as exc:  # filled meanwhile, or KIS refused: the sync below tells
            logger.warning(
                "execution.cancel_refused order_id=%s odno=%s: %s",
                order.pk,
                order.broker_order_no,
                exc,
                extra={"order_id": str(order.pk)},
            )
    if not orders:
        return 0
    return orders_sync(broker=broker, order_ids=[o.pk for o in orders])["closed"]


def order_cancel_now(*, broker, order_id: object, by: str) -> Order:
    """A person's cancel of one live order at KIS (the admin's): KIS's revise-cancel call, then
    its daily orders inquiry, which applies what filled first and releases the remainder KIS
    says it cancelled. Nothing is released on the request alone; the order as it then stands.
    Only today's order (Seoul): KIS numbers orders per day and its cancel names no date."""
    try:
        pk = uuid.UUID(str(order_id))
    except ValueError:
        raise InvalidInput("order_id", gettext_noop("must be an order's id (a UUID).")) from None
    order = Order.objects.filter(pk=pk).first()
    if order is None:
        raise InvalidInput("order_id", gettext_noop("no order %(pk)s."), pk=pk)
    live = (Order.Status.SUBMITTED, Order.Status.PARTIAL_FILLED)
    if order.status not in live or not order.broker_order_no or order.quarantined_at:
        raise InvalidOrderState(order.pk, order.status, "cancel at KIS")
    if order.trade_date != clock.now_seoul().date():
        raise InvalidOrderState(order.pk, order.status, "cancel", trade_date=order.trade_date)
    logger.warning(
        "execution.cancel_by_person order_id=%s odno=%s by=%s",
        order.pk,
        order.broker_order_no,
        by,
        extra={"order_id": str(order.pk)},
    )
    _cancel_at_kis(broker, [order])
    order.refresh_from_db()
    return order
