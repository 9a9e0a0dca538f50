"""Comparing the ledger with what KIS says the account holds (ARCHITECTURE.md, I4b).

PostgreSQL is the truth for what Aegis did; KIS is the truth for what the account holds. They
part when something outside Aegis trades the account (a person in the MTS app), when a fill is
lost, or after a bug. A reconciliation:

1. brings open orders up to date from the daily orders inquiry, so fills KIS already has are in
   the ledger;
2. reads the balance (every page) and compares each symbol's holding with the open position;
   symbols with an order still on its way (sent, no broker number yet) are left for next time,
   since KIS may hold shares the ledger cannot know of yet;
3. lists today's orders at KIS that the ledger does not know (by order number; a revision or a
   cancel of a known order is known): placed in the MTS app, or sent by Aegis and never
   recorded. Symbols with an order on its way are left for next time here too;
4. records the run and every mismatch in one transaction, marks each mismatched position with
   KIS's figure (its sells then ask KIS what is orderable first) and clears the mark where they
   agree again, and opens the startup gate.

An answer from KIS that cannot be read (a holding without hldg_qty, say) fails the run with the
field named, and changes nothing: a missing figure is never taken for zero.

It never edits the ledger's quantities: which side is wrong is a person's call.
"""

import hashlib
import logging

from django.db import transaction
from django.utils.translation import gettext

from core import clock
from kis.client import BadDailyOrder, DailyOrder
from kis.errors import KisError

from ..alerts import alert_raise
from ..locks import positions_qs_for_update
from ..models import Alert, Order, Position, Reconciliation, ReconciliationMismatch
from .sync import orders_sync
from .trading_state import reconciliation_succeeded

logger = logging.getLogger("aegis.execution")


def reconciliation_run(*, broker, trigger: str = Reconciliation.Trigger.PERIODIC) -> Reconciliation:
    """Reconcile once. Returns the recorded run; a run that could not read KIS is recorded as
    FAILED (and leaves the startup gate as it was)."""
    if trigger not in Reconciliation.Trigger.values:
        raise ValueError(f"unknown trigger {trigger!r}")
    started = clock.now()
    try:
        orders_sync(broker=broker)
        balance = broker.balance()
        today = clock.now_seoul().date()
        at_kis = broker.daily_orders(start=today, end=today, keep_bad=True)
    except KisError as exc:
        run = Reconciliation.objects.create(
            trigger=trigger,
            result=Reconciliation.Result.FAILED,
            started_at=started,
            finished_at=clock.now(),
            error=str(exc)[:2000],
        )
        logger.error(
            "reconcile.failed trigger=%s error=%s",
            trigger,
            exc,
            extra={"reconciliation_id": run.pk, "trigger": trigger},
        )
        return run

    held = {h.symbol: h for h in balance.holdings if h.hldg_qty > 0}
    in_flight = set(
        Order.objects.filter(
            status=Order.Status.NEW,
            send_started_at__isnull=False,
            broker_order_no__isnull=True,
        ).values_list("symbol", flat=True)
    )
    unknown = unknown_orders(at_kis=at_kis, trade_date=today, in_flight=in_flight)
    with transaction.atomic():
        positions = {
            p.symbol: p for p in positions_qs_for_update().filter(status=Position.Status.OPEN)
        }
        symbols = sorted((set(held) | {s for s, p in positions.items() if p.qty > 0}) - in_flight)
        mismatches = []
        agreed = []
        for symbol in symbols:
            position, holding = positions.get(symbol), held.get(symbol)
            ledger_qty = position.qty if position else 0
            broker_qty = holding.hldg_qty if holding else 0
            if ledger_qty == broker_qty:
                if position is not None and position.broker_qty is not None:
                    agreed.append(position.pk)
                continue
            mismatches.append(
                ReconciliationMismatch(
                    symbol=symbol,
                    position=position,
                    ledger_qty=ledger_qty,
                    broker_qty=broker_qty,
                    broker_orderable_qty=holding.ord_psbl_qty if holding else 0,
                    ledger_avg_price=position.avg_price if position else None,
                    broker_avg_price=holding.pchs_avg_pric if holding else None,
                )
            )
        result = (
            Reconciliation.Result.MISMATCH
            if mismatches or unknown
            else Reconciliation.Result.MATCHED
        )
        finished = clock.now()
        run = Reconciliation.objects.create(
            trigger=trigger,
            result=result,
            started_at=started,
            finished_at=finished,
            symbols_checked=len(symbols),
            symbols_skipped=sorted(in_flight),
            cash_krw=balance.prvs_rcdl_excc_amt,
            unknown_orders=unknown,
        )
        for mismatch in mismatches:
            mismatch.reconciliation = run
        ReconciliationMismatch.objects.bulk_create(mismatches)
        for m in mismatches:  # a few rows at most: a person will look at each
            if m.position is not None:
                Position.objects.filter(pk=m.position.pk).update(broker_qty=m.broker_qty)
        if agreed:
            Position.objects.filter(pk__in=agreed).update(broker_qty=None)
        reconciliation_succeeded(at=finished)

    extra = {
        "reconciliation_id": run.pk,
        "trigger": trigger,
        "mismatches": len(mismatches),
        "unknown_orders": len(unknown),
    }
    if unknown:
        alert_raise(
            kind=Alert.Kind.RECONCILIATION,
            severity=Alert.Severity.CRITICAL,
            subject="unknown-orders",
            message=gettext(
                "KIS holds %(count)s order(s) of %(day)s the ledger does not know (placed in "
                "the MTS app, or sent and never recorded): %(orders)s. A person decides whether "
                "the ledger must take them in."
            )
            % {
                "count": len(unknown),
                "day": f"{today:%Y-%m-%d}",
                "orders": "; ".join(
                    gettext("%(odno)s %(side)s %(symbol)s ×%(qty)s at %(time)s")
                    % {
                        "odno": u["odno"] or "?",
                        "side": u["side"],
                        "symbol": u["symbol"],
                        "qty": u["qty"],
                        "time": u["ord_tmd"],
                    }
                    for u in unknown[:20]
                ),
            },
            # Once a day per set of unknown orders, not once per run.
            key=f"reconciliation:unknown:{today:%Y%m%d}:"
            + hashlib.sha256(" ".join(u["odno"] for u in unknown).encode()).hexdigest()[:24],
        )
    if mismatches:
        alert_raise(
            kind=Alert.Kind.RECONCILIATION,
            severity=Alert.Severity.CRITICAL,
            subject="reconciliation",
            message=gettext(
                "The ledger and KIS disagree: %(mismatches)s. Sells of these symbols are capped "
                "at what KIS says is orderable; a person decides which side is wrong."
            )
            % {
                "mismatches": "; ".join(
                    gettext("%(symbol)s ledger %(ledger)s KIS %(broker)s")
                    % {"symbol": m.symbol, "ledger": m.ledger_qty, "broker": m.broker_qty}
                    for m in mismatches
                )
            },
            key=f"reconciliation:{run.pk}",
        )
    else:
        logger.info("reconcile.matched trigger=%s symbols=%d", trigger, len(symbols), extra=extra)
    return run


