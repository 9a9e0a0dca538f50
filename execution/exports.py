"""The ledger's trades and daily P&L as CSV, for a trader's books (the admin's Fill list
actions). KRW are whole numbers, times are Seoul's with seconds; P&L is realised against the
average cost, before and after the fills' fees and tax (execution/costs.py)."""

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from core import clock

from .models import Fill

TRADE_COLUMNS = (
    "filled_at_kst",
    "symbol",
    "side",
    "qty",
    "price",
    "amount",
    "fee",
    "tax",
    "realized_pnl",
    "realized_pnl_net",
    "venue",
    "odno",
    "intent_type",
)
DAILY_COLUMNS = ("day", "fills", "bought", "sold", "fees", "tax", "realized_pnl", "net")


def kst(at) -> str:
    """A time as Seoul's, to the second; "-" for none."""
    return at.astimezone(clock.SEOUL).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def _krw(value: Decimal | int | None) -> str:
    return "" if value is None else f"{Decimal(value):.0f}"


def _csv(header: tuple[str, ...], rows: Iterable[tuple]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def trades_csv(fills: Iterable[Fill]) -> str:
    """One row per fill, oldest first."""
    rows = []
    for f in sorted(fills, key=lambda f: (f.filled_at, f.pk)):
        order = f.order
        net = None if f.realized_pnl is None else f.realized_pnl - f.fee - f.tax
        rows.append(
            (
                kst(f.filled_at),
                order.symbol,
                order.side,
                f.qty,
                f.price,
                f.amount,
                f.fee,
                f.tax,
                _krw(f.realized_pnl),
                _krw(net),
                order.venue,
                order.broker_order_no or "",
                order.intent.intent_type if order.intent is not None else "",
            )
        )
    return _csv(TRADE_COLUMNS, rows)


def daily_pnl_csv(fills: Iterable[Fill]) -> str:
    """One row per Seoul day: the fills, KRW bought and sold, fees, tax, realised P&L before
    and after them."""
    days: dict = defaultdict(lambda: [0, 0, 0, 0, 0, Decimal(0)])
    for f in fills:
        day = days[f.filled_at.astimezone(clock.SEOUL).date()]
        day[0] += 1
        day[1 if f.order.side == "BUY" else 2] += f.amount
        day[3] += f.fee
        day[4] += f.tax
        day[5] += f.realized_pnl or 0
    rows = [
        (
            f"{day:%Y-%m-%d}",
            n,
            bought,
            sold,
            fees,
            tax,
            _krw(pnl),
            _krw(pnl - fees - tax),
        )
        for day, (n, bought, sold, fees, tax, pnl) in sorted(days.items())
    ]
    return _csv(DAILY_COLUMNS, rows)
