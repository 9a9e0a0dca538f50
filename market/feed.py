"""The price feed: KIS WebSocket trades for the symbols wanted, REST quotes as the fallback, and
each price handed on in arrival order.

Subscriptions follow what is wanted as it changes, up to KIS's cap; symbols beyond it, and
symbols whose WebSocket feed has gone quiet, are quoted over REST within a share of the key's
rate. Each source's freshness is kept per symbol. A stream that goes down (prices then polled
over REST) is reported through `on_outage`, and so is its end; a stream task that ends though
nothing asked it to is started again.

What is wanted and what a price means are the caller's (trading/pricesync.py: the symbols with
managed open positions, each trade evaluated against their exits): `wanted` and `on_price` run
on the feed's one database thread, so prices are handled in arrival order and its connection is
closed when the feed stops. `price_write` only writes a price (market/prices.py).
"""

import asyncio
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.db import Error as DatabaseError
from django.db import close_old_connections, connections

from core import clock
from core.rows import on_fresh_connection
from kis.protocol import trade_tr_id
from kis.ws import KisStream, TradeTick

from . import calendar as market_calendar
from .models import BestPrice
from .prices import best_price_write
from .vi import HOUR_CLASS_VI, vi_clear, vi_mark

logger = logging.getLogger("aegis.pricesync")

# KIS allows about 41 subscriptions per app key (KIS.md); one goes to fill notices elsewhere.
SUBSCRIPTION_CAP = 40
# The day's quotes are read again this long before its first session (requote_daily).
REQUOTE_LEAD = dt.timedelta(minutes=10)
# REST quotes (the symbols the WebSocket does not cover) take at most this share of the query
# key's rate: orders, fills and reconciliations use the same key.
POLL_SHARE = 0.5


def tick_time(tick: TradeTick) -> dt.datetime:
    day = (
        dt.datetime.strptime(tick.business_date, "%Y%m%d").date()
        if tick.business_date
        else clock.now_seoul().date()
    )
    hms = dt.datetime.strptime(tick.time, "%H%M%S").time()
    return dt.datetime.combine(day, hms, clock.SEOUL)


@on_fresh_connection
def price_write(*, symbol: str, price: int, at: dt.datetime, source: str, **limits) -> int:
    """The default `on_price`: the price written, nothing evaluated."""
    best_price_write(symbol=symbol, price=price, at=at, source=source, **limits)
    return 0


def price_handle(on_price: Callable[..., int], /, **price) -> int:
    """`on_price(**price)`; a database error (a lock timeout, the server gone) is logged and
    the price dropped, never ending the feed: the next price handles the symbol again."""
    try:
        return on_price(**price)
    except DatabaseError as exc:
        logger.error(
            "pricesync.db_error symbol=%s price=%s: %s", price["symbol"], price["price"], exc
        )
        close_old_connections()
        return 0


@dataclass
class Freshness:
    last_ws: dict[str, float] = field(default_factory=dict)
    last_rest: dict[str, float] = field(default_factory=dict)

    def ws_age(self, symbol: str) -> float | None:
        seen = self.last_ws.get(symbol)
        return None if seen is None else time.monotonic() - seen


