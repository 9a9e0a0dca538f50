"""The day's close, summed up for the trader from the ledger: the P&L realised that day net of
its fees and tax, the orders filled, how long intents took to become orders KIS accepted, and
what is held; the apps above add their own lines (`summary_part`: picks, its refusals)."""

import datetime as dt
from collections.abc import Callable

from django.db import connection, transaction
from django.db.models import Count, Q, Sum

from core import clock

from ..models import Fill, Notification, Order, OrderIntent, Position, Side
from . import texts
from .outbox import CLOSE, Notice, record, wants

# A close is summed up until this long after it; later (beat stopped over it) it is news no
# more.
CLOSE_LATE = dt.timedelta(hours=12)

# Lines the apps above add to the summary, each given the day's start and end.
_PARTS: list[Callable[[dt.datetime, dt.datetime], list[str]]] = []


def summary_part(
    fn: Callable[[dt.datetime, dt.datetime], list[str]],
) -> Callable[[dt.datetime, dt.datetime], list[str]]:
    """Register `fn(start, end)`: lines of the close's summary of the day [start, end)."""
    if fn not in _PARTS:
        _PARTS.append(fn)
    return fn


def close_record(*, day: dt.date, closed_at: dt.datetime, now: dt.datetime | None = None) -> bool:
    """Tell of the close of `day` (its last venue closed at `closed_at`), once: True when this
    call wrote it. Nothing when no channel wants it, or the close is older than CLOSE_LATE."""
    to = wants(CLOSE)
    if not to:
        return False
    now = now or clock.now()
    if now - closed_at > CLOSE_LATE:
        return False
    key = f"close:{day:%Y%m%d}"
    if Notification.objects.filter(channel__in=to, event_key=key).count() == len(to):
        return False
    start = dt.datetime.combine(day, dt.time(0), clock.SEOUL)
    text = close_text(day=day, start=start, end=start + dt.timedelta(days=1))
    with transaction.atomic():
        record(Notice(kind=CLOSE, key=key, channels=to, text=text))
    return True


_LATENCY = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), count(*)
FROM (SELECT extract(epoch FROM o.submitted_at - i.created_at) * 1000 AS ms
      FROM {order} o JOIN {intent} i ON i.id = o.intent_id
      WHERE o.submitted_at >= %s AND o.submitted_at < %s) t
"""


def close_text(*, day: dt.date, start: dt.datetime, end: dt.datetime) -> str:
    fills = Fill.objects.filter(filled_at__gte=start, filled_at__lt=end).aggregate(
        realised=Sum("realized_pnl", default=0),
        costs=Sum("fee", default=0) + Sum("tax", default=0),
        fills=Count("id"),
        orders=Count("order", distinct=True),
        buys=Count("order", distinct=True, filter=Q(order__side=Side.BUY)),
        sells=Count("order", distinct=True, filter=Q(order__side=Side.SELL)),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            _LATENCY.format(order=Order._meta.db_table, intent=OrderIntent._meta.db_table),
            [start, end],
        )
        p50, p99, n = cursor.fetchone()
    held = Position.objects.filter(status=Position.Status.OPEN, qty__gt=0).count()
    more = [line for part in _PARTS for line in part(start, end)]
    return texts.close(
        day=day,
        realised=fills["realised"],
        costs=fills["costs"],
        orders=fills["orders"],
        buys=fills["buys"],
        sells=fills["sells"],
        fills=fills["fills"],
        latency_ms=(float(p50), float(p99), n) if n else None,
        held=held,
        more=more,
    )
