"""The ledger audit: every open position's reserved_qty recomputed from its rows (P0's
bookkeeping), drift alerted. The trigger and the services keep reserved_qty right on every
path they know; this catches the ones nobody foresaw, within a minute.

reserved_qty = the qty of its SELL intents not yet ordered (NEW)
             + the unfilled remainder of its open SELL orders (NEW, SUBMITTED, PARTIAL_FILLED).
"""

import logging

from django.db.models import F, IntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils.translation import gettext

from ..alerts import alert_raise
from ..models import Alert, Order, OrderIntent, Position, Side

logger = logging.getLogger("aegis.ledger")


def _sum(qs, expression):
    return Coalesce(
        Subquery(
            qs.values("position_id").annotate(total=Sum(expression)).values("total")[:1],
            output_field=IntegerField(),
        ),
        0,
    )


def ledger_drift() -> list[dict]:
    """Open positions whose reserved_qty differs from what their rows hold: one dict each
    (position, symbol, reserved_qty, expected)."""
    intents = OrderIntent.objects.filter(
        position_id=OuterRef("pk"), side=Side.SELL, status=OrderIntent.Status.NEW
    )
    orders = Order.objects.filter(
        position_id=OuterRef("pk"), side=Side.SELL, status__in=Order.OPEN_STATUSES
    )
    rows = (
        Position.objects.filter(status=Position.Status.OPEN)
        .annotate(expected=_sum(intents, "qty") + _sum(orders, F("qty") - F("filled_qty")))
        .exclude(reserved_qty=F("expected"))
        .values("pk", "symbol", "reserved_qty", "expected")
    )
    return [
        {
            "position": r["pk"],
            "symbol": r["symbol"],
            "reserved_qty": r["reserved_qty"],
            "expected": r["expected"],
        }
        for r in rows
    ]


def ledger_audit() -> dict:
    """Recompute and compare (ledger_drift); each drifting position alerted once per value."""
    drift = ledger_drift()
    for d in drift:
        logger.error(
            "ledger.audit_drift position_id=%s symbol=%s reserved_qty=%s expected=%s",
            d["position"],
            d["symbol"],
            d["reserved_qty"],
            d["expected"],
            extra=d,
        )
        alert_raise(
            kind=Alert.Kind.LEDGER,
            severity=Alert.Severity.CRITICAL,
            subject=d["symbol"],
            state="drift",
            key=f"ledger:{d['position']}:{d['reserved_qty']}:{d['expected']}",
            message=gettext(
                "Position %(position)s (%(symbol)s) reserves %(reserved_qty)s shares, but its "
                "open sell intents and orders hold %(expected)s. Something wrote the ledger "
                "outside its rules: check the position's intents and orders in the admin before "
                "trading it further."
            )
            % d,
        )
    return {"positions_drifting": len(drift)}
