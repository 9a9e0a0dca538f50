"""The market as the router reads it before any lock: a symbol's price and the top of its
order book, each from the hot cache (market/prices.py) or else asked of the broker, both calls
made at once on the market's threads; a quote asked for is kept as the best price, and a book's
top in the cache; a read begun on the ingest's heads-up (market_prefetch) is joined by the route
that asks next. What a read found (Market) is what the gates judge (picks/gates.py).

The top of a symbol's book is cached under picks:book:<symbol>, the name it had when the router
held these reads, for PICKS_BOOK_CACHE_S (1 s by default): a burst of picks in one name costs
one call.
"""

import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from django.conf import settings
from django.db import connection

from core import metrics
from core.hotcache import cache_get_many, cache_set
from core.rows import on_fresh_connection
from kis.errors import KisError, KisProductNotFound

from . import prices
from .models import BestPrice

logger = logging.getLogger("aegis.market")


@dataclass(frozen=True)
class Market:
    """The symbol's market as read just before routing. `price_at` is when the price was true
    (the trade's time, or when the broker was asked)."""

    price: int | None = None
    price_at: dt.datetime | None = None
    upper_limit: int | None = None
    lower_limit: int | None = None
    best_bid: int | None = None
    best_ask: int | None = None
    known: bool = True  # the broker knows the symbol
    halted: bool = False


class PriceAge(Protocol):
    """What a read needs of the gate settings (picks.gates.Limits): how old a cached price may
    be."""

    @property
    def max_price_age_s(self) -> float: ...


def _quote_keep(symbol: str, quote, at: dt.datetime) -> None:
    """Keep a quote the router asked for as the symbol's best price (a newer trade, if
    pricesync stored one meanwhile, stays). Runs on a market lane, after the route has the
    quote: off the route's path. One statement in autocommit: the cache is written through at
    once."""
    try:
        on_fresh_connection(prices.best_price_write)(
            symbol=symbol,
            price=quote.price,
            at=at,
            source=BestPrice.Source.REST,
            prev_close=quote.prev_close or None,
            upper_limit=quote.upper_limit or None,
            lower_limit=quote.lower_limit or None,
        )
    except Exception as exc:  # noqa: BLE001 - the next quote or trade is kept instead
        logger.warning("market.quote_not_kept symbol=%s: %s", symbol, type(exc).__name__)


def _kept(symbol: str, quote, now: dt.datetime) -> prices.Px:
    """A quote the router asked for, kept as the best price (on a market thread), as the hot
    cache holds prices."""
    market_lanes.submit(_quote_keep, symbol, quote, now)
    return prices.Px(
        quote.price,
        quote.prev_close or None,
        quote.upper_limit or None,
        quote.lower_limit or None,
        now.timestamp(),
    )


def _book_top(book) -> tuple[int | None, int | None]:
    return (book.bids[0][0] if book.bids else None, book.asks[0][0] if book.asks else None)


def _book_key(symbol: str) -> str:
    return f"picks:book:{symbol}"


def _unless_cached(ask, key: str, usable, cached: Future, broker):
    """On a market thread: (the value the route's cache read found under `key`, False) when
    `usable`, else (`ask()` of the broker, True). The call's rate slot and the breaker's
    state are taken while the route reads the cache (`cached`, a future it fulfils); a slot
    taken for a call the cache spares is left unused, which only ever counts more against
    KIS's rate, never less."""
    broker.preflight("query")
    value = cached.result().get(key)
    if value is not None and usable(value):
        return value, False
    return ask(), True


# The market's threads: the price and the order book asked at once, the quote kept as the best
# price after the route has it; the router reads the account on them too, beside the broker
# calls (picks/routing.py). Each keeps its own database connection.
market_lanes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="market-lanes")


# How often market_lanes_warm runs its statement on each market thread: past psycopg's
# prepare threshold (5 runs) and PostgreSQL's first five plans of a prepared statement, which
# are made for the parameters of each run before it weighs one generic plan.
WARM_RUNS = 12


def market_lanes_warm(statement: Callable[..., object], /, *args, **kwargs) -> int:
    """Start every market thread, each with its database connection, and run `statement`
    (with `args` and `kwargs`) WARM_RUNS times on each: on a direct connection it is then
    prepared and planned, so that a worker's first reads do not pay for it. A worker that
    routes picks warms the route's account statement, which runs on these threads beside the
    broker calls (picks/doorbell.py): without this the route's stage from its start to the
    intent took 4.0 ms on the mean over the first 20 picks measured and 2.2 ms from the 80th
    on (bench.ingest, one run): each of the eight connections plans the statement afresh for
    its first ten runs. Returns how many threads were warmed (0 on a connection that prepares
    nothing)."""
    if connection.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        return 0
    count = market_lanes._max_workers
    together = threading.Barrier(count, timeout=10)  # one task on each thread

    def warm() -> None:
        together.wait()
        for _ in range(WARM_RUNS):
            statement(*args, **kwargs)

    calls = [market_lanes.submit(warm) for _ in range(count)]
    warmed = sum(call.exception(timeout=60) is None for call in calls)
    logger.info("market.lanes_warm threads=%d of %d runs=%d", warmed, count, WARM_RUNS)
    return warmed


