"""Opening and cancelling intents. An exit intent reserves the shares it will sell, under the
position's row lock, clamped to what is available (I1, I2).
"""

import datetime as dt
import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction

from aegis import clock, metrics

from ..exceptions import (
    InsufficientAvailableQty,
    InvalidInput,
    InvalidIntentState,
    PositionClosed,
)
from ..locks import position_qs_for_update
from ..models import EXIT_INTENT_TYPES, IntentType, OrderIntent, Position, Side
from ..validation import check_key, check_price, check_qty, check_symbol
from . import _ledger
from .orders import order_open_claimed
from .submission import order_unclaim
from .trading_state import require_allowed

logger = logging.getLogger("aegis.ledger")


def _existing_intent(idempotency_key: str, *, position_id: int | None = None) -> OrderIntent | None:
    intent = OrderIntent.objects.filter(idempotency_key=idempotency_key).first()
    if intent is not None and position_id is not None and intent.position_id != position_id:
        raise InvalidInput(
            "idempotency_key",
            f"{idempotency_key!r} already belongs to an intent of position {intent.position_id}.",
        )
    return intent


_local = threading.local()


def execute_here(executor: Callable[[str], bool] | None) -> None:
    """Hand the intents this thread opens, once committed, to `executor` (an intent id in, True
    when taken) instead of the execute task's queue: a process that opens exits on the hot path
    (pricesync) sends them itself, one queue hop fewer. An executor with a `claimed` method
    (an order in, True when taken) gets each order recorded and claimed in its intent's own
    transaction instead. None restores the queue."""
    _local.executor = executor


def _execute_on_commit(intent: OrderIntent) -> None:
    """Execute the intent once its transaction commits (I5): through this thread's executor
    when it takes it, else the execution worker's doorbell when a lane listens, else the
    execute task. `robust`: a broker outage at commit time is logged, not raised; the intent is
    safe in the database and the sweep of NEW intents sends it later.

    When a lane listens (or the executor takes claimed orders), the order is recorded and
    claimed in this very transaction (the execute task's own statement, under the position
    lock the caller holds), so whoever sends it calls KIS at once, without a statement of its
    own. Should nobody take it after the commit, the claim is released and the execute task
    sends the order.
    """
    if not settings.EXECUTION_AUTO_SUBMIT:
        return
    from .. import doorbell
    from ..tasks import intent_execute  # tasks import the services: import when needed

    intent_id = str(intent.pk)
    executor = getattr(_local, "executor", None)
    if executor is None:  # with no lane listening, straight to the execute task
        listening = doorbell.listening()
        take_id = doorbell.ring if listening else None
        take_claimed = doorbell.ring_claimed if listening else None
    else:
        take_id, take_claimed = executor, getattr(executor, "claimed", None)
    order = order_open_claimed(intent_id=intent.pk) if take_claimed is not None else None
    if order is None:
        transaction.on_commit(
            lambda: (take_id is not None and take_id(intent_id)) or intent_execute.delay(
                intent_id), robust=True)
        return
    intent.status = OrderIntent.Status.ORDERED

    def hand_over() -> None:
        if not take_claimed(order):
            order_unclaim(order.pk)
            intent_execute.delay(intent_id)

    transaction.on_commit(hand_over, robust=True)


def _create_intent(
    *, intent_type: str, side: str, position: Position, qty: int, limit_price: int | None,
    reason: str, idempotency_key: str, event_at: dt.datetime | None, now: dt.datetime,
    trigger_price: int | None = None,
) -> OrderIntent:
    intent = OrderIntent.objects.create(
        intent_type=intent_type,
        side=side,
        position=position,
        symbol=position.symbol,
        qty=qty,
        limit_price=limit_price,
        reason=(reason or "")[:255],
        idempotency_key=idempotency_key,
        event_at=event_at or now,
        trigger_price=trigger_price,
        created_at=now,
    )
    _execute_on_commit(intent)
    return intent


def exit_intent_open(
    *,
    position_id: int,
    qty: int,
    intent_type: str,
    idempotency_key: str,
    reason: str = "",
    limit_price: int | None = None,
    event_at: dt.datetime | None = None,
    trigger_price: int | None = None,
) -> OrderIntent:
    """Reserve up to `qty` shares of the position for a SELL and record the intent.
    `event_at` and `trigger_price` record the moment and the price that fired it.

    The qty is clamped to what is available; when nothing is, no intent is written and
    InsufficientAvailableQty is raised. A repeated idempotency key returns the first intent.
    """
    _check_exit(qty=qty, intent_type=intent_type, idempotency_key=idempotency_key,
                limit_price=limit_price, trigger_price=trigger_price)
    now = clock.now()
    with transaction.atomic():
        require_allowed(None, side=Side.SELL, operation="opening an exit")
        position = _ledger.lock_position(position_id)
        return _exit_open(position, qty=qty, intent_type=intent_type,
                          idempotency_key=idempotency_key, reason=reason,
                          limit_price=limit_price, event_at=event_at,
                          trigger_price=trigger_price, now=now)


def exit_intent_open_locked(
    position: Position,
    *,
    trading_state: str | None,
    qty: int,
    intent_type: str,
    idempotency_key: str,
    new_key: bool = False,
    reason: str = "",
    limit_price: int | None = None,
    event_at: dt.datetime | None = None,
    trigger_price: int | None = None,
) -> OrderIntent:
    """exit_intent_open for a caller on the hot path that already holds `position`'s row lock
    in its own transaction, read in the statement that took it, with the trading state
    (trading_state_in_force). No savepoint and no second read: the typed exceptions are raised
    before anything is written, so the caller's transaction stays usable. `new_key` says the
    key was just made (a UUID), so no earlier intent can hold it.
    """
    _check_exit(qty=qty, intent_type=intent_type, idempotency_key=idempotency_key,
                limit_price=limit_price, trigger_price=trigger_price)
    if not transaction.get_connection().in_atomic_block:
        raise InvalidInput("position", "exit_intent_open_locked needs the caller's transaction.")
    require_allowed(trading_state, side=Side.SELL, operation="opening an exit")
    return _exit_open(position, qty=qty, intent_type=intent_type,
                      idempotency_key=idempotency_key, reason=reason, limit_price=limit_price,
                      event_at=event_at, trigger_price=trigger_price, now=clock.now(),
                      key_checked=new_key)


