"""Price sync: the market's price feed (market/feed.py) for every symbol with a managed open
position (plus a watchlist), each trade evaluated against its symbol's exits at once.

A trade's symbol's positions are evaluated in this process, at the trade's price and the limits
cached with the symbol's best price, and the trade is written after: an exit that fires is
opened through the ledger (one statement when the rows still hold what the cached screen saw,
trading/services.py), and once committed its order is sent from this process too
(execution/sender.py), with no queue hop between the trade and the broker call; what the sender
cannot take goes to the execute task. Stale symbols are quoted over REST only in the phases
where exits trade; a stream outage is alerted.
"""

import asyncio
import datetime as dt

from core.rows import on_fresh_connection
from execution import dispatch
from execution.alerts import stream_outage as alert_stream_outage
from execution.models import Position
from execution.sender import InProcessSender
from market import prices as market_prices
from market import vi as market_vi
from market.feed import PriceFeed, price_write
from market.prices import best_price_write

from . import hot
from .models import PositionExitState
from .services import EXIT_PHASES, exit_pass


def stream_outage(state: str, detail: str, since: float) -> None:
    """The trade stream is down (prices are polled over REST meanwhile) or back: alerted."""
    alert_stream_outage(
        stream="prices",
        state=state,
        detail=detail,
        since=since,
        fallback="prices are polled over REST, about once a second per symbol",
    )


@on_fresh_connection
def on_price(*, symbol: str, price: int, at: dt.datetime, source: str, **limits) -> int:
    """A trade is evaluated first, at the limits and previous close cached with the symbol's
    best price, and written after: the exit's lock, writes and commit come before the upsert,
    whose round trip then overlaps the exit's broker call. A price with limits of its own (a
    REST quote), or older than the cached one, or without a cached one, is written first and
    evaluated as written (the upsert keeps the newest price and today's limits). Returns the
    exits opened."""
    found = hot.read_ahead(symbol) if not limits else None
    cached = hot.cached_price(found, symbol) if found else None
    if cached is not None and cached.at <= at.timestamp():
        known = cached._replace(price=price, at=at.timestamp())
        exits = exit_pass(symbols=[symbol], prices={symbol: known}, found=found).exits
        best_price_write(symbol=symbol, price=price, at=at, source=source)
        return exits
    px = best_price_write(symbol=symbol, price=price, at=at, source=source, **limits)
    if px is None:
        return 0
    return exit_pass(symbols=[symbol], prices={symbol: px}, found=found).exits


@on_fresh_connection
def on_vi_price(*, symbol: str, price: int, vi: market_vi.Vi, at: dt.datetime) -> int:
    """A VI's expected price: the stop losses it crosses decide on it, and join the auction or
    wait, as their profiles say (exit_pass's `vi`). Nothing is written as a trade."""
    known = market_prices.prices([symbol]).get(symbol)
    if known is None:  # no price row yet: nothing to hold the day's limits
        return 0
    px = known._replace(price=price, at=at.timestamp())
    return exit_pass(symbols=[symbol], prices={symbol: px}, vi=vi).exits


def vi_ignore(**_vi) -> int:
    """A feed that only writes prices decides nothing on a VI's expected price."""
    return 0


def wanted_symbols(watchlist: tuple[str, ...] = ()) -> list[str]:
    """The symbols of managed open positions, and the watchlist's."""
    managed = PositionExitState.objects.filter(position__status=Position.Status.OPEN).values_list(
        "position__symbol", flat=True
    )
    return sorted(set(managed) | set(watchlist))


class PriceSync(PriceFeed):
    def __init__(
        self,
        *,
        broker,
        watchlist: tuple[str, ...] = (),
        evaluate: bool = True,
        send: bool = True,
        **feed,
    ) -> None:
        """`evaluate` False only writes prices (a polling evaluator elsewhere reads them).
        `send` False leaves the exits it opens to the execute task (one queue hop more).
        `feed`: PriceFeed's cap, intervals and alert delay."""
        super().__init__(
            broker=broker,
            wanted=on_fresh_connection(lambda: wanted_symbols(watchlist)),
            on_price=on_price if evaluate else price_write,
            on_outage=stream_outage,
            on_vi=on_vi_price if evaluate else vi_ignore,
            poll_phases=EXIT_PHASES,
            **feed,
        )
        self.watchlist = watchlist
        # The exits opened here are sent from here (execution/sender.py).
        self.sender = InProcessSender(broker=broker) if evaluate and send else None

    async def run(self, stop: asyncio.Event, on_ready=lambda: None) -> None:
        """The feed until `stop`; the exits opened meanwhile are sent by this process's sender
        (execution/dispatch.py)."""
        if self.sender is not None:
            dispatch.install(self.sender)
        try:
            await super().run(stop, on_ready)
        finally:
            if self.sender is not None:
                dispatch.install(None)
                await asyncio.to_thread(self.sender.close)