class _Fetch(NamedTuple):
    """A market read under way: the price and the top of the book, each (value, whether the
    broker was asked), and when it began."""

    quote: Future
    top: Future
    now: dt.datetime
    began: float  # time.monotonic()


def _market_fetch(
    symbol: str, *, broker, limits: PriceAge, now: dt.datetime, joinable: bool = False
) -> _Fetch:
    """Begin reading `symbol`'s market: both broker calls (each only if the cache lacks its
    value) on market threads, which take their rate slots meanwhile, while this thread reads
    both cache entries in one round trip. `joinable`: a heads-up's read, which a route of the
    symbol may join from the moment the calls are under way (_fetches)."""
    price_key, book_key = prices.price_key(symbol), _book_key(symbol)
    cached: Future = Future()
    quote = market_lanes.submit(
        _unless_cached,
        functools.partial(broker.price, symbol),
        price_key,
        lambda px: now.timestamp() - px.at <= limits.max_price_age_s,
        cached,
        broker,
    )
    top = market_lanes.submit(
        _unless_cached,
        lambda: _book_top(broker.order_book(symbol)),
        book_key,
        lambda _: True,
        cached,
        broker,
    )
    fetch = _Fetch(quote, top, now, time.monotonic())
    try:
        if joinable:
            with _fetches_lock:
                _fetches[symbol] = fetch
        cached.set_result(cache_get_many([price_key, book_key]))
    finally:
        if not cached.done():
            cached.set_result({})
    return fetch


# Market reads begun on a heads-up (market_prefetch), by symbol: a market_read of the symbol
# joins one begun less than PICKS_BOOK_CACHE_S ago (a book is not kept longer in the cache
# either; the price's age is the gates' to judge).
_fetches: dict[str, _Fetch] = {}
_fetches_lock = threading.Lock()


def _fetch_begun(symbol: str) -> _Fetch | None:
    with _fetches_lock:
        horizon = time.monotonic() - settings.PICKS_BOOK_CACHE_S
        for stale in [s for s, fetch in _fetches.items() if fetch.began < horizon]:
            del _fetches[stale]
        return _fetches.get(symbol)


def market_prefetch(symbol: str, *, broker, limits: PriceAge, now: dt.datetime) -> None:
    """Begin reading `symbol`'s market ahead of the pick that will ask for it (the ingest's
    heads-up, sent before the pick is stored, picks/doorbell.py): the route's market_read in
    this process joins it instead of asking again. Nothing is kept from a read that no route
    joins."""
    if _fetch_begun(symbol) is None:
        _market_fetch(symbol, broker=broker, limits=limits, now=now, joinable=True)


def market_read(symbol: str, *, broker, limits: PriceAge, now: dt.datetime) -> Market:
    """The symbol's price (the hot cache's when fresh, else the broker's, kept as the best
    price) and the top of its order book (the cache's, kept PICKS_BOOK_CACHE_S so that a
    burst of picks in one name costs one call, else the broker's): both read from the cache
    in one round trip, and both broker calls made at once on market threads, which take their
    rate slots meanwhile; or what a heads-up began reading (market_prefetch), unless that
    failed. KisError other than an unknown symbol propagates.

    The hot cache only: pricesync writes every price it stores through to it, kept as long as
    a price may be fresh by default; a price missing there is asked of the broker rather than
    read from PostgreSQL, where it would rarely be fresh enough."""
    fetch = _fetch_begun(symbol)
    if fetch is not None:
        try:
            market = _market_of(symbol, fetch)
        except KisError as exc:  # the heads-up's calls failed: this route asks for itself
            with _fetches_lock:
                if _fetches.get(symbol) is fetch:
                    del _fetches[symbol]
            logger.info("market.heads_up_read_failed symbol=%s: %s", symbol, type(exc).__name__)
        else:
            metrics.PICK_MARKET_READS.labels("joined").inc()
            return market
    metrics.PICK_MARKET_READS.labels("own").inc()
    fetch = _market_fetch(symbol, broker=broker, limits=limits, now=now)
    try:
        return _market_of(symbol, fetch)
    finally:
        for call in (fetch.quote, fetch.top):
            if not call.cancel():
                call.exception()  # a call under way is waited for, never left running


def _market_of(symbol: str, fetch: _Fetch) -> Market:
    """The market a read found: what the broker was asked is kept (the quote as the best
    price, the book's top in the cache), from market threads, off the route's path."""
    try:
        px, asked = fetch.quote.result()
    except KisProductNotFound:
        return Market(known=False)
    halted = asked and px.halted
    if asked:
        px = _kept(symbol, px, fetch.now)
    (bid, ask), asked = fetch.top.result()
    if asked:
        market_lanes.submit(cache_set, _book_key(symbol), (bid, ask), settings.PICKS_BOOK_CACHE_S)
    return Market(
        price=px.price,
        price_at=dt.datetime.fromtimestamp(px.at, dt.UTC),
        upper_limit=px.upper_limit,
        lower_limit=px.lower_limit,
        best_bid=bid,
        best_ask=ask,
        halted=halted,
    )
