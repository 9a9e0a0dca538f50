"""The ledger's trades and daily P&L as CSV, for a trader's books (the admin's Fill list
actions). KRW are whole numbers, times are Seoul's with seconds; P&L is realised against the
average cost, before and after the fills' fees and tax (execution/costs.py)."""

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from decimal import Decimal
from typing import NamedTuple

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


class Totals(NamedTuple):
    """KRW totals of a group of fills; realised P&L before (`pnl`) and after fees and tax."""

    fills: int
    bought: int
    sold: int
    fees: int
    tax: int
    pnl: Decimal

    @property
    def net(self) -> Decimal:
        return self.pnl - self.fees - self.tax


def totals_by(fills: Iterable[Fill], key: Callable[[Fill], Hashable]) -> dict:
    """The fills' Totals grouped by `key(fill)`."""
    groups: dict = defaultdict(lambda: [0, 0, 0, 0, 0, Decimal(0)])
    for f in fills:
        group = groups[key(f)]
        group[0] += 1
        group[1 if f.order.side == "BUY" else 2] += f.amount
        group[3] += f.fee
        group[4] += f.tax
        group[5] += f.realized_pnl or 0
    return {k: Totals(*v) for k, v in groups.items()}


def seoul_day(fill: Fill) -> dt.date:
    return fill.filled_at.astimezone(clock.SEOUL).date()


def daily_pnl_csv(fills: Iterable[Fill]) -> str:
    """One row per Seoul day: the fills, KRW bought and sold, fees, tax, realised P&L before
    and after them."""
    rows = [
        (f"{day:%Y-%m-%d}", *t[:5], _krw(t.pnl), _krw(t.net))
        for day, t in sorted(totals_by(fills, seoul_day).items())
    ]
    return _csv(DAILY_COLUMNS, rows)
