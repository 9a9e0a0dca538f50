"""The day's prices as one-minute bars (prices_bar), for the desk's charts.

The process that writes best prices (best_price_write) keeps each symbol's open bar in memory and
writes it with that symbol's first trade of a later minute, in the best price's own statement
(BAR_CTE): no round trip of its own, ever. A bar still open is not in the table; the desk draws
the best price after the last bar. Trades reach best_price_write in their order per symbol, and
a late one it does not store (an older price) never reaches a bar. Bars written twice (two
writers of one symbol) merge in the upsert. A process that stops cleanly writes its open bars
(bars_flush); one killed loses their minute.
"""

import datetime as dt
import threading

from django.db import connection

from .models import PriceBar

KEEP_DAYS = 7

_INSERT = """
INSERT INTO prices_bar (symbol, minute, open, high, low, close)
VALUES (%(bar_symbol)s, %(bar_minute)s, %(bar_open)s, %(bar_high)s, %(bar_low)s, %(bar_close)s)
ON CONFLICT (symbol, minute) DO UPDATE SET
    high = GREATEST(prices_bar.high, EXCLUDED.high),
    low = LEAST(prices_bar.low, EXCLUDED.low),
    close = EXCLUDED.close
"""
# Put before another statement, which then writes the bar as well.
BAR_CTE = f"WITH bar AS ({_INSERT})\n"
_COLUMNS = ("bar_symbol", "bar_minute", "bar_open", "bar_high", "bar_low", "bar_close")


class Bar:
    __slots__ = ("minute", "open", "high", "low", "close")

    def __init__(self, minute: dt.datetime, price: int) -> None:
        self.minute = minute
        self.open = self.high = self.low = self.close = price

    def add(self, price: int) -> None:
        self.close = price
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price

    def row(self, symbol: str) -> tuple:
        return (symbol, self.minute, self.open, self.high, self.low, self.close)


_open: dict[str, Bar] = {}
_lock = threading.Lock()


def minute_of(at: dt.datetime) -> dt.datetime:
    return at.replace(second=0, microsecond=0)


def bar_closing(symbol: str, at: dt.datetime) -> dict | None:
    """The parameters of BAR_CTE for the symbol's open bar when a trade at `at` would close it
    (a later minute's), else None. Changes nothing: bar_trade counts the trade once stored."""
    minute = minute_of(at)
    with _lock:
        bar = _open.get(symbol)
        if bar is None or minute <= bar.minute:
            return None
        return dict(zip(_COLUMNS, bar.row(symbol), strict=True))


def bar_trade(symbol: str, price: int, at: dt.datetime) -> None:
    """Count a stored trade into its symbol's open bar, or open the next one."""
    minute = minute_of(at)
    with _lock:
        bar = _open.get(symbol)
        if bar is not None and bar.minute == minute:
            bar.add(price)
        elif bar is None or minute > bar.minute:
            _open[symbol] = Bar(minute, price)
        # else an older minute's trade, stored after a newer one elsewhere: no bar's


def bar_write(row: tuple) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, dict(zip(_COLUMNS, row, strict=True)))


def bars_flush() -> int:
    """Write every open bar (pricesync, as it stops). Returns how many."""
    with _lock:
        rows = [bar.row(symbol) for symbol, bar in _open.items()]
        _open.clear()
    for row in rows:
        bar_write(row)
    return len(rows)


def bars_of(symbols, since: dt.datetime) -> dict[str, list[PriceBar]]:
    """Each symbol's bars from `since`, oldest first."""
    found: dict[str, list[PriceBar]] = {s: [] for s in symbols}
    for bar in PriceBar.objects.filter(symbol__in=list(found), minute__gte=since).order_by(
        "symbol", "minute"
    ):
        found[bar.symbol].append(bar)
    return found


def bars_prune(now: dt.datetime) -> int:
    """Delete the bars older than KEEP_DAYS."""
    deleted, _ = PriceBar.objects.filter(minute__lt=now - dt.timedelta(days=KEEP_DAYS)).delete()
    return deleted
