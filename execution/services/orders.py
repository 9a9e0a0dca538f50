"""Turning an intent into a broker order and following the order's life, under the position lock.

The Order row is written before the broker is called (I4): a retried or crashed task finds it and
learns what was already attempted. A SELL order carries its intent's reservation for its unfilled
remainder; rejection and cancellation give that remainder back.
"""

import datetime as dt
import functools
import logging
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Subquery

from core import clock
from core.rows import bound_cursor

from ..exceptions import (
    BrokerQtyRequired,
    InvalidInput,
    InvalidIntentState,
    InvalidOrderState,
    OrderNotFound,
)
from ..gate import allows_sql
from ..locks import intent_position_lock_sql
from ..models import Order, OrderIntent, Position, Side, TradingState
from . import _ledger
from .trading_state import require_state_allows

logger = logging.getLogger("aegis.ledger")


def order_open(*, intent_id: object, broker_sellable_qty: int | None = None) -> Order | None:
    """Record the Order for a NEW intent, re-checking the ledger under the position lock.

    Returns the intent's order (the existing one when the intent was already ordered, so a retried
    task never makes a second), or None when the ledger refused it: the intent is then REJECTED
    and its reservation released. `broker_sellable_qty` is the broker's orderable qty when known
    (I4b). Raises TradingNotAllowed, leaving the intent NEW to wait, when the state forbids it,
    and BrokerQtyRequired for a sell of a position the last reconciliation found KIS disagreeing
    with, when `broker_sellable_qty` is not given.
    """
    if broker_sellable_qty is not None and (
        type(broker_sellable_qty) is not int or broker_sellable_qty < 0
    ):
        raise InvalidInput("broker_sellable_qty", "must be a whole number ≥ 0 or None.")
    position_id = _ledger.position_id_of_intent(intent_id)
    now = clock.now()

    with transaction.atomic():
        position = _ledger.lock_position(position_id)
        intent = _ledger.lock_intent(intent_id)
        if intent.status == OrderIntent.Status.ORDERED:
            order = intent.orders.order_by("-created_at").first()
            if (
                order is not None
                and order.status == Order.Status.NEW
                and order.send_started_at is None
            ):
                # Recorded but never sent (its task gave up): it goes out only if it still may.
                require_state_allows(side=order.side, operation=f"sending {intent.intent_type}")
            return order
        if intent.status != OrderIntent.Status.NEW:
            raise InvalidIntentState(intent.pk, intent.status, "order")
        require_state_allows(side=intent.side, operation=f"sending {intent.intent_type}")

        order_qty = intent.qty
        if intent.side == Side.SELL:
            if position.broker_qty is not None and broker_sellable_qty is None:
                raise BrokerQtyRequired(position_id=position.pk, symbol=position.symbol)
            # This intent's own shares are already inside reserved_qty.
            sellable = position.qty - (position.reserved_qty - intent.qty)
            if broker_sellable_qty is not None:
                sellable = min(sellable, broker_sellable_qty)
            order_qty = min(intent.qty, sellable)
            if order_qty <= 0:
                intent.status = OrderIntent.Status.REJECTED
                intent.closed_reason = (
                    f"nothing sellable at order time (qty {position.qty}, "
                    f"locked {position.reserved_qty - intent.qty} by others, "
                    f"broker orderable {broker_sellable_qty})"
                )
                intent.save(update_fields=["status", "closed_reason"])
                _ledger.release(position, intent.qty)
                _ledger.close_if_flat(position)
                _ledger.save_position(position)
                logger.warning(
                    "ledger.refused_at_order intent_id=%s position_id=%s",
                    intent.pk,
                    position.pk,
                    extra={"intent_id": str(intent.pk), "position_id": position.pk},
                )
                return None
            if order_qty < intent.qty:
                _ledger.release(position, intent.qty - order_qty)
                _ledger.save_position(position)

        order = Order.objects.create(
            intent=intent,
            position=position,
            symbol=intent.symbol,
            venue=intent.venue,
            side=intent.side,
            qty=order_qty,
            limit_price=intent.limit_price,
            created_at=now,
        )
        intent.status = OrderIntent.Status.ORDERED
        intent.save(update_fields=["status"])
    return order