def _check_exit(*, qty, intent_type, idempotency_key, limit_price, trigger_price) -> None:
    if intent_type not in EXIT_INTENT_TYPES:
        raise InvalidInput("intent_type", f"{intent_type!r} is not an exit intent type.")
    check_qty(qty)
    check_price(limit_price)
    check_price(trigger_price, "trigger_price")
    check_key(idempotency_key)


def _exit_open(position: Position, *, qty: int, intent_type: str, idempotency_key: str,
               reason: str, limit_price: int | None, event_at: dt.datetime | None,
               trigger_price: int | None, now: dt.datetime,
               key_checked: bool = False) -> OrderIntent:
    """The ledger's exit, under the position's lock (I1, I2)."""
    if not key_checked:
        existing = _existing_intent(idempotency_key, position_id=position.pk)
        if existing is not None:
            return existing
    if position.status != Position.Status.OPEN:
        raise PositionClosed(position.pk)

    available = position.qty - position.reserved_qty
    if available <= 0:
        logger.warning(
            "ledger.refused position_id=%s symbol=%s requested=%s qty=%s locked_qty=%s",
            position.pk,
            position.symbol,
            qty,
            position.qty,
            position.reserved_qty,
            extra={
                "event": "ledger.refused",
                "position_id": position.pk,
                "symbol": position.symbol,
                "requested_qty": qty,
                "qty": position.qty,
                "locked_qty": position.reserved_qty,
            },
        )
        metrics.LEDGER_REFUSALS.inc()
        raise InsufficientAvailableQty(
            position_id=position.pk,
            requested=qty,
            qty=position.qty,
            locked=position.reserved_qty,
        )

    granted = min(qty, available)
    # The intent first: its execution is then the first thing done after the commit,
    # ahead of the cache invalidation that saving the position registers.
    intent = _create_intent(
        intent_type=intent_type, side=Side.SELL, position=position, qty=granted,
        limit_price=limit_price, reason=reason, idempotency_key=idempotency_key,
        event_at=event_at, now=now, trigger_price=trigger_price,
    )
    position.reserved_qty += granted
    _ledger.save_position(position)
    if granted < qty:
        logger.info(
            "ledger.clamped position_id=%s intent_id=%s requested=%s granted=%s",
            position.pk,
            intent.pk,
            qty,
            granted,
            extra={"position_id": position.pk, "intent_id": str(intent.pk)},
        )
    return intent


def _lock_or_open_position(symbol: str) -> Position:
    """The symbol's open position, locked; a new empty one if there is none."""
    position = position_qs_for_update().filter(symbol=symbol, status=Position.Status.OPEN).first()
    if position is not None:
        return position
    try:
        with transaction.atomic():
            return Position.objects.create(symbol=symbol, opened_at=clock.now())
    except IntegrityError:
        # Another transaction opened it first (one open position per symbol); take its lock.
        return position_qs_for_update().get(symbol=symbol, status=Position.Status.OPEN)


def entry_intent_open(
    *,
    symbol: str,
    qty: int,
    idempotency_key: str,
    reason: str = "",
    limit_price: int | None = None,
    event_at: dt.datetime | None = None,
    trading_state: str | None = None,
    new_key: bool = False,
) -> OrderIntent:
    """Record a BUY intent for `symbol`, opening an empty position to hold what it buys.

    A caller already in a transaction that read the trading state (trading_state_get) passes
    it as `trading_state`; `new_key` says no intent can hold the key yet (the caller holds the
    lock of what the key names). Either saves a query; the refusals are the same.
    """
    check_symbol(symbol)
    check_qty(qty)
    check_price(limit_price)
    check_key(idempotency_key)
    now = clock.now()

    with transaction.atomic():
        require_allowed(trading_state, side=Side.BUY, operation="opening an entry")
        existing = None if new_key else _existing_intent(idempotency_key)
        if existing is not None:
            if existing.symbol != symbol or existing.intent_type != IntentType.ENTRY:
                raise InvalidInput(
                    "idempotency_key",
                    f"{idempotency_key!r} already belongs to another intent ({existing.pk}).",
                )
            return existing
        position = _lock_or_open_position(symbol)
        return _create_intent(
            intent_type=IntentType.ENTRY, side=Side.BUY, position=position, qty=qty,
            limit_price=limit_price, reason=reason, idempotency_key=idempotency_key,
            event_at=event_at, now=now,
        )


def intent_cancel(*, intent_id: object, reason: str) -> OrderIntent:
    """Withdraw an intent that has not become an order; its reserved shares are released."""
    position_id = _ledger.position_id_of_intent(intent_id)
    with transaction.atomic():
        position = _ledger.lock_position(position_id)
        intent = _ledger.lock_intent(intent_id)
        if intent.status != OrderIntent.Status.NEW:
            raise InvalidIntentState(intent.pk, intent.status, "cancel")
        intent.status = OrderIntent.Status.CANCELLED
        intent.closed_reason = (reason or "cancelled")[:255]
        intent.save(update_fields=["status", "closed_reason"])
        if intent.side == Side.SELL:
            _ledger.release(position, intent.qty)
        _ledger.close_if_flat(position)
        _ledger.save_position(position)
    return intent
