"""Execution tasks: thin; each loads what it needs by id and calls one service."""

import datetime as dt
import logging

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils.module_loading import import_string

from core import clock

from .broker import get_broker
from .notify.deliver import deliver_due
from .selectors import intents_waiting, orders_in_flight, orders_unsent
from .services.audit import ledger_audit
from .services.expiry import orders_expire
from .services.reconciliation import reconciliation_run
from .services.submission import NOT_SENT, intent_submit, order_settle
from .services.sync import orders_sync
from .services.trading_state import trading_state_get

logger = logging.getLogger("aegis.execution")

# Celery compares a message's expiry, stamped by the publisher's clock (beat's), with the
# worker's own: the safety nets' expiry leaves room for the clocks to differ by
# EXECUTION_CLOCK_SKEW_S, or a worker running ahead discards every sweep.
NET_EXPIRES_S = 60

# Younger than this, an intent or an order is still on its normal path.
SWEEP_AGE = dt.timedelta(seconds=3)


# A database connection that broke while idle (PostgreSQL restarted, the network dropped it)
# fails the task's first statement; the failed connection is closed after the task
# (aegis/celery.py) and the retry runs on a new one. A lock or statement timeout
# (DATABASE_LOCK_TIMEOUT_MS, DATABASE_STATEMENT_TIMEOUT_MS) is an OperationalError too, on a
# connection that stays open: retried after the backoff. Every execution task is safe to run
# twice.
DB_CONNECTION_LOST = (InterfaceError, OperationalError)


@shared_task(
    name="execution.intent_execute",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=NOT_SENT + DB_CONNECTION_LOST,
    retry_backoff=0.5,
    retry_backoff_max=10,
    retry_jitter=True,
    max_retries=8,
    soft_time_limit=30,
    time_limit=60,
)
def intent_execute(intent_id: str) -> str:
    """Turn a NEW intent into a broker order, exactly once, however often it is delivered."""
    return intent_submit(intent_id=intent_id, broker=get_broker()).value


@shared_task(
    name="execution.order_settle",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=NOT_SENT + DB_CONNECTION_LOST,
    retry_backoff=1,
    max_retries=5,
    time_limit=60,
)
def order_settle_task(order_id: str) -> str:
    """Settle an order whose send may or may not have reached KIS."""
    return order_settle(order_id=order_id, broker=get_broker()).value


@shared_task(name="execution.sweep", expires=NET_EXPIRES_S, time_limit=30)
def sweep() -> dict:
    """The safety net, never the main path: re-enqueue NEW intents that missed their enqueue
    (broker or Redis down at commit) and orders recorded but never sent (their task ran out of
    retries while KIS was unreachable), and settle orders left in flight by a crash or a timeout.
    """
    cutoff = clock.now() - SWEEP_AGE
    state = trading_state_get()
    intents = intents_waiting(older_than=cutoff, state=state)
    intents += orders_unsent(older_than=cutoff, state=state)
    orders = orders_in_flight(older_than=cutoff)
    for intent_id in intents:
        intent_execute.delay(intent_id)
    for order_id in orders:
        order_settle_task.delay(order_id)
    if intents or orders:
        logger.warning(
            "execution.sweep intents=%d orders_in_flight=%d",
            len(intents),
            len(orders),
            extra={"intents": len(intents), "orders_in_flight": len(orders)},
        )
    return {"intents": len(intents), "orders_in_flight": len(orders)}


@shared_task(name="execution.orders_sync", expires=NET_EXPIRES_S, time_limit=60)
def orders_sync_task() -> dict:
    """Fills and ended remainders of open orders, from KIS's daily orders inquiry."""
    return orders_sync(broker=get_broker())


@shared_task(name="execution.orders_expire", expires=NET_EXPIRES_S, time_limit=60)
def orders_expire_task() -> dict:
    """Cancel limit orders left unfilled past EXECUTION_LIMIT_ORDER_TIMEOUT_S, when
    EXECUTION_ORDERS_DUE says orders may be cancelled now."""
    timeout = dt.timedelta(seconds=settings.EXECUTION_LIMIT_ORDER_TIMEOUT_S)
    due = settings.EXECUTION_ORDERS_DUE
    if due and not import_string(due)(clock.now_seoul(), timeout):
        return {"skipped": "outside continuous trading"}
    return orders_expire(broker=get_broker(), timeout=timeout)


@shared_task(name="execution.reconcile", expires=60, time_limit=120)
def reconcile_task(trigger: str = "PERIODIC") -> dict:
    """Compare the ledger with KIS's holdings; a success opens the startup gate."""
    run = reconciliation_run(broker=get_broker(), trigger=trigger)
    return {"id": run.pk, "result": run.result, "mismatches": run.mismatches.count()}


@shared_task(name="execution.ledger_audit", expires=60, time_limit=60)
def ledger_audit_task() -> dict:
    """Every open position's reserved_qty recomputed from its rows; drift alerted."""
    return ledger_audit()


# Not "execution.*": the default queue's worker sends, never the execution worker, whose
# threads are the orders'.
@shared_task(name="notify.deliver", expires=10, time_limit=60, ignore_result=True)
def notify_deliver_task() -> dict:
    """The notifications due on each channel, one message each (execution/notify/): every
    second (beat). Runs that overlap share the channels out (each channel's lock)."""
    return deliver_due()