@functools.cache
def _sql(template: str) -> str:
    """A hot-path statement with the ledger's table names filled in, once per process."""
    return template.format(
        state=TradingState._meta.db_table,
        intent=OrderIntent._meta.db_table,
        position=Position._meta.db_table,
        order=Order._meta.db_table,
        allows_intent=allows_sql("i.side"),
        pos=intent_position_lock_sql("pos", ("id", "broker_qty")),
    )


# The hot path's common case in one statement (PERFORMANCE.md: round trips dominate): a NEW
# intent that the trading state lets out becomes a NEW order, recorded unclaimed (the send
# claims it right before the broker write: execution/services/claim.py), and the intent
# ORDERED. The intent's conditional UPDATE is the
# compare-and-set: of two deliveries of one intent, one inserts an order. Neither the position's
# qty nor its reservations change (a SELL intent's shares were reserved when it opened, and the
# order's remainder now holds them; the CHECK reserved_qty <= qty means the re-check at order
# time cannot come out short). The position row is still locked first, as everywhere (I2): the
# order's foreign key takes a share lock on it, and taking that after the intent's lock
# deadlocked against intent_cancel in the race tests. A sell of a position that the last
# reconciliation found KIS disagreeing with is left to order_open, which caps it.
_OPEN_RECORDED = """
WITH {pos}, intent AS (
    UPDATE {intent} i SET status = 'ORDERED'
    FROM pos p
    WHERE i.id = %(intent_id)s AND i.status = 'NEW' AND p.id = i.position_id
      AND {allows_intent}
      AND (i.side = 'BUY' OR p.broker_qty IS NULL)
      AND (i.side = 'SELL' OR %(entry_since)s::timestamptz IS NULL
           OR i.created_at >= %(entry_since)s::timestamptz)
    RETURNING i.id, i.position_id, i.symbol, i.venue, i.side, i.qty, i.limit_price
)
INSERT INTO {order} (id, intent_id, position_id, symbol, venue, side, qty, filled_qty,
                     limit_price, status, broker_org_no, reject_reason, created_at, updated_at)
SELECT %(order_id)s, id, position_id, symbol, venue, side, qty, 0, limit_price, 'NEW', '', '',
       %(now)s, %(now)s
FROM intent
RETURNING intent_id, position_id, symbol, venue, side, qty, limit_price
"""


def entry_cutoff(now: dt.datetime) -> dt.datetime | None:
    """Entries whose intents were written before this are too old to send at `now`
    (settings.EXECUTION_ENTRY_MAX_AGE_S); None when entries never expire."""
    max_age = settings.EXECUTION_ENTRY_MAX_AGE_S
    return now - dt.timedelta(seconds=max_age) if max_age > 0 else None


def entry_expired_reason() -> str:
    return f"expired: not sent within {settings.EXECUTION_ENTRY_MAX_AGE_S} s of its decision"


def entry_order_expire(*, order_id: object, claim: dt.datetime | None) -> bool:
    """Withdraw an entry's order that never reached KIS: unsent (`claim` None), or claimed at
    `claim` by a send KIS never saw. False, and nothing changed, when the order is no longer so
    (another sender claimed it meanwhile, or it went out): the order row's lock orders this
    against the claim's UPDATE."""
    position_id = _ledger.position_id_of_order(order_id)
    with transaction.atomic():
        position = _ledger.lock_position(position_id)
        order = _ledger.lock_order(order_id)
        if (
            order.side != Side.BUY
            or order.status != Order.Status.NEW
            or order.broker_order_no
            or order.send_started_at != claim
        ):
            return False
        order.status = Order.Status.CANCELLED
        order.reject_reason = entry_expired_reason()[:255]
        order.save(update_fields=["status", "reject_reason", "updated_at"])
        _ledger.close_if_flat(position)
        _ledger.save_position(position)
    return True


