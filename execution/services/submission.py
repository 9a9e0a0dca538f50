"""Sending an intent's order to the broker exactly once (ARCHITECTURE.md, I4).

1. The Order is recorded and committed before the call: a crash from here on leaves a row that
   says what was about to happen. The common case records it already claimed for sending
   (send_started_at) in one statement (order_open_claimed); anything else goes through
   order_open under the position lock.
2. Otherwise the sender claims the order by setting send_started_at in one UPDATE; only one
   caller wins.
3. The broker call. Its answer is recorded; a definite refusal releases the shares; a request
   that never left (KIS unreachable, still rate-limited) is released for a later retry; an
   unknown outcome leaves the order in flight.
4. An order in flight (send_started_at set, no broker number) is settled against KIS's daily
   orders inquiry: the matching order is adopted, or after a grace period with none to match,
   the claim is dropped so the order can be sent.
"""

import datetime as dt
import enum
import logging
from typing import Protocol

from django.core.exceptions import ValidationError
from django.db import IntegrityError

from aegis import clock, metrics

from ..brokers.kis.client import Balance, DailyOrder, OrderAck
from ..brokers.kis.errors import (
    KisAmbiguousOutcome,
    KisError,
    KisRateLimited,
    KisTokenExpired,
    KisTokenInvalid,
    KisTokenRateLimited,
    KisUnavailable,
)
from ..exceptions import BrokerQtyRequired, InvalidIntentState
from ..models import Order, OrderIntent, Side
from .orders import (
    entry_cutoff,
    entry_expired_reason,
    entry_order_expire,
    order_mark_submitted,
    order_open,
    order_open_claimed,
    order_reject,
)
from .reconciliation import broker_orderable_qty

logger = logging.getLogger("aegis.execution")

# How long after the send started an order may still be travelling to KIS. Beyond it, an order
# that the daily inquiry does not show never arrived.
IN_FLIGHT_GRACE = dt.timedelta(seconds=10)
# Errors that prove the request never reached KIS: safe to send again later. KIS's gateway
# refuses an expired or unknown token (EGW00123, EGW00121) before the order reaches the
# exchange; the client has replaced the token once already, so the order waits for the retry
# (or the sweep) instead of being rejected.
NOT_SENT = (KisUnavailable, KisRateLimited, KisTokenRateLimited, KisTokenExpired,
            KisTokenInvalid)


class Broker(Protocol):
    def order_cash(self, *, side: str, symbol: str, qty: int, price: int | None) -> OrderAck: ...

    def daily_orders(self, *, start: dt.date, end: dt.date, side: str = "ALL",
                     filled: str = "ALL", symbol: str = "", odno: str = "") -> list[DailyOrder]:
        ...

    def balance(self) -> Balance: ...


class Outcome(str, enum.Enum):
    SUBMITTED = "submitted"
    REJECTED = "rejected"  # by the broker: the order's shares are released
    REFUSED = "refused"  # by the ledger at order time: no order was made
    IN_FLIGHT = "in_flight"  # outcome unknown: settled by the daily inquiry
    ALREADY = "already"  # an earlier delivery of the same intent got here first
    EXPIRED = "expired"  # an entry not sent in time: withdrawn, never sent late


def _claim(order_id, *, expected: dt.datetime | None = None) -> bool:
    """Take the right to send, in one statement: the free claim, or exactly the claim `expected`
    (a settle taking over a send that never arrived). Of several racing callers, one wins.
    """
    match = {"send_started_at__isnull": True} if expected is None else {
        "send_started_at": expected}
    return Order.objects.filter(
        pk=order_id, status=Order.Status.NEW, broker_order_no__isnull=True, **match,
    ).update(send_started_at=clock.now()) == 1


def order_unclaim(order_id) -> None:
    """Give up the right to send (the request never left): the next sender claims afresh."""
    Order.objects.filter(pk=order_id, status=Order.Status.NEW, broker_order_no__isnull=True
                         ).update(send_started_at=None)


def intent_submit(*, intent_id, broker: Broker) -> Outcome:
    """Send the intent's order unless it went out already. Raises a NOT_SENT error (after
    releasing the claim) when KIS could not be reached, so the caller retries later.
    """
    order = order_open_claimed(intent_id=intent_id)
    if order is not None:  # the common case: recorded and claimed in one statement
        return order_send(order, broker)
    if _entry_expired(intent_id):
        return Outcome.EXPIRED
    try:
        order = order_open(intent_id=intent_id)
    except BrokerQtyRequired as exc:
        # KIS disagreed with the ledger at the last reconciliation: sell no more than KIS
        # would let us (I4b). Asked here, outside the row lock.
        order = order_open(intent_id=intent_id, broker_sellable_qty=broker_orderable_qty(
            broker=broker, symbol=exc.symbol))
    if order is None:
        return Outcome.REFUSED
    if order.status != Order.Status.NEW:
        return Outcome.ALREADY
    if order.send_started_at is not None:
        return order_settle(order_id=order.pk, broker=broker)
    if not _claim(order.pk):
        return Outcome.ALREADY
    return order_send(order, broker)