class PriceFeed:
    def __init__(
        self,
        *,
        broker,
        wanted: Callable[[], list[str]],
        on_price: Callable[..., int],
        on_outage: Callable[[str, str, float], None],
        on_vi: Callable[..., int],
        poll_phases: Collection[market_calendar.Phase] | None = None,
        cap: int = SUBSCRIPTION_CAP,
        follow_s: float = 2.0,
        stale_s: float = 5.0,
        poll_s: float = 1.0,
        stream_alert_after_s: float = 10.0,
    ) -> None:
        """`wanted()`: the symbols to follow now, sorted (the first `cap` are subscribed).
        `on_price(symbol=, price=, at=, source=, **limits)`: a price, handled (see
        price_handle; on_fresh_connection when it may be run again; price_write only writes
        it); returns what it
        did, as a count (exits opened), logged when not 0. A REST quote comes with its limits
        (prev_close, upper_limit, lower_limit). `poll_phases`: the market phases in which stale
        symbols are quoted over REST (None: always). A WebSocket outage longer than
        `stream_alert_after_s` is reported through `on_outage(state, detail, since)`."""
        self.broker = broker
        self.wanted = wanted
        self.on_price = on_price
        self.on_outage = on_outage
        self.on_vi = on_vi
        self.poll_phases = poll_phases
        self.cap = cap
        self.follow_s, self.stale_s, self.poll_s = follow_s, stale_s, poll_s
        self.fresh = Freshness()
        self.poll_budget = max(1, int(broker.config.rate_per_second * poll_s * POLL_SHARE))
        self._poll_turn = 0
        self.symbols: list[str] = []
        self.subscribed: set[str] = set()
        self.in_vi: set[str] = set()  # symbols this feed has marked in a VI (market.vi)
        self.quoted_day: dt.date | None = None  # the trading day requote_daily last ran for
        self.quoted_at: dict[str, dt.datetime] = {}  # each symbol's last REST quote, clock.now()
        config = broker.config
        # Both venues' trades where a real account's holdings trade (kis.protocol.trade_tr_id).
        self.trade_tr = trade_tr_id(config.flavour)
        self.stream = KisStream(
            url=config.ws_url,
            approval_key=broker.approval_key,
            approval_key_refused=broker.approval_key_refused,
            custtype=config.custtype,
            on_trade=self._on_trade,
            on_outage=self._outage,
            alert_after_s=stream_alert_after_s,
        )
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pricesync-db")

    async def _in_db(self, fn, /, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(
            self._db, functools.partial(fn, **kwargs)
        )

    def _outage(self, state: str, detail: str, since: float) -> None:
        close_old_connections()
        self.on_outage(state, detail, since)

    def _handle(self, **price) -> int:
        return price_handle(self.on_price, **price)

    def _vi(self, *, symbol: str, expected: int, reference: int, at: dt.datetime) -> int:
        """A VI's expected price: the symbol marked, then `on_vi(symbol=, price=, vi=, at=)`,
        which returns the exits it opened; a database error is logged and the price dropped."""
        vi = vi_mark(symbol, expected=expected, reference=reference, at=at)
        return price_handle(self.on_vi, symbol=symbol, price=expected, vi=vi, at=at)

    async def _on_trade(self, tick: TradeTick) -> None:
        if tick.price <= 0:
            return
        self.fresh.last_ws[tick.symbol] = time.monotonic()
        if tick.hour_class == HOUR_CLASS_VI:  # an auction's expected price, not a trade
            self.in_vi.add(tick.symbol)
            done = await self._in_db(
                self._vi,
                symbol=tick.symbol,
                expected=tick.price,
                reference=tick.vi_reference,
                at=tick_time(tick),
            )
            if done:
                logger.info(
                    "pricesync.vi_exits symbol=%s price=%s exits=%s", tick.symbol, tick.price, done
                )
            return
        if tick.symbol in self.in_vi:  # the auction's single price: the VI is over
            self.in_vi.discard(tick.symbol)
            await self._in_db(vi_clear, symbol=tick.symbol)
        done = await self._in_db(
            self._handle,
            symbol=tick.symbol,
            price=tick.price,
            at=tick_time(tick),
            source=BestPrice.Source.WEBSOCKET,
        )
        if done:
            logger.info(
                "pricesync.exits symbol=%s price=%s exits=%s", tick.symbol, tick.price, done
            )

    async def follow(self) -> None:
        """Subscribe to what is wanted now, within the cap; unsubscribe from the rest."""
        try:
            self.symbols = await self._in_db(self._wanted)
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
            await self.stream.subscribe(self.trade_tr, symbol)
            await self._poll_one(symbol)  # today's previous close and limits, and a first price
        for symbol in sorted(self.subscribed - keep):
            await self.stream.unsubscribe(self.trade_tr, symbol)
        self.subscribed = keep

    async def requote_daily(self) -> None:
        """Once a trading day, from REQUOTE_LEAD before its first session (Nextrade's
        pre-market), every subscribed symbol quoted over REST: the day's previous close and
        price limits, which a trade does not carry, and which the exits and the GAP_DOWN
        thresholds read. Without it a feed running for days kept the limits of the day it
        subscribed. (When KIS moves its quote's base price to the new day is UNCONFIRMED;
        the lead leaves it the night.)"""
        now = clock.now()
        session = market_calendar.session(now.astimezone(clock.SEOUL).date())
        if session is None or self.quoted_day == session.day:
            return
        first = market_calendar.phase_began(
            session, market_calendar.Phase.PRE_MARKET, market_calendar.NXT_DAY
        )
        if first is None or now < first - REQUOTE_LEAD:
            return
        self.quoted_day = session.day
        # Those quoted since (at their subscription, or polled) are quoted already.
        since = first - REQUOTE_LEAD
        for symbol in sorted(self.subscribed):
            if self.quoted_at.get(symbol, since) <= since:
                await self._poll_one(symbol)

    def _wanted(self) -> list[str]:
        close_old_connections()
        return self.wanted()

    async def _poll_one(self, symbol: str) -> None:
        try:
            quote = await asyncio.to_thread(self.broker.price, symbol)
        except Exception as exc:  # noqa: BLE001 - one symbol's failure never stops the feed
            logger.warning("pricesync.rest_failed symbol=%s: %s", symbol, exc)
            return
        self.fresh.last_rest[symbol] = time.monotonic()
        self.quoted_at[symbol] = clock.now()
        at = clock.now().replace(microsecond=0)
        # The quote says whether the stock is in a VI (vi_cls_code): marked or cleared as a
        # trade's hour class does; its price is handled as a quote's.
        if quote.vi:
            self.in_vi.add(symbol)
            await self._in_db(vi_mark, symbol=symbol, expected=quote.price, reference=0, at=at)
        elif symbol in self.in_vi:
            self.in_vi.discard(symbol)
            await self._in_db(vi_clear, symbol=symbol)
        # A REST quote has no trade time: stamped to the second, like the trades, so a trade of
        # the same second still counts as at least as fresh.
        await self._in_db(
            self._handle,
            symbol=symbol,
            price=quote.price,
            at=at,
            source=BestPrice.Source.REST,
            prev_close=quote.prev_close,
            upper_limit=quote.upper_limit,
            lower_limit=quote.lower_limit,
        )

    async def _restart(self, ended: asyncio.Task, stop: asyncio.Event) -> asyncio.Task:
        """The stream's task ended though nothing asked it to (it reconnects by itself, so only
        a bug ends it): reported, and started again. Meanwhile every symbol is polled."""
        error = ended.exception() if not ended.cancelled() else None
        logger.error(
            "pricesync.stream_ended (%s): restarting it",
            type(error).__name__ if error else "returned",
        )
        await asyncio.to_thread(
            self._outage,
            "down",
            f"the stream's task ended ({type(error).__name__ if error else 'returned'}); restarted",
            time.time(),
        )
        return asyncio.create_task(self.stream.run(stop))

    def polls_due(self) -> list[str]:
        """The stale symbols to quote over REST this round: none outside `poll_phases`, and
        never more than the key's share for quotes (POLL_SHARE of its rate over a round), taken
        in turn so that every stale symbol is quoted."""
        if (
            self.poll_phases is not None
            and market_calendar.moment(clock.now()).phase not in self.poll_phases
        ):
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
        """Follow, poll and hand prices on until `stop`."""
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
                await self.requote_daily()
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