def order_withdraw_unsent(
    *, order_id: object, claim: dt.datetime | None, reason: str
) -> Order | None:
    """Reject an order that never reached KIS (unsent, `claim` None, or claimed at `claim` by a
    send KIS never saw) and release its shares; None, changing nothing, when it is no longer so
    (claimed by another sender meanwhile, or it went out)."""
    position_id = _ledger.position_id_of_order(order_id)
    with transaction.atomic():
        position = _ledger.lock_position(position_id)
        order = _ledger.lock_order(order_id)
        if (
            order.status != Order.Status.NEW
            or order.broker_order_no
            or order.send_started_at != claim
        ):
            return None
        order.status = Order.Status.REJECTED
        order.reject_reason = reason[:255]
        order.save(update_fields=["status", "reject_reason", "updated_at"])
        if order.side == Side.SELL:
            _ledger.release(position, order.remaining_qty)
        _ledger.close_if_flat(position)
        _ledger.save_position(position)
    return order


def order_open_recorded(*, intent_id: object) -> Order | None:
    """The order of a NEW intent, recorded for sending in one statement; None when
    anything is out of the ordinary (not NEW, the state forbids it, a capped sell, an entry too
    old to send, a malformed id): then the caller takes the slower steps, which explain
    themselves.
    """
    try:
        intent_uuid = uuid.UUID(str(intent_id))
    except ValueError:
        return None
    now = clock.now()
    order_id = uuid.uuid4()
    with bound_cursor() as cursor:
        cursor.execute(
            _sql(_OPEN_RECORDED),
            {
                "intent_id": intent_uuid,
                "order_id": order_id,
                "now": now,
                "entry_since": entry_cutoff(now),
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    intent_pk, position_id, symbol, venue, side, qty, limit_price = row
    return recorded_order(
        id=order_id,
        intent_id=intent_pk,
        position_id=position_id,
        symbol=symbol,
        venue=venue,
        side=side,
        qty=qty,
        limit_price=limit_price,
        at=now,
    )


def recorded_order(*, at: dt.datetime, **fields) -> Order:
    """The NEW order just recorded (unclaimed) at `at` with `fields`, as its row now stands,
    without reading it back."""
    order = Order(
        status=Order.Status.NEW, created_at=at, send_started_at=None, updated_at=at, **fields
    )
    order._state.adding = False
    order._state.db = connection.alias
    return order


# The broker's answer in one statement: the intent's ordered_at, then the order's number. The
# order's UPDATE joins the intent's, so the intent row is locked before the order row (I2's
# order; the race tests deadlocked when the two could come in either order).
_MARK_SUBMITTED = """
WITH pending AS (
    SELECT intent_id FROM {order}
    WHERE id = %(order_id)s AND status = 'NEW' AND broker_order_no IS NULL
), intent AS (
    UPDATE {intent} i SET ordered_at = COALESCE(i.ordered_at, %(at)s) FROM pending
    WHERE i.id = pending.intent_id
    RETURNING i.id, i.intent_type, i.created_at, i.event_at
)
UPDATE {order} o SET status = 'SUBMITTED', broker_order_no = %(odno)s,
                     broker_org_no = %(org)s, submitted_at = %(at)s, trade_date = %(date)s,
                     updated_at = %(now)s
FROM intent
WHERE o.id = %(order_id)s AND o.intent_id = intent.id AND o.status = 'NEW'
  AND o.broker_order_no IS NULL
RETURNING o.*, intent.intent_type AS intent_kind, intent.created_at AS intent_created_at,
          intent.event_at AS intent_event_at
"""


def order_mark_submitted_fast(
    *,
    order_id: uuid.UUID | str,
    broker_order_no: str,
    broker_org_no: str = "",
    submitted_at: dt.datetime | None = None,
) -> Order | None:
    """order_mark_submitted's common case in one statement: the updated order, or
    None when it did not apply (order_mark_submitted then takes its own steps and says why)."""
    if not isinstance(broker_order_no, str) or not broker_order_no.strip():
        return None
    try:
        order_uuid = uuid.UUID(str(order_id))
    except ValueError:
        return None
    now = clock.now()
    at = submitted_at or now
    params = {
        "order_id": order_uuid,
        "odno": broker_order_no,
        "org": broker_org_no,
        "at": at,
        "date": at.astimezone(clock.SEOUL).date(),
        "now": now,
    }
    return next(iter(Order.objects.raw(_sql(_MARK_SUBMITTED), params)), None)


def order_mark_submitted(
    *,
    order_id: uuid.UUID | str,
    broker_order_no: str,
    broker_org_no: str = "",
    submitted_at: dt.datetime | None = None,
) -> Order:
    """The broker accepted the order and gave it a number.

    This changes neither qty nor reservations, so it needs no position lock (I2). On PostgreSQL
    one statement does it (order_mark_submitted_fast); otherwise, or when that did not apply,
    two conditional UPDATEs, intent then order (the ledger's lock order), in one transaction,
    and a repeat of the same answer returns the order as it is.
    """
    if not isinstance(broker_order_no, str) or not broker_order_no.strip():
        raise InvalidInput("broker_order_no", "the broker's order number is required.")
    order = order_mark_submitted_fast(
        order_id=order_id,
        broker_order_no=broker_order_no,
        broker_org_no=broker_org_no,
        submitted_at=submitted_at,
    )
    if order is not None:
        return order
    submitted_at = submitted_at or clock.now()
    try:
        with transaction.atomic():
            pending = Order.objects.filter(
                pk=order_id, status=Order.Status.NEW, broker_order_no__isnull=True
            )
            OrderIntent.objects.filter(
                pk=Subquery(pending.values("intent_id")[:1]), ordered_at__isnull=True
            ).update(ordered_at=submitted_at)
            updated = pending.update(
                status=Order.Status.SUBMITTED,
                broker_order_no=broker_order_no,
                broker_org_no=broker_org_no,
                submitted_at=submitted_at,
                trade_date=submitted_at.astimezone(clock.SEOUL).date(),
                updated_at=clock.now(),
            )
    except (ValueError, TypeError, ValidationError):
        raise OrderNotFound(order_id) from None
    order = Order.objects.filter(pk=order_id).first()
    if order is None:
        raise OrderNotFound(order_id)
    if not updated and order.broker_order_no != broker_order_no:
        raise InvalidOrderState(order.pk, order.status, "mark submitted")
    return order


def _close_order(*, order_id: object, status: str, reason: str, allowed: tuple) -> Order:
    position_id = _ledger.position_id_of_order(order_id)
    with transaction.atomic():
        position = _ledger.lock_position(position_id)
        order = _ledger.lock_order(order_id)
        if order.status == status:
            return order
        if order.status not in allowed:
            raise InvalidOrderState(order.pk, order.status, f"mark {status.lower()}")
        remaining = order.remaining_qty
        order.status = status
        order.reject_reason = (reason or "")[:255]
        order.save(update_fields=["status", "reject_reason", "updated_at"])
        if order.side == Side.SELL:
            _ledger.release(position, remaining)
        _ledger.close_if_flat(position)
        _ledger.save_position(position)
    return order


def order_reject(*, order_id: object, reason: str) -> Order:
    """The broker refused the order (or it never reached the broker): release its shares."""
    return _close_order(
        order_id=order_id,
        status=Order.Status.REJECTED,
        reason=reason,
        allowed=(Order.Status.NEW, Order.Status.SUBMITTED),
    )


def order_mark_cancelled(*, order_id: object, reason: str = "") -> Order:
    """The broker confirmed the unfilled remainder cancelled: release it."""
    return _close_order(
        order_id=order_id,
        status=Order.Status.CANCELLED,
        reason=reason,
        allowed=Order.OPEN_STATUSES,
    )