def _entry_expired(intent_id) -> bool:
    """Withdraw the entry `intent_id` when it is too old to send and nothing of it has left
    (settings.EXECUTION_ENTRY_MAX_AGE_S): the intent when it has no order yet, else its unsent
    order. False when it is not an entry, is young enough, or a send is under way."""
    cutoff = entry_cutoff(clock.now())
    if cutoff is None:
        return False
    try:
        status = _old_entry_status(intent_id, cutoff)
    except ValidationError:
        return False  # a malformed id: order_open says so
    if status == OrderIntent.Status.NEW:
        from .intents import intent_cancel  # intents imports this module

        try:
            intent_cancel(intent_id=intent_id, reason=entry_expired_reason())
        except InvalidIntentState:
            return False  # ordered meanwhile by another sender
    elif status == OrderIntent.Status.ORDERED:
        unsent = Order.objects.filter(
            intent_id=intent_id, status=Order.Status.NEW, broker_order_no__isnull=True,
            send_started_at__isnull=True).values_list("pk", flat=True).first()
        if unsent is None or not entry_order_expire(order_id=unsent, claim=None):
            return False
    else:
        return False
    logger.warning("execution.entry_expired intent_id=%s: %s", intent_id,
                   entry_expired_reason(), extra={"intent_id": str(intent_id)})
    return True


def _old_entry_status(intent_id, cutoff: dt.datetime) -> str | None:
    """The status of the intent `intent_id` when it is an entry written before `cutoff`."""
    return OrderIntent.objects.filter(pk=intent_id, side=Side.BUY, created_at__lt=cutoff,
                                      ).values_list("status", flat=True).first()


def order_send(order: Order, broker: Broker) -> Outcome:
    """Send an order already recorded and claimed by this caller (intent_submit's last step,
    or order_open_claimed's in the intent's own transaction): the broker call and its answer.
    """
    log = {"order_id": str(order.pk), "intent_id": str(order.intent_id)}
    try:
        ack = broker.order_cash(side=order.side, symbol=order.symbol, qty=order.qty,
                                price=order.limit_price)
    except KisAmbiguousOutcome as exc:
        logger.warning("execution.in_flight order_id=%s reason=%s", order.pk, exc, extra=log)
        return Outcome.IN_FLIGHT
    except NOT_SENT:
        order_unclaim(order.pk)
        raise
    except KisError as exc:
        order_reject(order_id=order.pk, reason=str(exc))
        logger.warning("execution.rejected order_id=%s reason=%s", order.pk, exc, extra=log)
        return Outcome.REJECTED
    marked = order_mark_submitted(order_id=order.pk, broker_order_no=ack.odno,
                                  broker_org_no=ack.org_no)
    if getattr(marked, "intent_kind", None):  # the one-statement path read the intent too
        metrics.order_accepted(intent_type=marked.intent_kind,
                               created_at=marked.intent_created_at,
                               event_at=marked.intent_event_at, submitted_at=marked.submitted_at)
    logger.info("execution.submitted order_id=%s odno=%s", order.pk, ack.odno,
                extra=log | {"odno": ack.odno})
    return Outcome.SUBMITTED


def _constraint(exc: IntegrityError) -> str | None:
    """The name of the constraint PostgreSQL says `exc` broke (None elsewhere)."""
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


def order_settle(*, order_id, broker: Broker) -> Outcome:
    """Settle an order whose send may or may not have reached KIS."""
    order = Order.objects.get(pk=order_id)
    if order.status != Order.Status.NEW or order.broker_order_no:
        return Outcome.ALREADY
    started = order.send_started_at
    if started is None:
        return Outcome.ALREADY
    started_kst = started.astimezone(clock.SEOUL)
    candidates = [
        o for o in broker.daily_orders(start=started_kst.date(), end=clock.now_seoul().date(),
                                       side=order.side, symbol=order.symbol)
        if o.ord_qty == order.qty
        and (order.limit_price is None or o.ord_unpr == order.limit_price)
        and o.ord_tmd >= (started_kst - dt.timedelta(seconds=1)).strftime("%H%M%S")
    ]
    claimed = set(Order.objects.filter(
        symbol=order.symbol, trade_date=started_kst.date(), broker_order_no__isnull=False
    ).values_list("broker_order_no", flat=True))
    unclaimed = sorted((o for o in candidates if o.odno not in claimed), key=lambda o: o.ord_tmd)
    for match in unclaimed:
        try:
            order_mark_submitted(order_id=order.pk, broker_order_no=match.odno,
                                 broker_org_no=match.org_no, submitted_at=started)
        except IntegrityError as exc:
            # Another settle adopted this number first (identical orders settled at once; KIS
            # numbers are unique within a day): the next candidate.
            if _constraint(exc) != "order_broker_order_no_unique":
                raise
            continue
        logger.warning("execution.settled order_id=%s odno=%s (adopted from the daily inquiry)",
                       order.pk, match.odno, extra={"order_id": str(order.pk)})
        return Outcome.SUBMITTED
    if clock.now() - started < IN_FLIGHT_GRACE:
        return Outcome.IN_FLIGHT
    cutoff = entry_cutoff(clock.now())
    if (order.side == Side.BUY and cutoff is not None
            and _old_entry_status(order.intent_id, cutoff) is not None):
        # KIS never saw it, and it is too late to send it now.
        if not entry_order_expire(order_id=order.pk, claim=started):
            return Outcome.ALREADY
        logger.warning("execution.entry_expired order_id=%s: %s", order.pk,
                       entry_expired_reason(), extra={"order_id": str(order.pk)})
        return Outcome.EXPIRED
    # Take over exactly the claim judged above: of several settles racing over the same order
    # (the sweep may queue more than one), only one may send it.
    if not _claim(order.pk, expected=started):
        return Outcome.ALREADY
    logger.warning("execution.never_arrived order_id=%s: sending it", order.pk,
                   extra={"order_id": str(order.pk)})
    return order_send(order, broker)
