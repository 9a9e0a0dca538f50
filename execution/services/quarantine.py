"""Setting aside an order whose broker record this ledger cannot apply (a fill that would break a
ledger invariant, KIS's figures disagreeing with the order): the syncs leave it as it is, the
others go on, and a person is alerted to look at it (the admin lists quarantined orders).

A row that cannot be read at all (a field missing or not a number) is not a reason to set the
order aside: KIS may answer well a second later. It is alerted (`order_row_unreadable`) and the
order left as it is until a sync reads its row.

Nothing about the order's quantities changes here: which side is wrong is a person's call. Once
the order agrees with KIS again (corrected by hand if needed), a person releases it in the admin
(the "quarantined" filter, then "Release from quarantine"): the syncs take it up again.
"""

import hashlib
import logging
import uuid

from django.utils.translation import gettext

from core import clock

from ..alerts import alert_raise
from ..models import Alert, Order

logger = logging.getLogger("aegis.execution")

REASON_MAX = 2000


def order_quarantine(*, order_id: uuid.UUID, reason: str) -> bool:
    """Quarantine the order (idempotent). Returns True when this call set it aside, False when it
    already was (its first reason kept, no second alert)."""
    reason = (reason or "unreadable broker record")[:REASON_MAX]
    now = clock.now()
    updated = Order.objects.filter(pk=order_id, quarantined_at__isnull=True).update(
        quarantined_at=now, quarantine_reason=reason, updated_at=now
    )
    if not updated:
        return False
    order = (
        Order.objects.filter(pk=order_id)
        .values("symbol", "side", "qty", "filled_qty", "status", "broker_order_no", "trade_date")
        .first()
    )
    logger.error(
        "execution.order_quarantined order_id=%s: %s",
        order_id,
        reason,
        extra={"order_id": str(order_id)},
    )

    odno = (
        gettext("KIS order %(odno)s of %(day)s")
        % {"odno": order["broker_order_no"], "day": f"{order['trade_date']:%Y-%m-%d}"}
        if order and order["broker_order_no"] and order["trade_date"]
        else gettext("no KIS number")
    )
    described = (
        (
            f"{order['side']} {order['symbol']} {order['filled_qty']}/{order['qty']} "
            f"({order['status']}, {odno})"
        )
        if order
        else ""
    )
    alert_raise(
        kind=Alert.Kind.QUARANTINE,
        severity=Alert.Severity.CRITICAL,
        subject=order["symbol"] if order else "",
        message=gettext(
            "Order %(order)s %(described)s is quarantined: %(reason)s. The syncs leave it as it "
            "is; compare it with KIS (MTS or the daily orders), correct the ledger if needed, "
            'then release it: the admin\'s orders, the "quarantined" filter, "Release from '
            'quarantine".'
        )
        % {"order": order_id, "described": described, "reason": reason},
        key=f"quarantine:{order_id}",
    )
    return True


def order_release(*, order_id: uuid.UUID, by: str) -> bool:
    """Release a quarantined order: the syncs take it up again. Its reason is kept, with who
    released it and when. False, changing nothing, when it was not quarantined."""
    order = (
        Order.objects.filter(pk=order_id, quarantined_at__isnull=False)
        .values("quarantine_reason")
        .first()
    )
    if order is None:
        return False
    now = clock.now()
    note = f"{order['quarantine_reason']} [released by {by or '?'} at {now.isoformat()}]"
    released = Order.objects.filter(pk=order_id, quarantined_at__isnull=False).update(
        quarantined_at=None, quarantine_reason=note[:REASON_MAX], updated_at=now
    )
    if released:
        logger.warning(
            "execution.order_released order_id=%s by=%s",
            order_id,
            by,
            extra={"order_id": str(order_id)},
        )
    return bool(released)


def broker_record_unreadable(*, trade_date, odno: str, reason: str) -> None:
    """A row of KIS's daily orders that matches none of this ledger's orders (or whose order
    number is unreadable) could not be read: alerted once per row and reason, then skipped."""
    logger.error(
        "execution.broker_record_unreadable trade_date=%s odno=%s: %s",
        trade_date,
        odno or "?",
        reason,
    )

    digest = hashlib.sha256(reason.encode()).hexdigest()[:16]
    alert_raise(
        kind=Alert.Kind.QUARANTINE,
        severity=Alert.Severity.WARNING,
        subject=odno or "unreadable",
        message=gettext(
            "KIS's daily orders of %(day)s hold a row this ledger cannot read (order number "
            "%(odno)s; it is not one of Aegis's orders): %(reason)s. Skipped; check the order "
            "in the MTS app."
        )
        % {"day": trade_date, "odno": odno or gettext("unreadable"), "reason": reason},
        key=f"bad-row:{trade_date}:{odno or '?'}:{digest}",
    )


def order_row_unreadable(*, order_id: uuid.UUID, odno: str, reason: str) -> None:
    """KIS's row of one of our orders could not be read: the order is left as it is (its shares
    still reserved, nothing applied or released), alerted once per order and reason, and read
    again by the next sync."""
    logger.warning(
        "execution.order_row_unreadable order_id=%s odno=%s: %s",
        order_id,
        odno,
        reason,
        extra={"order_id": str(order_id)},
    )

    symbol = Order.objects.filter(pk=order_id).values_list("symbol", flat=True).first() or ""
    digest = hashlib.sha256(reason.encode()).hexdigest()[:16]
    alert_raise(
        kind=Alert.Kind.QUARANTINE,
        severity=Alert.Severity.WARNING,
        subject=symbol,
        message=gettext(
            "KIS's row of order %(order)s (KIS order %(odno)s) cannot be read: %(reason)s. The "
            "order is left as it is, its shares still reserved, and the next sync reads it "
            "again; if this persists, check the order in the MTS app."
        )
        % {"order": order_id, "odno": odno, "reason": reason},
        key=f"unreadable:{order_id}:{digest}",
    )