def unknown_orders(
    *, at_kis: list[DailyOrder | BadDailyOrder], trade_date, in_flight: set[str]
) -> list[dict]:
    """KIS's orders of `trade_date` that the ledger does not know, as {odno, symbol, side, qty,
    ord_tmd}: known are the ledger's broker numbers of that day and, through orgn_odno, their
    revisions and cancels. A row that could not be read is listed too (its fields empty, the
    reason kept), unless its number is one of ours (the sync quarantines that order). Orders of
    symbols with a send on its way are left for next time: one may be that send."""
    known = set(
        Order.objects.filter(trade_date=trade_date, broker_order_no__isnull=False).values_list(
            "broker_order_no", flat=True
        )
    )
    found: list[dict[str, str | int | None]] = []
    for row in sorted(at_kis, key=lambda r: r.odno):
        if isinstance(row, BadDailyOrder):
            if row.odno not in known:
                found.append(
                    {
                        "odno": row.odno,
                        "symbol": "",
                        "side": "",
                        "qty": None,
                        "ord_tmd": "",
                        "unreadable": row.reason[:500],
                    }
                )
            continue
        if row.odno in known:
            continue
        if row.orgn_odno and row.orgn_odno in known:
            known.add(row.odno)  # a revision's own cancel names the revision (numbers grow)
            continue
        if row.symbol in in_flight:
            continue
        found.append(
            {
                "odno": row.odno,
                "symbol": row.symbol,
                "side": row.side,
                "qty": row.ord_qty,
                "ord_tmd": row.ord_tmd,
            }
        )
    return found


def broker_orderable_qty(*, broker, symbol: str) -> int:
    """What KIS would let this account sell of `symbol` now (0 when it holds none)."""
    return next((h.ord_psbl_qty for h in broker.balance().holdings if h.symbol == symbol), 0)
