"""Price sync: KIS WebSocket trades for every symbol with a managed open position (plus a
watchlist), REST polling as the fallback, prices_best upserted, and each trade evaluated at once.

A trade's symbol's positions are evaluated in this process, at the trade's price and the limits
cached with the symbol's best price, and the trade is written after: an exit that fires is
opened through the ledger (one statement when the rows still hold what the cached screen saw,
trading/services.py), and once committed its order is sent from this process too
(execution/sender.py), with no queue hop between the trade and the broker call; what the sender
cannot take goes to the execute task. Subscriptions follow positions as they open
and close, up to KIS's cap; symbols beyond it, and symbols whose WebSocket feed has gone quiet,
are polled over REST. Each source's freshness is kept per symbol and logged.
"""

import asyncio
import datetime as dt
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import Error as DatabaseError
from django.db import close_old_connections, connections

from core import clock
from core.rows import on_fresh_connection
from execution import dispatch
from execution.models import Position
from execution.sender import InProcessSender
from kis.protocol import WS_TR_TRADE as TR_TRADE
from kis.ws import KisStream, TradeTick
from market import calendar as market_calendar
from market.models import BestPrice
from market.prices import best_price_write

from . import hot
from .models import PositionExitState
from .services import EXIT_PHASES, exit_pass

logger = logging.getLogger("aegis.pricesync")

# KIS allows about 41 subscriptions per app key (KIS.md); one goes to fill notices elsewhere.
SUBSCRIPTION_CAP = 40
# REST quotes (the symbols the WebSocket does not cover) take at most this share of the query
# key's rate: orders, fills and reconciliations use the same key.
POLL_SHARE = 0.5


def stream_outage(state: str, detail: str, since: float) -> None:
    """The trade stream is down (prices are polled over REST meanwhile) or back: alerted."""
    from execution.alerts import stream_outage as alert

    close_old_connections()
    alert(
        stream="prices",
        state=state,
        detail=detail,
        since=since,
        fallback="prices are polled over REST, about once a second per symbol",
    )


def tick_time(tick: TradeTick) -> dt.datetime:
    day = (
        dt.datetime.strptime(tick.business_date, "%Y%m%d").date()
        if tick.business_date
        else clock.now_seoul().date()
    )
    hms = dt.datetime.strptime(tick.time, "%H%M%S").time()
    return dt.datetime.combine(day, hms, clock.SEOUL)


def on_price(
    *, symbol: str, price: int, at: dt.datetime, source: str, evaluate: bool = True, **limits
) -> int:
    """Write the price and evaluate the symbol's positions at once. Returns exits opened. A dead
    connection is replaced and the price tried again; a price that still fails is logged and
    dropped (the next one, or the cadence pass, evaluates again), never ending the stream."""
    try:
        return _price_and_exits(
            symbol=symbol, price=price, at=at, source=source, evaluate=evaluate, **limits
        )
    except DatabaseError as exc:
        logger.error("pricesync.db_error symbol=%s price=%s: %s", symbol, price, exc)
        close_old_connections()
        return 0


@on_fresh_connection
def _price_and_exits(
    *, symbol: str, price: int, at: dt.datetime, source: str, evaluate: bool, **limits
) -> int:
    """A trade is evaluated first, at the limits and previous close cached with the symbol's
    best price, and written after: the exit's lock, writes and commit come before the upsert,
    whose round trip then overlaps the exit's broker call. A price with limits of its own (a
    REST quote), or older than the cached one, or without a cached one, is written first and
    evaluated as written (the upsert keeps the newest price and today's limits)."""
    found = hot.read_ahead(symbol) if evaluate and not limits else None
    cached = hot.cached_price(found, symbol) if found else None
    if cached is not None and cached.at <= at.timestamp():
        known = cached._replace(price=price, at=at.timestamp())
        exits = exit_pass(symbols=[symbol], prices={symbol: known}, found=found).exits
        best_price_write(symbol=symbol, price=price, at=at, source=source)
        return exits
    px = best_price_write(symbol=symbol, price=price, at=at, source=source, **limits)
    if px is None or not evaluate:
        return 0
    return exit_pass(symbols=[symbol], prices={symbol: px}, found=found).exits


