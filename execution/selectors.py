"""Reads of the ledger that take more than one line."""

import datetime as dt
import logging
import time
from dataclasses import dataclass

from django.db import DatabaseError
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce, Now
from prometheus_client.core import GaugeMetricFamily

from .models import Alert, Order, OrderIntent, Position, Reconciliation, Side, TradingState

logger = logging.getLogger("core.metrics")


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
        return self.reserved_qty == self.locked_from_rows and 0 <= self.reserved_qty <= self.qty


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


def _let_out(qs, state: str):
    """The rows of `qs` (intents or orders) that the trading state lets go to the broker."""
    if state == TradingState.State.HALTED:
        return qs.none()
    if state == TradingState.State.REDUCING:
        return qs.filter(side=Side.SELL)
    return qs


def intents_waiting(*, older_than: dt.datetime, state: str, limit: int = 500) -> list[str]:
    """NEW intents written before `older_than` that the trading state lets out, oldest first."""
    qs = _let_out(
        OrderIntent.objects.filter(status=OrderIntent.Status.NEW, created_at__lt=older_than), state
    )
    return [str(pk) for pk in qs.order_by("created_at").values_list("pk", flat=True)[:limit]]


def orders_unsent(*, older_than: dt.datetime, state: str, limit: int = 500) -> list[str]:
    """Intents of orders recorded before `older_than` whose send was never started or was given
    back (KIS unreachable until the task ran out of retries), that the trading state lets out."""
    qs = _let_out(
        Order.objects.filter(
            status=Order.Status.NEW,
            send_started_at__isnull=True,
            broker_order_no__isnull=True,
            created_at__lt=older_than,
            quarantined_at__isnull=True,
        ),
        state,
    )
    return [str(pk) for pk in qs.order_by("created_at").values_list("intent_id", flat=True)[:limit]]


def orders_in_flight(*, older_than: dt.datetime, limit: int = 500) -> list[str]:
    """Orders sent with no broker number yet whose send's deadline has passed (by the
    database's clock; rows from before deadlines: sent before `older_than`), not quarantined:
    the ones a settle can decide now."""
    return [
        str(pk)
        for pk in Order.objects.filter(
            Q(send_deadline__lt=Now())
            | Q(send_deadline__isnull=True, send_started_at__lt=older_than),
            status=Order.Status.NEW,
            send_started_at__isnull=False,
            broker_order_no__isnull=True,
            quarantined_at__isnull=True,
        )
        .order_by("send_started_at")
        .values_list("pk", flat=True)[:limit]
    ]


def reconciliation_metrics():
    """The last reconciliation, for /metrics at scrape time (core.metrics' shared state): left
    out when the database cannot be read."""

    try:
        run = Reconciliation.objects.order_by("-started_at").only("result", "finished_at").first()
    except DatabaseError as exc:
        logger.warning("metrics.database_unavailable error=%s", type(exc).__name__)
        return
    status = GaugeMetricFamily(
        "aegis_reconciliation_ok", "1 when the last reconciliation matched KIS's holdings."
    )
    age = GaugeMetricFamily(
        "aegis_reconciliation_age_seconds", "Seconds since the last reconciliation finished."
    )
    if run is not None:
        status.add_metric([], 1 if run.result == Reconciliation.Result.MATCHED else 0)
        age.add_metric([], max(0.0, time.time() - run.finished_at.timestamp()))
    yield status
    yield age


def circuits_last() -> list[Alert]:
    """Each KIS circuit's last alerted change (one alert per change: execution/alerts.py)."""
    return list(
        Alert.objects.filter(kind=Alert.Kind.BREAKER)
        .order_by("subject", "-created_at")
        .distinct("subject")
    )