@on_fresh_connection
def wanted_symbols(watchlist: tuple[str, ...] = ()) -> list[str]:
    close_old_connections()
    managed = PositionExitState.objects.filter(position__status=Position.Status.OPEN).values_list(
        "position__symbol", flat=True
    )
    return sorted(set(managed) | set(watchlist))


@dataclass
class Freshness:
    last_ws: dict[str, float] = field(default_factory=dict)
    last_rest: dict[str, float] = field(default_factory=dict)

    def ws_age(self, symbol: str) -> float | None:
        seen = self.last_ws.get(symbol)
        return None if seen is None else time.monotonic() - seen


class PriceSync:
    def __init__(
        self,
        *,
        broker,
        watchlist: tuple[str, ...] = (),
        cap: int = SUBSCRIPTION_CAP,
        follow_s: float = 2.0,
        stale_s: float = 5.0,
        poll_s: float = 1.0,
        evaluate: bool = True,
        send: bool = True,
        stream_alert_after_s: float = 10.0,
    ) -> None:
        """`evaluate` False only writes prices (a polling evaluator elsewhere reads them).
        `send` False leaves the exits it opens to the execute task (one queue hop more).
        A WebSocket outage longer than `stream_alert_after_s` (prices then polled over REST) is
        alerted (STREAM), and so is its end."""
        self.broker = broker
        self.evaluate = evaluate
        # The exits opened here are sent from here (execution/sender.py).
        self.sender = InProcessSender(broker=broker) if evaluate and send else None
        self.watchlist = watchlist
        self.cap = cap
        self.follow_s, self.stale_s, self.poll_s = follow_s, stale_s, poll_s
        self.fresh = Freshness()
        self.poll_budget = max(1, int(broker.config.rate_per_second * poll_s * POLL_SHARE))
        self._poll_turn = 0
        self.symbols: list[str] = []
        self.subscribed: set[str] = set()
        config = broker.config
        self.stream = KisStream(
            url=config.ws_url,
            approval_key=broker.approval_key,
            approval_key_refused=broker.approval_key_refused,
            custtype=config.custtype,
            on_trade=self._on_trade,
            on_outage=stream_outage,
            alert_after_s=stream_alert_after_s,
        )
        # One thread for the database: trades are written and evaluated in arrival order, and
        # its connection is closed when the sync stops.
        self._db = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="pricesync-db",
        )

    async def _in_db(self, fn, /, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(
            self._db, functools.partial(fn, **kwargs)
        )

    async def _on_trade(self, tick: TradeTick) -> None:
        if tick.price <= 0:
            return
        self.fresh.last_ws[tick.symbol] = time.monotonic()
        exits = await self._in_db(
            on_price,
            symbol=tick.symbol,
            price=tick.price,
            at=tick_time(tick),
            source=BestPrice.Source.WEBSOCKET,
            evaluate=self.evaluate,
        )
        if exits:
            logger.info(
                "pricesync.exits symbol=%s price=%s exits=%s", tick.symbol, tick.price, exits
            )

    async def follow(self) -> None:
        """Subscribe to what is wanted now, within the cap; unsubscribe from the rest."""
        try:
            self.symbols = await self._in_db(wanted_symbols, watchlist=self.watchlist)
        except DatabaseError as exc:  # keep what is subscribed; the next round asks again
            logger.error("pricesync.follow_failed: %s", exc)
            return
        keep = set(self.symbols[: self.cap])
        if len(self.symbols) > self.cap:
            logger.warning(
                "pricesync over KIS's subscription cap (%d): %d symbols polled",
                self.cap,
                len(self.symbols) - self.cap,
            )
        for symbol in sorted(keep - self.subscribed):
            await self.stream.subscribe(TR_TRADE, symbol)
            await self._poll_one(symbol)  # today's previous close and limits, and a first price
        for symbol in sorted(self.subscribed - keep):
            await self.stream.unsubscribe(TR_TRADE, symbol)
        self.subscribed = keep

    async def _poll_one(self, symbol: str) -> None:
        try:
            quote = await asyncio.to_thread(self.broker.price, symbol)
        except Exception as exc:  # noqa: BLE001 - one symbol's failure never stops the sync
            logger.warning("pricesync.rest_failed symbol=%s: %s", symbol, exc)
            return
        self.fresh.last_rest[symbol] = time.monotonic()
        # A REST quote has no trade time: stamped to the second, like the trades, so a trade of
        # the same second still counts as at least as fresh.
        await self._in_db(
            on_price,
            symbol=symbol,
            price=quote.price,
            at=clock.now().replace(microsecond=0),
            source=BestPrice.Source.REST,
            evaluate=self.evaluate,
            prev_close=quote.prev_close,
            upper_limit=quote.upper_limit,
            lower_limit=quote.lower_limit,
        )

    async def _restart(self, ended: asyncio.Task, stop: asyncio.Event) -> asyncio.Task:
        """The stream's task ended though nothing asked it to (it reconnects by itself, so only
        a bug ends it): alerted, and started again. Meanwhile every symbol is polled over REST."""
        error = ended.exception() if not ended.cancelled() else None
        logger.error(
            "pricesync.stream_ended (%s): restarting it",
            type(error).__name__ if error else "returned",
        )
        await asyncio.to_thread(
            stream_outage,
            "down",
            f"the stream's task ended ({type(error).__name__ if error else 'returned'}); restarted",
            time.time(),
        )
        return asyncio.create_task(self.stream.run(stop))

    def polls_due(self) -> list[str]:
        """The stale symbols to quote over REST this round: none while no exit could be decided
        on them (market_calendar: outside the phases where exits trade), and never more than
        the key's share for quotes (POLL_SHARE of its rate over a round), taken in turn so that
        every stale symbol is quoted."""
        if market_calendar.moment(clock.now()).phase not in EXIT_PHASES:
            return []
        stale = self.stale()
        if len(stale) <= self.poll_budget:
            return stale
        start = self._poll_turn % len(stale)
        self._poll_turn = start + self.poll_budget
        return (stale[start:] + stale[:start])[: self.poll_budget]

    def stale(self) -> list[str]:
        """Symbols the WebSocket does not cover, or has not covered for `stale_s`."""
        out = []
        for symbol in self.symbols:
            age = self.fresh.ws_age(symbol)
            if (
                symbol not in self.subscribed
                or not self.stream.connected.is_set()
                or age is None
                or age > self.stale_s
            ):
                out.append(symbol)
        return out

    async def run(self, stop: asyncio.Event, on_ready=lambda: None) -> None:
        """Follow, poll and evaluate until `stop`; the exits opened here are sent by this
        process's sender (execution/dispatch.py) meanwhile."""
        if self.sender is not None:
            dispatch.install(self.sender)
        try:
            stream_task = asyncio.create_task(self.stream.run(stop))
            await self.follow()  # reads each new subscription's quote over REST as well
            on_ready()
            next_follow = time.monotonic() + self.follow_s
            next_poll = time.monotonic() + self.poll_s
            while not stop.is_set():
                if stream_task.done() and not stop.is_set():
                    stream_task = await self._restart(stream_task, stop)
                now = time.monotonic()
                if now >= next_follow:
                    await self.follow()
                    next_follow = now + self.follow_s
                if now >= next_poll:
                    for symbol in self.polls_due():
                        await self._poll_one(symbol)
                    next_poll = now + self.poll_s
                try:
                    await asyncio.wait_for(stop.wait(), timeout=min(self.follow_s, self.poll_s))
                except TimeoutError:
                    pass
            await stream_task
            await self._in_db(connections.close_all)
            self._db.shutdown(wait=True)
        finally:
            if self.sender is not None:
                dispatch.install(None)
                await asyncio.to_thread(self.sender.close)
